//! Twenty tills as real nodes (iroh endpoints on loopback, gossip and anti-entropy
//! as in the daemon) split by random network partitions: each group keeps selling
//! and editing prices, its sales reach every till of the group and none outside it;
//! once the network heals every till holds identical documents and views, and every
//! sale exactly once. A partition is `Node::cut_off`: connections between the
//! groups are closed and refused after the handshake. Seeded: the seed is printed,
//! and `TILLMESH_TEST_SEED` replays the same partitions and sales.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use tillmesh_mesh::{Node, NodeConfig, StoreHandle};
use tillmesh_store::{Tender, TillId, test_utils};

const TILLS: usize = 20;
const SKUS: [&str; 3] = ["TEA", "MILK", "BREAD"];

struct Till {
    node: Node,
    store: StoreHandle,
    id: TillId,
}

/// Every till certified by the founder and started from its documents, as a node.
async fn store_of_tills() -> Vec<Till> {
    let names: Vec<String> = (0..TILLS).map(|i| format!("T{i:02}")).collect();
    // Managers: every till edits prices here.
    let stores = test_utils::managers_in_memory("Partition Shop", &names, |f| {
        for sku in SKUS {
            f.add_product(test_utils::product(sku, 100))
                .expect("product");
        }
    });
    let mut tills = Vec::new();
    for (s, k) in stores {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let (store, _thread) = StoreHandle::spawn(s, Some(tx));
        let node = Node::spawn(
            store.clone(),
            &k,
            NodeConfig {
                bind: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
                sync_interval: Duration::from_secs(2),
                ..NodeConfig::default()
            },
            Some(rx),
        )
        .await
        .expect("node");
        tills.push(Till {
            node,
            store,
            id: k.till_id(),
        });
    }
    for t in &tills {
        for u in &tills {
            if t.id != u.id {
                t.node.add_addr(&u.id, &u.node.addr());
            }
        }
    }
    for t in &tills {
        t.node.sync_now();
    }
    tills
}

async fn receipts(t: &Till) -> Vec<String> {
    t.store
        .call(|s| s.sales(None, None))
        .await
        .expect("call")
        .expect("sales")
        .into_iter()
        .map(|r| r.entry.receipt.to_string())
        .collect()
}

/// Wait until every till in `group` holds every sale in `sales`.
async fn wait_for(tills: &[Till], group: &[usize], sales: &BTreeSet<String>, within: Duration) {
    let start = Instant::now();
    loop {
        let mut missing = Vec::new();
        for &i in group {
            let have: BTreeSet<String> = receipts(&tills[i]).await.into_iter().collect();
            if !sales.is_subset(&have) {
                missing.push(format!("T{i:02}"));
            }
        }
        if missing.is_empty() {
            return;
        }
        assert!(
            start.elapsed() < within,
            "after {within:?}, {missing:?} still lack sales of their group"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether every till has a gossip neighbour and all of them form one swarm.
fn one_swarm(tills: &[Till]) -> bool {
    let index = |id: &TillId| tills.iter().position(|t| t.id == *id);
    let mut reached = vec![false; tills.len()];
    let mut next = vec![0];
    reached[0] = true;
    while let Some(i) = next.pop() {
        for n in tills[i].node.gossip_neighbour_ids() {
            if let Some(j) = index(&n)
                && !reached[j]
            {
                reached[j] = true;
                next.push(j);
            }
        }
    }
    reached.iter().all(|r| *r)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_nodes_on_loopback_converge_after_random_partitions() {
    let seed: u64 = std::env::var("TILLMESH_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("seed {seed} (replay with TILLMESH_TEST_SEED={seed})");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let started = Instant::now();
    let tills = store_of_tills().await;

    let mut sold: BTreeSet<String> = BTreeSet::new();
    for phase in 0..3 {
        // Split the tills into 2 or 3 groups that cannot reach each other.
        let mut order: Vec<usize> = (0..TILLS).collect();
        order.shuffle(&mut rng);
        let groups = rng.random_range(2..=3);
        let parts: Vec<Vec<usize>> = (0..groups)
            .map(|g| order.iter().copied().skip(g).step_by(groups).collect())
            .collect();
        for part in &parts {
            let others: Vec<TillId> = (0..TILLS)
                .filter(|i| !part.contains(i))
                .map(|i| tills[i].id)
                .collect();
            for &i in part {
                tills[i].node.cut_off(&others);
            }
        }
        let mut by_group = Vec::new();
        for part in &parts {
            let mut made = BTreeSet::new();
            for _ in 0..4 {
                let t = part[rng.random_range(0..part.len())];
                if rng.random_bool(0.75) {
                    let sku = SKUS[rng.random_range(0..SKUS.len())];
                    let entry = tills[t]
                        .store
                        .call(move |s| s.record_sale(test_utils::sale(sku, 1, Tender::Card)))
                        .await
                        .expect("call")
                        .expect("sale");
                    made.insert(entry.receipt.to_string());
                } else {
                    let cents = rng.random_range(50..500);
                    tills[t]
                        .store
                        .call(move |s| s.set_price(&"TEA".parse().expect("sku"), cents))
                        .await
                        .expect("call")
                        .expect("price");
                }
            }
            by_group.push(made);
        }
        // Each group's sales reach the whole group, and nobody outside it.
        for (part, made) in parts.iter().zip(&by_group) {
            wait_for(&tills, part, made, Duration::from_secs(20)).await;
        }
        for (g, made) in by_group.iter().enumerate() {
            for (h, part) in parts.iter().enumerate() {
                if g == h {
                    continue;
                }
                for &i in part {
                    let have: BTreeSet<String> = receipts(&tills[i]).await.into_iter().collect();
                    assert!(
                        made.is_disjoint(&have),
                        "phase {phase}: a sale crossed the partition to T{i:02}"
                    );
                }
            }
        }
        for made in by_group {
            sold.extend(made);
        }
        println!(
            "phase {phase}: {groups} groups, {} sales so far, {:.1?}",
            sold.len(),
            started.elapsed()
        );
    }

    // Heal: every till reaches every other again.
    for t in &tills {
        t.node.cut_off(&[]);
    }
    let all: Vec<usize> = (0..TILLS).collect();
    wait_for(&tills, &all, &sold, Duration::from_secs(30)).await;
    // The gossip swarm, split while the network was, joins up again.
    let heal = Instant::now();
    while !one_swarm(&tills) {
        assert!(
            heal.elapsed() < Duration::from_secs(30),
            "the gossip swarm is still split 30 s after the network healed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "one gossip swarm again {:.1?} after healing",
        heal.elapsed()
    );
    // Sales are in; wait for the last price edits too (same documents everywhere).
    let heal = Instant::now();
    loop {
        let mut buckets = Vec::new();
        for t in &tills {
            buckets.push(
                t.store
                    .call(|s| s.manifest_buckets())
                    .await
                    .expect("call")
                    .expect("buckets"),
            );
        }
        if buckets.iter().all(|b| *b == buckets[0]) {
            break;
        }
        assert!(
            heal.elapsed() < Duration::from_secs(30),
            "documents still differ 30 s after the sales converged"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("converged {:.1?} after start", started.elapsed());

    let reference = tills[0]
        .store
        .call(|s| s.view_dump())
        .await
        .expect("call")
        .expect("dump");
    for (i, t) in tills.iter().enumerate() {
        assert_eq!(
            t.store
                .call(|s| s.view_dump())
                .await
                .expect("call")
                .expect("dump"),
            reference,
            "T{i:02} views differ"
        );
        let have = receipts(t).await;
        let unique: BTreeSet<String> = have.iter().cloned().collect();
        assert_eq!(unique.len(), have.len(), "T{i:02} holds a sale twice");
        assert_eq!(unique, sold, "T{i:02} holds exactly the sales made");
    }
    // All at once: a node closing waits for its peers to acknowledge.
    let mut closing = tokio::task::JoinSet::new();
    for t in tills {
        closing.spawn(t.node.shutdown());
    }
    while closing.join_next().await.is_some() {}
    println!("shut down {:.1?} after start", started.elapsed());
}
