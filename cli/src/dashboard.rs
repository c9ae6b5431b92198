//! The web dashboard the daemon serves at `/` on its local API: the mesh at a
//! glance, redrawn live from the event stream, readable on a phone, and
//! installable as a web app that shows the last state it saw while the
//! daemon is down. Its files are in the binary (no CDN, no web font).
//!
//! No long-lived token ever sits in a URL: `tillmesh dashboard` asks the
//! daemon for a one-time code (`POST /v1/dashboard/codes`, with the API's
//! token), the page trades it for a session cookie (`POST
//! /dashboard/session`), and that cookie opens only the routes the page
//! reads (`GET /v1/status`, `GET /v1/events`). Sessions live in the daemon's
//! memory: a restart ends them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use crate::api::{Body, Problem};
use crate::daemon::Shared;

/// How long a code from `tillmesh dashboard` may be used (once).
pub const CODE_TTL: Duration = Duration::from_secs(120);
/// How long a dashboard session lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// At most this many codes, and sessions, at once (the oldest go first).
const MAX_HELD: usize = 64;
/// The session cookie's name.
pub const COOKIE: &str = "tillmesh_session";

/// The one-time codes and the sessions they became.
#[derive(Debug, Default)]
pub struct Sessions {
    inner: Mutex<Held>,
}

#[derive(Debug, Default)]
struct Held {
    codes: HashMap<String, Instant>,
    sessions: HashMap<String, Instant>,
}

/// Keep at most [`MAX_HELD`] unexpired entries, dropping the ones that
/// expire first.
fn tidy(map: &mut HashMap<String, Instant>, now: Instant) {
    map.retain(|_, until| *until > now);
    while map.len() >= MAX_HELD {
        let Some(first) = map.iter().min_by_key(|(_, t)| **t).map(|(k, _)| k.clone()) else {
            break;
        };
        map.remove(&first);
    }
}

fn secret() -> String {
    hex::encode(rand::random::<[u8; 24]>())
}

impl Sessions {
    /// A new one-time code.
    pub fn code(&self) -> String {
        let code = secret();
        let now = Instant::now();
        if let Ok(mut h) = self.inner.lock() {
            tidy(&mut h.codes, now);
            h.codes.insert(code.clone(), now + CODE_TTL);
        }
        code
    }

    /// Trade an unused, unexpired `code` for a session token.
    pub fn redeem(&self, code: &str) -> Option<String> {
        let now = Instant::now();
        let mut h = self.inner.lock().ok()?;
        let until = h.codes.remove(code)?;
        if until <= now {
            return None;
        }
        tidy(&mut h.sessions, now);
        let token = secret();
        h.sessions.insert(token.clone(), now + SESSION_TTL);
        Some(token)
    }

    /// Whether `token` is a live session.
    pub fn valid(&self, token: &str) -> bool {
        let now = Instant::now();
        self.inner.lock().is_ok_and(|h| {
            h.sessions
                .iter()
                .any(|(t, until)| *until > now && crate::daemon::same_token(token, t))
        })
    }
}

/// The routes anyone who can reach the API's port may load: the page's own
/// files and the code exchange (the `Host` check still applies).
pub fn is_public(method: &Method, path: &str) -> bool {
    match *method {
        Method::GET => ASSETS.iter().any(|(p, ..)| *p == path),
        Method::POST => path == "/dashboard/session",
        _ => false,
    }
}

/// The routes a dashboard session may read.
pub fn session_may(method: &Method, path: &str) -> bool {
    *method == Method::GET && matches!(path, "/v1/status" | "/v1/events")
}

/// The session token in a request's cookies, if any.
pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v)
}

/// The page's files: path, content type, body.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "/",
        "text/html; charset=utf-8",
        include_str!("dashboard/index.html"),
    ),
    (
        "/dashboard.css",
        "text/css; charset=utf-8",
        include_str!("dashboard/dashboard.css"),
    ),
    (
        "/dashboard.js",
        "text/javascript; charset=utf-8",
        include_str!("dashboard/dashboard.js"),
    ),
    (
        "/sw.js",
        "text/javascript; charset=utf-8",
        include_str!("dashboard/sw.js"),
    ),
    (
        "/manifest.webmanifest",
        "application/manifest+json",
        include_str!("dashboard/manifest.webmanifest"),
    ),
    (
        "/icon.svg",
        "image/svg+xml",
        include_str!("dashboard/icon.svg"),
    ),
];

/// The page script, after the list of event kinds it listens for.
fn script() -> String {
    let kinds: Vec<&str> = crate::events::KINDS.iter().map(|(k, _)| *k).collect();
    let js = ASSETS
        .iter()
        .find(|(p, ..)| *p == "/dashboard.js")
        .map_or("", |(.., body)| body);
    format!(
        "const EVENT_KINDS = {};\n{js}",
        serde_json::to_string(&kinds).unwrap_or_else(|_| "[]".into())
    )
}

fn asset(path: &'static str) -> Response {
    let Some((_, kind, body)) = ASSETS.iter().find(|(p, ..)| *p == path) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let body = if path == "/dashboard.js" {
        script()
    } else {
        body.to_string()
    };
    (
        [
            (header::CONTENT_TYPE, *kind),
            // Always asked again (the service worker keeps a copy for when
            // the daemon is down).
            (header::CACHE_CONTROL, "no-cache"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response()
}

/// A one-time code's body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Redeem {
    code: String,
}

/// A new code, for `tillmesh dashboard`.
#[derive(Debug, Serialize, Deserialize)]
pub struct NewCode {
    /// The code.
    pub code: String,
    /// The page's address on this machine, with the code.
    pub url: String,
    /// Seconds it may be used in (once).
    pub expires_in: u64,
}

/// The dashboard's routes.
pub fn router() -> Router<Arc<Shared>> {
    let mut r = Router::new();
    for (path, ..) in ASSETS {
        r = r.route(path, get(move || async move { asset(path) }));
    }
    r.route("/dashboard/session", post(redeem))
        .route("/v1/dashboard/codes", post(new_code))
}

/// `POST /dashboard/session`: a one-time code for a session cookie.
async fn redeem(State(sh): State<Arc<Shared>>, Body(b): Body<Redeem>) -> Response {
    match sh.dashboard.redeem(&b.code) {
        Some(token) => (
            StatusCode::NO_CONTENT,
            [(
                header::SET_COOKIE,
                format!(
                    "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
                    SESSION_TTL.as_secs()
                ),
            )],
        )
            .into_response(),
        None => Problem::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this code was used already or has expired: run `tillmesh dashboard` again",
        )
        .into_response(),
    }
}

/// `POST /v1/dashboard/codes`: a one-time code to open the dashboard with.
async fn new_code(State(sh): State<Arc<Shared>>) -> axum::Json<NewCode> {
    let code = sh.dashboard.code();
    axum::Json(NewCode {
        url: format!("http://127.0.0.1:{}/?code={code}", sh.api_port),
        code,
        expires_in: CODE_TTL.as_secs(),
    })
}

/// `tillmesh dashboard [--json]`: print the address of the dashboard with a
/// one-time code.
pub fn open(
    home: &std::path::Path,
    json: bool,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    let no_daemon = || {
        crate::exit::Rejected(
            "the dashboard is served by the daemon, and none runs for this till; start it with `tillmesh run`"
                .into(),
        )
    };
    let api = crate::client::discover(home).ok_or_else(no_daemon)?;
    let code: NewCode = match crate::client::post(&api, "/v1/dashboard/codes", &[], b"")? {
        crate::client::Sent::Reply(200, body) => serde_json::from_slice(&body)
            .map_err(|e| anyhow::anyhow!("the daemon sent an unreadable reply: {e}"))?,
        crate::client::Sent::Reply(status, _) => {
            anyhow::bail!("the daemon refused to make a dashboard code (HTTP {status})")
        }
        crate::client::Sent::NoAnswer => anyhow::bail!("the daemon did not answer; try again"),
        crate::client::Sent::NotTaken => return Err(no_daemon().into()),
    };
    if json {
        return crate::commands::print_json(out, &code);
    }
    writeln!(
        out,
        "Open this address in a browser on this machine within {} minutes (it works once):\n  {}",
        code.expires_in / 60,
        code.url
    )?;
    writeln!(
        out,
        "The page keeps working until the daemon restarts; install it as an app to see the last \
         state while the daemon is down."
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_opens_one_session_once() {
        let s = Sessions::default();
        let code = s.code();
        assert!(!s.valid(&code), "a code is not a session");
        let token = s.redeem(&code).expect("first use");
        assert!(s.valid(&token));
        assert_eq!(s.redeem(&code), None, "a code works once");
        assert_eq!(s.redeem("not-a-code"), None);
        assert!(!s.valid("not-a-session"));
    }

    #[test]
    fn only_the_page_reads_status_and_events_with_a_session() {
        assert!(is_public(&Method::GET, "/"));
        assert!(is_public(&Method::GET, "/sw.js"));
        assert!(is_public(&Method::POST, "/dashboard/session"));
        assert!(!is_public(&Method::GET, "/v1/status"));
        assert!(!is_public(&Method::POST, "/v1/dashboard/codes"));
        assert!(session_may(&Method::GET, "/v1/status"));
        assert!(session_may(&Method::GET, "/v1/events"));
        assert!(!session_may(&Method::POST, "/v1/sales"));
        assert!(!session_may(&Method::GET, "/v1/sales"));
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "a=1; tillmesh_session=abc; b=2".parse().expect("header"),
        );
        assert_eq!(session_cookie(&h), Some("abc"));
    }

    #[test]
    fn the_script_knows_every_event_kind() {
        let js = script();
        for (kind, _) in crate::events::KINDS {
            assert!(js.contains(&format!("\"{kind}\"")), "{kind}");
        }
    }
}
