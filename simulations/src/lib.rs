//! Many tills at once: workloads, fault schedules and reports.
//!
//! [`workload`] builds store-scale data quickly (a till's day of sales as the
//! Automerge changes that till would have made) so benchmarks can measure a
//! store holding months of sales from a hundred tills; [`report`] computes
//! what the store, mesh and catch-up simulations print; [`browser`] drives
//! a real headless chromium for the dashboard's test and benchmark.
#![deny(missing_docs)]

pub mod browser;
pub mod report;
pub mod workload;

use std::path::{Path, PathBuf};

/// The `tillmesh` binary a test drives: `$TILLMESH_BIN`, or the one cargo
/// built next to the running test executable (`target/<profile>/`; `cargo
/// test --workspace` builds it).
pub fn tillmesh_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("TILLMESH_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps");
    let bin = dir.join(format!("tillmesh{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is missing: build it (`cargo build -p tillmesh`, or test with `cargo test --workspace`) or set TILLMESH_BIN",
        bin.display()
    );
    bin
}

/// A `tillmesh run` started by a benchmark: the child, and its local API's
/// port and token (from `api.json`, once it is there).
#[derive(Debug)]
pub struct Daemon {
    /// The daemon's process.
    pub child: std::process::Child,
    /// The local API's TCP port.
    pub port: u16,
    /// The local API's bearer token.
    pub token: String,
}

/// Start `bin run ARGS` for the till at `home` (output discarded) and wait,
/// up to a minute, for its local API.
pub fn start_daemon(bin: &Path, home: &Path, args: &[&str]) -> anyhow::Result<Daemon> {
    use anyhow::Context;
    let api_file = home.join("api.json");
    let _ = std::fs::remove_file(&api_file);
    let mut child = std::process::Command::new(bin)
        .arg("run")
        .args(args)
        .env("TILLMESH_HOME", home)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .with_context(|| format!("start {}", bin.display()))?;
    let t = std::time::Instant::now();
    while !api_file.exists() {
        if t.elapsed() > std::time::Duration::from_secs(60) || child.try_wait()?.is_some() {
            let _ = child.kill();
            anyhow::bail!("the daemon did not start");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let info: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&api_file)?)?;
    Ok(Daemon {
        child,
        port: u16::try_from(info["port"].as_u64().context("port")?)?,
        token: info["token"].as_str().context("token")?.to_string(),
    })
}

/// Run `bin ARGS` for the till at `home`; its standard output, or an error
/// with its standard error when it fails.
pub fn run_tillmesh(bin: &Path, home: &Path, args: &[&str]) -> anyhow::Result<String> {
    use anyhow::Context;
    let out = std::process::Command::new(bin)
        .args(args)
        .env("TILLMESH_HOME", home)
        .output()
        .with_context(|| format!("run {}", bin.display()))?;
    anyhow::ensure!(
        out.status.success(),
        "tillmesh {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}
