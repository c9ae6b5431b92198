//! The command line's side of the daemon's local API: while `tillmesh run` holds a
//! till's store, other commands send their arguments to it over HTTP on 127.0.0.1
//! with the bearer token the daemon wrote (mode 0600) into the till's home.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// What the daemon writes into `api.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiInfo {
    /// File format version (1).
    pub version: u32,
    /// Local TCP port.
    pub port: u16,
    /// Bearer token.
    pub token: String,
    /// The daemon's process id.
    pub pid: u32,
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
}

/// Where the daemon's API file lives.
pub fn api_file(home: &Path) -> PathBuf {
    home.join("api.json")
}

/// The running daemon's API, if its file is there.
pub fn discover(home: &Path) -> Option<ApiInfo> {
    let text = std::fs::read_to_string(api_file(home)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Run `args` in the daemon. `Ok(None)` when no daemon answers (a stale file).
pub fn exec(api: &ApiInfo, args: &[String]) -> Result<Option<ExecReply>> {
    use std::io::{Read, Write};
    let mut stream = match std::net::TcpStream::connect(("127.0.0.1", api.port)) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return Ok(None),
        Err(e) => return Err(e).context("cannot reach the daemon's local API"),
    };
    let body = serde_json::to_vec(&ExecRequest {
        args: args.to_vec(),
        cwd: std::env::current_dir().ok(),
    })?;
    let head = format!(
        "POST /v1/exec HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        api.token,
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(&body)?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .context("the daemon did not answer")?;
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
    match status {
        200 => {}
        401 => anyhow::bail!("the daemon refused this till's API token; restart `tillmesh run`"),
        other => anyhow::bail!("the daemon failed the request (HTTP {other})"),
    }
    let reply: ExecReply = serde_json::from_slice(&response[split + 4..])
        .context("the daemon sent an unreadable reply")?;
    Ok(Some(reply))
}
