//! A rogue member against real `tillmesh run` daemons on loopback: a till that
//! copies its own key into `admin.key` gains no admin rights, and a till that
//! slips a price change past its own command line (written raw into its store
//! through the library, signed with its own key) changes nothing on the honest
//! tills, which keep syncing its sales.

mod common;

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
    let (a, b) = shop(dir.path());
    let da = a.start(&[]);
    b.join(&a, "B");
    let c = Till::new(dir.path(), "c");
    c.join(&a, "C");
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
            tx.put(ROOT, "TEA/price", field.to_string())?;
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
