//! Three tills as real `tillmesh run` processes on loopback with the store's own
//! `tillmesh relay`: enrolment with one-time tickets, sales spreading to every
//! till, a concurrent price edit ending with one price and one logged conflict, a
//! till catching up after being stopped, and a relay-only till syncing through the
//! relay.

use crate::common;

use common::{Till, start_relay, wait_for};

#[test]
fn three_tills_and_a_relay() {
    let mut dir = tempfile::tempdir().expect("tempdir");
    // TILLMESH_TEST_KEEP=1 keeps the till homes (and daemon logs) for a look.
    dir.disable_cleanup(std::env::var_os("TILLMESH_TEST_KEEP").is_some());
    println!("till homes under {}", dir.path().display());
    let (_relay, relay_url, relay_cert) = start_relay(&dir.path().join("relay"));
    assert!(relay_url.starts_with("http://127.0.0.1:"), "{relay_url}");

    let a = Till::new(dir.path(), "a");
    a.ok(&[
        "init",
        "--store",
        "Mesh Shop",
        "--till",
        "A",
        "--relay",
        &relay_url,
    ]);
    // The relay's certificate: the tills also learn their address from it. A
    // malformed fingerprint is refused and changes nothing.
    let bad = a.run(&["relays", "add", &relay_url, "--cert", "not-hex"]);
    assert_eq!(bad.status.code(), Some(3), "{bad:?}");
    assert!(!a.ok(&["relays", "list"]).contains("certificate"));
    a.ok(&["relays", "add", &relay_url, "--cert", &relay_cert]);
    let listed = a.ok(&["relays", "list"]);
    assert!(
        listed.contains(&format!(
            "{relay_url}  address discovery, certificate {relay_cert}"
        )),
        "{listed}"
    );
    a.ok(&["product", "add", "TEA", "--name", "Tea", "--price", "2.00"]);
    let da = a.start(&[]);

    let b = Till::new(dir.path(), "b");
    let c = Till::new(dir.path(), "c");
    // B sells; C is a manager's till, which may also edit the catalog.
    for (till, name, role) in [(&b, "B", "till"), (&c, "C", "manager")] {
        let ticket = till.join_as(&a, name, role);
        // A ticket works once.
        let again = Till::new(dir.path(), &format!("{name}-again"));
        let out = again.run(&[
            "join",
            ticket.trim(),
            "--till",
            "X",
            "--bind",
            "127.0.0.1:0",
        ]);
        assert_eq!(out.status.code(), Some(3), "a used ticket is refused");
        assert!(String::from_utf8_lossy(&out.stderr).contains("already used"));
    }
    let db = b.start(&[]);
    let dc = c.start(&[]);

    // A sale on B appears on A and C.
    let sale = b.json(&["sale", "--line", "TEA", "--tender", "cash"]);
    let r = sale["receipt"].as_str().expect("receipt").to_string();
    for t in [&a, &c] {
        wait_for("the sale to reach every till", || t.receipts().contains(&r));
    }

    // Concurrent price edits on A and C (both daemons stopped, so neither sees the
    // other's) end with one price everywhere and a logged conflict.
    da.stop();
    dc.stop();
    a.ok(&["product", "set-price", "TEA", "2.10"]);
    c.ok(&["product", "set-price", "TEA", "2.50"]);
    // A checkout till may not: refused up front, naming who may.
    let out = b.run(&["product", "set-price", "TEA", "0.01"]);
    assert_eq!(out.status.code(), Some(3), "a till may not change prices");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("manager"), "{err}");
    // Meanwhile B keeps selling: C will have to catch up on these.
    for _ in 0..5 {
        b.ok(&["sale", "--line", "TEA", "--tender", "card"]);
    }
    let da = a.start(&[]);
    let dc = c.start(&[]);
    wait_for("one price everywhere", || {
        let (pa, pb, pc) = (
            a.price_cents("TEA"),
            b.price_cents("TEA"),
            c.price_cents("TEA"),
        );
        pa == pb && pb == pc
    });
    assert!([210, 250].contains(&a.price_cents("TEA")));
    wait_for("the conflict to be logged on A and C", || {
        [&a, &c].iter().all(|t| {
            t.json(&["conflicts", "--all"])
                .as_array()
                .is_some_and(|l| l.len() == 1 && l[0]["key"] == "TEA/price_cents")
        })
    });
    wait_for("C to catch up on B's sales", || c.receipts().len() == 6);

    // Status on A: every till online, over a direct path.
    wait_for("A to see B and C online", || {
        let s = a.json(&["status"]);
        s["tills"].as_array().is_some_and(|t| {
            t.len() == 3
                && t.iter().filter(|x| x["name"] != "A").all(|x| {
                    // Each till's own figures arrive in its signed heartbeats.
                    x["online"] == true && x["path"] == "direct" && x["unreplicated"].is_u64()
                })
        })
    });

    // C restarted relay-only: it still syncs, and its status shows the relay path.
    dc.stop();
    let _dc = c.start(&["--relay-only"]);
    let sale = a.json(&["sale", "--line", "TEA", "--tender", "card"]);
    let r = sale["receipt"].as_str().expect("receipt").to_string();
    wait_for("a sale to reach the relay-only till", || {
        c.receipts().contains(&r)
    });
    wait_for("C's status to show the relay path", || {
        let s = c.json(&["status"]);
        s["tills"]
            .as_array()
            .is_some_and(|t| t.iter().any(|x| x["name"] == "A" && x["path"] == "relay"))
    });

    // A new backup key on the admin till reaches B and C (C over the relay); then
    // B is revoked, which makes another key that B never gets.
    let keys = |t: &Till| -> Vec<String> {
        t.json(&["keys", "list"])["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .map(|k| k["key_id"].as_str().expect("id").to_string())
            .collect()
    };
    let refused = b.run(&["keys", "rotate"]);
    assert_eq!(
        refused.status.code(),
        Some(3),
        "only the admin till rotates"
    );
    let before = keys(&a);
    let rotated = a.ok(&["keys", "rotate"]);
    let k2 = keys(&a)
        .into_iter()
        .find(|k| !before.contains(k))
        .expect("a new key on A");
    assert!(rotated.contains(&k2), "{rotated}");
    for t in [&b, &c] {
        wait_for("the new backup key to reach the till", || {
            keys(t).contains(&k2)
        });
    }
    let revoked = a.ok(&["revoke", "B"]);
    let k3 = keys(&a)
        .into_iter()
        .find(|k| !before.contains(k) && *k != k2)
        .expect("a key made at the revocation");
    assert!(revoked.contains(&k3), "{revoked}");
    wait_for("the revocation's key to reach C", || keys(&c).contains(&k3));
    assert!(
        !keys(&b).contains(&k3),
        "the revoked till never gets the new key"
    );
    // Every backup is also encrypted to the store's recovery key: its public half
    // reaches the tills, its identity stays on the admin till.
    let recovery = a.json(&["keys", "list"])["recovery"]
        .as_str()
        .expect("published at init")
        .to_string();
    assert!(a.home.join("recovery.key").exists());
    wait_for("C to learn the recovery key", || {
        c.json(&["keys", "list"])["recovery"] == recovery.as_str()
    });
    for t in [&b, &c] {
        assert!(!keys(t).contains(&recovery), "{recovery}");
        assert!(!t.home.join("recovery.key").exists());
    }
    drop(db);
    drop(da);
}
