//! A long catch-up cut short by killing the till that sends it: what arrived
//! stays, and after the sender restarts the catch-up carries only the rest.

use crate::common;

use common::{Till, start_relay, wait_for};
use rand::SeedableRng;
use tillmesh_store::{Day, DocId};

/// Days of sales the away till misses, and sales per day (one document each).
const DAYS: usize = 60;
const PER_DAY: usize = 1500;

fn day(d: usize) -> Day {
    // 2026-01-01 onwards.
    Day::from_unix_ms(1_767_225_600_000).add_days(d as i64)
}

/// Sales on `till` of day `d`, through its daemon's API.
fn sales_of_day(till: &Till, d: usize) -> usize {
    till.json(&["sales", "--day", &day(d).to_string()])
        .as_array()
        .expect("a list of sales")
        .len()
}

/// Changes `till`'s daemon logged as received in sync sessions, from byte
/// `from` of its log on.
fn received_since(till: &Till, from: usize) -> usize {
    let log = std::fs::read_to_string(till.home.join("daemon.log")).expect("daemon log");
    log[from..]
        .lines()
        .filter(|l| l.contains(" synced"))
        .map(|l| {
            let v = l
                .split_whitespace()
                .find_map(|w| w.strip_prefix("received="))
                .unwrap_or_else(|| panic!("a synced line names its changes: {l}"));
            v.parse::<usize>().expect("a count")
        })
        .sum()
}

fn log_len(till: &Till) -> usize {
    std::fs::metadata(till.home.join("daemon.log"))
        .map(|m| m.len() as usize)
        .unwrap_or(0)
}

#[test]
fn a_catch_up_cut_short_by_killing_the_sender_resumes() {
    let mut dir = tempfile::tempdir().expect("tempdir");
    dir.disable_cleanup(std::env::var_os("TILLMESH_TEST_KEEP").is_some());
    println!("till homes under {}", dir.path().display());
    let (_relay, relay_url, relay_cert) = start_relay(&dir.path().join("relay"));
    let log = Some("warn,tillmesh_mesh=info");

    let a = Till::new(dir.path(), "a");
    a.ok(&[
        "init",
        "--store",
        "Catch-up Shop",
        "--till",
        "A",
        "--relay",
        &relay_url,
    ]);
    a.ok(&["relays", "add", &relay_url, "--cert", &relay_cert]);
    let da = a.start_logging(&[], log);
    let b = Till::new(dir.path(), "b");
    b.join(&a, "B");
    da.stop();

    // Weeks of A's sales that B has never seen: one document per day.
    {
        let (mut store, key) = a.open_store();
        tillmesh_sim::workload::add_products(&mut store, 20).expect("products");
        let till = store.till_id();
        let store_id = store.store_id();
        let name = store.till_name().clone();
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        for d in 0..DAYS {
            let (changes, proofs) = tillmesh_sim::workload::signed_day_of_sales(
                &key,
                &store_id,
                &name,
                day(d),
                1_000_000 + (d * PER_DAY) as u64,
                PER_DAY,
                20,
                &mut rng,
            );
            store
                .apply_changes(&DocId::Sales(till, day(d)), &changes, &proofs)
                .expect("A's sales");
        }
    }
    assert_eq!(sales_of_day(&a, DAYS - 1), PER_DAY);

    // B comes back; once the first day has arrived, A dies.
    let mut da = a.start_logging(&[], log);
    let _db = b.start_logging(&[], log);
    wait_for("B to receive the first day", || {
        sales_of_day(&b, 0) == PER_DAY
    });
    let killed = log_len(&b);
    da.child.kill().expect("kill -9 A");
    da.child.wait().expect("A is gone");
    drop(da);
    // B applies what was already on its way, then its session fails (at the
    // connection's idle timeout at the latest); what it applied stays.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    while !std::fs::read_to_string(b.home.join("daemon.log")).expect("log")[killed..]
        .contains("sync failed")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "B never noticed that A died"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let have: Vec<usize> = (0..DAYS).map(|d| sales_of_day(&b, d)).collect();
    for (d, n) in have.iter().enumerate() {
        assert!(
            *n == 0 || *n == PER_DAY,
            "day {d}: a document arrives whole or not at all, B has {n} sales"
        );
    }
    let days_held = have.iter().filter(|n| **n == PER_DAY).count();
    println!("B held {days_held} of {DAYS} days when A was killed");
    assert!(
        days_held < DAYS,
        "the catch-up was over before A was killed: make it longer"
    );
    let missing = (DAYS - days_held) * PER_DAY;

    // A restarts; B gets the rest, and only the rest.
    let mark = log_len(&b);
    let _da = a.start_logging(&[], log);
    wait_for("B to catch up", || {
        (0..DAYS)
            .rev()
            .all(|d| have[d] == PER_DAY || sales_of_day(&b, d) == PER_DAY)
    });
    // The session's report follows its last change.
    wait_for("B to log the sessions", || {
        received_since(&b, mark) >= missing
    });
    let received = received_since(&b, mark);
    println!("B received {received} changes after A restarted ({missing} sales were missing)");
    // A's restart writes a few changes of its own (its address, its audit trail).
    assert!(
        received < missing + 100,
        "the catch-up resumed instead of starting over: {received} changes for {missing} missing sales"
    );
}
