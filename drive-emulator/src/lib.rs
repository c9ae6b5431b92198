//! An in-memory Google Drive v3 and Google OAuth 2.0 server, for tests and
//! demos on machines without the internet.
//!
//! It serves Google's own paths on one address: OAuth at
//! `/o/oauth2/v2/auth`, `/token`, `/device/code` and `/revoke`; Drive at
//! `/drive/v3/...`, `/upload/drive/v3/...` and `/batch/drive/v3`. A client
//! therefore needs only a different root URL to talk to it instead of Google.
//! What it implements follows the Drive v3 discovery document: resumable
//! uploads with `308` and `Range` (or `200` with
//! `X-HTTP-Status-Code-Override: 308` when asked with `X-GUploader-No-308:
//! yes`), multipart and media uploads, `files.list` with a subset of `q`,
//! `spaces`, `fields`, `pageSize` and `pageToken`, `files.get` with
//! `alt=media` and `Range`, `files.update`, `files.delete`, batches of these
//! calls, `about.get` with the storage quota, int64 fields as JSON strings,
//! Google-format errors, and scopes enforced per token (`drive.file` sees the
//! files its client made, `drive.appdata` the app data folder only).
//!
//! Tests steer it through [`Emulator`]: faults queued per route
//! ([`Fault`]), quota, expired or revoked tokens, a file deleted behind the
//! client's back, and counters of what was received ([`Emulator::stats`],
//! [`Emulator::requests`]).

// Handlers return the HTTP answer of a failure as their error; boxing each
// one would buy nothing in a test server.
#![allow(clippy::result_large_err)]

mod batch;
pub mod discovery;
mod drive;
mod fields;
mod oauth;
mod query;
mod state;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

pub use state::{Fault, FaultAction, RequestRecord, Route, Stats};

use state::State;

/// How an emulator behaves from the start.
#[derive(Debug, Clone)]
pub struct Options {
    /// Grant every authorization and device request at once, as if the user
    /// approved it (demos); otherwise [`Emulator::approve`] does.
    pub auto_approve: bool,
    /// The storage quota in bytes (`None`: unlimited).
    pub quota: Option<u64>,
    /// How long an access token lives, in seconds (Google: 3599).
    pub token_seconds: u64,
    /// Client ids accepted (empty: any).
    pub clients: Vec<String>,
    /// The account's e-mail address, as `about.get` reports it.
    pub email: String,
    /// Seconds a device-flow client is asked to wait between polls (Google: 5).
    pub device_interval_s: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            auto_approve: false,
            quota: None,
            token_seconds: 3599,
            clients: Vec::new(),
            email: "store@example.com".into(),
            device_interval_s: 5,
        }
    }
}

/// A running emulator: it serves until dropped.
#[derive(Debug)]
pub struct Emulator {
    url: String,
    state: Arc<Mutex<State>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Emulator {
    /// Serve on `bind` (port 0 picks a free one) from a thread of its own.
    pub fn start(bind: SocketAddr, options: Options) -> std::io::Result<Emulator> {
        let listener = std::net::TcpListener::bind(bind)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let url = format!("http://{addr}");
        let state = Arc::new(Mutex::new(State::new(options, url.clone())));
        let app = router(state.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let thread = std::thread::Builder::new()
            .name("drive-emulator".into())
            .spawn(move || {
                rt.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    let served = axum::serve(listener, app).with_graceful_shutdown(async {
                        let _ = stopped.await;
                    });
                    if let Err(e) = served.await {
                        tracing::warn!(error = %e, "the Drive emulator stopped");
                    }
                });
                rt.shutdown_background();
            })?;
        Ok(Emulator {
            url,
            state,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Serve on `bind` until the process ends (the `drive-emulator` command).
    pub async fn serve(bind: SocketAddr, options: Options) -> std::io::Result<()> {
        let listener = tokio::net::TcpListener::bind(bind).await?;
        let url = format!("http://{}", listener.local_addr()?);
        let state = Arc::new(Mutex::new(State::new(options, url)));
        axum::serve(listener, router(state)).await
    }

    /// The root URL (`http://127.0.0.1:PORT`), in place of
    /// `https://www.googleapis.com`, `https://oauth2.googleapis.com` and
    /// `https://accounts.google.com`.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queue a fault: the next requests to `route` get `action`, `times` times.
    pub fn inject(&self, route: Route, action: FaultAction, times: usize) {
        self.state().faults.push(Fault {
            route,
            action,
            left: times,
        });
    }

    /// Set the storage quota (`None`: unlimited).
    pub fn set_quota(&self, quota: Option<u64>) {
        self.state().options.quota = quota;
    }

    /// Approve every pending authorization and device request (the user said
    /// yes in the browser). Returns how many were approved.
    pub fn approve(&self) -> usize {
        self.state().approve_all(true)
    }

    /// Deny every pending authorization and device request.
    pub fn deny(&self) -> usize {
        self.state().approve_all(false)
    }

    /// Make every access token issued so far expired (refresh tokens still work).
    pub fn expire_access_tokens(&self) {
        self.state().expire_access_tokens();
    }

    /// Revoke every grant, as a user removing the app's access does: refresh
    /// and access tokens stop working.
    pub fn revoke_all(&self) {
        self.state().revoke_all();
    }

    /// Delete every file named `name` (and what is inside it), as a user
    /// deleting it in the Drive web page does. Returns how many were deleted.
    pub fn delete_named(&self, name: &str) -> usize {
        self.state().delete_named(name)
    }

    /// Counters of what the emulator received and holds.
    pub fn stats(&self) -> Stats {
        self.state().stats()
    }

    /// Every request received so far: method, path and query parameters.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.state().log.clone()
    }

    /// Names of the files held (not folders), sorted.
    pub fn file_names(&self) -> Vec<String> {
        self.state().file_names()
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

type Shared = Arc<Mutex<State>>;

/// The largest request body taken: 256 MiB.
const MAX_BODY: usize = 256 << 20;

fn lock(s: &Shared) -> MutexGuard<'_, State> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

fn router(state: Shared) -> axum::Router {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/o/oauth2/v2/auth", get(oauth::authorize))
        .route("/o/oauth2/v2/consent", get(oauth::consent))
        .route("/token", post(oauth::token))
        .route("/device/code", post(oauth::device_code))
        .route("/device", get(oauth::device_page))
        .route("/revoke", post(oauth::revoke))
        .route("/drive/v3/about", get(drive::about))
        .route("/drive/v3/files", get(drive::list).post(drive::create))
        .route(
            "/drive/v3/files/{id}",
            get(drive::get).patch(drive::update).delete(drive::delete),
        )
        .route(
            "/upload/drive/v3/files",
            post(drive::upload).put(drive::upload_chunk),
        )
        .route(
            "/resumable/upload/drive/v3/files",
            post(drive::upload).put(drive::upload_chunk),
        )
        .route(
            "/upload/drive/v3/files/{id}",
            axum::routing::patch(drive::upload_update),
        )
        .route("/batch/drive/v3", post(batch::batch))
        .layer(axum::middleware::from_fn_with_state(state.clone(), record))
        // Drive takes chunks as large as a client likes (clients send 8 to
        // 100 MiB); axum's own limit is 2 MB.
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// Keep a record of each request, for tests that check what a client sent.
async fn record(
    axum::extract::State(state): axum::extract::State<Shared>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let query: Vec<(String, String)> = req
        .uri()
        .query()
        .and_then(|q| serde_urlencoded::from_str(q).ok())
        .unwrap_or_default();
    lock(&state).log.push(RequestRecord {
        method: req.method().to_string(),
        path: req.uri().path().to_string(),
        query,
    });
    next.run(req).await
}

/// Play a browser: `GET url` over plain HTTP, following redirects (to the
/// emulator's consent page, then to a client's loopback address), as the
/// person signing in would. Gives the last status. For tests and demos.
pub fn browse(url: &str) -> std::io::Result<u16> {
    use std::io::{Read, Write};
    let mut url = url.to_string();
    for _ in 0..8 {
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "only http:// addresses")
        })?;
        let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let path = if path.is_empty() { "/" } else { path };
        let mut s = std::net::TcpStream::connect(host)?;
        s.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        )?;
        let mut reply = Vec::new();
        s.read_to_end(&mut reply)?;
        let text = String::from_utf8_lossy(&reply);
        let status: u16 = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let location = text.lines().take_while(|l| !l.is_empty()).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("location")
                .then(|| v.trim().to_string())
        });
        match location {
            Some(next) if (300..400).contains(&status) => {
                url = if next.starts_with('/') {
                    format!("http://{host}{next}")
                } else {
                    next
                };
            }
            _ => return Ok(status),
        }
    }
    Err(std::io::Error::other("too many redirects"))
}
