//! `tillmesh status`: its verdict line, `--watch` through the daemon, and the
//! other tills as the daemon last saw them once it is stopped.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use crate::common::{Till, wait_for};

/// The row of the till named `name` in a `status --json` report.
fn row<'a>(status: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    status["tills"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["name"] == name))
        .unwrap_or_else(|| panic!("no till {name} in {status}"))
}

#[test]
fn status_gives_a_verdict_watches_and_remembers_the_other_tills() {
    let dir = tempfile::tempdir().expect("dir");
    let a = Till::new(dir.path(), "a");
    a.ok(&["init", "--store", "Watched", "--till", "A"]);
    a.ok(&["product", "add", "TEA", "--name", "Tea", "--price", "2.00"]);
    let da = a.start(&[]);
    let b = Till::new(dir.path(), "b");
    b.join(&a, "B");
    let db = b.start(&[]);
    a.ok(&["sale", "--line", "TEA", "--tender", "cash"]);
    wait_for("A to see B online with A's sale held", || {
        let st = a.json(&["status"]);
        row(&st, "B")["online"] == true && row(&st, "A")["unreplicated"] == 0
    });

    let st = a.json(&["status"]);
    let verdict = st["verdict"].as_str().expect("verdict");
    assert!(
        verdict.starts_with("OK: all sales on at least 2 tills")
            || verdict.starts_with("CHECK: all sales on at least 2 tills"),
        "{verdict}"
    );
    assert!(st["stale_since"].is_null(), "the daemon runs: live figures");
    let text = a.ok(&["status"]);
    assert!(text.contains(verdict), "{text}");

    // --watch draws the report again and again, through the daemon too.
    let mut child = a
        .cmd(&["status", "--watch", "1"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("watch");
    let lines: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = lines.clone();
    let stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            seen.lock().expect("lock").push(line);
        }
    });
    wait_for("three reports", || {
        lines
            .lock()
            .expect("lock")
            .iter()
            .filter(|l| l.starts_with("Store Watched"))
            .count()
            >= 3
    });
    child.kill().expect("stop watching");
    let _ = child.wait();
    let _ = reader.join();

    // The daemon stopped: B as it last saw it, marked so.
    da.stop();
    let st = a.json(&["status"]);
    assert!(st["stale_since"].as_u64().is_some(), "{st}");
    let b_row = row(&st, "B");
    assert_eq!(b_row["online"], false, "not live");
    assert!(
        matches!(b_row["path"].as_str(), Some("direct" | "relay")),
        "{b_row}"
    );
    let text = a.ok(&["status"]);
    assert!(text.contains("as the daemon last saw them"), "{text}");
    db.stop();
}

/// Whether `till`'s status has an alert of `kind`.
fn alerted(till: &Till, kind: &str) -> bool {
    till.json(&["status"])["alert_details"]
        .as_array()
        .is_some_and(|a| a.iter().any(|x| x["kind"] == kind))
}

/// Wait up to `secs` seconds for `cond`.
fn within(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while start.elapsed() < std::time::Duration::from_secs(secs) {
        if cond() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    panic!("gave up after {secs} s waiting for {what}");
}

#[test]
fn a_till_offline_past_the_threshold_is_alerted_and_cleared_when_it_is_back() {
    let dir = tempfile::tempdir().expect("dir");
    let a = Till::new(dir.path(), "a");
    a.ok(&["init", "--store", "Offline", "--till", "A"]);
    let da = a.start(&[]);
    let b = Till::new(dir.path(), "b");
    b.join(&a, "B");
    let db = b.start(&[]);
    wait_for("A to see B online", || {
        row(&a.json(&["status"]), "B")["online"] == true
    });
    // While B is online, nothing is alerted of it.
    assert!(!alerted(&a, "till_offline"));
    a.ok(&["alerts", "threshold", "till_offline_min", "0"]);
    db.stop();
    within(90, "A to alert that B is offline", || {
        alerted(&a, "till_offline")
    });
    let st = a.json(&["status"]);
    assert!(
        st["verdict"]
            .as_str()
            .is_some_and(|v| v.contains("warning")),
        "{st}"
    );
    let db = b.start(&[]);
    within(90, "the alert to clear once B is back", || {
        !alerted(&a, "till_offline")
    });
    db.stop();
    da.stop();
}

/// A till whose disk runs low is alerted, critically when sales are about
/// to be refused, and the alert clears once there is room again.
#[test]
fn a_till_with_little_disk_left_is_alerted_until_there_is_room() {
    let dir = tempfile::tempdir().expect("dir");
    let disk = crate::common::Tmpfs::mount(&dir.path().join("disk"), "64m");
    let a = Till::new(&dir.path().join("disk"), "a");
    a.ok(&["init", "--store", "Small Disk", "--till", "A"]);
    let st = a.json(&["status"]);
    let low = st["alert_details"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["kind"] == "disk_nearly_full"))
        .cloned()
        .unwrap_or_else(|| panic!("no disk alert: {st}"));
    assert_eq!(low["severity"], "critical", "{low}");
    assert!(
        st["verdict"]
            .as_str()
            .is_some_and(|v| v.starts_with("ACTION NEEDED")),
        "{st}"
    );
    disk.resize("3g");
    assert!(!alerted(&a, "disk_nearly_full"), "room again");
}

/// "Held only here and in no backup": this till's changes on no other till
/// that the newest backup does not hold either.
#[test]
fn changes_on_no_other_till_count_as_unbacked_until_a_backup_holds_them() {
    let dir = tempfile::tempdir().expect("dir");
    let a = Till::new(dir.path(), "a");
    a.ok(&["init", "--store", "Unbacked", "--till", "A"]);
    a.ok(&["product", "add", "TEA", "--name", "Tea", "--price", "2.00"]);
    let da = a.start(&[]);
    let b = Till::new(dir.path(), "b");
    b.join(&a, "B");
    // B's daemon never runs: A's sales reach no other till.
    a.ok(&["sale", "--line", "TEA", "--tender", "cash"]);
    let st = a.json(&["status"]);
    let unreplicated = row(&st, "A")["unreplicated"].as_u64().expect("count");
    assert!(unreplicated > 0, "{st}");
    assert_eq!(st["unbacked"].as_u64(), Some(unreplicated), "{st}");
    let text = a.ok(&["status"]);
    assert!(
        text.contains(&format!(
            "{unreplicated} changes are held only here and in no backup"
        )),
        "{text}"
    );
    // Change times are whole seconds: the backup comes in a later one.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let nas = dir.path().join("nas");
    std::fs::create_dir(&nas).expect("nas");
    a.ok(&["sink", "add", "nas", "folder", nas.to_str().expect("path")]);
    a.ok(&["backup"]);
    let st = a.json(&["status"]);
    // The backup holds the sale; its own audit entry (one more change on A
    // alone, written once it was made) is in no backup yet.
    assert!(
        row(&st, "A")["unreplicated"].as_u64() > Some(unreplicated),
        "{st}"
    );
    let unbacked = st["unbacked"].as_u64().expect("count");
    assert_eq!(unbacked, 1, "the backup holds the sale: {st}");
    assert!(st["sinks"][0]["last_backup"].is_u64(), "{st}");
    // A sale after the backup is in no backup again.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    a.ok(&["sale", "--line", "TEA", "--tender", "cash"]);
    let st = a.json(&["status"]);
    let after = st["unbacked"].as_u64().expect("count");
    assert!(
        after > unbacked && after < row(&st, "A")["unreplicated"].as_u64().expect("count"),
        "{st}"
    );
    da.stop();
}

/// The verdict is coloured on a terminal (a pty, from `script`), and not in
/// a pipe or with NO_COLOR set; through the daemon as without it.
#[test]
fn status_is_coloured_on_a_terminal_only() {
    let dir = tempfile::tempdir().expect("dir");
    let a = Till::new(dir.path(), "a");
    a.ok(&["init", "--store", "Colours", "--till", "A"]);
    let on_a_pty = |no_color: bool| {
        let line = format!("{} status", crate::common::bin().display());
        let mut cmd = std::process::Command::new("script");
        cmd.args(["-qec", &line, "/dev/null"])
            .env("TILLMESH_HOME", &a.home)
            .env("TERM", "xterm");
        if no_color {
            cmd.env("NO_COLOR", "1");
        } else {
            cmd.env_remove("NO_COLOR");
        }
        let out = cmd.output().expect("script runs tillmesh on a pty");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    for daemon in [false, true] {
        let d = daemon.then(|| a.start(&[]));
        let tty = on_a_pty(false);
        assert!(
            tty.contains("\x1b[3"),
            "no colour on a terminal (daemon {daemon}): {tty:?}"
        );
        assert!(!on_a_pty(true).contains('\x1b'), "NO_COLOR is honoured");
        assert!(!a.ok(&["status"]).contains('\x1b'), "none in a pipe");
        if let Some(d) = d {
            d.stop();
        }
    }
}

#[test]
fn a_sink_not_backed_up_within_its_schedule_is_overdue_until_the_next_backup() {
    let dir = tempfile::tempdir().expect("dir");
    let a = Till::new(dir.path(), "a");
    a.ok(&["init", "--store", "Overdue", "--till", "A"]);
    let nas = dir.path().join("nas");
    std::fs::create_dir(&nas).expect("nas");
    a.ok(&["sink", "add", "nas", "folder", nas.to_str().expect("utf-8")]);
    // Overdue after two backup intervals of 2 s, the threshold set to none.
    a.ok(&["config", "set", "alerts/backup_overdue_min", "0"]);
    a.ok(&["backup", "schedule", "--every", "2s"]);
    a.ok(&["backup", "--to", "nas"]);
    assert!(!alerted(&a, "backup_overdue"), "backed up just now");
    // No daemon makes the scheduled ones.
    wait_for("the sink's backup to be overdue", || {
        alerted(&a, "backup_overdue")
    });
    let st = a.json(&["status"]);
    let alert = st["alert_details"]
        .as_array()
        .expect("alerts")
        .iter()
        .find(|x| x["kind"] == "backup_overdue")
        .expect("overdue")
        .clone();
    assert_eq!(alert["subject"], "nas");
    assert_eq!(alert["severity"], "warning");
    assert!(
        alert["message"]
            .as_str()
            .is_some_and(|m| m.contains("sink nas") && m.contains("every 2 s")),
        "{alert}"
    );
    assert!(
        st["verdict"].as_str().is_some_and(|v| !v.starts_with("OK")),
        "{st}"
    );
    a.ok(&["backup", "--to", "nas"]);
    assert!(!alerted(&a, "backup_overdue"), "cleared by the backup");
}

#[test]
fn a_stopped_daemon_and_a_recovery_file_older_than_the_keys_are_alerted_and_cleared() {
    let dir = tempfile::tempdir().expect("dir");
    let a = Till::new(dir.path(), "a");
    a.ok(&["init", "--store", "Recovering", "--till", "A"]);
    assert!(alerted(&a, "daemon_stopped"), "no daemon runs yet");
    let d = a.start(&[]);
    assert!(!alerted(&a, "daemon_stopped"));
    d.stop();
    assert!(alerted(&a, "daemon_stopped"));

    let recovery = |file: &str| {
        let out = a
            .cmd(&[
                "recovery",
                "create",
                dir.path().join(file).to_str().expect("utf-8"),
            ])
            .env("TILLMESH_RECOVERY_PASSPHRASE", "correct horse battery")
            .env("TILLMESH_SCRYPT_WORK_FACTOR", "4")
            .output()
            .expect("recovery create");
        assert!(out.status.success(), "{out:?}");
    };
    recovery("first.recovery");
    // As a till from before recovery keys recorded it: the backup keys only.
    let state_file = a.home.join("recovery-state.json");
    let mut state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&state_file).expect("state")).expect("json");
    state["version"] = 1.into();
    state
        .as_object_mut()
        .expect("object")
        .remove("recovery_key");
    std::fs::write(&state_file, state.to_string()).expect("old state");
    assert!(!alerted(&a, "recovery_file"), "it holds the current key");
    // A new backup key: that file cannot read what is backed up from now on.
    a.ok(&["keys", "rotate"]);
    let st = a.json(&["status"]);
    let alert = st["alert_details"]
        .as_array()
        .expect("alerts")
        .iter()
        .find(|x| x["kind"] == "recovery_file")
        .unwrap_or_else(|| panic!("no recovery_file alert: {st}"))
        .clone();
    assert!(
        alert["message"]
            .as_str()
            .is_some_and(|m| m.contains("first.recovery") && m.contains("recovery create")),
        "{alert}"
    );
    recovery("second.recovery");
    assert!(!alerted(&a, "recovery_file"), "a new file holds every key");
}
