//! Helpers to drive the real `tillmesh` binary from end-to-end tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `tillmesh` binary under test (see [`tillmesh_sim::tillmesh_bin`]).
pub fn bin() -> PathBuf {
    tillmesh_sim::tillmesh_bin()
}

/// A till home directory and the commands run in it.
pub struct Till {
    pub home: PathBuf,
}

impl Till {
    pub fn new(root: &Path, name: &str) -> Self {
        Self {
            home: root.join(name),
        }
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.args(args)
            .env("TILLMESH_HOME", &self.home)
            .env_remove("TILLMESH_LOG");
        c
    }

    /// Run a command; return its output whatever the exit status.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run tillmesh")
    }

    /// Run a command that must succeed; return its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "tillmesh {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    /// Join the store of `admin` (whose daemon runs) as till `name`, with a new
    /// ticket from it; return the ticket (used now).
    pub fn join(&self, admin: &Till, name: &str) -> String {
        self.join_as(admin, name, "till")
    }

    /// [`Till::join`] with the role the admin till gives it in the ticket.
    #[allow(dead_code)]
    pub fn join_as(&self, admin: &Till, name: &str, role: &str) -> String {
        let ticket = admin.ok(&["invite", "--role", role]);
        let joined = self.ok(&[
            "join",
            ticket.trim(),
            "--till",
            name,
            "--bind",
            "127.0.0.1:0",
        ]);
        assert!(joined.contains("Joined"), "{joined}");
        ticket
    }

    /// The price of `sku` on this till, in cents.
    pub fn price_cents(&self, sku: &str) -> i64 {
        self.json(&["product", "show", sku])["price_cents"]
            .as_i64()
            .expect("price")
    }

    /// The receipt numbers of every sale this till holds.
    pub fn receipts(&self) -> Vec<String> {
        self.json(&["sales"])
            .as_array()
            .expect("array")
            .iter()
            .map(|s| s["receipt"].as_str().expect("receipt").to_string())
            .collect()
    }

    /// The path this till's status shows for the till named `name` (a time
    /// comes with any path but `offline`).
    #[allow(dead_code)]
    pub fn path_to(&self, name: &str) -> String {
        let status = self.json(&["status"]);
        let row = status["tills"]
            .as_array()
            .and_then(|rows| rows.iter().find(|r| r["name"] == name))
            .unwrap_or_else(|| panic!("no till {name} in {status}"))
            .clone();
        let path = row["path"].as_str().expect("path").to_string();
        if path != "offline" {
            assert!(row["path_at"].as_u64().is_some(), "{row}");
        }
        path
    }

    /// This till's store and key, opened straight (its daemon stopped), to
    /// write weeks of data faster than commands would.
    pub fn open_store(&self) -> (tillmesh_store::Store, tillmesh_store::TillKey) {
        let key = tillmesh_store::TillKey::load(&self.home.join("till.key")).expect("till key");
        let store = tillmesh_store::Store::open(
            &self.home.join("store.redb"),
            key.clone(),
            tillmesh_store::StoreOptions::default(),
        )
        .expect("store");
        (store, key)
    }

    /// Run a command with `--json` that must succeed; return the parsed output.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.push("--json");
        serde_json::from_str(&self.ok(&a)).expect("valid JSON")
    }
}

/// A running `tillmesh run` (or `tillmesh relay`) child process, stopped on drop.
pub struct Daemon {
    pub child: std::process::Child,
    pub home: Option<PathBuf>,
}

impl Till {
    /// Start this till's daemon on loopback and wait until its API is up.
    pub fn start(&self, extra: &[&str]) -> Daemon {
        self.start_logging(
            extra,
            std::env::var("TILLMESH_TEST_DAEMON_LOG").ok().as_deref(),
        )
    }

    /// [`Till::start`] with the daemon's log filter set to `filter` (appending
    /// to `daemon.log` in the till's home).
    pub fn start_logging(&self, extra: &[&str], filter: Option<&str>) -> Daemon {
        let _ = std::fs::remove_file(self.home.join("api.json"));
        // No mDNS: tests stay on loopback.
        let mut args = vec!["run", "--sync-interval", "1", "--no-mdns"];
        if !extra.contains(&"--bind") {
            args.extend(["--bind", "127.0.0.1:0"]);
        }
        args.extend_from_slice(extra);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.home.join("daemon.log"))
            .expect("log file");
        let mut cmd = self.cmd(&args);
        // TILLMESH_TEST_DAEMON_LOG sets the daemons' log filter (see daemon.log in each home).
        if let Some(filter) = filter {
            cmd.env("TILLMESH_LOG", filter).env("NO_COLOR", "1");
        }
        let child = cmd
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn daemon");
        let d = Daemon {
            child,
            home: Some(self.home.clone()),
        };
        wait_for(&format!("{} daemon to start", self.home.display()), || {
            self.home.join("api.json").exists()
        });
        d
    }
}

impl Daemon {
    /// Stop cleanly with `tillmesh stop`, then wait for the process.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(home) = self.home.take() {
            let _ = Command::new(bin())
                .args(["stop"])
                .env("TILLMESH_HOME", &home)
                .output();
            for _ in 0..100 {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Wait until `cond` holds, polling; panics after 30 s (a hang, not a timing test).
/// Every item of a paged listing, following `next` from the first page on:
/// `page(after)` reads one page (`{"items": [...], "next": ...}`), which must
/// hold at most `limit` items.
pub fn all_pages(
    limit: usize,
    mut page: impl FnMut(Option<&str>) -> serde_json::Value,
) -> Vec<serde_json::Value> {
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let v = page(after.as_deref());
        let items = v["items"].as_array().expect("items");
        assert!(items.len() <= limit, "a page over its limit: {v}");
        seen.extend(items.iter().cloned());
        match v["next"].as_str() {
            Some(n) => after = Some(n.to_string()),
            None => return seen,
        }
    }
}

pub fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..600 {
        if cond() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("gave up waiting for {what}");
}

/// Start `tillmesh relay` on loopback with its identity under `home`; returns the
/// process, its URL and its certificate fingerprint.
pub fn start_relay(home: &Path) -> (Daemon, String, String) {
    start_relay_with(home, &[])
}

/// [`start_relay`] with `extra` arguments (like `--https 127.0.0.1:0`).
pub fn start_relay_with(home: &Path, extra: &[&str]) -> (Daemon, String, String) {
    use std::io::BufRead;
    let mut child = Command::new(bin())
        .args(["relay", "--bind", "127.0.0.1:0"])
        .args(extra)
        .arg("--home")
        .arg(home)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn relay");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = std::io::BufReader::new(stdout).lines();
    let url = lines.next().expect("relay URL").expect("relay URL");
    let cert = lines
        .next()
        .expect("relay fingerprint")
        .expect("relay fingerprint");
    (
        Daemon { child, home: None },
        url.trim().to_string(),
        cert.trim().to_string(),
    )
}
pub mod http;

/// A tmpfs of `size` mounted at `at`; unmounted on drop.
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    pub fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).expect("mount point");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .expect("run mount");
        assert!(
            ok.success(),
            "mounting a tmpfs needs root (CI runs as root): mount -t tmpfs failed"
        );
        Tmpfs(at.to_path_buf())
    }

    /// Make it read-only.
    #[allow(dead_code)]
    pub fn remount_ro(&self) {
        let ok = Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(&self.0)
            .status()
            .expect("run mount");
        assert!(ok.success(), "remount read-only");
    }
}

impl Tmpfs {
    /// Give it a new size.
    #[allow(dead_code)]
    pub fn resize(&self, size: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .expect("run mount");
        assert!(ok.success(), "remount with size {size}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}
