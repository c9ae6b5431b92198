//! Backups through the `tillmesh` binary: a wiped till restored from its
//! recovery file (also after key rotations), USB carry between tills that never meet after joining, and
//! real device faults (a full tmpfs, a read-only mount).

use crate::common;

use std::path::Path;

use common::{Till, Tmpfs, wait_for};

fn receipts(t: &Till) -> Vec<String> {
    let v = t.json(&["sales"]);
    let mut r: Vec<String> = v
        .as_array()
        .expect("array")
        .iter()
        .map(|s| s["receipt"].as_str().expect("receipt").to_string())
        .collect();
    r.sort();
    r
}

fn sell(t: &Till, n: usize) {
    for _ in 0..n {
        t.ok(&["sale", "--line", "TEA", "--tender", "cash"]);
    }
}

fn founder(root: &Path) -> Till {
    let a = Till::new(root, "a");
    a.ok(&["init", "--store", "Corner Shop", "--till", "A"]);
    a.ok(&["product", "add", "TEA", "--name", "Tea", "--price", "2.50"]);
    a
}

/// `tillmesh recovery restore REC --from FROM --home` `into`'s home, with
/// `passphrase` and `extra` arguments.
fn recovery_restore(
    into: &Till,
    rec: &Path,
    from: &Path,
    passphrase: &str,
    extra: &[&str],
) -> std::process::Output {
    let mut args = vec![
        "recovery",
        "restore",
        rec.to_str().expect("path"),
        "--from",
        from.to_str().expect("path"),
        "--home",
        into.home.to_str().expect("path"),
    ];
    args.extend_from_slice(extra);
    into.cmd(&args)
        .env("TILLMESH_RECOVERY_PASSPHRASE", passphrase)
        .output()
        .expect("run")
}

/// The founding till, made with `init --recovery`, and its recovery file.
fn founder_with_recovery(root: &Path) -> (Till, std::path::PathBuf) {
    let a = Till::new(root, "a");
    let rec = root.join("recovery.age");
    let mut init = a.cmd(&[
        "init",
        "--store",
        "Corner Shop",
        "--till",
        "A",
        "--recovery",
        rec.to_str().expect("path"),
    ]);
    init.env("TILLMESH_RECOVERY_PASSPHRASE", "correct horse battery")
        .env("TILLMESH_SCRYPT_WORK_FACTOR", "4");
    assert!(init.status().expect("init").success());
    a.ok(&["product", "add", "TEA", "--name", "Tea", "--price", "2.50"]);
    (a, rec)
}

#[test]
fn a_lost_till_comes_back_from_its_recovery_file() {
    let dir = tempfile::tempdir().expect("dir");
    let (a, rec) = founder_with_recovery(dir.path());
    sell(&a, 3);
    let nas = dir.path().join("nas");
    std::fs::create_dir(&nas).expect("nas");
    a.ok(&["sink", "add", "nas", "folder", nas.to_str().expect("path")]);
    let out = a.ok(&["backup"]);
    assert!(out.contains("Wrote snapshot"), "{out}");
    sell(&a, 2);
    let out = a.ok(&["backup", "--bundle"]);
    // Two sales, and the audit entry of the snapshot before.
    assert!(out.contains("3 changes"), "{out}");
    let before = receipts(&a);
    let verified = a.ok(&["backup", "verify"]);
    assert_eq!(verified.matches("ok ").count(), 2, "{verified}");

    // Every till lost.
    std::fs::remove_dir_all(&a.home).expect("wipe");
    let r = Till::new(dir.path(), "r");
    let recover = |passphrase: &str| recovery_restore(&r, &rec, &nas, passphrase, &[]);
    let wrong = recover("wrong horse battery");
    assert_eq!(wrong.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("passphrase"));
    assert!(!r.home.join("store.redb").exists(), "nothing left behind");
    let restored = recover("correct horse battery");
    assert!(
        restored.status.success(),
        "{}",
        String::from_utf8_lossy(&restored.stderr)
    );
    assert_eq!(receipts(&r), before);
    // The restored till sells, and holds the admin key.
    r.ok(&["sale", "--line", "TEA", "--tender", "card"]);
    assert!(r.home.join("admin.key").exists());
    let audit = r.ok(&["audit", "verify"]);
    assert!(!audit.contains("BROKEN"), "{audit}");
}

/// A damaged `recovery.key` is an alert in `status`; `recovery create --new-key`
/// replaces the recovery key (the old one kept aside): backups made after the
/// next rotation are read by the new recovery file and not by the old one.
#[test]
fn a_recovery_key_is_replaced_and_a_damaged_one_is_an_alert() {
    let dir = tempfile::tempdir().expect("dir");
    let (a, old_rec) = founder_with_recovery(dir.path());
    let old_id = a.json(&["keys", "list"])["recovery"]
        .as_str()
        .expect("recovery key")
        .to_string();
    let held = a.home.join("recovery.key");
    let good = std::fs::read(&held).expect("read");
    std::fs::write(&held, b"{ not a key").expect("damage");
    let alerts = a.json(&["status"])["alerts"].to_string();
    assert!(
        alerts.contains("recovery.key is damaged") && alerts.contains("--new-key"),
        "{alerts}"
    );
    std::fs::write(&held, &good).expect("mend");

    // Without a passphrase nothing changes.
    let new_rec = dir.path().join("new-recovery.age");
    let create = |pass: Option<&str>| {
        let mut c = a.cmd(&[
            "recovery",
            "create",
            new_rec.to_str().expect("path"),
            "--new-key",
        ]);
        c.env("TILLMESH_SCRYPT_WORK_FACTOR", "4")
            .env_remove("TILLMESH_RECOVERY_PASSPHRASE");
        if let Some(p) = pass {
            c.env("TILLMESH_RECOVERY_PASSPHRASE", p);
        }
        c.output().expect("run")
    };
    let refused = create(None);
    assert_eq!(refused.status.code(), Some(3), "{refused:?}");
    assert_eq!(std::fs::read(&held).expect("read"), good, "key unchanged");
    let made = create(Some("new horse battery"));
    let said = String::from_utf8_lossy(&made.stdout);
    assert!(made.status.success(), "{said}{:?}", made.stderr);
    assert!(said.contains("Replaced the store's recovery key"), "{said}");
    let new_id = a.json(&["keys", "list"])["recovery"]
        .as_str()
        .expect("recovery key")
        .to_string();
    assert_ne!(new_id, old_id);
    let alerts = a.json(&["status"])["alerts"].to_string();
    assert!(!alerts.contains("recovery"), "{alerts}");

    // A backup after a rotation: the new file reads it, the old one cannot.
    sell(&a, 2);
    let nas = dir.path().join("nas");
    std::fs::create_dir(&nas).expect("nas");
    a.ok(&["sink", "add", "nas", "folder", nas.to_str().expect("path")]);
    a.ok(&["keys", "rotate"]);
    a.ok(&["backup"]);
    let before = receipts(&a);
    let old = Till::new(dir.path(), "old");
    let out = recovery_restore(&old, &old_rec, &nas, "correct horse battery", &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no intact snapshot"),
        "the old recovery file is shut out: {err}"
    );
    assert!(!old.home.join("store.redb").exists());
    let new = Till::new(dir.path(), "new");
    let out = recovery_restore(&new, &new_rec, &nas, "new horse battery", &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(receipts(&new), before);
}

/// Another till's write that replaces the published recovery key (unsigned, as
/// a tampered till could make it) is ignored by every till and undone by the
/// admin till's daemon within seconds.
#[test]
fn the_admin_daemon_puts_back_a_recovery_key_another_till_replaced() {
    let dir = tempfile::tempdir().expect("dir");
    let a = founder(dir.path());
    let da = a.start(&[]);
    let b = Till::new(dir.path(), "b");
    // A back-office till may write the configuration, but not whom backups
    // are encrypted to: only the admin key's signature counts there.
    b.join_as(&a, "B", "back-office");
    let published = a.json(&["keys", "list"])["recovery"].clone();
    assert!(published.is_string(), "{published}");
    {
        let (mut s, _) = b.open_store();
        s.set_config_value(
            "backup/recovery",
            serde_json::json!({ "recipient": "age1planted", "id": "0011223344556677" }),
        )
        .expect("write");
        assert_eq!(s.recovery_recipient().expect("read"), None, "ignored on B");
    }
    let db = b.start(&[]);
    wait_for("the admin's recovery key back on B", || {
        b.json(&["keys", "list"])["recovery"] == published
    });
    assert_eq!(a.json(&["keys", "list"])["recovery"], published);
    // Both writes are on the record: B's in B's audit trail, A's answer in A's.
    let by_b = a.json(&["audit", "--till", "B"]).to_string();
    assert!(by_b.contains("backup/recovery"), "{by_b}");
    let by_a = a.json(&["audit"]).to_string();
    assert!(by_a.matches("backup/recovery").count() >= 2, "{by_a}");
    db.stop();
    da.stop();
}

#[test]
fn a_recovery_file_from_init_reads_backups_made_after_a_rotation() {
    let dir = tempfile::tempdir().expect("dir");
    let (a, rec) = founder_with_recovery(dir.path());
    sell(&a, 2);
    let nas = dir.path().join("nas");
    std::fs::create_dir(&nas).expect("nas");
    a.ok(&["sink", "add", "nas", "folder", nas.to_str().expect("path")]);
    a.ok(&["backup"]);
    let first_key = a.json(&["keys", "list"])["keys"][0]["key_id"]
        .as_str()
        .expect("key")
        .to_string();

    let rotated = a.ok(&["keys", "rotate"]);
    assert!(rotated.contains("reads these backups too"), "{rotated}");
    let keys = a.json(&["keys", "list"]);
    let current = keys["announced"].as_str().expect("announced").to_string();
    assert_ne!(current, first_key);
    let status = a.json(&["status"]);
    assert!(
        !status["alerts"]
            .as_array()
            .expect("alerts")
            .iter()
            .any(|x| x.as_str().is_some_and(|x| x.contains("recovery file"))),
        "the recovery file from init is not stale: {status}"
    );
    sell(&a, 3);
    a.ok(&["backup"]);
    sell(&a, 1);
    a.ok(&["backup", "--bundle"]);
    let listed = a.json(&["backup", "list", "--from", nas.to_str().expect("path")]);
    let newest = listed
        .as_array()
        .expect("list")
        .last()
        .expect("files")
        .clone();
    assert_eq!(newest["key_id"], current.as_str(), "{listed}");
    let before = receipts(&a);
    assert_eq!(before.len(), 6);

    // Every till lost; the recovery file holds only the key of the day of init.
    std::fs::remove_dir_all(&a.home).expect("wipe");
    let r = Till::new(dir.path(), "r");
    let restored = recovery_restore(&r, &rec, &nas, "correct horse battery", &[]);
    let said = String::from_utf8_lossy(&restored.stdout);
    assert!(
        restored.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&restored.stderr)
    );
    assert!(
        said.contains("1 bundles"),
        "the bundle after the rotation too: {said}"
    );
    assert_eq!(
        receipts(&r),
        before,
        "the sales after the rotation are back"
    );

    // The restored till is the admin till: it backs up to a key it holds.
    assert!(r.home.join("admin.key").exists());
    assert!(r.home.join("recovery.key").exists());
    let keys = r.json(&["keys", "list"]);
    let new_current = keys["announced"].as_str().expect("announced");
    assert!(
        new_current != current && new_current != first_key,
        "a fresh key, not the lost till's: {keys}"
    );
    assert!(keys["recovery"].is_string(), "{keys}");
    r.ok(&["sale", "--line", "TEA", "--tender", "card"]);
    let to = nas.to_str().expect("path");
    let out = r.ok(&["backup", "--to", to]);
    assert!(out.contains("Wrote snapshot"), "{out}");
    // Every file on the sink, those of the lost till's keys too (the recovery key).
    let verified = r.ok(&["backup", "verify", "--from", to]);
    assert!(!verified.contains("DAMAGED"), "{verified}");
    let pruned = r.ok(&["backup", "prune", "--from", to, "--dry-run"]);
    assert!(
        !pruned.contains("left "),
        "retention reads them too: {pruned}"
    );
    let status = r.json(&["status"]);
    assert!(
        !status["alerts"]
            .as_array()
            .expect("alerts")
            .iter()
            .any(|x| x.as_str().is_some_and(|x| x.contains("recovery file"))),
        "{status}"
    );

    // And the same recovery file restores again, from the restored till's backups.
    let again = Till::new(dir.path(), "again");
    let out = recovery_restore(
        &again,
        &rec,
        &nas,
        "correct horse battery",
        &["--till", "R02"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(receipts(&again), receipts(&r));
}

/// A store whose members wrote their own entries in the membership (each
/// till's address, under its own proof) restores, also after one of them was
/// revoked: the admin key's certificates go in first, then the entries of
/// the tills they certify.
#[test]
fn a_store_of_several_tills_restores_with_their_membership() {
    let dir = tempfile::tempdir().expect("dir");
    let a = founder(dir.path());
    let b = Till::new(dir.path(), "b");
    {
        let _da = a.start(&[]);
        b.join(&a, "B");
        let _db = b.start(&[]);
        b.ok(&["sale", "--line", "TEA", "--tender", "card"]);
        wait_for("B's sale and address to reach A", || {
            a.receipts().len() == 1 && a.path_to("B") == "direct"
        });
    }
    sell(&a, 2);
    let stick = dir.path().join("stick");
    std::fs::create_dir(&stick).expect("stick");
    let to = stick.to_str().expect("path");
    a.ok(&["backup", "--to", to]);
    // B's disk dies after the backup: it is revoked, and a new till takes
    // its place from the stick. B's entry, under B's own proof, still
    // restores: the backup's membership certified B when it was made.
    a.ok(&["revoke", "B"]);
    let r = Till::new(dir.path(), "r");
    a.ok(&[
        "restore",
        "--from",
        to,
        "--till",
        "R",
        "--home",
        r.home.to_str().expect("path"),
        "--certify",
    ]);
    assert_eq!(receipts(&r), receipts(&a));
    let members = r.json(&["status"])["tills"].to_string();
    assert!(
        members.contains("\"B\"") && members.contains("\"R\""),
        "{members}"
    );
    // Restored with the admin till's keys and --certify, R is certified in
    // A's store too, so the other tills accept it once A's membership
    // spreads. A restore to look into certifies nothing there.
    let id_of = |t: &Till, name: &str| -> String {
        t.json(&["status"])["tills"]
            .as_array()
            .and_then(|l| l.iter().find(|x| x["name"] == name))
            .and_then(|x| x["id"].as_str())
            .unwrap_or_default()
            .to_string()
    };
    let r_id = id_of(&r, "R");
    assert_eq!(id_of(&a, "R"), r_id, "A's store certifies R");
    let look = Till::new(dir.path(), "look");
    a.ok(&[
        "restore",
        "--from",
        to,
        "--till",
        "L",
        "--home",
        look.home.to_str().expect("path"),
    ]);
    assert_eq!(id_of(&a, "L"), "", "a restore to look into is no member");
    // Certifying by hand: a revoked till never again, a name taken never.
    let b_id = id_of(&a, "B");
    let out = a.run(&["admin", "certify", &b_id, "--name", "B2"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("revoked"));
    let out = a.run(&["admin", "certify", &r_id, "--name", "A"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("taken"));
    let out = r.run(&["admin", "certify", &r_id, "--name", "R"]);
    assert_eq!(out.status.code(), Some(3), "only an admin till certifies");
    assert!(
        a.ok(&["admin", "certify", &r_id, "--name", "R"])
            .contains("already a member")
    );
}

#[test]
fn restore_at_a_time_and_never_over_a_live_till() {
    let dir = tempfile::tempdir().expect("dir");
    let a = founder(dir.path());
    let stick = dir.path().join("stick");
    std::fs::create_dir(&stick).expect("stick");
    let to = stick.to_str().expect("path");
    sell(&a, 2);
    a.ok(&["backup", "--to", to]);
    std::thread::sleep(std::time::Duration::from_millis(20));
    sell(&a, 1);
    a.ok(&["backup", "--to", to, "--bundle"]);
    let then = receipts(&a);
    let listed = a.json(&["backup", "list", "--from", to]);
    let t = listed.as_array().expect("list")[1]["created_ms"]
        .as_u64()
        .expect("created");
    std::thread::sleep(std::time::Duration::from_millis(20));
    sell(&a, 4);
    a.ok(&["backup", "--to", to, "--bundle"]);

    let r = Till::new(dir.path(), "r");
    let at = t.to_string();
    let out = a.ok(&[
        "restore",
        "--from",
        to,
        "--at",
        &at,
        "--home",
        r.home.to_str().expect("path"),
    ]);
    assert!(out.contains("1 bundles"), "{out}");
    assert_eq!(receipts(&r), then);

    let out = a.run(&[
        "restore",
        "--from",
        to,
        "--home",
        r.home.to_str().expect("path"),
    ]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "a live till is never overwritten"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("already holds a till"));

    // A time before every snapshot: named as such, and no half-made home left.
    let early = Till::new(dir.path(), "early");
    let out = a.run(&[
        "restore",
        "--from",
        to,
        "--at",
        "2020-01-01T00:00",
        "--home",
        early.home.to_str().expect("path"),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(
        err.contains("no snapshot at or before 2020-01-01T00:00:00Z"),
        "{err}"
    );
    assert!(
        !early.home.exists(),
        "a failed restore leaves no home behind"
    );
}

#[test]
fn usb_sync_carries_sales_between_tills_that_never_meet() {
    let dir = tempfile::tempdir().expect("dir");
    let a = founder(dir.path());
    let da = a.start(&[]);
    let b = Till::new(dir.path(), "b");
    b.join(&a, "B");
    da.stop();
    assert!(
        b.home.join("store.keys").exists(),
        "the join handed over the store keys"
    );

    // Apart from here on.
    sell(&a, 3);
    sell(&b, 4);
    let stick = dir.path().join("stick");
    let third = carry(&a, &b, &stick);
    assert!(
        third["imported_changes"].as_u64().expect("n") >= 4,
        "{third}"
    );
    assert_eq!(receipts(&a), receipts(&b));
    assert_eq!(receipts(&a).len(), 7);
    assert_eq!(a.path_to("B"), "usb", "B's sales reached A on the stick");
    assert_eq!(b.path_to("A"), "usb");
    // Only ciphertext on the stick.
    for entry in walk(&stick) {
        let bytes = std::fs::read(&entry).expect("read");
        assert!(
            !bytes.windows(11).any(|w| w == b"Corner Shop"),
            "{}",
            entry.display()
        );
    }
}

/// With the daemon running, `usb sync` goes through it (files merged in steps,
/// the store free for sales between them) and carries sales both ways; a file
/// imported before is not read again.
#[test]
fn usb_sync_through_the_daemon_carries_sales_and_passes_over_known_files() {
    let dir = tempfile::tempdir().expect("dir");
    let a = founder(dir.path());
    let da = a.start(&[]);
    let b = Till::new(dir.path(), "b");
    b.join(&a, "B");
    // From here on they never meet; A's daemon keeps running alone.
    sell(&a, 2);
    sell(&b, 3);
    let stick = dir.path().join("stick");
    let s = stick.to_str().expect("path");
    let third = carry(&a, &b, &stick);
    assert!(
        third["imported_changes"].as_u64().expect("n") >= 3,
        "{third}"
    );
    assert_eq!(receipts(&a), receipts(&b));
    assert_eq!(receipts(&a).len(), 5);
    // B sells again and syncs; A reads only B's new bundle.
    sell(&b, 1);
    b.ok(&["usb", "sync", s]);
    let fourth = a.json(&["usb", "sync", s]);
    assert_eq!(fourth["files_known"], 1, "{fourth}");
    assert_eq!(fourth["files_read"], 1, "{fourth}");
    assert_eq!(receipts(&a).len(), 6);
    let text = a.ok(&["usb", "sync", s]);
    assert!(text.contains("imported before, not read again"), "{text}");
    // A sells through the daemon after all of it: the store is its own again.
    sell(&a, 1);
    assert_eq!(receipts(&a).len(), 7);
    da.stop();
}

/// A new `stick` carried A → B → A: `usb sync` on A (exports), on B (imports
/// and exports), on A again; gives A's last report.
fn carry(a: &Till, b: &Till, stick: &Path) -> serde_json::Value {
    std::fs::create_dir(stick).expect("stick");
    let s = stick.to_str().expect("path");
    let first = a.json(&["usb", "sync", s]);
    assert!(
        first["exported_changes"].as_u64().expect("n") > 0,
        "{first}"
    );
    let second = b.json(&["usb", "sync", s]);
    assert!(
        second["imported_changes"].as_u64().expect("n") > 0,
        "{second}"
    );
    a.json(&["usb", "sync", s])
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("read dir") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn a_full_device_and_a_read_only_one_fail_clearly_and_lose_nothing() {
    let dir = tempfile::tempdir().expect("dir");
    let a = founder(dir.path());
    sell(&a, 2);
    let mnt = dir.path().join("small");
    let fs = Tmpfs::mount(&mnt, "48k");
    let to = mnt.to_str().expect("path");
    a.ok(&["backup", "--to", to]);
    let first = a.json(&["backup", "list", "--from", to]);
    assert_eq!(first.as_array().expect("list").len(), 1);

    // Grow the store until a snapshot no longer fits.
    let mut failed = None;
    for _ in 0..40 {
        sell(&a, 25);
        let out = a.run(&["backup", "--to", to]);
        if !out.status.success() {
            failed = Some(out);
            break;
        }
    }
    let out = failed.expect("the device filled up");
    assert_eq!(out.status.code(), Some(7), "disk full exit code");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is full") && err.contains(to), "{err}");
    assert!(err.contains("needs"), "names the space needed: {err}");
    // Earlier backups intact, no temporary file left, the till keeps selling.
    let verified = a.ok(&["backup", "verify", "--from", to]);
    assert!(!verified.contains("DAMAGED"), "{verified}");
    assert!(
        !walk(&mnt)
            .iter()
            .any(|p| p.to_string_lossy().contains(".tmp-")),
        "no temporary file left"
    );
    a.ok(&["sale", "--line", "TEA", "--tender", "cash"]);

    drop(fs);
    let ro_mnt = dir.path().join("ro");
    let ro = Tmpfs::mount(&ro_mnt, "4m");
    ro.remount_ro();
    let out = a.run(&["backup", "--to", ro_mnt.to_str().expect("path")]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("permission denied") || err.contains("read-only"),
        "{err}"
    );
}

fn backups_of(t: &Till, dir: &Path) -> Vec<serde_json::Value> {
    t.json(&["backup", "list", "--from", dir.to_str().expect("utf-8")])
        .as_array()
        .expect("array")
        .clone()
}

fn count(list: &[serde_json::Value], kind: &str) -> usize {
    list.iter().filter(|b| b["kind"] == kind).count()
}

fn sink_status(t: &Till) -> serde_json::Value {
    t.json(&["status"])["sinks"][0].clone()
}

#[test]
fn the_daemon_backs_up_on_schedule_and_queues_while_the_stick_is_out() {
    let dir = tempfile::tempdir().expect("dir");
    let a = founder(dir.path());
    let stick = dir.path().join("stick");
    let unplugged = dir.path().join("stick-out");
    std::fs::create_dir(&stick).expect("stick");
    a.ok(&[
        "backup",
        "schedule",
        "--every",
        "1s",
        "--snapshot-every",
        "1h",
    ]);
    a.ok(&[
        "sink",
        "add",
        "usb",
        "folder",
        stick.to_str().expect("utf-8"),
        "--keep",
        "last=2,daily=0,weekly=0,monthly=0",
    ]);
    sell(&a, 2);
    let daemon = a.start(&[]);

    // The first round writes a snapshot; the next ones bundle new sales.
    wait_for("a scheduled snapshot", || {
        count(&backups_of(&a, &stick), "snapshot") == 1
    });
    sell(&a, 2);
    wait_for("a scheduled bundle", || {
        count(&backups_of(&a, &stick), "bundle") >= 1
    });
    let s = sink_status(&a);
    assert_eq!(s["failures"], 0, "{s}");
    assert!(s["last_backup"].as_u64().is_some(), "{s}");

    // The stick is pulled: the till keeps selling, backups fail, back off and
    // are flagged to the operator.
    std::fs::rename(&stick, &unplugged).expect("unplug");
    sell(&a, 1);
    wait_for("three failed attempts", || {
        sink_status(&a)["failures"].as_u64().unwrap_or(0) >= 3
    });
    let st = a.json(&["status"]);
    let s = &st["sinks"][0];
    assert_eq!(s["present"], false, "{s}");
    assert!(
        s["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("stick")),
        "the error names the folder: {s}"
    );
    assert!(
        st["alerts"]
            .as_array()
            .expect("alerts")
            .iter()
            .any(|x| x.as_str().is_some_and(|x| x.contains("sink usb"))),
        "{st}"
    );
    let failed_at = s["failures"].as_u64().expect("failures");

    // Plugged back in: the queued backup goes out on the next retry.
    std::fs::rename(&unplugged, &stick).expect("plug in");
    wait_for("the queued backup", || sink_status(&a)["failures"] == 0);
    assert!(failed_at >= 3);
    daemon.stop();

    let fresh = Till::new(dir.path(), "fresh");
    let out = a.ok(&[
        "restore",
        "--from",
        stick.to_str().expect("utf-8"),
        "--home",
        fresh.home.to_str().expect("utf-8"),
    ]);
    assert!(out.contains("Restored"), "{out}");
    assert_eq!(receipts(&fresh), receipts(&a));
    assert_eq!(receipts(&a).len(), 5);

    // Retention: three snapshots, the sink keeps two; what goes is held by the newest.
    a.ok(&["backup", "--to", "usb"]);
    a.ok(&["backup", "--to", "usb"]);
    assert_eq!(count(&backups_of(&a, &stick), "snapshot"), 3);
    let dry = a.ok(&["backup", "prune", "--dry-run"]);
    assert!(dry.contains("would delete"), "{dry}");
    assert_eq!(count(&backups_of(&a, &stick), "snapshot"), 3);
    let out = a.ok(&["backup", "prune"]);
    assert!(out.contains("deleted"), "{out}");
    let left = backups_of(&a, &stick);
    assert_eq!(count(&left, "snapshot"), 2, "{left:?}");
    assert_eq!(
        count(&left, "bundle"),
        0,
        "bundles older than the kept snapshots go: {left:?}"
    );
    let again = Till::new(dir.path(), "again");
    a.ok(&[
        "restore",
        "--from",
        stick.to_str().expect("utf-8"),
        "--home",
        again.home.to_str().expect("utf-8"),
    ]);
    assert_eq!(receipts(&again), receipts(&a));
}

/// With the daemon running, `tillmesh backup` goes through it and is made in
/// steps (the store free for sales between them), with the same output, files
/// and errors as without a daemon.
#[test]
fn a_backup_through_the_daemon_is_made_in_steps_and_verifies() {
    let dir = tempfile::tempdir().expect("dir");
    let a = founder(dir.path());
    let _da = a.start(&[]);
    sell(&a, 3);
    let to = dir.path().join("stick");
    std::fs::create_dir(&to).expect("stick");
    let to = to.to_str().expect("path");
    let out = a.ok(&["backup", "--to", to]);
    assert!(out.contains("Wrote snapshot"), "{out}");
    sell(&a, 2);
    let made = a.json(&["backup", "--to", to, "--bundle"]);
    assert_eq!(made[0]["kind"], "bundle", "{made}");
    assert!(
        made[0]["changes"].as_u64().is_some_and(|c| c >= 2),
        "{made}"
    );
    let verified = a.ok(&["backup", "verify", "--from", to]);
    assert_eq!(verified.matches("ok ").count(), 2, "{verified}");
    let status = a.json(&["status"]);
    assert!(status["alerts"].as_array().is_some(), "{status}");
    // A folder that is not there: a clear error, as without the daemon.
    let missing = dir.path().join("no-stick");
    let out = a.run(&["backup", "--to", missing.to_str().expect("path")]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no-stick"),
        "{out:?}"
    );
}

/// `recovery drill` restores into a temporary home, checks it all and says what
/// a recovery would get; a wrong passphrase or a damaged file fails with the
/// documented code; the temporary home is gone either way and the till's own
/// store is not touched.
#[test]
fn a_recovery_drill_checks_the_backups_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().expect("dir");
    let (a, rec) = founder_with_recovery(dir.path());
    sell(&a, 3);
    let nas = dir.path().join("nas");
    std::fs::create_dir(&nas).expect("nas");
    a.ok(&["sink", "add", "nas", "folder", nas.to_str().expect("path")]);
    a.ok(&["backup"]);
    sell(&a, 2);
    a.ok(&["backup", "--bundle"]);
    let snapshot_docs = a
        .json(&["backup", "verify"])
        .as_array()
        .expect("array")
        .iter()
        .map(|v| v["docs"].as_u64().expect("docs"))
        .max()
        .expect("a file");
    let store_before = std::fs::read(a.home.join("store.redb")).expect("store");
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).expect("tmp");
    let drill = |passphrase: &str, from: &str, json: bool| {
        let mut args = vec![
            "recovery",
            "drill",
            rec.to_str().expect("path"),
            "--from",
            from,
        ];
        if json {
            args.push("--json");
        }
        a.cmd(&args)
            .env("TILLMESH_RECOVERY_PASSPHRASE", passphrase)
            .env("TMPDIR", &tmp)
            .output()
            .expect("run")
    };
    let left_in_tmp = || std::fs::read_dir(&tmp).expect("tmp").count();

    // By the sink's name, with JSON.
    let out = drill("correct horse battery", "nas", true);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(r["sales"], 5, "{r}");
    assert_eq!(r["receipts"], 5, "{r}");
    assert_eq!(r["tills"], 1, "{r}");
    assert_eq!(r["bundles"], 1, "{r}");
    assert_eq!(r["files_verified"], 2, "{r}");
    assert_eq!(r["audit_chains"], 1, "{r}");
    assert!(
        r["documents"].as_u64().expect("docs") >= snapshot_docs,
        "{r}"
    );
    assert!(r["newest_sale"].as_u64().is_some(), "{r}");
    assert!(r["newest_backup"].as_u64().is_some(), "{r}");
    assert_eq!(left_in_tmp(), 0, "the temporary home is gone");

    // By the folder, as text.
    let out = drill("correct horse battery", nas.to_str().expect("path"), false);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("5 sales"), "{text}");
    assert_eq!(left_in_tmp(), 0);

    // A wrong passphrase: input refused (3), nothing left.
    let out = drill("wrong horse battery", "nas", false);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("passphrase"));
    assert_eq!(left_in_tmp(), 0);

    // A damaged bundle: the drill fails as damaged (6), naming the file, and
    // still leaves nothing.
    let bundle = walk(&nas)
        .into_iter()
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(".tmb"))
        })
        .expect("a bundle file");
    let mut bytes = std::fs::read(&bundle).expect("bundle");
    let at = bytes.len() - 10;
    bytes[at] ^= 0x40;
    std::fs::write(&bundle, bytes).expect("damage");
    let out = drill("correct horse battery", "nas", false);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "{err}");
    assert!(err.contains("failed verification"), "{err}");
    assert_eq!(left_in_tmp(), 0);

    assert_eq!(
        std::fs::read(a.home.join("store.redb")).expect("store"),
        store_before,
        "the till's own store is not touched"
    );
}

/// What `command` (a shell line) printed on a pseudo-terminal (from
/// `script`), for the till at `home`; it must succeed.
fn on_pty(command: &str, home: &Path) -> String {
    let out = std::process::Command::new("script")
        .args(["-qec", command, "/dev/null"])
        .env("TILLMESH_HOME", home)
        .env("TERM", "xterm")
        .output()
        .expect("script runs the command on a pty");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The counts (`12/365`) a progress bar showed on `tty`, on its frames
/// that name `what` and `step`.
fn bar_positions<'a>(tty: &'a str, what: &str, step: &str) -> std::collections::BTreeSet<&'a str> {
    tty.split(['\r', '\n', '\x1b'])
        .filter(|l| l.contains(what) && l.contains(step))
        .filter_map(|l| {
            l.split_whitespace()
                .find(|w| w.contains('/') && w.chars().next().is_some_and(|c| c.is_ascii_digit()))
        })
        .collect()
}

/// A restore that takes a while shows its progress moving on a terminal (a
/// pty, from `script`), plain lines in a pipe, and nothing with `--json`.
#[test]
fn a_restore_shows_its_progress_on_a_terminal() {
    use rand::SeedableRng;
    use tillmesh_store::{Day, DocId};
    let dir = tempfile::tempdir().expect("dir");
    let a = Till::new(dir.path(), "a");
    a.ok(&["init", "--store", "Long Restore", "--till", "A"]);
    // A year of sales: a document a day, so the restore merges many.
    {
        let (mut store, key) = a.open_store();
        tillmesh_sim::workload::add_products(&mut store, 20).expect("products");
        let (till, store_id, name) = (store.till_id(), store.store_id(), store.till_name().clone());
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for d in 0..365 {
            let day = Day::from_unix_ms(1_735_689_600_000).add_days(d);
            let (changes, proofs) = tillmesh_sim::workload::signed_day_of_sales(
                &key,
                &store_id,
                &name,
                day,
                1_000_000 + d as u64 * 100,
                60,
                20,
                &mut rng,
            );
            store
                .apply_changes(&DocId::Sales(till, day), &changes, &proofs)
                .expect("sales");
        }
    }
    let stick = dir.path().join("stick");
    std::fs::create_dir(&stick).expect("stick");
    a.ok(&["backup", "--to", stick.to_str().expect("path")]);
    let restore = |to: &str| {
        format!(
            "{} restore --from {} --home {} --till R",
            common::bin().display(),
            stick.display(),
            dir.path().join(to).display()
        )
    };
    // On a terminal: the bar, redrawn as documents go in.
    let tty = on_pty(&restore("on-tty"), &a.home);
    let positions = bar_positions(&tty, "restore", "snapshot");
    assert!(
        positions.len() >= 2,
        "the bar did not move: {positions:?}\n{tty:?}"
    );
    // In a pipe: plain lines on standard error, the report on standard output.
    let piped = std::process::Command::new("sh")
        .args(["-c", &restore("piped")])
        .env("TILLMESH_HOME", &a.home)
        .output()
        .expect("restore");
    assert!(piped.status.success(), "{piped:?}");
    let err = String::from_utf8_lossy(&piped.stderr);
    assert!(err.contains("restore: snapshot"), "{err}");
    assert!(!err.contains('\x1b'), "{err}");
    // With --json: nothing but the JSON.
    let json = std::process::Command::new("sh")
        .args(["-c", &format!("{} --json", restore("json"))])
        .env("TILLMESH_HOME", &a.home)
        .output()
        .expect("restore");
    assert!(json.status.success(), "{json:?}");
    assert!(!String::from_utf8_lossy(&json.stderr).contains("restore:"));
    serde_json::from_slice::<serde_json::Value>(&json.stdout).expect("JSON only");

    // A backup the daemon makes for a command shows its progress on the
    // command's terminal too, followed through the daemon's jobs.
    let d = a.start(&[]);
    let stick2 = dir.path().join("stick2");
    std::fs::create_dir(&stick2).expect("stick");
    let tty = on_pty(
        &format!(
            "{} backup --to {}",
            common::bin().display(),
            stick2.display()
        ),
        &a.home,
    );
    let shown = bar_positions(&tty, "backup", "reading");
    assert!(!shown.is_empty(), "no progress shown: {tty:?}");
    assert!(tty.contains("Wrote snapshot"), "{tty}");
    d.stop();
}

/// `backup verify` names each damaged file and why, also while the daemon
/// runs the command, and exits as damaged (6); its progress and outcome go
/// on the event stream as a job.
#[test]
fn verify_names_the_damaged_backup_with_or_without_the_daemon() {
    let dir = tempfile::tempdir().expect("dir");
    let a = founder(dir.path());
    sell(&a, 2);
    let stick = dir.path().join("stick");
    std::fs::create_dir(&stick).expect("stick");
    let to = stick.to_str().expect("path");
    a.ok(&["backup", "--to", to]);
    sell(&a, 1);
    a.ok(&["backup", "--to", to, "--bundle"]);
    let bundle = walk(&stick)
        .into_iter()
        .find(|p| p.to_string_lossy().ends_with(".tmb"))
        .expect("a bundle");
    let mut bytes = std::fs::read(&bundle).expect("bundle");
    let at = bytes.len() - 10;
    bytes[at] ^= 0x40;
    std::fs::write(&bundle, bytes).expect("damage");
    let short = bundle
        .file_name()
        .and_then(|n| n.to_str())
        .expect("name")
        .to_string();
    let check = |what: &str| {
        let out = a.run(&["backup", "verify", "--from", to]);
        let (text, err) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert_eq!(out.status.code(), Some(6), "{what}: {text}{err}");
        assert!(
            text.contains(&format!("DAMAGED  {short}")) && text.contains("ok       "),
            "{what}: each file's verdict is printed: {text}"
        );
        assert!(err.contains("1 of"), "{what}: {err}");
    };
    check("alone");
    let d = a.start(&[]);
    let api = common::http::Api::of(&a);
    check("through the daemon");
    let jobs = api.get("/v1/jobs").json();
    let job = jobs
        .as_array()
        .expect("jobs")
        .iter()
        .rev()
        .find(|j| j["kind"] == "verify")
        .unwrap_or_else(|| panic!("no verify job: {jobs}"))
        .clone();
    assert_eq!(job["state"], "finished", "{job}");
    assert_eq!(job["result"]["damaged"], 1, "{job}");
    assert_eq!(job["done"], job["total"], "{job}");
    d.stop();
}
