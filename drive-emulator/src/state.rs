//! What the emulator holds: files, upload sessions, OAuth grants and tokens,
//! queued faults, and counters.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::Options;

/// The MIME type of a Drive folder.
pub const FOLDER_MIME: &str = "application/vnd.google-apps.folder";
/// The alias of the app data folder.
pub const APP_DATA: &str = "appDataFolder";
/// Scopes, as Google names them.
pub const SCOPE_DRIVE: &str = "https://www.googleapis.com/auth/drive";
/// Files the app created.
pub const SCOPE_FILE: &str = "https://www.googleapis.com/auth/drive.file";
/// The app's hidden data folder.
pub const SCOPE_APPDATA: &str = "https://www.googleapis.com/auth/drive.appdata";

/// Which routes a fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Every Drive route (not OAuth).
    AnyDrive,
    /// Uploads: initiation, chunks, media and multipart.
    Upload,
    /// Chunk and status `PUT`s of resumable sessions only.
    UploadChunk,
    /// `files.list`.
    List,
    /// `files.get`, metadata or content.
    Get,
    /// `files.delete`.
    Delete,
    /// `about.get`.
    About,
    /// The token endpoint.
    Token,
}

/// What a fault does to a request it applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultAction {
    /// Answer with this status and Google error `reason` (e.g. 503
    /// `backendError`, 429 `rateLimitExceeded`, 403 `userRateLimitExceeded`).
    Status(u16, &'static str),
    /// Keep the first N bytes of the chunk, then drop the connection without
    /// an answer (resumable chunk `PUT`s only).
    DropAfter(usize),
    /// Keep only the first N bytes of the chunk and answer `308` as usual.
    PersistOnly(usize),
}

/// A queued fault.
#[derive(Debug, Clone)]
pub struct Fault {
    /// The routes it applies to.
    pub route: Route,
    /// What it does.
    pub action: FaultAction,
    /// How many more requests it applies to.
    pub left: usize,
}

/// One request as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query parameters, in order.
    pub query: Vec<(String, String)>,
}

/// Counters of what the emulator received and holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Body bytes received by upload requests (every chunk, including ones
    /// sent again).
    pub upload_bytes: u64,
    /// Bytes of file content held.
    pub stored_bytes: u64,
    /// Files held (folders included).
    pub files: usize,
    /// Uploads completed.
    pub uploads: u64,
    /// Access tokens issued by a refresh.
    pub refreshes: u64,
    /// Grants revoked through `/revoke`.
    pub revocations: u64,
}

/// A file or folder.
#[derive(Debug, Clone)]
pub struct File {
    pub id: String,
    pub name: String,
    pub mime: String,
    pub parents: Vec<String>,
    pub app_data: bool,
    pub content: Vec<u8>,
    pub created_ms: u64,
    pub modified_ms: u64,
    pub version: u64,
    pub app_properties: BTreeMap<String, String>,
    pub trashed: bool,
    /// The OAuth client that created it (what `drive.file` may see).
    pub client: String,
}

/// A resumable upload in progress.
#[derive(Debug, Clone)]
pub struct Session {
    /// The file being replaced, for an update.
    pub file_id: Option<String>,
    pub meta: Value,
    pub mime: String,
    pub total: Option<u64>,
    pub received: Vec<u8>,
    pub fields: Option<String>,
    pub client: String,
    pub app_data: bool,
}

/// An access token.
#[derive(Debug, Clone)]
pub struct Access {
    pub grant: String,
    pub expires_ms: u64,
}

/// A user's consent to a client for some scopes, with its refresh token.
#[derive(Debug, Clone)]
pub struct Grant {
    pub client: String,
    pub scopes: Vec<String>,
    pub revoked: bool,
}

/// An authorization request waiting for the user, or an issued code.
#[derive(Debug, Clone)]
pub struct Authorization {
    pub client: String,
    pub redirect_uri: String,
    pub scopes: Vec<String>,
    pub state: Option<String>,
    pub challenge: Option<(String, String)>,
    /// `None` while the user has not answered.
    pub approved: Option<bool>,
    pub code: Option<String>,
}

/// A device-flow request.
#[derive(Debug, Clone)]
pub struct Device {
    pub client: String,
    pub user_code: String,
    pub scopes: Vec<String>,
    pub approved: Option<bool>,
    pub expires_ms: u64,
    pub interval_s: u64,
    pub last_poll_ms: Option<u64>,
    pub done: bool,
}

/// Everything the emulator holds.
#[derive(Debug)]
pub struct State {
    pub options: Options,
    pub url: String,
    pub files: BTreeMap<String, File>,
    pub sessions: BTreeMap<String, Session>,
    pub access: BTreeMap<String, Access>,
    /// By refresh token.
    pub grants: BTreeMap<String, Grant>,
    /// By request id.
    pub authorizations: BTreeMap<String, Authorization>,
    /// By device code.
    pub devices: BTreeMap<String, Device>,
    pub faults: Vec<Fault>,
    pub log: Vec<RequestRecord>,
    pub stats: Stats,
    pub clock_ms: u64,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A random id of `len` characters from Google's id alphabet.
pub fn random_id(len: usize) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

impl State {
    pub fn new(options: Options, url: String) -> State {
        State {
            options,
            url,
            files: BTreeMap::new(),
            sessions: BTreeMap::new(),
            access: BTreeMap::new(),
            grants: BTreeMap::new(),
            authorizations: BTreeMap::new(),
            devices: BTreeMap::new(),
            faults: Vec::new(),
            log: Vec::new(),
            stats: Stats::default(),
            clock_ms: 0,
        }
    }

    /// The first queued fault for `route`, used up by one.
    pub fn take_fault(&mut self, route: Route) -> Option<FaultAction> {
        self.take_fault_where(route, |_| true)
    }

    /// The first queued fault for `route` that `fits`, used up by one.
    pub fn take_fault_where(
        &mut self,
        route: Route,
        fits: impl Fn(&FaultAction) -> bool,
    ) -> Option<FaultAction> {
        let applies = |r: Route| {
            r == route
                || (r == Route::AnyDrive && route != Route::Token)
                || (r == Route::Upload && route == Route::UploadChunk)
        };
        let i = self
            .faults
            .iter()
            .position(|f| f.left > 0 && applies(f.route) && fits(&f.action))?;
        self.faults[i].left -= 1;
        let action = self.faults[i].action.clone();
        if self.faults[i].left == 0 {
            self.faults.remove(i);
        }
        Some(action)
    }

    /// A fault that answers with a status, for routes that only take those.
    pub fn status_fault(&mut self, route: Route) -> Option<Response> {
        match self.take_fault(route)? {
            FaultAction::Status(code, reason) => Some(fault_response(code, reason)),
            // Byte faults mean nothing outside a chunk upload.
            _ => None,
        }
    }

    pub fn approve_all(&mut self, yes: bool) -> usize {
        let mut n = 0;
        for a in self.authorizations.values_mut() {
            if a.approved.is_none() {
                a.approved = Some(yes);
                n += 1;
            }
        }
        for d in self.devices.values_mut() {
            if d.approved.is_none() {
                d.approved = Some(yes);
                n += 1;
            }
        }
        n
    }

    pub fn expire_access_tokens(&mut self) {
        for a in self.access.values_mut() {
            a.expires_ms = 0;
        }
    }

    pub fn revoke_all(&mut self) {
        for g in self.grants.values_mut() {
            g.revoked = true;
        }
    }

    /// Issue an access token for `grant` (a refresh token).
    pub fn issue_access(&mut self, grant: &str) -> (String, u64) {
        let token = format!("ya29.{}", random_id(40));
        let secs = self.options.token_seconds;
        self.access.insert(
            token.clone(),
            Access {
                grant: grant.to_string(),
                expires_ms: now_ms() + secs * 1000,
            },
        );
        (token, secs)
    }

    /// Start a grant and answer a token request for it.
    pub fn new_grant(&mut self, client: &str, scopes: Vec<String>) -> Value {
        let refresh = format!("1//{}", random_id(40));
        let scope = scopes.join(" ");
        self.grants.insert(
            refresh.clone(),
            Grant {
                client: client.to_string(),
                scopes,
                revoked: false,
            },
        );
        let (access, secs) = self.issue_access(&refresh);
        json!({
            "access_token": access,
            "expires_in": secs,
            "refresh_token": refresh,
            "scope": scope,
            "token_type": "Bearer",
        })
    }

    pub fn delete_named(&mut self, name: &str) -> usize {
        let ids: Vec<String> = self
            .files
            .values()
            .filter(|f| f.name == name)
            .map(|f| f.id.clone())
            .collect();
        ids.iter().map(|id| self.delete_tree(id)).sum()
    }

    /// Delete `id` and everything under it; how many files went.
    pub fn delete_tree(&mut self, id: &str) -> usize {
        let Some(_) = self.files.remove(id) else {
            return 0;
        };
        let children: Vec<String> = self
            .files
            .values()
            .filter(|f| f.parents.iter().any(|p| p == id))
            .map(|f| f.id.clone())
            .collect();
        1 + children.iter().map(|c| self.delete_tree(c)).sum::<usize>()
    }

    pub fn usage(&self) -> u64 {
        self.files.values().map(|f| f.content.len() as u64).sum()
    }

    pub fn trash_usage(&self) -> u64 {
        self.files
            .values()
            .filter(|f| f.trashed)
            .map(|f| f.content.len() as u64)
            .sum()
    }

    pub fn stats(&self) -> Stats {
        Stats {
            stored_bytes: self.usage(),
            files: self.files.len(),
            ..self.stats.clone()
        }
    }

    pub fn file_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .files
            .values()
            .filter(|f| f.mime != FOLDER_MIME)
            .map(|f| f.name.clone())
            .collect();
        names.sort();
        names
    }

    /// A unique "monotonic" modification time: strictly after the last one.
    pub fn tick(&mut self) -> u64 {
        self.clock_ms = now_ms().max(self.clock_ms + 1);
        self.clock_ms
    }
}

/// A Google-format error.
pub fn google_error(code: u16, reason: &str, message: &str) -> Response {
    google_error_at(code, reason, message, None)
}

/// A Google-format error naming the parameter or header at fault.
pub fn google_error_at(
    code: u16,
    reason: &str,
    message: &str,
    location: Option<(&str, &str)>,
) -> Response {
    let domain = match reason {
        "storageQuotaExceeded" | "userRateLimitExceeded" | "rateLimitExceeded" => "usageLimits",
        _ => "global",
    };
    let mut entry = json!({"domain": domain, "reason": reason, "message": message});
    if let Some((loc, kind)) = location {
        entry["location"] = json!(loc);
        entry["locationType"] = json!(kind);
    }
    let status = match code {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        503 => "UNAVAILABLE",
        _ => "INTERNAL",
    };
    let body =
        json!({"error": {"code": code, "message": message, "errors": [entry], "status": status}});
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = (status, axum::Json(body)).into_response();
    if code == 401 {
        r.headers_mut().insert(
            "www-authenticate",
            axum::http::HeaderValue::from_static(
                "Bearer realm=\"https://accounts.google.com/\", error=\"invalid_token\"",
            ),
        );
    }
    r
}

/// The answer of an injected status fault.
pub fn fault_response(code: u16, reason: &str) -> Response {
    let message = match reason {
        "storageQuotaExceeded" => "The user's Drive storage quota has been exceeded.",
        "userRateLimitExceeded" => "User Rate Limit Exceeded.",
        "rateLimitExceeded" => "Rate Limit Exceeded",
        "backendError" => "Backend Error",
        "authError" => "Invalid Credentials",
        _ => "Injected fault",
    };
    let mut r = google_error(code, reason, message);
    if code == 429 || code == 503 {
        r.headers_mut()
            .insert("retry-after", axum::http::HeaderValue::from_static("1"));
    }
    r
}

/// An OAuth-format error (`{"error", "error_description"}`).
pub fn oauth_error(status: u16, error: &str, description: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    (
        status,
        axum::Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}
