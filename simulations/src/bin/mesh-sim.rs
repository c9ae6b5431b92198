//! A store of many tills on one machine: real iroh endpoints on loopback, gossip
//! and anti-entropy as in the daemon. Measures how long a sale takes to reach every
//! till (p50/p99) and how many bytes the mesh sends per sale.
//!
//! ```text
//! cargo run --release -p tillmesh-sim --bin mesh-sim -- [--tills 100] [--sales 100] [--gap-ms 100]
//!     [--sync-s 60] [--deadline-s 120] [--warmup-s 30]
//! ```
//! Bytes per sale count everything the endpoints send while the sales are made
//! (gossip, heartbeats, anti-entropy), divided by the number of sales.
//!
//! With `--sync-s` far above `--deadline-s`, a sale that is not on every till by
//! the deadline was missed by gossip: it is counted and the run goes on. Before
//! the sales the run prints the shape of the gossip swarm (neighbours per till,
//! connected components, links only one side knows).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Result;
use rand::{Rng, SeedableRng};
use tillmesh_mesh::{Node, NodeConfig, StoreHandle};
use tillmesh_sim::report::{bytes_sent, flags, init_logs, percentile};
use tillmesh_store::{Receipt, Tender, TillId, TillKey, test_utils};

struct Args {
    tills: usize,
    sales: usize,
    gap_ms: u64,
    sync_s: u64,
    deadline_s: u64,
    warmup_s: u64,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        tills: 100,
        sales: 100,
        gap_ms: 100,
        sync_s: 60,
        deadline_s: 120,
        warmup_s: 30,
    };
    for (flag, v) in flags()? {
        match flag.as_str() {
            "--tills" => a.tills = v.parse()?,
            "--sales" => a.sales = v.parse()?,
            "--gap-ms" => a.gap_ms = v.parse()?,
            "--sync-s" => a.sync_s = v.parse()?,
            "--deadline-s" => a.deadline_s = v.parse()?,
            "--warmup-s" => a.warmup_s = v.parse()?,
            _ => anyhow::bail!("unknown flag {flag}"),
        }
    }
    Ok(a)
}

fn sent_bytes(nodes: &[Node]) -> u64 {
    nodes.iter().map(bytes_sent).sum()
}

/// The gossip swarm now: neighbours per till (min, mean, max), connected
/// components, and links only one side lists.
fn swarm_shape(nodes: &[Node], keys: &[TillKey]) -> Shape {
    let index: HashMap<TillId, usize> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| (k.till_id(), i))
        .collect();
    let lists: Vec<HashSet<usize>> = nodes
        .iter()
        .map(|n| {
            n.gossip_neighbour_ids()
                .iter()
                .filter_map(|t| index.get(t).copied())
                .collect()
        })
        .collect();
    let mut one_sided = 0;
    let mut parent: Vec<usize> = (0..nodes.len()).collect();
    fn root(p: &mut [usize], mut i: usize) -> usize {
        while p[i] != i {
            p[i] = p[p[i]];
            i = p[i];
        }
        i
    }
    for (i, l) in lists.iter().enumerate() {
        for &j in l {
            if !lists[j].contains(&i) {
                one_sided += 1;
                if std::env::var_os("TILLMESH_LOG").is_some() {
                    eprintln!(
                        "one-sided: {} lists {} as a neighbour, not the other way",
                        keys[i].till_id().fmt_short(),
                        keys[j].till_id().fmt_short()
                    );
                }
            }
            let (a, b) = (root(&mut parent, i), root(&mut parent, j));
            parent[a] = b;
        }
    }
    let components: HashSet<usize> = (0..nodes.len()).map(|i| root(&mut parent, i)).collect();
    let counts: Vec<usize> = lists.iter().map(|l| l.len()).collect();
    let min = counts.iter().copied().min().unwrap_or(0);
    Shape {
        connected: components.len() == 1 && min > 0,
        text: format!(
            "neighbours per till min {} mean {:.1} max {}, {} connected component(s), {} one-sided link(s)",
            min,
            counts.iter().sum::<usize>() as f64 / counts.len().max(1) as f64,
            counts.iter().max().unwrap_or(&0),
            components.len(),
            one_sided
        ),
    }
}

struct Shape {
    connected: bool,
    text: String,
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<()> {
    let a = parse_args()?;
    init_logs();
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);

    // The founder certifies every till; every till starts from its documents.
    let names: Vec<String> = (0..a.tills).map(|i| format!("T{i:03}")).collect();
    let stores = test_utils::certified_in_memory("Sim", &names, |f| {
        f.add_product(test_utils::product("TEA", 200))
            .expect("product");
    });
    let keys: Vec<TillKey> = stores.iter().map(|(_, k)| k.clone()).collect();

    let start = Instant::now();
    let mut handles = Vec::new();
    let mut nodes = Vec::new();
    for (mut s, k) in stores {
        // The setup's changes are on every till already: a daemon's outbox holds
        // only what the till did since it started.
        let _ = s.take_outbox();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let (h, _thread) = StoreHandle::spawn(s, Some(tx));
        let node = Node::spawn(
            h.clone(),
            &k,
            NodeConfig {
                bind: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
                sync_interval: Duration::from_secs(a.sync_s),
                ..NodeConfig::default()
            },
            Some(rx),
        )
        .await?;
        handles.push(h);
        nodes.push(node);
    }
    for (i, n) in nodes.iter().enumerate() {
        for (j, m) in nodes.iter().enumerate() {
            if i != j {
                n.add_addr(&keys[j].till_id(), &m.addr());
            }
        }
    }
    for n in &nodes {
        n.sync_now();
    }
    eprintln!("{} tills up in {:.1?}", a.tills, start.elapsed());
    // Wait for the gossip swarm to form (one connected component, nobody alone),
    // at most --warmup-s.
    let formed = Instant::now();
    loop {
        let shape = swarm_shape(&nodes, &keys);
        if shape.connected || formed.elapsed() > Duration::from_secs(a.warmup_s) {
            eprintln!(
                "gossip swarm after {:.1?}: {}",
                formed.elapsed(),
                shape.text
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Let the start's traffic (joins, every till's first address gossiped once it
    // has a neighbour) die down: under 2 KB/s per till, or --warmup-s more.
    let quiet = Instant::now();
    loop {
        let b0 = sent_bytes(&nodes);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rate = sent_bytes(&nodes) - b0;
        if rate < 2_000 * a.tills as u64 || quiet.elapsed() > Duration::from_secs(a.warmup_s) {
            eprintln!(
                "start traffic died down after {:.1?} more ({} bytes/s now, {} bytes sent since start)",
                quiet.elapsed(),
                rate,
                sent_bytes(&nodes)
            );
            break;
        }
    }
    if std::env::var_os("TILLMESH_LOG").is_some() {
        for (i, k) in keys.iter().enumerate() {
            eprintln!("T{i:03} is {}", k.till_id().fmt_short());
        }
    }

    let bytes_before = sent_bytes(&nodes);
    let mut everywhere = Vec::new();
    let mut arrivals = Vec::new();
    let mut missed = Vec::new();
    for _ in 0..a.sales {
        let till = rng.random_range(0..a.tills);
        let t0 = Instant::now();
        let entry = handles[till]
            .call(|s| s.record_sale(test_utils::sale("TEA", 1, Tender::Card)))
            .await??;
        let receipt: Receipt = entry.receipt.clone();
        let mut missing: Vec<usize> = (0..a.tills).filter(|i| *i != till).collect();
        while !missing.is_empty() {
            let mut still = Vec::new();
            for i in missing {
                let r = receipt.clone();
                if handles[i].call(move |s| s.has_receipt(&r)).await?? {
                    arrivals.push(t0.elapsed());
                } else {
                    still.push(i);
                }
            }
            missing = still;
            if t0.elapsed() > Duration::from_secs(a.deadline_s) {
                eprintln!(
                    "sale {receipt} from T{till:03} did not reach {:?} in {} s; swarm: {}",
                    missing
                        .iter()
                        .map(|i| format!("T{i:03}"))
                        .collect::<Vec<_>>(),
                    a.deadline_s,
                    swarm_shape(&nodes, &keys).text
                );
                missed.push(missing.len());
                break;
            }
            if !missing.is_empty() {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        if missing.is_empty() {
            everywhere.push(t0.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(a.gap_ms)).await;
    }
    let bytes = sent_bytes(&nodes) - bytes_before;
    eprintln!(
        "gossip swarm at the end: {}",
        swarm_shape(&nodes, &keys).text
    );
    everywhere.sort();
    arrivals.sort();
    let ms = |d: Duration| format!("{:.0} ms", d.as_secs_f64() * 1e3);
    println!("## {} tills on loopback, {} sales\n", a.tills, a.sales);
    println!(
        "Sales on every till within {} s: {} of {}{}.\n",
        a.deadline_s,
        everywhere.len(),
        a.sales,
        if missed.is_empty() {
            String::new()
        } else {
            format!(
                " (the others missed {} till(s) in all)",
                missed.iter().sum::<usize>()
            )
        }
    );
    if everywhere.is_empty() {
        anyhow::bail!("no sale reached every till");
    }
    println!("| measure | p50 | p99 | max |");
    println!("|---|---|---|---|");
    println!(
        "| sale on one till -> on every till | {} | {} | {} |",
        ms(percentile(&everywhere, 0.5)),
        ms(percentile(&everywhere, 0.99)),
        ms(*everywhere.last().unwrap_or(&Duration::ZERO))
    );
    println!(
        "| sale on one till -> on another till | {} | {} | {} |",
        ms(percentile(&arrivals, 0.5)),
        ms(percentile(&arrivals, 0.99)),
        ms(*arrivals.last().unwrap_or(&Duration::ZERO))
    );
    println!(
        "\nBytes sent by all tills while the sales were made: {} ({} per sale, {} per sale per till).",
        bytes,
        bytes / a.sales as u64,
        bytes / (a.sales * a.tills) as u64
    );
    // All at once: a node closing waits for its peers to acknowledge.
    let mut closing = tokio::task::JoinSet::new();
    for n in nodes {
        closing.spawn(n.shutdown());
    }
    while closing.join_next().await.is_some() {}
    Ok(())
}
