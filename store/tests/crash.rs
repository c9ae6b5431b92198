//! Crash safety with a real file and real fsync: a child process records sales
//! (and now and then a void and a stock adjustment) on a till store, printing
//! each receipt as soon as the call returns, and is killed with SIGKILL at a
//! random moment, often in the middle of a commit or of a compaction (the store
//! compacts every few changes here). After every kill the store must open, hold
//! every receipt the child acknowledged, number its receipts 1..=N without gaps
//! or duplicates, continue at N+1, keep intact audit chains, and have views equal
//! to what a full rebuild from the documents gives.
//!
//! The child is this test binary run again with `--exact crash::crash_child`; the
//! `crash_child` test does nothing unless `TILLMESH_CRASH_CHILD_DIR` is set. Each
//! kill comes a random few milliseconds after a random number of acknowledged
//! sales, drawn from a seeded RNG whose seed is printed (set `TILLMESH_CRASH_SEED`
//! to reuse one; where exactly a kill lands still varies from run to run).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tillmesh_store::{
    EntryKind, LineRequest, NewProduct, NewStore, Role, SaleRequest, Sku, Store, StoreId,
    StoreOptions, Tender, TillKey, Unit,
};

const CHILD_ENV: &str = "TILLMESH_CRASH_CHILD_DIR";
const ITERATIONS: usize = 36;

fn key() -> TillKey {
    TillKey::from_seed([42; 32])
}

fn opts() -> StoreOptions {
    StoreOptions {
        compact_after: 4,
        ..StoreOptions::default()
    }
}

fn store_path(dir: &Path) -> PathBuf {
    dir.join("till.redb")
}

fn milk() -> Sku {
    "MILK".parse().expect("sku")
}

/// The child: record sales until killed, acknowledging each on stdout.
#[test]
fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let mut store =
        Store::open(&store_path(Path::new(&dir)), key(), opts()).expect("child opens the store");
    let mut out = std::io::stdout().lock();
    writeln!(out, "READY")
        .and_then(|()| out.flush())
        .expect("stdout");
    for i in 0u64.. {
        let sale = store
            .record_sale(SaleRequest {
                lines: vec![LineRequest {
                    code: "MILK".into(),
                    qty: Some(1 + (i % 3) as i64),
                    grams: None,
                    discount_cents: 0,
                }],
                tender: if i % 2 == 0 {
                    Tender::Cash
                } else {
                    Tender::Card
                },
            })
            .expect("sale");
        writeln!(out, "OK {}", sale.receipt)
            .and_then(|()| out.flush())
            .expect("stdout");
        if i % 5 == 4 {
            // An audited stock movement, in its own documents.
            store
                .adjust_stock(&milk(), 3, "delivery recount")
                .expect("adjust");
        }
        if i % 7 == 6 {
            let void = store.void(&sale.receipt).expect("void");
            writeln!(out, "OK {}", void.receipt)
                .and_then(|()| out.flush())
                .expect("stdout");
        }
    }
}

struct Iteration {
    acked: Vec<String>,
    killed: bool,
}

/// Run the child once, kill it `jitter` after its `acks`-th acknowledgement
/// (counting from when it has the store open), and return what it acknowledged.
/// Counting acknowledgements rather than time puts the kills at the same places
/// of the work on fast and slow disks alike.
fn run_child(dir: &Path, acks: usize, jitter: Duration) -> Iteration {
    let stderr_path = dir.join("child.stderr");
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "crash::crash_child",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_ENV, dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(File::create(&stderr_path).expect("stderr file"))
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut acked = Vec::new();
    let take = |line: String, acked: &mut Vec<String>| {
        if let Some(r) = line.strip_prefix("OK ") {
            acked.push(r.to_string());
        }
    };
    // Count from when the child has the store open.
    let ready_by = Instant::now() + Duration::from_secs(20);
    loop {
        match rx.recv_timeout(ready_by.saturating_duration_since(Instant::now())) {
            // libtest prints `test crash::crash_child ... ` without a newline first.
            Ok(line) if line.ends_with("READY") => break,
            Ok(_) => {}
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "child never got ready: {}",
                    std::fs::read_to_string(&stderr_path).unwrap_or_default()
                );
            }
        }
    }
    while acked.len() < acks {
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) => take(line, &mut acked),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "child stopped acknowledging after {}: {}",
                    acked.len(),
                    std::fs::read_to_string(&stderr_path).unwrap_or_default()
                );
            }
        }
    }
    std::thread::sleep(jitter);
    // SIGKILL on Unix: no destructor, no flush, no clean close of the database.
    child.kill().expect("kill child");
    let status = child.wait().expect("wait child");
    // Lines the child wrote before it died were acknowledged too.
    for line in rx.iter() {
        take(line, &mut acked);
    }
    reader.join().expect("reader thread");
    #[cfg(unix)]
    let killed = {
        use std::os::unix::process::ExitStatusExt;
        status.signal() == Some(9)
    };
    #[cfg(not(unix))]
    let killed = !status.success();
    assert!(
        killed,
        "the child ended on its own ({status}) instead of being killed: {}",
        std::fs::read_to_string(&stderr_path).unwrap_or_default()
    );
    Iteration { acked, killed }
}

/// Open the store after a kill and check everything a crash must not break.
fn check_after_crash(dir: &Path, all_acked: &BTreeSet<String>, seed: u64, round: usize) -> u64 {
    let ctx = format!("seed {seed}, after kill {round}");
    let mut store = Store::open(&store_path(dir), key(), opts())
        .unwrap_or_else(|e| panic!("{ctx}: store does not open: {e}"));
    let till = store.till_id();
    let entries = store.sales(None, None).expect("sales");
    let mut numbers = Vec::new();
    let mut receipts = BTreeSet::new();
    for r in &entries {
        assert_eq!(r.till, till, "{ctx}: only this till sells here");
        numbers.push(r.entry.receipt.number());
        receipts.insert(r.entry.receipt.to_string());
    }
    for a in all_acked {
        assert!(
            receipts.contains(a),
            "{ctx}: acknowledged receipt {a} was lost"
        );
    }
    numbers.sort_unstable();
    let n = numbers.len() as u64;
    assert_eq!(
        numbers,
        (1..=n).collect::<Vec<_>>(),
        "{ctx}: receipt numbers have a gap or a duplicate"
    );
    assert_eq!(store.next_receipt_number(), n + 1, "{ctx}: next receipt");

    // Totals agree with the entries.
    let sales = entries
        .iter()
        .filter(|r| r.entry.kind == EntryKind::Sale)
        .count() as u64;
    let days: BTreeSet<String> = entries.iter().map(|r| r.day.clone()).collect();
    let mut counted = 0;
    for d in days {
        counted += store
            .totals(d.parse().expect("day"), till)
            .expect("totals")
            .sales;
    }
    assert_eq!(
        counted, sales,
        "{ctx}: totals count other sales than the documents"
    );

    // Audit chains are whole.
    for report in store.verify_audit().expect("verify audit") {
        assert!(
            report.intact(),
            "{ctx}: audit chain broken: {:?}",
            report.broken
        );
        assert!(
            report.missing.is_empty(),
            "{ctx}: audit entries missing: {:?}",
            report.missing
        );
    }

    // Views match a rebuild from the documents.
    let before = store.view_dump().expect("dump");
    store.rebuild_views().expect("rebuild views");
    let after = store.view_dump().expect("dump");
    if before != after {
        let diff: Vec<_> = before
            .iter()
            .filter(|(k, v)| after.get(*k) != Some(*v))
            .map(|(k, v)| (k.clone(), v.clone(), after.get(k).cloned()))
            .chain(
                after
                    .iter()
                    .filter(|(k, _)| !before.contains_key(*k))
                    .map(|(k, v)| (k.clone(), String::new(), Some(v.clone()))),
            )
            .collect();
        panic!("{ctx}: views differ from a rebuild: {diff:#?}");
    }
    n
}

#[test]
fn kill_during_writes_loses_nothing_acknowledged() {
    let seed = std::env::var("TILLMESH_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    eprintln!("crash test seed {seed} (TILLMESH_CRASH_SEED={seed} to reuse)");
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let mut store = Store::create(
            &store_path(dir.path()),
            key(),
            NewStore {
                store_id: StoreId::from_bytes([9; 16]),
                store_name: "Crash Grocers".into(),
                till_name: "T1".parse().expect("till name"),
                role: Role::Till,
                founder: true,
            },
            opts(),
        )
        .expect("create store");
        store
            .add_product(NewProduct {
                sku: milk(),
                name: "Milk 1 l".into(),
                barcodes: vec!["4006381333931".parse().expect("barcode")],
                price_cents: 119,
                unit: Unit::Each,
                tax_class: "reduced".into(),
                category: "dairy".into(),
            })
            .expect("add product");
    }

    let mut all_acked = BTreeSet::new();
    let mut kills = 0;
    let mut last_n = 0;
    for round in 0..ITERATIONS {
        // Mostly short runs; now and then a longer one, so that compactions of a
        // bigger document run too. The jitter spreads the kill over the next
        // commits and compactions.
        let acks = if rng.random_bool(0.2) {
            rng.random_range(40..120)
        } else {
            rng.random_range(0..20)
        };
        let jitter = Duration::from_micros(rng.random_range(0..4_000));
        let it = run_child(dir.path(), acks, jitter);
        if it.killed {
            kills += 1;
        }
        for a in it.acked {
            assert!(
                all_acked.insert(a.clone()),
                "seed {seed}: receipt {a} acknowledged twice"
            );
        }
        let n = check_after_crash(dir.path(), &all_acked, seed, round);
        assert!(
            n >= last_n,
            "seed {seed}: entries disappeared ({last_n} -> {n})"
        );
        last_n = n;
    }
    // Entries on file beyond those acknowledged: kills that landed between a
    // commit and its acknowledgement.
    eprintln!(
        "crash test: {kills} kills, {} receipts acknowledged, {last_n} entries on file",
        all_acked.len()
    );
    assert!(kills >= 20, "seed {seed}: only {kills} kills");
    assert!(
        !all_acked.is_empty(),
        "seed {seed}: the child never acknowledged a sale"
    );
}
