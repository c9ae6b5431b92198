//! The store's relay over HTTPS, from the command line: tills that may only use
//! the relay join and sync through it, trusting its certificate by the
//! fingerprint in the store's configuration and in the invitation ticket.

mod common;

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
    a.ok(&[
        "init", "--store", "TLS Shop", "--till", "A", "--relay", &url,
    ]);
    a.ok(&["relays", "add", &url, "--cert", &cert]);
    a.ok(&["product", "add", "TEA", "--name", "Tea", "--price", "2.00"]);
    let _da = a.start(&["--relay-only"]);

    // The ticket carries the relay's fingerprint: B reaches A only through it.
    let b = Till::new(dir.path(), "b");
    let ticket = a.ok(&["invite"]);
    let joined = b.ok(&[
        "join",
        ticket.trim(),
        "--till",
        "B",
        "--bind",
        "127.0.0.1:0",
    ]);
    assert!(joined.contains("Joined"), "{joined}");
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
