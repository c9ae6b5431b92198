//! The store's relay from the command line: over HTTPS, tills that may only use
//! the relay join and sync through it, trusting its certificate by the
//! fingerprint in the store's configuration and in the invitation ticket; and a
//! relay added while the daemons run is in use on every till without a restart.

use crate::common;

use common::{Till, start_relay_with, wait_for};

fn receipts(t: &Till) -> Vec<String> {
    t.json(&["sales"])
        .as_array()
        .expect("sales list")
        .iter()
        .map(|s| s["receipt"].as_str().expect("receipt").to_string())
        .collect()
}

#[test]
fn relay_only_tills_join_and_sync_through_an_https_relay() {
    let mut dir = tempfile::tempdir().expect("tempdir");
    dir.disable_cleanup(std::env::var_os("TILLMESH_TEST_KEEP").is_some());
    let (_relay, url, cert) =
        start_relay_with(&dir.path().join("relay"), &["--https", "127.0.0.1:0"]);
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");

    // Bad certificate files are refused with the file named.
    let bad = Till::new(dir.path(), "bad").run(&[
        "relay",
        "--bind",
        "127.0.0.1:0",
        "--https",
        "127.0.0.1:0",
        "--tls-cert",
        "/nonexistent/relay.pem",
        "--tls-key",
        "/nonexistent/relay-key.pem",
    ]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("/nonexistent/relay.pem"),
        "{bad:?}"
    );

    let a = Till::new(dir.path(), "a");
    // A relay URL that is not one is refused, and nothing is made.
    let bad = a.run(&[
        "init",
        "--store",
        "TLS Shop",
        "--till",
        "A",
        "--relay",
        "10.0.0.2:3340",
    ]);
    assert_eq!(bad.status.code(), Some(3), "{bad:?}");
    assert!(!a.home.join("store.redb").exists());
    a.ok(&[
        "init", "--store", "TLS Shop", "--till", "A", "--relay", &url,
    ]);
    a.ok(&["relays", "add", &url, "--cert", &cert]);
    a.ok(&["product", "add", "TEA", "--name", "Tea", "--price", "2.00"]);
    let _da = a.start(&["--relay-only"]);

    // The ticket carries the relay's fingerprint: B reaches A only through it.
    let b = Till::new(dir.path(), "b");
    let ticket = a.ok(&["invite"]);
    let bad = b.run(&["join", ticket.trim(), "--till", "B", "--relay", "ftp://x"]);
    assert_eq!(bad.status.code(), Some(3), "{bad:?}");
    assert!(!b.home.join("store.redb").exists());
    b.join(&a, "B");
    let _db = b.start(&["--relay-only"]);

    let sale = a.json(&["sale", "--line", "TEA", "--tender", "cash"]);
    let r = sale["receipt"].as_str().expect("receipt").to_string();
    wait_for("A's sale to reach B through the HTTPS relay", || {
        receipts(&b).contains(&r)
    });
    wait_for("B's status to show the relay path", || {
        let s = b.json(&["status"]);
        s["tills"]
            .as_array()
            .is_some_and(|t| t.iter().any(|x| x["name"] == "A" && x["path"] == "relay"))
    });
}

/// The relay `t`'s daemon is connected to now, by `status`.
fn relay_connected(t: &Till) -> Option<String> {
    t.json(&["status"])["self"]["relay_connected"]
        .as_str()
        .map(|u| u.trim_end_matches('/').to_string())
}

#[test]
fn a_relay_added_while_the_daemons_run_is_used_at_once_everywhere() {
    let mut dir = tempfile::tempdir().expect("tempdir");
    dir.disable_cleanup(std::env::var_os("TILLMESH_TEST_KEEP").is_some());
    let a = Till::new(dir.path(), "a");
    a.ok(&["init", "--store", "Late Relay Shop", "--till", "A"]);
    a.ok(&["product", "add", "TEA", "--name", "Tea", "--price", "2.00"]);
    let _da = a.start(&[]);
    let b = Till::new(dir.path(), "b");
    b.join(&a, "B");
    let _db = b.start(&[]);
    assert_eq!(relay_connected(&a), None, "no relay yet");
    let text = a.ok(&["status"]);
    assert!(!text.contains("relay:"), "{text}");

    // The store gets a relay; A's daemon takes the command, B hears of it by sync.
    let (_relay, url, cert) = start_relay_with(&dir.path().join("relay"), &[]);
    a.ok(&["relays", "add", &url, "--cert", &cert]);
    for t in [&a, &b] {
        wait_for("each daemon to connect to the new relay", || {
            relay_connected(t).as_deref() == Some(url.as_str())
        });
    }
    let text = b.ok(&["status"]);
    assert!(text.contains(&format!("relay: {url}")), "{text}");

    // The relay moves to another machine: the new one is added, the old one
    // removed, and the daemons follow.
    let (_relay2, url2, cert2) = start_relay_with(&dir.path().join("relay2"), &[]);
    a.ok(&["relays", "add", &url2, "--cert", &cert2]);
    a.ok(&["relays", "remove", &url]);
    for t in [&a, &b] {
        wait_for("each daemon to move to the new relay", || {
            relay_connected(t).as_deref() == Some(url2.as_str())
        });
    }
}
