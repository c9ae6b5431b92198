//! A rogue member against real `tillmesh run` daemons on loopback: a till that
//! copies its own key into `admin.key` gains no admin rights, and a till that
//! slips a price change past its own command line (written raw into its store
//! through the library, signed with its own key) changes nothing on the honest
//! tills, which keep syncing its sales.

use crate::common;

use automerge::transaction::Transactable;
use automerge::{ActorId, Automerge, ROOT};
use common::{Till, wait_for};
use tillmesh_store::{DocId, Proof, Store, StoreOptions, TillKey};

fn shop(dir: &std::path::Path) -> (Till, Till) {
    let a = Till::new(dir, "a");
    a.ok(&["init", "--store", "Rogue Test", "--till", "A"]);
    a.ok(&["product", "add", "TEA", "--name", "Tea", "--price", "2.00"]);
    let b = Till::new(dir, "b");
    (a, b)
}

/// [`shop`] with B and C joined as tills; A's daemon runs.
fn shop_of_three(dir: &std::path::Path) -> (Till, Till, Till, common::Daemon) {
    let (a, b) = shop(dir);
    let da = a.start(&[]);
    b.join(&a, "B");
    let c = Till::new(dir, "c");
    c.join(&a, "C");
    (a, b, c, da)
}

#[test]
fn a_till_key_copied_to_admin_key_gives_no_admin_rights() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = shop(dir.path());
    let da = a.start(&[]);
    b.join(&a, "B");
    da.stop();
    let keys_before = a.json(&["keys", "list"]);
    std::fs::copy(b.home.join("till.key"), b.home.join("admin.key")).expect("copy");
    for args in [
        vec!["keys", "rotate"],
        vec!["revoke", "A"],
        vec!["relays", "add", "http://127.0.0.1:9", "--cert", "00"],
    ] {
        let out = b.run(&args);
        assert_eq!(out.status.code(), Some(3), "{args:?} must be refused");
    }
    // Its own key announcement would be ignored anyway: nothing changed on A.
    assert_eq!(a.json(&["keys", "list"]), keys_before);
    assert_eq!(b.price_cents("TEA"), 200);
}

#[test]
fn a_rogue_tills_price_change_is_refused_by_every_honest_till() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b, c, da) = shop_of_three(dir.path());
    let dc = c.start(&[]);
    // B's own command line refuses: a till may not change prices.
    let out = b.run(&["product", "set-price", "TEA", "0.01"]);
    assert_eq!(out.status.code(), Some(3));

    // So B writes it raw into its own store, under its own name, signed with
    // its own key, claiming the back office's role.
    {
        let key = TillKey::load(&b.home.join("till.key")).expect("B's key");
        let mut store = Store::open(
            &b.home.join("store.redb"),
            key.clone(),
            StoreOptions::default(),
        )
        .expect("B's store");
        let mut am = Automerge::new();
        let mut actor = key.till_id().as_bytes().to_vec();
        actor.extend_from_slice(&[0xAB; 8]);
        am.set_actor(ActorId::from(actor));
        for ch in store.changes_since(&DocId::Catalog, &[]).expect("catalog") {
            am.load_incremental(&ch).expect("load");
        }
        let field = serde_json::json!({
            "v": 1, "value": 1, "hlc": u64::MAX >> 1,
            "till": key.till_id().to_string(), "role": "back-office",
        });
        am.transact::<_, _, automerge::AutomergeError>(|tx| {
            tx.put(ROOT, "TEA/price_cents", field.to_string())?;
            Ok(())
        })
        .expect("write");
        let change = am.get_last_local_change().expect("change");
        let proof = Proof::sign(
            &key,
            &store.store_id(),
            &DocId::Catalog,
            1,
            vec![change.hash()],
        );
        // Its own store checks too: only the legacy door lets it in.
        assert!(
            store
                .apply_changes(
                    &DocId::Catalog,
                    &[change.raw_bytes().to_vec()],
                    std::slice::from_ref(&proof)
                )
                .is_err()
        );
        store.accept_legacy_history(true).expect("legacy door");
        store
            .apply_changes(&DocId::Catalog, &[change.raw_bytes().to_vec()], &[proof])
            .expect("into B's own store");
        store.accept_legacy_history(false).expect("close");
    }

    // B runs and sells; its sales reach A and C, its price change does not.
    let db = b.start(&[]);
    let sale = b.json(&["sale", "--line", "TEA", "--tender", "cash"]);
    let r = sale["receipt"].as_str().expect("receipt").to_string();
    for t in [&a, &c] {
        wait_for("B's sale on every till", || t.receipts().contains(&r));
    }
    // A few sync rounds later the price is still the honest one everywhere
    // honest, and the refusal is in the audit trail.
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(a.price_cents("TEA"), 200);
    assert_eq!(c.price_cents("TEA"), 200);
    let audit = a.ok(&["audit"]);
    assert!(
        audit.contains("refused") && audit.contains("catalog"),
        "{audit}"
    );
    db.stop();
    dc.stop();
    da.stop();
}

/// Whether `on` holds the sale with receipt `r`.
fn has_receipt(on: &Till, r: &str) -> bool {
    on.receipts().iter().any(|x| x == r)
}

#[test]
fn a_revoked_till_is_cut_off_learns_it_keeps_selling_and_exports_what_only_it_holds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b, c, da) = shop_of_three(dir.path());
    let (db, dc) = (b.start(&[]), c.start(&[]));
    let sale = |t: &Till| {
        t.json(&["sale", "--line", "TEA", "--tender", "cash"])["receipt"]
            .as_str()
            .expect("receipt")
            .to_string()
    };
    let before = sale(&b);
    for t in [&a, &c] {
        wait_for("B's first sale everywhere", || has_receipt(t, &before));
    }

    a.ok(&["revoke", "B"]);
    // B hears of it (the admin's signed revocation, or the refusals of both
    // its peers), says so, and keeps selling.
    wait_for("B knows it was revoked", || {
        !b.json(&["status"])["self"]["revoked"].is_null()
    });
    assert!(b.ok(&["status"]).contains("THIS TILL WAS REVOKED"));
    let after = sale(&b);
    let from_a = sale(&a);
    wait_for("A's new sale on C", || has_receipt(&c, &from_a));
    // Sync rounds run every few seconds: give them time to leak, if they would.
    std::thread::sleep(std::time::Duration::from_secs(6));
    assert!(
        !has_receipt(&b, &from_a),
        "B got a sale made after its revocation"
    );
    for t in [&a, &c] {
        assert!(
            !has_receipt(t, &after),
            "B's sale after its revocation arrived"
        );
    }

    // What only B holds goes to the back office in a file.
    let file = dir.path().join("b-unsynced.json");
    let said = b.ok(&["export-unsynced", file.to_str().expect("path")]);
    assert!(said.contains("Wrote 1 entry "), "{said}");
    let export: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).expect("export file")).expect("JSON");
    let receipts: Vec<&str> = export["sales"]
        .as_array()
        .expect("sales")
        .iter()
        .map(|s| s["receipt"].as_str().expect("receipt"))
        .collect();
    assert_eq!(receipts, vec![after.as_str()]);
    // A second export never overwrites the first.
    let again = b.run(&["export-unsynced", file.to_str().expect("path")]);
    assert_eq!(again.status.code(), Some(3));
    db.stop();
    dc.stop();
    da.stop();
}

#[test]
fn a_second_admin_from_admin_export_can_run_the_store_when_the_first_is_lost() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b, c, da) = shop_of_three(dir.path());
    // C listens on one port throughout, so B finds it again after its restart.
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free port")
        .port();
    let c_bind = format!("127.0.0.1:{port}");
    let c_args = ["--bind", c_bind.as_str()];
    let (db, dc) = (b.start(&[]), c.start(&c_args));
    wait_for("B and C in touch", || {
        b.json(&["status"])["tills"]
            .as_array()
            .expect("tills")
            .iter()
            .any(|t| t["name"] == "C" && t["online"] == true)
    });
    let file = dir.path().join("admin.age");
    let with_pass = |t: &Till, pass: &str, args: &[&str]| {
        t.cmd(args)
            .env("TILLMESH_RECOVERY_PASSPHRASE", pass)
            .env("TILLMESH_SCRYPT_WORK_FACTOR", "4")
            .output()
            .expect("run tillmesh")
    };
    // Only an admin till can export; the passphrase goes to the daemon with
    // the command.
    let out = with_pass(&b, "correct horse battery", &["admin", "export", "x.age"]);
    assert_eq!(out.status.code(), Some(3));
    let out = with_pass(
        &a,
        "correct horse battery",
        &["admin", "export", file.to_str().expect("path")],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    da.stop();
    dc.stop();
    // The admin till is lost. C, a plain till, cannot change prices...
    assert_eq!(
        c.run(&["product", "set-price", "TEA", "1.50"])
            .status
            .code(),
        Some(3)
    );
    // ...until it imports the admin key (with the right passphrase).
    let path = file.to_str().expect("path");
    let wrong = with_pass(&c, "wrong passphrase!", &["admin", "import", path]);
    assert!(!wrong.status.success());
    assert!(!c.home.join("admin.key").exists());
    let out = with_pass(&c, "correct horse battery", &["admin", "import", path]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    c.ok(&["product", "set-price", "TEA", "1.50"]);
    // Every other till takes the new admin's changes, and it can invite.
    let dc = c.start(&c_args);
    wait_for("the new price on B", || b.price_cents("TEA") == 150);
    let d = Till::new(dir.path(), "d");
    d.join(&c, "D");
    assert_eq!(d.price_cents("TEA"), 150);
    db.stop();
    dc.stop();
}

#[test]
fn a_stranger_with_forged_tickets_learns_nothing_and_is_audited_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, _b) = shop(dir.path());
    let da = a.start(&[]);
    let real = a.ok(&["invite"]);
    let mut forged = tillmesh_mesh::Ticket::decode(real.trim()).expect("ticket");
    forged.secret = [7; 32];
    let forged = forged.encode();
    // Fifteen attempts, each from a new machine (a new key), naming a till that
    // exists and one that does not: the same answer every time.
    let mut answers = std::collections::BTreeSet::new();
    for i in 0..15 {
        let stranger = Till::new(dir.path(), &format!("x{i}"));
        let name = if i % 2 == 0 { "A" } else { "ZZ" };
        let out = stranger.run(&["join", &forged, "--till", name, "--bind", "127.0.0.1:0"]);
        assert_eq!(out.status.code(), Some(3), "attempt {i}");
        answers.insert(String::from_utf8_lossy(&out.stderr).into_owned());
        assert!(!stranger.home.join("store.redb").exists());
    }
    assert_eq!(answers.len(), 1, "{answers:?}");
    let refused = a
        .json(&["audit"])
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["kind"] == "refused")
        .count();
    assert_eq!(refused, 1, "fifteen forged tickets, one audit entry");
    // The real ticket still works.
    let b = Till::new(dir.path(), "b2");
    let joined = b.ok(&["join", real.trim(), "--till", "B2", "--bind", "127.0.0.1:0"]);
    assert!(joined.contains("Joined"), "{joined}");
    da.stop();
}
