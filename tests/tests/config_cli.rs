//! Running a till for real: the store-wide settings (`tillmesh config`)
//! shared by every till and followed by running daemons; the till's own
//! settings from `run --config FILE` with its log file; the Debian package
//! with its systemd unit and config file.

use std::path::Path;
use std::process::Command;

use crate::common::{Daemon, Till, bin, wait_for};

/// The value and whether it is set, of `key` in `config show --json` on `t`.
fn setting(t: &Till, key: &str) -> (u64, bool) {
    let all = t.json(&["config", "show"]);
    let row = all
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["key"] == key)
        .unwrap_or_else(|| panic!("no {key} in {all}"))
        .clone();
    (
        row["value"].as_u64().expect("value"),
        row["set"].as_bool().expect("set"),
    )
}

/// The active alert of `kind` on `t`, if any.
fn active(t: &Till, kind: &str) -> Option<serde_json::Value> {
    t.json(&["alerts"])
        .as_array()
        .expect("records")
        .iter()
        .find(|r| r["kind"] == kind)
        .cloned()
}

#[test]
fn store_settings_are_checked_shared_and_followed_by_running_daemons() {
    let dir = tempfile::tempdir().expect("dir");
    let a = Till::new(dir.path(), "a");
    let b = Till::new(dir.path(), "b");
    a.ok(&["init", "--store", "Settings", "--till", "A"]);
    let da = a.start(&[]);
    b.join(&a, "B");
    let log = dir.path().join("b-logs/b.log");
    let db = b.start(&["--log-file", log.to_str().expect("utf-8")]);

    // Bad values and unknown keys are refused, saying what is taken.
    let zero = a.run(&["config", "set", "sync/batch", "0"]);
    assert_eq!(zero.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&zero.stderr).contains("sync/batch takes 1 to 10000"));
    let unknown = a.run(&["config", "set", "sync/speed", "9"]);
    assert_eq!(unknown.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("sync/timeout_s"));
    assert_eq!(setting(&a, "sync/timeout_s"), (30, false), "the default");

    // Set on A (a duration with its unit), it reaches B, whose daemon
    // uses it without a restart.
    a.ok(&["config", "set", "sync/timeout_s", "1m"]);
    assert_eq!(setting(&a, "sync/timeout_s"), (60, true));
    wait_for("B to hold A's setting", || {
        setting(&b, "sync/timeout_s") == (60, true)
    });
    wait_for("B's daemon to use it", || {
        std::fs::read_to_string(&log).is_ok_and(|l| {
            l.contains("the store's sync settings changed") && l.contains("timeout: 60s")
        })
    });
    // A checkout till may not change the store's settings.
    let refused = b.run(&["config", "set", "sync/timeout_s", "45"]);
    assert_eq!(refused.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("may not change"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    a.ok(&["config", "reset", "sync/timeout_s"]);
    wait_for("B to hold the default again", || {
        setting(&b, "sync/timeout_s") == (30, false)
    });
    // The alert thresholds are settings too, one list for both commands.
    a.ok(&["alerts", "threshold", "till_offline_min", "12"]);
    assert_eq!(setting(&a, "alerts/till_offline_min"), (12, true));
    drop(db);

    // A sink whose stick is out is alerted after `retry/alert_after`
    // failures, retried at the store's pace, and cleared once a backup to
    // it works again.
    a.ok(&["config", "set", "retry/alert_after", "1"]);
    a.ok(&["config", "set", "retry/backoff_max_s", "2"]);
    let stick = dir.path().join("stick");
    std::fs::create_dir(&stick).expect("stick");
    a.ok(&[
        "sink",
        "add",
        "stick",
        "folder",
        stick.to_str().expect("utf-8"),
    ]);
    std::fs::remove_dir(&stick).expect("the stick pulled out");
    wait_for("A to alert that backups to the stick fail", || {
        active(&a, "sink_failing").is_some_and(|r| {
            r["subject"] == "stick" && r["message"].as_str().is_some_and(|m| m.contains("stick"))
        })
    });
    std::fs::create_dir(&stick).expect("the stick back");
    wait_for("the alert to clear after a backup to the stick", || {
        active(&a, "sink_failing").is_none()
            && std::fs::read_dir(&stick).is_ok_and(|mut d| d.next().is_some())
    });
    let all = a.json(&["alerts", "--all"]);
    assert!(
        all.as_array()
            .expect("records")
            .iter()
            .any(|r| r["kind"] == "sink_failing" && !r["cleared_ms"].is_null()),
        "{all}"
    );
    da.stop();
}

/// A config file in `dir`: the till's home beside it, its log as JSON.
fn config_file(dir: &Path) -> std::path::PathBuf {
    let file = dir.join("tillmesh.toml");
    std::fs::write(
        &file,
        "version = 1\nhome = \"till\"\nbind = \"127.0.0.1:0\"\nmdns = false\n\
         sync_interval_s = 1\n[log]\nfile = \"logs/tillmesh.log\"\nformat = \"json\"\n",
    )
    .expect("config");
    file
}

/// `tillmesh ARGS` with no `TILLMESH_HOME`, and `system` as the system's
/// config file.
fn bare(args: &[&str], system: &Path) -> Command {
    let mut c = Command::new(bin());
    c.args(args)
        .env_remove("TILLMESH_HOME")
        .env_remove("TILLMESH_LOG")
        .env("TILLMESH_SYSTEM_CONFIG", system);
    c
}

#[test]
fn a_till_runs_from_its_config_file_and_logs_to_its_file() {
    let dir = tempfile::tempdir().expect("dir");
    let file = config_file(dir.path());
    let home = dir.path().join("till");
    Till::new(dir.path(), "till").ok(&["init", "--store", "Configured", "--till", "T1"]);

    // --check prints the settings as a file, paths from the file's folder.
    let check = bare(
        &["run", "--config", file.to_str().expect("utf-8"), "--check"],
        Path::new("/nonexistent"),
    )
    .output()
    .expect("check");
    assert!(check.status.success(), "{check:?}");
    let shown = String::from_utf8_lossy(&check.stdout);
    assert!(
        shown.contains(&format!("home = \"{}\"", home.display()))
            && shown.contains("bind = \"127.0.0.1:0\"")
            && shown.contains("mdns = false")
            && shown.contains("format = \"json\""),
        "{shown}"
    );

    // The daemon finds its home in the file, and logs there as JSON.
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.path().join("stdout.log"))
        .expect("log");
    let child = bare(
        &["run", "--config", file.to_str().expect("utf-8")],
        Path::new("/nonexistent"),
    )
    .stdout(log.try_clone().expect("log"))
    .stderr(log)
    .spawn()
    .expect("spawn");
    let d = Daemon {
        child,
        home: Some(home.clone()),
    };
    wait_for("the daemon to start", || home.join("api.json").exists());
    // With no --home, every command finds the till the system file names.
    let status = bare(&["status", "--json"], &file).output().expect("status");
    assert!(status.status.success(), "{status:?}");
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("json");
    assert_eq!(status["self"]["name"], "T1");
    assert_eq!(status["self"]["daemon"], true, "{status}");
    d.stop();
    let logged = std::fs::read_to_string(dir.path().join("logs/tillmesh.log")).expect("log file");
    let lines: Vec<serde_json::Value> = logged
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    for said in ["daemon started", "daemon stopped cleanly"] {
        assert!(
            lines.iter().any(|l| l["fields"]["message"] == said),
            "{said} not in {logged}"
        );
    }

    // A file with a misspelt key is refused, naming it and the file.
    std::fs::write(&file, "version = 1\nmnds = false\n").expect("typo");
    let bad = bare(
        &["run", "--config", file.to_str().expect("utf-8"), "--check"],
        Path::new("/nonexistent"),
    )
    .output()
    .expect("bad");
    assert_eq!(bad.status.code(), Some(3));
    let said = String::from_utf8_lossy(&bad.stderr);
    assert!(
        said.contains("unknown field `mnds`") && said.contains("tillmesh.toml"),
        "{said}"
    );
}

/// The unit file with its binary at `bin` (systemd-analyze checks it runs).
fn unit_with(bin: &Path) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    std::fs::read_to_string(root.join("packaging/debian/tillmesh.service"))
        .expect("unit")
        .replace("/usr/bin/tillmesh", bin.to_str().expect("utf-8"))
}

#[test]
fn the_packaged_unit_and_config_file_are_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = tempfile::tempdir().expect("dir");
    // The shipped config file, as the service reads it (its home aside).
    let out = Command::new(bin())
        .args(["run", "--config"])
        .arg(root.join("packaging/tillmesh.toml"))
        .args(["--check", "--home"])
        .arg(dir.path())
        .output()
        .expect("check");
    assert!(out.status.success(), "{out:?}");
    let shown = String::from_utf8_lossy(&out.stdout);
    for want in [
        "bind = \"0.0.0.0:7447\"",
        "api_port = 7440",
        "file = \"/var/log/tillmesh/tillmesh.log\"",
    ] {
        assert!(shown.contains(want), "{want} not in {shown}");
    }
    let unit = unit_with(&bin());
    assert!(unit.contains("run --config /etc/tillmesh/tillmesh.toml"));
    assert!(unit.contains("User=tillmesh"));
    if let Ok(v) = Command::new("systemd-analyze").arg("--version").output()
        && v.status.success()
    {
        let file = dir.path().join("tillmesh.service");
        std::fs::write(&file, &unit).expect("unit");
        let verify = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&file)
            .output()
            .expect("verify");
        assert!(
            verify.status.success() && verify.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&verify.stderr)
        );
    } else {
        eprintln!("systemd-analyze not found: the unit's syntax is not checked");
    }
    for script in ["postinst", "postrm"] {
        let sh = Command::new("sh")
            .arg("-n")
            .arg(root.join("packaging/debian").join(script))
            .status()
            .expect("sh");
        assert!(sh.success(), "{script} is not valid sh");
    }
}

#[test]
fn the_debian_package_holds_the_binary_the_unit_the_config_and_the_user() {
    let have = Command::new("cargo")
        .args(["deb", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have {
        assert_ne!(
            std::env::var("TILLMESH_DEB").as_deref(),
            Ok("require"),
            "cargo-deb is not installed (cargo install cargo-deb --locked)"
        );
        eprintln!("cargo-deb not installed: the Debian package is not built");
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = tempfile::tempdir().expect("dir");
    // The binary the tests built, packaged as it is (`cargo deb -p tillmesh`
    // makes a release build for real), compressed fast (xz: cargo-deb's gzip
    // takes minutes over this debug binary).
    let built = Command::new("cargo")
        .current_dir(&root)
        .args([
            "deb",
            "-p",
            "tillmesh",
            "--no-build",
            "--profile",
            "dev",
            "--no-strip",
            "--fast",
            "-q",
            "-o",
        ])
        .arg(dir.path())
        .output()
        .expect("cargo deb");
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let deb = std::fs::read_dir(dir.path())
        .expect("dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .expect("a .deb");
    let dpkg = |args: &[&str]| {
        let out = Command::new("dpkg-deb")
            .args(args)
            .arg(&deb)
            .output()
            .expect("dpkg-deb");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let contents = dpkg(&["--contents"]);
    for path in [
        "./usr/bin/tillmesh",
        "./usr/lib/systemd/system/tillmesh.service",
        "./etc/tillmesh/tillmesh.toml",
        "./usr/share/doc/tillmesh/OPERATIONS.md",
    ] {
        assert!(contents.contains(path), "{path} not in {contents}");
    }
    assert!(dpkg(&["--field"]).contains("Depends: adduser"));
    // The service's user is made at install.
    let ctrl = dir.path().join("control");
    let out = Command::new("dpkg-deb")
        .arg("--control")
        .arg(&deb)
        .arg(&ctrl)
        .output()
        .expect("control");
    assert!(out.status.success(), "{out:?}");
    let postinst = std::fs::read_to_string(ctrl.join("postinst")).expect("postinst");
    assert!(postinst.contains("adduser --system") && postinst.contains("tillmesh.service"));
    assert_eq!(
        std::fs::read_to_string(ctrl.join("conffiles"))
            .expect("conffiles")
            .trim(),
        "/etc/tillmesh/tillmesh.toml"
    );
    // What it installs runs.
    let unpacked = dir.path().join("root");
    let out = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(&unpacked)
        .output()
        .expect("unpack");
    assert!(out.status.success(), "{out:?}");
    let version = Command::new(unpacked.join("usr/bin/tillmesh"))
        .arg("--version")
        .output()
        .expect("run the packaged binary");
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("tillmesh "));
}
