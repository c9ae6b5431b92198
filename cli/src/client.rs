//! The command line's side of the daemon's local API: while `tillmesh run` holds a
//! till's store, other commands send their arguments to it over HTTP on the Unix
//! socket `api.sock` in the till's home, with the bearer token the daemon wrote
//! (mode 0600) into `api.json`.
//!
//! The socket is the proof that the daemon listening is this till's: only the
//! home's owner can create it, since the home is mode 0700 (checked before
//! connecting). The daemon also serves 127.0.0.1 for other local programs, but
//! the command line never sends its token there: after a `kill -9` any process
//! could have taken the port named in a stale `api.json`. A dead daemon's socket
//! refuses connections, which counts as no daemon, as a stale file always did.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// What the daemon writes into `api.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiInfo {
    /// File format version (1).
    pub version: u32,
    /// Local TCP port, for other local programs; the command line uses the
    /// socket.
    pub port: u16,
    /// Bearer token.
    pub token: String,
    /// The daemon's process id.
    pub pid: u32,
    /// The daemon's socket (`api.sock` beside the file; not written in it).
    #[serde(skip)]
    pub socket: PathBuf,
}

/// The reply to an exec request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecReply {
    /// Exit code.
    pub code: i32,
    /// What the command printed.
    pub stdout: String,
    /// Its error message, if any.
    pub stderr: String,
}

/// The exec request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecRequest {
    /// The command line, without the program name.
    pub args: Vec<String>,
    /// The caller's working directory: relative paths in `args` are relative to it.
    #[serde(default)]
    pub cwd: Option<PathBuf>,
    /// The caller's values of [`FORWARDED_ENV`]: a passphrase is the caller's,
    /// not the daemon's.
    #[serde(default)]
    pub env: std::collections::BTreeMap<String, String>,
    /// The files the command reads ([`crate::args::Command::input_files`]), as
    /// the caller read them: the daemon may not see the caller's files.
    #[serde(default)]
    pub files: std::collections::BTreeMap<PathBuf, String>,
}

/// Environment variables a command reads that the daemon takes from the
/// caller when it runs the command for it.
pub const FORWARDED_ENV: &[&str] = &[
    "TILLMESH_RECOVERY_PASSPHRASE",
    "TILLMESH_SCRYPT_WORK_FACTOR",
];

/// Where the daemon's API file lives.
pub fn api_file(home: &Path) -> PathBuf {
    crate::home::path(home, crate::home::HomeFile::Api)
}

/// Where the daemon's API socket lives.
pub fn api_socket(home: &Path) -> PathBuf {
    crate::home::path(home, crate::home::HomeFile::ApiSocket)
}

/// The running daemon's API, if its file is there.
pub fn discover(home: &Path) -> Option<ApiInfo> {
    let text = std::fs::read_to_string(api_file(home)).ok()?;
    let mut info: ApiInfo = serde_json::from_str(&text).ok()?;
    info.socket = api_socket(home);
    Some(info)
}

/// What became of a request to the daemon.
#[derive(Debug)]
pub enum Sent {
    /// Nobody took it (no daemon, a stale file, a daemon that is stopping): it
    /// was not run.
    NotTaken,
    /// The daemon took it and stopped without answering: it may or may not
    /// have run.
    NoAnswer,
    /// The reply: status and body.
    Reply(u16, Vec<u8>),
}

/// `POST path` with a JSON `body` to the daemon over its socket.
pub fn post(api: &ApiInfo, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Result<Sent> {
    request(api, "POST", path, headers, body)
}

/// `GET path` of the daemon over its socket.
pub fn get(api: &ApiInfo, path: &str) -> Result<Sent> {
    request(api, "GET", path, &[], &[])
}

fn request(
    api: &ApiInfo,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Sent> {
    use std::io::{Read, Write};
    let Some(mut stream) = connect(&api.socket)? else {
        return Ok(Sent::NotTaken);
    };
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        api.token,
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    // One write: a route that answers without reading a body may close the
    // connection before a second write. A daemon that is stopping closes its
    // socket: a request it could not take whole was not run.
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    let sent = stream.write_all(&request);
    if let Err(e) = sent {
        return match e.kind() {
            std::io::ErrorKind::BrokenPipe
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted => Ok(Sent::NotTaken),
            _ => Err(e.into()),
        };
    }
    let mut response = Vec::new();
    let read = stream.read_to_end(&mut response);
    if response.is_empty() {
        return Ok(Sent::NoAnswer);
    }
    read.context("the daemon did not answer")?;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("the daemon sent an unreadable reply")?;
    let head = String::from_utf8_lossy(&response[..split]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .context("the daemon sent an unreadable reply")?;
    if status == 401 {
        anyhow::bail!("the daemon refused this till's API token; restart `tillmesh run`");
    }
    Ok(Sent::Reply(status, response[split + 4..].to_vec()))
}

/// What became of a command sent to the daemon.
#[derive(Debug)]
pub enum Exec {
    /// It ran, and this is what it printed.
    Answered(ExecReply),
    /// No daemon took it (a stale file, a daemon that is stopping): it did not run.
    NotTaken,
    /// The daemon took it and stopped before answering: whether it ran is not
    /// known here.
    NoAnswer,
}

/// Run `args` in the daemon.
pub fn exec(api: &ApiInfo, args: &[String], caller: &crate::core::Caller) -> Result<Exec> {
    let body = serde_json::to_vec(&ExecRequest {
        args: args.to_vec(),
        cwd: std::env::current_dir().ok(),
        env: caller.env.clone(),
        files: caller.files.clone(),
    })?;
    match post(api, "/v1/exec", &[], &body)? {
        Sent::NotTaken => Ok(Exec::NotTaken),
        // A sale is retried safely: see `ring`.
        Sent::NoAnswer => Ok(Exec::NoAnswer),
        Sent::Reply(200, body) => Ok(Exec::Answered(
            serde_json::from_slice(&body).context("the daemon sent an unreadable reply")?,
        )),
        Sent::Reply(other, _) => anyhow::bail!("the daemon failed the request (HTTP {other})"),
    }
}

/// Ring up a sale once, with the daemon or without it: the sale goes to
/// `POST /v1/sales` under an idempotency key of its own while a daemon runs,
/// and to the store under the same key when none does; a daemon that stops
/// before answering is asked again (or the store is, once free), so the sale
/// is recorded exactly once whatever happens between.
pub fn ring(
    ctx: &crate::commands::Ctx,
    a: &crate::args::SaleArgs,
    out: &mut dyn std::io::Write,
) -> Result<()> {
    let sale = crate::commands::sale_in(a)?;
    let req = sale.to_request()?;
    let key = hex::encode(rand::random::<[u8; 16]>());
    let body = serde_json::to_vec(&sale)?;
    let fingerprint = crate::api::fingerprint(&sale);
    let start = std::time::Instant::now();
    loop {
        if let Some(api) = discover(&ctx.home) {
            match post(&api, "/v1/sales", &[("Idempotency-Key", &key)], &body)? {
                Sent::Reply(200 | 201, body) => {
                    let s: crate::api::SaleOut = serde_json::from_slice(&body)
                        .context("the daemon sent an unreadable reply")?;
                    return crate::commands::show_entry(&s, a.json, out);
                }
                Sent::Reply(_, body) => return Err(crate::api::problem_error(&body)),
                Sent::NoAnswer => {
                    // Asked again below, under the same key, of whoever then
                    // holds the store.
                    if start.elapsed() > crate::commands::STORE_PATIENCE {
                        anyhow::bail!(
                            "the daemon stopped before answering and did not come back; the sale \
                             may or may not be recorded (check with `tillmesh sales`)"
                        );
                    }
                    std::thread::sleep(std::time::Duration::from_millis(200));
                    continue;
                }
                // A dead daemon's file: gone, so the store is opened below.
                Sent::NotTaken => {
                    let _ = std::fs::remove_file(api_file(&ctx.home));
                }
            }
        }
        let Some(mut store) = ctx.open_waiting(crate::commands::STORE_PATIENCE, || {
            discover(&ctx.home).is_some()
        })?
        else {
            continue;
        };
        let (entry, _) = store.record_sale_once(&key, &fingerprint, req)?;
        let shown = crate::commands::recorded(&mut store, entry)?;
        return crate::commands::show_entry(&shown, a.json, out);
    }
}

/// Connect to the daemon's socket once it is shown to be the till's own;
/// `None` when no daemon listens there.
#[cfg(unix)]
fn connect(socket: &Path) -> Result<Option<std::os::unix::net::UnixStream>> {
    use std::io::ErrorKind;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let meta = match std::fs::symlink_metadata(socket) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(e)
                .with_context(|| format!("cannot reach the daemon at {}", socket.display()));
        }
    };
    let home = socket.parent().unwrap_or(Path::new("."));
    let home_meta = std::fs::metadata(home)
        .with_context(|| format!("cannot read the till home {}", home.display()))?;
    // Anyone who may create files in the home could have put a socket of
    // their own there.
    if home_meta.mode() & 0o022 != 0 {
        anyhow::bail!(
            "the till home {} can be written by other users (mode {:o}), so the daemon's \
             socket there proves nothing; make it private: chmod 700 {}",
            home.display(),
            home_meta.mode() & 0o777,
            home.display()
        );
    }
    if !meta.file_type().is_socket() || meta.uid() != home_meta.uid() {
        anyhow::bail!(
            "{} is not the daemon's socket (not a socket, or not owned by the till home's owner); \
             stop any daemon of this till, remove the file and start `tillmesh run` again",
            socket.display()
        );
    }
    match std::os::unix::net::UnixStream::connect(socket) {
        Ok(s) => Ok(Some(s)),
        Err(e) if matches!(e.kind(), ErrorKind::ConnectionRefused | ErrorKind::NotFound) => {
            Ok(None)
        }
        Err(e) => {
            Err(e).with_context(|| format!("cannot reach the daemon at {}", socket.display()))
        }
    }
}

/// Without Unix sockets there is no way to tell the till's daemon from another
/// program on its old port, so the command line does not talk to it.
#[cfg(not(unix))]
fn connect(_socket: &Path) -> Result<Option<std::net::TcpStream>> {
    anyhow::bail!(
        "the daemon runs for this till, and on this system commands cannot reach it safely; \
         stop it first (Ctrl-C in its window)"
    )
}

/// Follow the daemon's event stream (`GET /v1/events`), printing each event
/// as it comes (one JSON object per line with `--json`), until the daemon
/// stops or the reader goes away.
pub fn follow_events(
    home: &Path,
    a: &crate::args::EventsArgs,
    out: &mut dyn std::io::Write,
) -> Result<()> {
    use std::io::{BufRead, BufReader, Write};
    let no_daemon = || {
        crate::exit::Rejected(
            "events come from the daemon, and none runs for this till; start it with `tillmesh run`"
                .into(),
        )
    };
    let api = discover(home).ok_or_else(no_daemon)?;
    let mut stream = connect(&api.socket)?.ok_or_else(no_daemon)?;
    let last = a
        .after
        .map(|id| format!("Last-Event-ID: {id}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET /v1/events HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\n{last}\
         Accept: text/event-stream\r\nConnection: close\r\n\r\n",
        api.token
    )?;
    let mut r = BufReader::new(stream);
    let mut status = String::new();
    r.read_line(&mut status)?;
    if !status.contains(" 200 ") {
        anyhow::bail!("the daemon refused the event stream: {}", status.trim());
    }
    let mut chunked = false;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let line = line.trim();
        if line.is_empty() {
            break;
        }
        if line.eq_ignore_ascii_case("transfer-encoding: chunked") {
            chunked = true;
        }
    }
    let mut sse = SseLines::default();
    loop {
        let bytes = if chunked {
            let mut size = String::new();
            if r.read_line(&mut size)? == 0 {
                return Ok(());
            }
            let n = usize::from_str_radix(size.trim(), 16)
                .context("the daemon sent an unreadable event stream")?;
            if n == 0 {
                return Ok(());
            }
            let mut buf = vec![0u8; n + 2];
            std::io::Read::read_exact(&mut r, &mut buf)?;
            buf.truncate(n);
            buf
        } else {
            let mut buf = Vec::new();
            if r.read_until(b'\n', &mut buf)? == 0 {
                return Ok(());
            }
            buf
        };
        for e in sse.feed(&bytes) {
            let printed = if a.json {
                writeln!(out, "{}", serde_json::to_string(&e)?)
            } else {
                writeln!(
                    out,
                    "{}  {:<18} {}",
                    crate::output::time(e["at_ms"].as_u64().unwrap_or(0)),
                    e["kind"].as_str().unwrap_or_default(),
                    e["data"]
                )
            };
            // The reader went away (`| head`): done.
            if printed.and_then(|()| out.flush()).is_err() {
                return Ok(());
            }
        }
    }
}

/// Server-sent events parsed from bytes as they come.
#[derive(Debug, Default)]
struct SseLines {
    partial: Vec<u8>,
    id: Option<u64>,
    kind: Option<String>,
    data: String,
}

impl SseLines {
    /// The events completed by `bytes`, as `{id, kind, at_ms, data}`.
    fn feed(&mut self, bytes: &[u8]) -> Vec<serde_json::Value> {
        self.partial.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(pos) = self.partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=pos).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                if !self.data.is_empty() {
                    let body: serde_json::Value =
                        serde_json::from_str(&self.data).unwrap_or_default();
                    out.push(serde_json::json!({
                        "id": self.id,
                        "kind": self.kind.take().unwrap_or_else(|| "message".into()),
                        "at_ms": body["at_ms"],
                        "data": body.get("data").cloned().unwrap_or(body),
                    }));
                }
                self.data.clear();
                self.id = None;
            } else if let Some(v) = line.strip_prefix("id:") {
                self.id = v.trim().parse().ok();
            } else if let Some(v) = line.strip_prefix("event:") {
                self.kind = Some(v.trim().to_string());
            } else if let Some(v) = line.strip_prefix("data:") {
                self.data.push_str(v.trim_start());
            }
        }
        out
    }
}
