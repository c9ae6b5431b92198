//! Helpers to drive the real `tillmesh` binary from end-to-end tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `tillmesh` binary under test: `$TILLMESH_BIN`, or the one cargo built
/// next to this test (`cargo test --workspace` and `cargo nextest run --workspace`
/// build it because the cli package has integration tests).
pub fn bin() -> PathBuf {
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
        "{} is missing: run the tests with `cargo test --workspace` (or set TILLMESH_BIN)",
        bin.display()
    );
    bin
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

    /// Run a command with `--json` that must succeed; return the parsed output.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.push("--json");
        serde_json::from_str(&self.ok(&a)).expect("valid JSON")
    }
}
