//! Tills run by the `tillmesh` binary itself (`tillmesh run` and every other
//! command) inside the lab's devices, as a store runs them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use patchbay::Device;

/// A till's home, its commands run inside `dev`'s network namespace.
pub struct CliTill {
    pub name: String,
    pub home: PathBuf,
    pub dev: Device,
    daemon: Option<std::process::Child>,
    env: Vec<(String, String)>,
}

impl CliTill {
    pub fn new(root: &Path, name: &str, dev: &Device) -> CliTill {
        CliTill {
            name: name.to_string(),
            home: root.join(name),
            dev: dev.clone(),
            daemon: None,
            env: Vec::new(),
        }
    }

    /// Set `key` in the environment of every command from now on.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.push((key.into(), value.into()));
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(tillmesh_sim::tillmesh_bin());
        c.args(args)
            .env("TILLMESH_HOME", &self.home)
            .env_remove("TILLMESH_LOG")
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }

    /// Run a command in the device; its output whatever the exit status.
    pub fn run(&self, args: &[&str]) -> Output {
        let mut c = self.command(args);
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        self.dev
            .spawn_command_sync(c)
            .expect("spawn tillmesh in the device")
            .wait_with_output()
            .expect("wait for tillmesh")
    }

    /// Run a command that must succeed; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{}: tillmesh {args:?} failed ({}): {}",
            self.name,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    /// Run a command with `--json` that must succeed; its output parsed.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.push("--json");
        serde_json::from_str(&self.ok(&a)).expect("valid JSON")
    }

    /// Start `tillmesh run` in the device on all its addresses, without mDNS,
    /// with `extra` arguments (logging to `daemon.log` in the home), and wait
    /// until its API answers.
    pub fn start(&mut self, extra: &[&str]) {
        let _ = std::fs::remove_file(self.home.join("api.json"));
        let mut args = vec!["run", "--bind", "0.0.0.0:0", "--no-mdns"];
        args.extend_from_slice(extra);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.home.join("daemon.log"))
            .expect("log file");
        let mut c = self.command(&args);
        c.env(
            "TILLMESH_LOG",
            std::env::var("TILLMESH_LOG").unwrap_or_else(|_| "info".into()),
        )
        .env("NO_COLOR", "1")
        .stdout(log.try_clone().expect("log"))
        .stderr(log);
        self.daemon = Some(self.dev.spawn_command_sync(c).expect("spawn the daemon"));
        wait(&format!("{}'s daemon to start", self.name), 30, || {
            self.home.join("api.json").exists() && self.run(&["status"]).status.success()
        });
    }

    /// The receipts of every sale this till holds.
    pub fn receipts(&self) -> Vec<String> {
        self.json(&["sales"])
            .as_array()
            .expect("array")
            .iter()
            .map(|s| s["receipt"].as_str().expect("receipt").to_string())
            .collect()
    }

    /// Ring up one `sku`; its receipt.
    pub fn sell(&self, sku: &str) -> String {
        let sale = self.json(&["sale", "--line", sku, "--tender", "cash"]);
        sale["receipt"].as_str().expect("receipt").to_string()
    }

    /// The path this till's status shows for the till named `name`, and when.
    pub fn path_to(&self, name: &str) -> (String, Option<u64>) {
        let status = self.json(&["status"]);
        let row = status["tills"]
            .as_array()
            .and_then(|rows| rows.iter().find(|r| r["name"] == name))
            .unwrap_or_else(|| panic!("no till {name} in {status}"))
            .clone();
        (
            row["path"].as_str().expect("path").to_string(),
            row["path_at"].as_u64(),
        )
    }

    /// The last lines of the daemon's log.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.home.join("daemon.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for CliTill {
    fn drop(&mut self) {
        if std::thread::panicking() {
            println!("{}'s daemon log ends:\n{}", self.name, self.log_tail());
        }
        if let Some(mut child) = self.daemon.take() {
            let _ = self.run(&["stop"]);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Wait up to `secs` seconds for `cond`, checking twice a second; how long it
/// took.
pub fn wait(what: &str, secs: u64, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(secs) {
        if cond() {
            return start.elapsed();
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!("timed out after {secs} s waiting for {what}");
}
