//! Google Drive as a sink: the store's backup files under one folder, over the
//! Drive v3 REST API.
//!
//! Files are named as the sink's objects are (`snapshots/...`, `bundles/...`)
//! and kept flat in the store's folder (`tillmesh-STORE` in My Drive with the
//! `drive.file` scope, or in the hidden app data folder with `drive.appdata`).
//! Small files go up in one multipart request; larger ones in a resumable
//! session, in chunks of a multiple of 256 KiB, continuing after a dropped
//! connection from the offset Drive reports (`308` and `Range`), and starting
//! over only when Drive has forgotten the session (`404`). Every upload is
//! checked against the MD5 Drive computed; every download against it too.
//!
//! Requests that fail for now (5xx, 429, the rate-limit 403s, a dropped
//! connection) are tried again after a truncated exponential backoff with
//! jitter, never sooner than a `Retry-After` (see [`crate::remote`]); a `401`
//! gets one token refresh, then the sink reports [`SinkError::Auth`]. A full
//! Drive is [`SinkError::Quota`], for the caller's retention to make room. A
//! store folder deleted by its owner is made again on the next upload.
//!
//! The client is blocking (sinks are called from blocking threads) and follows
//! no redirects: a `308` is Drive's "resume incomplete", never a redirect.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use md5::{Digest, Md5};
use reqwest::blocking::{Client, RequestBuilder, Response};
use serde_json::{Value, json};

use crate::remote::{ApiError, retry_delay};
use crate::sink::{Object, Sink, SinkError, SinkErrorKind};

/// Google's API root.
pub const GOOGLE_API: &str = "https://www.googleapis.com";
/// The MIME type of a Drive folder.
const FOLDER_MIME: &str = "application/vnd.google-apps.folder";
/// Files up to this size go up in one multipart request.
const MULTIPART_MAX: usize = 5 * 1024 * 1024;
/// Chunks of resumable uploads are multiples of this.
pub const CHUNK_UNIT: usize = 256 * 1024;
/// The default chunk: 8 MiB.
pub const DEFAULT_CHUNK: usize = 32 * CHUNK_UNIT;
/// How many times an upload session Drive forgot is started again.
const SESSION_RESTARTS: u32 = 3;

/// Where a Drive sink keeps the store's files.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DriveConfig {
    /// The API root: [`GOOGLE_API`], or an emulator's.
    pub api: String,
    /// The store folder's name.
    pub folder: String,
    /// In the app data folder (scope `drive.appdata`) instead of My Drive
    /// (scope `drive.file`).
    #[serde(default)]
    pub app_data: bool,
}

/// Access tokens for the sink's requests.
pub trait AccessTokens: std::fmt::Debug + Send + Sync {
    /// A token that is good now (refreshed first when it is about to expire).
    fn access(&self) -> Result<String, SinkError>;
    /// A new token, after the remote refused the last one.
    fn refreshed(&self) -> Result<String, SinkError>;
}

/// A file as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Remote {
    id: String,
    size: u64,
    md5: Option<String>,
}

/// The storage quota: bytes used and the limit (none when unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Bytes used across the account.
    pub usage: u64,
    /// The account's limit, if it has one.
    pub limit: Option<u64>,
}

impl Quota {
    /// The share of the limit used, in per cent (0 without a limit).
    pub fn percent(&self) -> f64 {
        match self.limit {
            Some(l) if l > 0 => self.usage as f64 * 100.0 / l as f64,
            _ => 0.0,
        }
    }

    /// Whether more than 80 % of the limit is used: time to warn, before
    /// backups stop. Never without a limit.
    pub fn nearly_full(&self) -> bool {
        matches!(self.limit, Some(l) if l > 0 && self.usage.saturating_mul(10) > l.saturating_mul(8))
    }
}

/// What the account says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Its e-mail address.
    pub email: String,
    /// Its storage.
    pub quota: Quota,
}

/// Google Drive as a sink.
#[derive(Debug)]
pub struct DriveSink {
    config: DriveConfig,
    http: Client,
    tokens: Arc<dyn AccessTokens>,
    folder_id: Mutex<Option<String>>,
    chunk: usize,
    /// Multiplies every retry wait (1.0 but in tests).
    pace: f64,
}

/// The blocking HTTP client remote sinks and logins use: rustls, no redirects
/// followed, generous timeouts for chunk uploads on a slow line. One for the
/// process, never dropped: a blocking client may not be dropped where async
/// code runs, and sinks are dropped there.
pub fn http_client() -> Result<Client, SinkError> {
    static CLIENT: std::sync::OnceLock<Client> = std::sync::OnceLock::new();
    if let Some(c) = CLIENT.get() {
        return Ok(c.clone());
    }
    // The TLS provider of the process (ring, as iroh uses); set once.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Built on a thread of its own: building one blocks, which async code
    // (a sink opened in the daemon) may not do.
    let failed = |e: String| SinkError::Transient {
        sink: "Google Drive".into(),
        reason: format!("cannot start the HTTP client: {e}"),
    };
    let built = std::thread::spawn(|| {
        Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(20))
            .timeout(Duration::from_secs(300))
            .user_agent(concat!("tillmesh/", env!("CARGO_PKG_VERSION")))
            .build()
    })
    .join()
    .map_err(|_| failed("its thread panicked".into()))?
    .map_err(|e| failed(e.to_string()))?;
    Ok(CLIENT.get_or_init(|| built).clone())
}

/// Quote `s` for a Drive query.
fn quoted(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

impl DriveSink {
    /// A sink over `config` with `tokens`.
    pub fn new(config: DriveConfig, tokens: Arc<dyn AccessTokens>) -> Result<DriveSink, SinkError> {
        Ok(DriveSink {
            config,
            http: http_client()?,
            tokens,
            folder_id: Mutex::new(None),
            chunk: DEFAULT_CHUNK,
            pace: 1.0,
        })
    }

    /// Upload in chunks of `chunk` bytes (rounded up to a multiple of 256 KiB).
    pub fn with_chunk(mut self, chunk: usize) -> DriveSink {
        self.chunk = chunk.div_ceil(CHUNK_UNIT).max(1) * CHUNK_UNIT;
        self
    }

    /// Scale every retry wait by `pace` (tests make it small).
    pub fn with_pace(mut self, pace: f64) -> DriveSink {
        self.pace = pace;
        self
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.config.api.trim_end_matches('/'))
    }

    fn spaces(&self) -> &'static str {
        if self.config.app_data {
            "appDataFolder"
        } else {
            "drive"
        }
    }

    fn transient(&self, reason: String) -> SinkError {
        SinkError::Transient {
            sink: self.describe(),
            reason,
        }
    }

    fn wait(&self, kind: SinkErrorKind, retry_after: Option<Duration>, tries: u32) -> bool {
        match retry_delay(kind, retry_after, tries, rand::random::<f64>()) {
            Some(d) => {
                std::thread::sleep(d.mul_f64(self.pace));
                true
            }
            None => false,
        }
    }

    /// Send the request `build` makes (given a token) until it succeeds (2xx
    /// or 308) or fails for good: retrying what is transient, refreshing the
    /// token once on a 401.
    fn send(&self, build: &dyn Fn(&str) -> RequestBuilder) -> Result<Response, SinkError> {
        let mut refreshed = false;
        let mut tries = 0;
        loop {
            tries += 1;
            let token = self.tokens.access()?;
            let err = match build(&token).send() {
                Err(e) => self.transient(format!("the request failed: {e}")),
                Ok(r) if r.status().is_success() || r.status().as_u16() == 308 => return Ok(r),
                Ok(r) => {
                    let api = api_error(r);
                    if api.status == 401 && !refreshed {
                        refreshed = true;
                        self.tokens.refreshed()?;
                        tries -= 1;
                        continue;
                    }
                    api.into_sink_error(&self.describe())
                }
            };
            if !self.wait(err.kind(), err.retry_after(), tries) {
                return Err(err);
            }
        }
    }

    fn json(&self, r: Response) -> Result<Value, SinkError> {
        r.json::<Value>()
            .map_err(|e| self.transient(format!("an unreadable answer: {e}")))
    }

    /// The store folder's id: found, or made.
    fn folder(&self) -> Result<String, SinkError> {
        if let Some(id) = self
            .folder_id
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            return Ok(id);
        }
        let mut q = format!(
            "name = {} and mimeType = '{FOLDER_MIME}' and trashed = false",
            quoted(&self.config.folder)
        );
        if self.config.app_data {
            q.push_str(" and 'appDataFolder' in parents");
        }
        let r = self.send(&|t| {
            self.http
                .get(self.url("/drive/v3/files"))
                .bearer_auth(t)
                .query(&[
                    ("q", q.as_str()),
                    ("spaces", self.spaces()),
                    ("orderBy", "createdTime"),
                    ("fields", "files(id)"),
                ])
        })?;
        let found = self.json(r)?["files"][0]["id"].as_str().map(str::to_string);
        let id = match found {
            Some(id) => id,
            None => {
                let mut meta = json!({"name": self.config.folder, "mimeType": FOLDER_MIME});
                if self.config.app_data {
                    meta["parents"] = json!(["appDataFolder"]);
                }
                let r = self.send(&|t| {
                    self.http
                        .post(self.url("/drive/v3/files"))
                        .bearer_auth(t)
                        .query(&[("fields", "id")])
                        .json(&meta)
                })?;
                self.json(r)?["id"]
                    .as_str()
                    .map(str::to_string)
                    .ok_or_else(|| self.transient("Drive made the folder but sent no id".into()))?
            }
        };
        *self.folder_id.lock().unwrap_or_else(|e| e.into_inner()) = Some(id.clone());
        Ok(id)
    }

    /// Forget the folder's id (it was deleted): the next call finds or makes it.
    fn forget_folder(&self) {
        *self.folder_id.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Every page of a `files.list` over `q` in the store folder.
    fn query(&self, q: &str) -> Result<Vec<(String, Remote)>, SinkError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let r = self.send(&|t| {
                let mut req = self
                    .http
                    .get(self.url("/drive/v3/files"))
                    .bearer_auth(t)
                    .query(&[
                        ("q", q),
                        ("spaces", self.spaces()),
                        ("pageSize", "1000"),
                        ("fields", "nextPageToken,files(id,name,size,md5Checksum)"),
                    ]);
                if let Some(p) = &token {
                    req = req.query(&[("pageToken", p.as_str())]);
                }
                req
            })?;
            let v = self.json(r)?;
            for f in v["files"].as_array().into_iter().flatten() {
                let (Some(id), Some(name)) = (f["id"].as_str(), f["name"].as_str()) else {
                    continue;
                };
                out.push((
                    name.to_string(),
                    Remote {
                        id: id.to_string(),
                        size: f["size"].as_str().and_then(|s| s.parse().ok()).unwrap_or(0),
                        md5: f["md5Checksum"].as_str().map(str::to_string),
                    },
                ));
            }
            match v["nextPageToken"].as_str() {
                Some(t) => token = Some(t.to_string()),
                None => return Ok(out),
            }
        }
    }

    fn find(&self, name: &str) -> Result<Option<Remote>, SinkError> {
        let folder = self.folder()?;
        let q = format!(
            "name = {} and {} in parents and trashed = false",
            quoted(name),
            quoted(&folder)
        );
        Ok(self.query(&q)?.into_iter().next().map(|(_, r)| r))
    }

    fn found(&self, name: &str) -> Result<Remote, SinkError> {
        self.find(name)?
            .ok_or_else(|| SinkError::NotFound(format!("{} on {}", name, self.describe())))
    }

    /// The account and its storage quota.
    pub fn account(&self) -> Result<Account, SinkError> {
        let r = self.send(&|t| {
            self.http
                .get(self.url("/drive/v3/about"))
                .bearer_auth(t)
                .query(&[("fields", "user(emailAddress),storageQuota(limit,usage)")])
        })?;
        let v = self.json(r)?;
        let n = |x: &Value| x.as_str().and_then(|s| s.parse::<u64>().ok());
        Ok(Account {
            email: v["user"]["emailAddress"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            quota: Quota {
                usage: n(&v["storageQuota"]["usage"]).unwrap_or(0),
                limit: n(&v["storageQuota"]["limit"]),
            },
        })
    }

    /// Upload `bytes` as `name` (replacing `existing`), once.
    fn upload(
        &self,
        name: &str,
        bytes: &[u8],
        existing: Option<&Remote>,
    ) -> Result<Value, SinkError> {
        let folder = self.folder()?;
        let mut meta = json!({"name": name, "appProperties": {"tillmesh": "1"}});
        if existing.is_none() {
            meta["parents"] = json!([folder]);
        }
        // A new file is created in the folder; one of that name is replaced.
        let upload_to = |token: &str, upload_type: &str| {
            let req = match existing {
                Some(e) => self
                    .http
                    .patch(self.url(&format!("/upload/drive/v3/files/{}", e.id))),
                None => self.http.post(self.url("/upload/drive/v3/files")),
            };
            req.bearer_auth(token).query(&[
                ("uploadType", upload_type),
                ("fields", "id,name,size,md5Checksum"),
            ])
        };
        if bytes.len() <= MULTIPART_MAX {
            let boundary = format!("tillmesh-{}", hex::encode(rand::random::<[u8; 12]>()));
            let mut body = format!(
                "--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{meta}\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .into_bytes();
            body.extend_from_slice(bytes);
            body.extend_from_slice(format!("\r\n--{boundary}--").as_bytes());
            let r = self.send(&|t| {
                upload_to(t, "multipart")
                    .header(
                        "content-type",
                        format!("multipart/related; boundary={boundary}"),
                    )
                    .body(body.clone())
            })?;
            return self.json(r);
        }
        let mut restarts = 0;
        loop {
            let r = self.send(&|t| {
                upload_to(t, "resumable")
                    .header("x-upload-content-type", "application/octet-stream")
                    .header("x-upload-content-length", bytes.len().to_string())
                    .json(&meta)
            })?;
            let Some(session) = r
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
            else {
                return Err(self.transient("Drive began an upload but gave no session".into()));
            };
            match self.send_chunks(&session, bytes) {
                Err(e) if e.kind() == SinkErrorKind::NotFound && restarts < SESSION_RESTARTS => {
                    // Drive forgot the session: from the start.
                    restarts += 1;
                }
                other => return other,
            }
        }
    }

    /// Send `bytes` to the resumable `session`, chunk by chunk, from the
    /// offset Drive reports after anything goes wrong.
    fn send_chunks(&self, session: &str, bytes: &[u8]) -> Result<Value, SinkError> {
        let total = bytes.len();
        let mut offset = 0usize;
        let mut tries = 0u32;
        loop {
            let end = (offset + self.chunk).min(total);
            let sent = self
                .http
                .put(session)
                .header(
                    "content-range",
                    format!("bytes {offset}-{}/{total}", end - 1),
                )
                .header("x-guploader-no-308", "yes")
                .body(bytes[offset..end].to_vec())
                .send();
            let err = match sent {
                Ok(r) if is_incomplete(&r) => {
                    let next = resume_offset(&r);
                    if next > offset {
                        tries = 0;
                    }
                    offset = next;
                    continue;
                }
                Ok(r) if r.status().is_success() => return self.json(r),
                Ok(r) => api_error(r).into_sink_error(&self.describe()),
                Err(e) => self.transient(format!("the upload was cut: {e}")),
            };
            tries += 1;
            if err.kind() == SinkErrorKind::NotFound
                || !self.wait(err.kind(), err.retry_after(), tries)
            {
                return Err(err);
            }
            // Ask Drive what it holds, and go on from there.
            let r = self.send(&|_| {
                self.http
                    .put(session)
                    .header("content-range", format!("bytes */{total}"))
                    .header("x-guploader-no-308", "yes")
            })?;
            if !is_incomplete(&r) {
                return self.json(r);
            }
            offset = resume_offset(&r);
        }
    }
}

/// Whether `r` says "resume incomplete" (308, or 200 with the override).
fn is_incomplete(r: &Response) -> bool {
    r.status().as_u16() == 308
        || r.headers()
            .get("x-http-status-code-override")
            .is_some_and(|v| v.as_bytes() == b"308")
}

/// The next byte to send after a "resume incomplete": one past the end of
/// `Range: bytes=0-N`, or 0 when Drive holds nothing.
fn resume_offset(r: &Response) -> usize {
    r.headers()
        .get("range")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit('-').next())
        .and_then(|n| n.parse::<usize>().ok())
        .map_or(0, |last| last + 1)
}

fn api_error(r: Response) -> ApiError {
    let status = r.status().as_u16();
    let retry_after = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = r.bytes().map(|b| b.to_vec()).unwrap_or_default();
    ApiError::parse(status, &body, retry_after.as_deref(), SystemTime::now())
}

impl Sink for DriveSink {
    fn describe(&self) -> String {
        if self.config.app_data {
            format!("Google Drive (app data folder {})", self.config.folder)
        } else {
            format!("Google Drive folder {}", self.config.folder)
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<Object>, SinkError> {
        let folder = self.folder()?;
        let q = format!(
            "{} in parents and trashed = false and mimeType != '{FOLDER_MIME}'",
            quoted(&folder)
        );
        let mut out: Vec<Object> = self
            .query(&q)?
            .into_iter()
            .filter(|(name, _)| name.starts_with(prefix))
            .map(|(name, r)| Object { name, size: r.size })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out.dedup_by(|a, b| a.name == b.name);
        Ok(out)
    }

    fn put(&self, name: &str, bytes: &[u8]) -> Result<(), SinkError> {
        let existing = self.find(name)?;
        let done = match self.upload(name, bytes, existing.as_ref()) {
            // The folder went while we were at it: make it again, once.
            Err(e) if e.kind() == SinkErrorKind::NotFound => {
                self.forget_folder();
                self.upload(name, bytes, None)?
            }
            other => other?,
        };
        let want = hex::encode(Md5::digest(bytes));
        if done["md5Checksum"].as_str() != Some(want.as_str()) {
            if let Some(id) = done["id"].as_str() {
                let _ = self.send(&|t| {
                    self.http
                        .delete(self.url(&format!("/drive/v3/files/{id}")))
                        .bearer_auth(t)
                });
            }
            return Err(SinkError::VerifyFailed(format!(
                "{name} on {}",
                self.describe()
            )));
        }
        Ok(())
    }

    fn get_limited(&self, name: &str, max: u64) -> Result<Vec<u8>, SinkError> {
        let f = self.found(name)?;
        if f.size > max {
            return Err(SinkError::TooLarge {
                path: format!("{name} on {}", self.describe()),
                size: f.size,
                max,
            });
        }
        let r = self.send(&|t| {
            self.http
                .get(self.url(&format!("/drive/v3/files/{}", f.id)))
                .bearer_auth(t)
                .query(&[("alt", "media")])
        })?;
        let bytes = r
            .bytes()
            .map_err(|e| self.transient(format!("the download was cut: {e}")))?
            .to_vec();
        if f.md5.is_some_and(|m| m != hex::encode(Md5::digest(&bytes))) {
            return Err(SinkError::VerifyFailed(format!(
                "{name} on {}",
                self.describe()
            )));
        }
        Ok(bytes)
    }

    fn get_start(&self, name: &str, len: usize) -> Result<Vec<u8>, SinkError> {
        let f = self.found(name)?;
        if len == 0 || f.size == 0 {
            return Ok(Vec::new());
        }
        let r = self.send(&|t| {
            self.http
                .get(self.url(&format!("/drive/v3/files/{}", f.id)))
                .bearer_auth(t)
                .query(&[("alt", "media")])
                .header("range", format!("bytes=0-{}", len - 1))
        })?;
        let mut bytes = r
            .bytes()
            .map_err(|e| self.transient(format!("the download was cut: {e}")))?
            .to_vec();
        bytes.truncate(len);
        Ok(bytes)
    }

    fn delete(&self, name: &str) -> Result<(), SinkError> {
        let f = self.found(name)?;
        self.send(&|t| {
            self.http
                .delete(self.url(&format!("/drive/v3/files/{}", f.id)))
                .bearer_auth(t)
        })?;
        Ok(())
    }

    fn free_space(&self) -> Option<u64> {
        let q = self.account().ok()?.quota;
        q.limit.map(|l| l.saturating_sub(q.usage))
    }

    fn quota(&self) -> Option<(u64, Option<u64>)> {
        let q = self.account().ok()?.quota;
        Some((q.usage, q.limit))
    }

    fn is_remote(&self) -> bool {
        true
    }
}
