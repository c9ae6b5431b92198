//! Never lose a sale: `tillmesh sale` processes are killed with SIGKILL at random
//! moments. Every sale whose command exited successfully must survive, receipt
//! numbers must stay gap-free, and the till must keep selling afterwards.

use crate::common;

use std::time::Duration;

use common::Till;
use rand::{Rng, SeedableRng};

#[test]
fn killed_sales_never_lose_an_acknowledged_sale() {
    let seed: u64 = std::env::var("TILLMESH_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("seed {seed} (rerun with TILLMESH_TEST_SEED={seed})");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);

    let dir = tempfile::tempdir().expect("tempdir");
    let till = Till::new(dir.path(), "till-1");
    till.ok(&["init", "--store", "Crash Shop", "--till", "C1"]);
    till.ok(&["product", "add", "TEA", "--name", "Tea", "--price", "2.00"]);

    // Calibrate: how long does one sale take on this machine right now? Kills are
    // then spread over twice that, so some land inside a sale and some miss.
    let mut acknowledged = Vec::new();
    let mut took = Vec::new();
    for _ in 0..5 {
        let t = std::time::Instant::now();
        let sale = till.json(&["sale", "--line", "TEA", "--tender", "cash"]);
        took.push(t.elapsed());
        acknowledged.push(sale["receipt"].as_str().expect("receipt").to_string());
    }
    took.sort();
    let window_us = (took[2].as_micros() as u64 * 2).max(1_000);
    println!(
        "one sale takes about {:?}; killing within {window_us} µs",
        took[2]
    );
    let mut killed = 0;
    for i in 0..100 {
        // Compact every few changes so kills also land during compaction.
        let mut child = till
            .cmd(&["sale", "--line", "TEA", "--tender", "cash", "--json"])
            .env("TILLMESH_COMPACT_AFTER", "3")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn");
        let max_us = if i % 2 == 0 { window_us / 2 } else { window_us };
        std::thread::sleep(Duration::from_micros(rng.random_range(0..max_us)));
        if child.try_wait().expect("try_wait").is_none() {
            child.kill().expect("SIGKILL");
            killed += 1;
        }
        let out = child.wait_with_output().expect("wait");
        if out.status.success() {
            let sale: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
            acknowledged.push(sale["receipt"].as_str().expect("receipt").to_string());
        }
    }
    println!("{killed} killed, {} acknowledged", acknowledged.len());
    assert!(
        killed >= 10,
        "the test must really kill processes (killed {killed})"
    );
    assert!(
        acknowledged.len() >= 10,
        "and let some sales finish ({})",
        acknowledged.len()
    );

    let sales = till.json(&["sales"]);
    let receipts: Vec<String> = sales
        .as_array()
        .expect("array")
        .iter()
        .map(|s| s["receipt"].as_str().expect("receipt").to_string())
        .collect();
    for r in &acknowledged {
        assert_eq!(
            receipts.iter().filter(|x| *x == r).count(),
            1,
            "acknowledged {r} present once"
        );
    }
    let mut numbers: Vec<u64> = receipts
        .iter()
        .map(|r| {
            r.rsplit('-')
                .next()
                .and_then(|n| n.parse().ok())
                .expect("number")
        })
        .collect();
    numbers.sort_unstable();
    let expected: Vec<u64> = (1..=numbers.len() as u64).collect();
    assert_eq!(numbers, expected, "receipt numbers are gap-free");

    // The till keeps selling, with the next number.
    let next = till.json(&["sale", "--line", "TEA", "--tender", "card"]);
    assert_eq!(next["receipt"], format!("C1-{}", numbers.len() + 1));
    // Stock agrees with the sales that survived.
    let stock = till.json(&["stock", "TEA"]);
    assert_eq!(stock[0]["on_hand"], -(numbers.len() as i64 + 1));
}
