//! Twenty tills split by random network partitions: each group keeps selling and
//! editing prices and syncs only within itself; after the partitions heal, every
//! till holds identical documents and views, and every sale exactly once. Sessions
//! run the real `tillmesh/sync/1` protocol over in-memory streams. Seeded: the seed
//! is printed, and `TILLMESH_TEST_SEED` replays it.

use std::collections::BTreeSet;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use tillmesh_mesh::{StoreHandle, run_session};
use tillmesh_store::{StoreId, Tender, TillId, test_utils};

const TILLS: usize = 20;

async fn session(a: &(StoreHandle, TillId), b: &(StoreHandle, TillId), id: StoreId) -> usize {
    let (x, y) = tokio::io::duplex(256 * 1024);
    let (xr, xw) = tokio::io::split(x);
    let (yr, yw) = tokio::io::split(y);
    let (ra, rb) = tokio::join!(
        run_session(&a.0, id, b.1, xr, xw),
        run_session(&b.0, id, a.1, yr, yw)
    );
    let (ra, rb) = (ra.expect("session a"), rb.expect("session b"));
    ra.changes_received + rb.changes_received
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_tills_converge_after_random_partitions() {
    let seed: u64 = std::env::var("TILLMESH_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("seed {seed} (replay with TILLMESH_TEST_SEED={seed})");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    // Every till certified by the founder (managers: they edit prices), each
    // starting from the founder's documents.
    let names: Vec<String> = (0..TILLS).map(|i| format!("T{i:02}")).collect();
    let stores = test_utils::managers_in_memory("Partition Shop", &names, |f| {
        for sku in ["TEA", "MILK", "BREAD"] {
            f.add_product(test_utils::product(sku, 100))
                .expect("product");
        }
    });
    let id = stores[0].0.store_id();
    let mut tills: Vec<(StoreHandle, TillId)> = Vec::new();
    for (s, _) in stores {
        let t = s.till_id();
        tills.push((StoreHandle::spawn(s, None).0, t));
    }

    let mut sold: BTreeSet<String> = BTreeSet::new();
    for phase in 0..4 {
        // Split the tills into 2 to 4 groups that cannot reach each other.
        let mut order: Vec<usize> = (0..TILLS).collect();
        order.shuffle(&mut rng);
        let groups = rng.random_range(2..=4);
        let parts: Vec<Vec<usize>> = (0..groups)
            .map(|g| order.iter().copied().skip(g).step_by(groups).collect())
            .collect();
        for part in &parts {
            for _ in 0..6 {
                let t = part[rng.random_range(0..part.len())];
                if rng.random_bool(0.8) {
                    let sku = ["TEA", "MILK", "BREAD"][rng.random_range(0..3)];
                    let entry = tills[t]
                        .0
                        .call(move |s| s.record_sale(test_utils::sale(sku, 1, Tender::Card)))
                        .await
                        .expect("call")
                        .expect("sale");
                    sold.insert(entry.receipt.to_string());
                } else {
                    let cents = rng.random_range(50..500);
                    tills[t]
                        .0
                        .call(move |s| s.set_price(&"TEA".parse().expect("sku"), cents))
                        .await
                        .expect("call")
                        .expect("price");
                }
            }
            // Some sessions inside the group only.
            for _ in 0..part.len() {
                let a = part[rng.random_range(0..part.len())];
                let b = part[rng.random_range(0..part.len())];
                if a != b {
                    session(&tills[a], &tills[b], id).await;
                }
            }
        }
        println!(
            "phase {phase}: {groups} groups, {} sales so far",
            sold.len()
        );
    }

    // Heal: gossip-like random sessions until a full pass moves nothing.
    let mut passes = 0;
    loop {
        passes += 1;
        assert!(passes <= 20, "no convergence after {passes} healing passes");
        let mut moved = 0;
        for i in 0..TILLS {
            let j = (i + 1 + rng.random_range(0..TILLS - 1)) % TILLS;
            moved += session(&tills[i], &tills[j], id).await;
            moved += session(&tills[i], &tills[(i + 1) % TILLS], id).await;
        }
        if moved == 0 {
            break;
        }
    }
    println!("converged after {passes} healing passes");

    let reference = tills[0]
        .0
        .call(|s| s.view_dump())
        .await
        .expect("call")
        .expect("dump");
    let buckets = tills[0]
        .0
        .call(|s| s.manifest_buckets())
        .await
        .expect("call")
        .expect("buckets");
    for (i, (h, _)) in tills.iter().enumerate() {
        assert_eq!(
            h.call(|s| s.view_dump())
                .await
                .expect("call")
                .expect("dump"),
            reference,
            "till {i} views differ"
        );
        assert_eq!(
            h.call(|s| s.manifest_buckets())
                .await
                .expect("call")
                .expect("buckets"),
            buckets,
            "till {i} documents differ"
        );
        let receipts: Vec<String> = h
            .call(|s| s.sales(None, None))
            .await
            .expect("call")
            .expect("sales")
            .into_iter()
            .map(|r| r.entry.receipt.to_string())
            .collect();
        let unique: BTreeSet<String> = receipts.iter().cloned().collect();
        assert_eq!(unique.len(), receipts.len(), "till {i} holds a sale twice");
        assert_eq!(unique, sold, "till {i} holds exactly the sales made");
    }
}
