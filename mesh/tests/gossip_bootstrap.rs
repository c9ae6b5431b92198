//! Joining the gossip swarm before the peers' addresses are known: a till that
//! started alone (every gossip dial failed, which left iroh-gossip unwilling to
//! dial those peers again) joins once it learns where a member is, and its next
//! sale reaches the other till by gossip, with no sync session; and the till
//! that made the sale learns that it is held elsewhere from its gossip
//! neighbour, also with no sync session.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tillmesh_mesh::{Node, NodeConfig, StoreHandle};
use tillmesh_store::{Tender, TillKey, test_utils};

async fn two_members() -> Vec<(Node, StoreHandle, TillKey)> {
    let stores = test_utils::certified_in_memory("Alone Shop", &["T0".into(), "T1".into()], |f| {
        f.add_product(test_utils::product("TEA", 100))
            .expect("product");
    });
    let mut out = Vec::new();
    for (s, k) in stores {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let (h, _thread) = StoreHandle::spawn(s, Some(tx));
        let node = Node::spawn(
            h.clone(),
            &k,
            NodeConfig {
                bind: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
                // No anti-entropy round after the one at start.
                sync_interval: Duration::from_secs(3600),
                ..NodeConfig::default()
            },
            Some(rx),
        )
        .await
        .expect("node");
        out.push((node, h, k));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_till_that_started_alone_joins_once_it_learns_an_address() {
    let tills = two_members().await;
    let (a, ha, _) = &tills[0];
    let (b, hb, kb) = &tills[1];
    // Neither knows where the other is: every dial so far failed, the start's
    // sync round included.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(a.gossip_neighbours(), 0);
    // A learns B's address, B does not learn A's: B hears of A only through A's
    // gossip connection.
    a.add_addr(&kb.till_id(), &b.addr());
    let start = Instant::now();
    while a.gossip_neighbours() == 0 || b.gossip_neighbours() == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "A did not join the swarm after learning B's address"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let idb = kb.till_id();
    let unreplicated = || async move {
        ha.call(move |s| s.unreplicated(&[idb]))
            .await
            .expect("call")
            .expect("unreplicated")
            .0
    };
    let before = unreplicated().await;
    let receipt = ha
        .call(|s| s.record_sale(test_utils::sale("TEA", 1, Tender::Cash)))
        .await
        .expect("call")
        .expect("sale")
        .receipt
        .to_string();
    let start = Instant::now();
    loop {
        let have = hb
            .call(|s| s.sales(None, None))
            .await
            .expect("call")
            .expect("sales");
        if have.iter().any(|r| r.entry.receipt.to_string() == receipt) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the sale did not reach B by gossip"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The sale's changes count as held only here until B says it holds them.
    let start = Instant::now();
    let mut now = unreplicated().await;
    while now > before {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "A still counts {now} changes as held only by itself ({before} before the sale)"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        now = unreplicated().await;
    }
    assert!(
        a.links().values().all(|l| l.last_sync.is_none())
            && b.links().values().all(|l| l.last_sync.is_none()),
        "no sync session ran: gossip carried the sale"
    );
    for (n, _, _) in tills {
        n.shutdown().await;
    }
}
