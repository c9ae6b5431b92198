//! Google Drive from the command line, against the Drive emulator: both
//! logins, a Drive sink, backup, list, verify and restore through it, status,
//! a revoked login that stops backups but never a sale, and logout; every
//! Drive request checked against the discovery document.

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use crate::common::{Till, wait_for};
use tillmesh_drive_emulator::{Emulator, Options};

fn emulator(auto_approve: bool) -> Emulator {
    Emulator::start(
        "127.0.0.1:0".parse().expect("addr"),
        Options {
            auto_approve,
            device_interval_s: 1,
            ..Options::default()
        },
    )
    .expect("emulator")
}

/// Run `drive login` (with `extra` arguments), reading what it prints; `act`
/// gets each line and plays the operator's part.
fn login(t: &Till, e: &Emulator, extra: &[&str], act: impl Fn(&str)) -> String {
    let mut args = vec![
        "drive",
        "login",
        "--client-id",
        "till-app",
        "--endpoint",
        e.url(),
    ];
    args.extend_from_slice(extra);
    interact(t.cmd(&args), act)
}

/// Run `cmd`, reading what it prints; `act` gets each line and plays the
/// operator's part. It must succeed; what it printed.
fn interact(mut cmd: std::process::Command, act: impl Fn(&str)) -> String {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let mut printed = String::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("line");
        act(&line);
        printed.push_str(&line);
        printed.push('\n');
    }
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "{printed}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    printed
}

#[test]
fn a_store_backs_up_to_drive_and_restores_from_it() {
    let dir = tempfile::tempdir().expect("dir");
    let a = Till::new(dir.path(), "a");
    a.ok(&["init", "--store", "Drive Shop", "--till", "A"]);
    a.ok(&["product", "add", "TEA", "--name", "Tea", "--price", "2.00"]);
    // Not signed in: said plainly.
    let st = a.json(&["drive", "status"]);
    assert_eq!(st["logged_in"], false);
    let refused = a.run(&["sink", "add", "gd", "drive", "shop-backups"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("drive login"));

    // The browser login: the operator opens the printed address.
    let e = emulator(true);
    let printed = login(&a, &e, &[], |line| {
        if line.starts_with("http") {
            let status = tillmesh_drive_emulator::browse(line).expect("browser");
            assert_eq!(status, 200);
        }
    });
    assert!(
        printed.contains("Signed in to Google Drive as store@example.com"),
        "{printed}"
    );
    let home_file = std::fs::read_to_string(a.home.join("drive.json")).expect("drive.json");
    assert!(
        !home_file.contains("1//"),
        "the refresh token is sealed, never plain"
    );

    a.ok(&["sink", "add", "gd", "drive", "shop-backups"]);
    for _ in 0..3 {
        a.ok(&["sale", "--line", "TEA", "--tender", "cash"]);
    }
    a.ok(&["backup", "--to", "gd"]);
    a.ok(&["sale", "--line", "TEA", "--tender", "card"]);
    a.ok(&["backup", "--to", "gd", "--bundle"]);
    let listed = a.json(&["backup", "list", "--from", "gd"]);
    let text = listed.to_string();
    assert!(
        text.contains("snapshot") && text.contains("bundle"),
        "{text}"
    );
    a.ok(&["backup", "verify", "--from", "gd"]);
    assert!(e.file_names().len() >= 2, "{:?}", e.file_names());

    let st = a.json(&["drive", "status"]);
    assert_eq!(st["logged_in"], true);
    assert_eq!(st["account"], "store@example.com");
    assert!(st["problem"].is_null(), "{st}");
    assert_eq!(st["sinks"][0]["folder"], "shop-backups");

    // Restored on a new machine from Drive alone.
    let r = Till::new(dir.path(), "r");
    let restored = r
        .cmd(&[
            "restore",
            "--from",
            "gd",
            "--keys",
            a.home.to_str().expect("utf8"),
        ])
        .output()
        .expect("restore");
    assert!(
        restored.status.success(),
        "{}",
        String::from_utf8_lossy(&restored.stderr)
    );
    let mut want = a.receipts();
    want.sort();
    let mut got = r.receipts();
    got.sort();
    assert_eq!(got, want, "every sale back, from Drive");

    let problems = tillmesh_drive_emulator::discovery::check_requests(&e.requests());
    assert!(problems.is_empty(), "{problems:#?}");

    // The Drive fills up: the oldest backups that hold nothing the newest
    // snapshot lacks make room, and the backup goes.
    a.ok(&["backup", "--to", "gd"]);
    a.ok(&["backup", "--to", "gd"]);
    let snapshots = |t: &Till| {
        t.json(&["backup", "list", "--from", "gd"])
            .to_string()
            .matches("\"snapshot\"")
            .count()
    };
    let before = snapshots(&a);
    assert!(before >= 3, "{before}");
    e.set_quota(Some(e.stats().stored_bytes + 200));
    a.ok(&["backup", "--to", "gd"]);
    let after = snapshots(&a);
    assert!(after < before, "room was made: {before} -> {after}");
    // Full with nothing left to delete: a clear error, and selling goes on.
    e.set_quota(Some(e.stats().stored_bytes));
    let full = a.run(&["backup", "--to", "gd"]);
    assert!(!full.status.success());
    assert!(
        String::from_utf8_lossy(&full.stderr).contains("full"),
        "{}",
        String::from_utf8_lossy(&full.stderr)
    );
    a.ok(&["sale", "--line", "TEA", "--tender", "cash"]);
    e.set_quota(None);

    // Google revokes the login: backups stop with a clear word, sales go on.
    e.revoke_all();
    let failed = a.run(&["backup", "--to", "gd"]);
    assert!(!failed.status.success());
    assert!(String::from_utf8_lossy(&failed.stderr).contains("tillmesh drive login"));
    a.ok(&["sale", "--line", "TEA", "--tender", "cash"]);
    let st = a.json(&["drive", "status"]);
    assert!(
        st["problem"]
            .as_str()
            .is_some_and(|p| p.contains("tillmesh drive login")),
        "{st}"
    );

    // A device login replaces it; logout revokes it at Google.
    let e2 = emulator(false);
    let printed = login(&a, &e2, &["--device"], |line| {
        if line.contains("enter the code") {
            let code = line.rsplit(' ').next().expect("code");
            let page = format!("{}/device?user_code={code}", e2.url());
            assert_eq!(
                tillmesh_drive_emulator::browse(&page).expect("approve"),
                200
            );
        }
    });
    assert!(printed.contains("Signed in"), "{printed}");
    let out = a.ok(&["drive", "logout"]);
    assert!(out.contains("revoked at Google"), "{out}");
    assert_eq!(e2.stats().revocations, 1);
    assert_eq!(a.json(&["drive", "status"])["logged_in"], false);
    let record = std::fs::read_to_string(a.home.join("drive.json")).expect("record");
    assert!(
        record.contains("\"sealed\": \"\""),
        "the tokens are wiped: {record}"
    );
}

/// One login serves the store: made on the admin till, it reaches a checkout
/// till through the daemons (still sealed), which then backs up to Drive; a
/// sign-out reaches it the same way.
#[test]
fn one_login_serves_every_till_of_the_store() {
    let dir = tempfile::tempdir().expect("dir");
    let a = Till::new(dir.path(), "a");
    a.ok(&["init", "--store", "Shared Login", "--till", "A"]);
    let da = a.start(&[]);
    let b = Till::new(dir.path(), "b");
    b.join(&a, "B");
    let db = b.start(&[]);
    wait_for("B to hold the store's backup keys", || {
        b.json(&["keys", "list"])["keys"]
            .as_array()
            .is_some_and(|k| !k.is_empty())
    });
    let e = emulator(true);
    login(&a, &e, &[], |line| {
        if line.starts_with("http") {
            assert_eq!(tillmesh_drive_emulator::browse(line).expect("browser"), 200);
        }
    });
    wait_for("B to take the store's login", || {
        b.json(&["drive", "status"])["logged_in"] == true
    });
    b.ok(&["sink", "add", "gd", "drive", "shared"]);
    b.ok(&["backup", "--to", "gd"]);
    assert_eq!(
        b.json(&["drive", "status"])["problem"],
        serde_json::Value::Null
    );
    a.ok(&["drive", "logout"]);
    wait_for("B to learn of the sign-out", || {
        b.json(&["drive", "status"])["logged_in"] == false
    });
    db.stop();
    da.stop();
}

/// Tills that never reach each other, but reach Google Drive, converge
/// through the store's Drive folder (`drive sync`, which the daemon runs every
/// minute), as through a USB stick.
#[test]
fn tills_with_no_path_between_them_converge_through_drive() {
    let dir = tempfile::tempdir().expect("dir");
    let a = Till::new(dir.path(), "a");
    a.ok(&["init", "--store", "Mailbox", "--till", "A"]);
    a.ok(&["product", "add", "TEA", "--name", "Tea", "--price", "2.00"]);
    let b = Till::new(dir.path(), "b");
    {
        let _da = a.start(&[]);
        b.join(&a, "B");
    }
    let e = emulator(true);
    login(&a, &e, &[], |line| {
        if line.starts_with("http") {
            assert_eq!(tillmesh_drive_emulator::browse(line).expect("browser"), 200);
        }
    });
    // The store's login, as B's daemon would take it from the store.
    std::fs::copy(a.home.join("drive.json"), b.home.join("drive.json")).expect("copy");
    for t in [&a, &b] {
        t.ok(&["sink", "add", "mail", "drive", "mailbox"]);
    }
    a.ok(&["sale", "--line", "TEA", "--tender", "cash"]);
    a.ok(&["sale", "--line", "TEA", "--tender", "card"]);
    let out = a.ok(&["drive", "sync"]);
    assert!(out.contains("Exported"), "{out}");
    // B has not the catalog yet; it takes A's changes, then sells.
    let out = b.ok(&["drive", "sync", "mail"]);
    assert!(
        out.contains("Imported") && !out.contains("Imported 0"),
        "{out}"
    );
    assert_eq!(b.path_to("A"), "drive", "A reached B through Drive");
    b.ok(&["sale", "--line", "TEA", "--tender", "cash"]);
    b.ok(&["drive", "sync"]);
    // As A's daemon last saw B (at the join), not yet through Drive.
    assert_ne!(
        a.path_to("B"),
        "drive",
        "nothing came from B through Drive yet"
    );
    a.ok(&["drive", "sync"]);
    assert_eq!(a.path_to("B"), "drive");
    let mut ra = a.receipts();
    let mut rb = b.receipts();
    ra.sort();
    rb.sort();
    assert_eq!(ra.len(), 3);
    assert_eq!(ra, rb, "both tills hold every sale");
    let audit = a.json(&["audit"]).to_string();
    assert!(audit.contains("drive-sync"), "the syncs are on the record");
}

/// A new machine is recovered from Google Drive alone: the recovery file,
/// a sign-in, and the store's backups in its Drive folder. The new till
/// keeps that login and backs up there again.
#[test]
fn recovery_restores_a_new_machine_from_drive_alone() {
    let dir = tempfile::tempdir().expect("dir");
    let a = Till::new(dir.path(), "a");
    a.ok(&["init", "--store", "Lost Shop", "--till", "A"]);
    a.ok(&["product", "add", "TEA", "--name", "Tea", "--price", "2.00"]);
    let rec = dir.path().join("recovery.age");
    let created = a
        .cmd(&["recovery", "create", rec.to_str().expect("utf8")])
        .env("TILLMESH_RECOVERY_PASSPHRASE", "correct horse battery")
        .env("TILLMESH_SCRYPT_WORK_FACTOR", "10")
        .output()
        .expect("recovery create");
    assert!(created.status.success(), "{created:?}");
    let e = emulator(true);
    let browse = |line: &str| {
        if line.starts_with("http") {
            assert_eq!(tillmesh_drive_emulator::browse(line).expect("browser"), 200);
        }
    };
    login(&a, &e, &[], browse);
    let folder = format!(
        "tillmesh-{}",
        a.json(&["status"])["store"].as_str().expect("id")
    );
    a.ok(&["sink", "add", "gd", "drive", &folder]);
    a.ok(&["sale", "--line", "TEA", "--tender", "cash"]);
    a.ok(&["backup", "--to", "gd"]);
    a.ok(&["sale", "--line", "TEA", "--tender", "card"]);
    a.ok(&["backup", "--to", "gd", "--bundle"]);

    // The till is lost. A new machine with the recovery file and a browser.
    let r = Till::new(dir.path(), "r");
    let restore = |passphrase: &str| {
        let mut cmd = r.cmd(&[
            "recovery",
            "restore",
            rec.to_str().expect("utf8"),
            "--drive",
            "--client-id",
            "till-app",
            "--endpoint",
            e.url(),
            "--home",
            r.home.to_str().expect("utf8"),
        ]);
        cmd.env("TILLMESH_RECOVERY_PASSPHRASE", passphrase);
        cmd
    };
    // A wrong passphrase is refused before anyone is asked to sign in.
    let wrong = restore("wrong horse").output().expect("restore");
    assert!(!wrong.status.success());
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("passphrase"),
        "{wrong:?}"
    );
    assert!(!r.home.join("store.redb").exists());
    let printed = interact(restore("correct horse battery"), browse);
    assert!(
        printed.contains("backs up to the Drive folder"),
        "{printed}"
    );
    let (mut want, mut got) = (a.receipts(), r.receipts());
    want.sort();
    got.sort();
    assert_eq!(got.len(), 2);
    assert_eq!(
        got, want,
        "every sale back, snapshot and bundle, from Drive"
    );
    // The new till keeps the login and the sink, and backs up there.
    assert_eq!(r.json(&["drive", "status"])["logged_in"], true);
    r.ok(&["backup", "--to", "drive"]);
    let listed = r.json(&["backup", "list", "--from", "drive"]).to_string();
    assert!(listed.matches("\"snapshot\"").count() >= 2, "{listed}");
    let problems = tillmesh_drive_emulator::discovery::check_requests(&e.requests());
    assert!(problems.is_empty(), "{problems:#?}");
}

/// The active alert of `kind` about `subject` in `t`'s status, if any.
fn alert_on(t: &Till, kind: &str, subject: &str) -> Option<serde_json::Value> {
    t.json(&["status"])["alert_details"]
        .as_array()
        .expect("alerts")
        .iter()
        .find(|a| a["kind"] == kind && a["subject"] == subject)
        .cloned()
}

#[test]
fn a_drive_more_than_80_percent_full_is_alerted_until_there_is_room() {
    let dir = tempfile::tempdir().expect("dir");
    let a = Till::new(dir.path(), "a");
    a.ok(&["init", "--store", "Quota Shop", "--till", "A"]);
    let e = emulator(true);
    login(&a, &e, &[], |line| {
        if line.starts_with("http") {
            assert_eq!(tillmesh_drive_emulator::browse(line).expect("browser"), 200);
        }
    });
    a.ok(&["sink", "add", "gd", "drive", "quota-backups"]);
    a.ok(&["backup", "schedule", "--every", "1s"]);
    let d = a.start(&[]);
    // Each scheduled backup reads the account's use; at 90 % it is alerted.
    wait_for("a scheduled backup to Drive", || e.stats().stored_bytes > 0);
    e.set_quota(Some(e.stats().stored_bytes * 100 / 88));
    wait_for("the nearly full Drive to be alerted", || {
        alert_on(&a, "sink_nearly_full", "gd").is_some()
    });
    let alert = alert_on(&a, "sink_nearly_full", "gd").expect("alert");
    assert_eq!(alert["severity"], "warning");
    assert!(
        alert["message"]
            .as_str()
            .is_some_and(|m| m.contains("% full")),
        "{alert}"
    );
    let sink = &a.json(&["status"])["sinks"][0];
    assert!(sink["quota_limit"].as_u64().is_some(), "{sink}");
    // More space bought: cleared at the next backup.
    e.set_quota(None);
    wait_for("the alert to clear", || {
        alert_on(&a, "sink_nearly_full", "gd").is_none()
    });
    d.stop();
}
