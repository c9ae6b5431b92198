//! The example POS client (examples/pos_client.py) against a live daemon: it
//! finds a product by barcode, and rings up sales through a clean restart and
//! a `kill -9` of the daemon, each recorded exactly once.

use crate::common;

use std::io::BufRead;
use std::process::{Command, Stdio};

use common::Till;

fn client() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/pos_client.py")
}

#[test]
fn the_example_client_rings_sales_once_through_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let till = Till::new(dir.path(), "till-1");
    till.ok(&["init", "--store", "POS Shop", "--till", "T1"]);
    till.ok(&[
        "product",
        "add",
        "BREAD",
        "--name",
        "Bread",
        "--price",
        "2.50",
        "--barcode",
        "4006381333931",
    ]);
    let mut daemon = till.start(&[]);
    let scan = Command::new("python3")
        .arg(client())
        .args([
            "--home",
            till.home.to_str().expect("utf-8"),
            "scan",
            "4006381333931",
        ])
        .output()
        .expect("python3 (the example client needs it)");
    assert!(
        scan.status.success(),
        "{}",
        String::from_utf8_lossy(&scan.stderr)
    );
    let found: serde_json::Value = serde_json::from_slice(&scan.stdout).expect("JSON");
    assert_eq!(found[0]["sku"], "BREAD");

    let n = 40;
    let mut ring = Command::new("python3")
        .arg(client())
        .args([
            "--home",
            till.home.to_str().expect("utf-8"),
            "ring",
            &n.to_string(),
        ])
        .args(["--code", "4006381333931"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3");
    let mut lines = std::io::BufReader::new(ring.stdout.take().expect("stdout")).lines();
    let mut sold = Vec::new();
    let mut next = |sold: &mut Vec<serde_json::Value>| {
        let l = lines.next().expect("a line per sale").expect("line");
        sold.push(serde_json::from_str::<serde_json::Value>(&l).expect("JSON"));
    };
    for _ in 0..10 {
        next(&mut sold);
    }
    // A clean restart in the middle of the run.
    daemon.stop();
    daemon = till.start(&[]);
    for _ in 0..10 {
        next(&mut sold);
    }
    // And a crash.
    daemon.child.kill().expect("kill -9");
    daemon.child.wait().expect("wait");
    daemon.home = None;
    let _daemon = till.start(&[]);
    while sold.len() < n {
        next(&mut sold);
    }
    assert!(ring.wait().expect("client").success());
    let mut receipts: Vec<&str> = sold
        .iter()
        .map(|s| s["receipt"].as_str().expect("receipt"))
        .collect();
    receipts.sort_unstable();
    receipts.dedup();
    assert_eq!(receipts.len(), n, "every sale its own receipt");
    assert_eq!(till.receipts().len(), n, "each recorded once, none lost");
}
