//! A daemon starting while commands run on its till: the daemon waits for a
//! command that holds the store instead of exiting, a command that meets a
//! starting daemon waits for it, and no sale is refused or lost on the way.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::Till;

#[test]
fn daemons_start_under_a_loop_of_sales_and_status_calls() {
    let dir = tempfile::tempdir().expect("dir");
    let a = Arc::new(Till::new(dir.path(), "a"));
    a.ok(&["init", "--store", "Busy Shop", "--till", "A"]);
    a.ok(&["product", "add", "TEA", "--name", "Tea", "--price", "2.00"]);
    let stop = Arc::new(AtomicBool::new(false));
    let cashier = {
        let (a, stop) = (a.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut rung = Vec::new();
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                for args in [
                    &["sale", "--line", "TEA", "--tender", "cash", "--json"][..],
                    &["status"][..],
                ] {
                    let out = a.run(args);
                    if !out.status.success() {
                        failures.push(format!(
                            "{args:?}: {}",
                            String::from_utf8_lossy(&out.stderr)
                        ));
                    } else if args[0] == "sale" {
                        let v: serde_json::Value =
                            serde_json::from_slice(&out.stdout).expect("sale JSON");
                        rung.push(v["receipt"].as_str().expect("receipt").to_string());
                    }
                }
            }
            (rung, failures)
        })
    };
    // Three daemon starts while the cashier rings up: each comes up (`start`
    // waits for its API), and each stops cleanly.
    for _ in 0..3 {
        std::thread::sleep(std::time::Duration::from_millis(300));
        let d = a.start(&[]);
        std::thread::sleep(std::time::Duration::from_millis(700));
        d.stop();
    }
    stop.store(true, Ordering::Relaxed);
    let (rung, failures) = cashier.join().expect("cashier");
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(rung.len() >= 3, "only {} sales", rung.len());
    let mut held = a.receipts();
    held.sort();
    let mut rung_sorted = rung.clone();
    rung_sorted.sort();
    assert_eq!(held, rung_sorted, "every sale rung up is held, once");
}
