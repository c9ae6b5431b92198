//! A till back after a week off: while it was away the other tills of the store
//! recorded a week of sales; it comes back and catches up through sync sessions
//! (real iroh endpoints on loopback, the node's own anti-entropy round with up to
//! `fanout` peers at once). Measures the time until its documents equal the
//! peers', and the bytes sent.
//!
//! ```text
//! cargo run --release -p tillmesh-sim --bin catchup-sim -- [--tills 100] [--days 7]
//!     [--sales 350000] [--peers 1] [--products 2000]
//! ```
//! `--sales` is spread over the other `--tills - 1` tills and `--days` days, one
//! document per till and day, each change exactly as that till would have written
//! it (`workload::day_of_sales`). `--peers` tills hold the whole week and serve the
//! catch-up; each is filled directly, which takes most of the run's time.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Result;
use rand::SeedableRng;
use tillmesh_mesh::{Node, NodeConfig, StoreHandle};
use tillmesh_sim::report::{bytes_sent, flags, init_logs};
use tillmesh_sim::workload;
use tillmesh_store::{Day, DocId, Role, TillKey, TillName, test_utils};

struct Args {
    tills: usize,
    days: usize,
    sales: usize,
    peers: usize,
    products: usize,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        tills: 100,
        days: 7,
        sales: 350_000,
        peers: 1,
        products: 2000,
    };
    for (flag, v) in flags()? {
        match flag.as_str() {
            "--tills" => a.tills = v.parse()?,
            "--days" => a.days = v.parse()?,
            "--sales" => a.sales = v.parse()?,
            "--peers" => a.peers = v.parse()?,
            "--products" => a.products = v.parse()?,
            _ => anyhow::bail!("unknown flag {flag}"),
        }
    }
    anyhow::ensure!(
        a.tills >= 2 && a.peers >= 1 && a.days >= 1,
        "need 2 tills, 1 peer, 1 day"
    );
    Ok(a)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<()> {
    let a = parse_args()?;
    init_logs();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    // Tills 0..peers serve the catch-up; the last one was away.
    let away = a.peers;
    let names: Vec<String> = (0..=a.peers).map(|i| format!("T{i:03}")).collect();
    let mut stores = test_utils::certified_in_memory("Sim", &names, |f| {
        workload::add_products(f, a.products).expect("products");
    });
    let keys: Vec<TillKey> = stores.iter().map(|(_, k)| k.clone()).collect();

    // The week the till missed, on every serving peer.
    let sellers = a.tills - 1;
    let per_day = a.sales.div_ceil(sellers * a.days);
    let total = sellers * a.days * per_day;
    let first_day = Day::from_unix_ms(1_767_225_600_000); // 2026-01-01
    let start = Instant::now();
    let mut week_docs = Vec::new();
    let seller_keys: Vec<TillKey> = (0..sellers).map(|_| TillKey::generate()).collect();
    let seller_names: Vec<String> = (0..sellers).map(|t| format!("S{t:03}")).collect();
    let enrol: Vec<(TillKey, &str, Role)> = seller_keys
        .iter()
        .zip(&seller_names)
        .map(|(k, n)| (k.clone(), n.as_str(), Role::Till))
        .collect();
    test_utils::certify_more(&mut stores, &enrol);
    let store_id = stores[0].0.store_id();
    for (t, seller) in seller_keys.iter().enumerate() {
        let till = seller.till_id();
        let name: TillName = seller_names[t].parse()?;
        for d in 0..a.days {
            let day = first_day.add_days(d as i64);
            let (changes, proofs) = workload::signed_day_of_sales(
                seller,
                &store_id,
                &name,
                day,
                (d * per_day) as u64 + 1,
                per_day,
                a.products,
                &mut rng,
            );
            for (s, _) in stores.iter_mut().take(a.peers) {
                s.apply_changes(&DocId::Sales(till, day), &changes, &proofs)?;
            }
            week_docs.push(DocId::Sales(till, day));
        }
        if (t + 1) % 10 == 0 {
            eprintln!(
                "generated the week of {} tills in {:.0?}",
                t + 1,
                start.elapsed()
            );
        }
    }
    eprintln!(
        "generated {total} sales ({sellers} tills x {} days x {per_day}) on {} peer(s) in {:.1?}",
        a.days,
        a.peers,
        start.elapsed()
    );

    // Every till of the week is a certified member (their proofs count only
    // so), but only the serving peers run: a round goes to every member, so it
    // reaches them (the others fail at once, having no address), at most
    // MAX_CONCURRENT_SESSIONS at a time, as a daemon's round would.
    let config = NodeConfig {
        bind: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        sync_interval: Duration::from_secs(3600),
        fanout: a.tills,
        ..NodeConfig::default()
    };
    let mut handles = Vec::new();
    let mut nodes = Vec::new();
    for (mut s, k) in stores {
        // The setup's changes are where they belong already: a daemon's outbox
        // holds only what the till did since it started.
        let _ = s.take_outbox();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let (h, _thread) = StoreHandle::spawn(s, Some(tx));
        nodes.push(Node::spawn(h.clone(), &k, config.clone(), Some(rx)).await?);
        handles.push(h);
    }
    // What the till must end up with: the heads of every document of the week.
    let week: Vec<DocId> = week_docs.clone();
    let target = handles[0]
        .call(move |s| {
            week.iter()
                .map(|d| s.heads(d))
                .collect::<Result<Vec<_>, _>>()
        })
        .await??;
    let before: Vec<u64> = nodes.iter().map(bytes_sent).collect();
    // The till comes back: it learns where its peers are and runs its round.
    let t0 = Instant::now();
    for (i, n) in nodes.iter().enumerate() {
        for (j, m) in nodes.iter().enumerate() {
            if i != j {
                n.add_addr(&keys[j].till_id(), &m.addr());
            }
        }
    }
    nodes[away].sync_now();
    // Documents not yet caught up, with the heads they must reach. Each poll
    // checks only those, so polling does not hold the store for longer and longer
    // (the till applies what arrives in short steps, and a poll waits its turn
    // between them).
    let mut remaining: Vec<(DocId, Vec<tillmesh_store::ChangeHash>)> =
        week_docs.iter().copied().zip(target).collect();
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let check = remaining.clone();
        remaining = handles[away]
            .call(move |s| -> Result<Vec<_>, tillmesh_store::StorageError> {
                let mut behind = Vec::new();
                for (d, want) in check {
                    if s.heads(&d)? != want {
                        behind.push((d, want));
                    }
                }
                Ok(behind)
            })
            .await??;
        if remaining.is_empty() {
            break;
        }
        if t0.elapsed() > Duration::from_secs(1800) {
            anyhow::bail!("no catch-up in 30 minutes");
        }
    }
    let took = t0.elapsed();
    let bytes: u64 = nodes
        .iter()
        .zip(&before)
        .map(|(n, b)| bytes_sent(n) - b)
        .sum();
    println!(
        "## A till back after {} days away: {total} sales from {sellers} tills\n",
        a.days
    );
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| catch-up through sync sessions with {} peer(s) at once | {:.1} s |",
        a.peers.min(3),
        took.as_secs_f64()
    );
    println!(
        "| sales per second | {:.0} |",
        total as f64 / took.as_secs_f64()
    );
    println!(
        "| bytes sent by all endpoints | {} ({} per sale) |",
        bytes,
        bytes / total as u64
    );
    // All at once: a node closing waits for its peers to acknowledge.
    let mut closing = tokio::task::JoinSet::new();
    for n in nodes {
        closing.spawn(n.shutdown());
    }
    while closing.join_next().await.is_some() {}
    Ok(())
}
