//! The shop under test: two tills of one store, each a real `tillmesh_mesh::Node`
//! started inside its patchbay device, its redb store in a temporary directory.

use std::collections::BTreeSet;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use patchbay::Device;
use tillmesh_mesh::node::path_of;
use tillmesh_mesh::wire::SYNC_ALPN;
use tillmesh_mesh::{Node, NodeConfig, OutboxReceiver, PeerAddr, PeerLink, StoreHandle};
use tillmesh_store::{Store, StoreOptions, Tender, TillId, TillKey, test_utils};

/// Time between anti-entropy rounds (and heartbeats) of the lab's tills.
const SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// A till whose store is ready but whose node has not started.
pub struct Unstarted {
    name: String,
    key: TillKey,
    store: StoreHandle,
    outbox: OutboxReceiver,
}

/// Two members of one store, founder first, their stores in `dir`: both certified,
/// the second seeded with the founder's documents (as after joining).
pub fn two_tills(dir: &Path) -> [Unstarted; 2] {
    let names = ["A", "B"];
    let stores = test_utils::certified_stores(
        "Lab Shop",
        &names.map(String::from),
        |f| {
            f.add_product(test_utils::product("TEA", 250))
                .expect("product");
        },
        |i, key, new| {
            let file = dir.join(format!("{}.redb", names[i].to_lowercase()));
            Store::create(&file, key, new, StoreOptions::default()).expect("till store")
        },
    );
    let mut out = stores.into_iter().zip(names).map(|((store, key), name)| {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let (handle, _thread) = StoreHandle::spawn(store, Some(tx));
        Unstarted {
            name: name.to_string(),
            key,
            store: handle,
            outbox: rx,
        }
    });
    let a = out.next().expect("A");
    let b = out.next().expect("B");
    [a, b]
}

impl Unstarted {
    /// Start the till's node inside `dev`, bound to all of the device's addresses,
    /// with `relay` (the store's relay) as its only relay, asking it for the till's
    /// public address when `cert` (its certificate fingerprint) is given.
    pub async fn start(self, dev: &Device, relay: &str, cert: Option<&str>) -> Till {
        let config = NodeConfig {
            bind: Some(std::net::SocketAddr::from(([0, 0, 0, 0], 0))),
            relays: vec![relay.to_string()],
            relay_certs: cert
                .map(|fp| [(relay.to_string(), fp.to_string())].into())
                .unwrap_or_default(),
            sync_interval: SYNC_INTERVAL,
            ..NodeConfig::default()
        };
        let till = self.start_with(dev, config).await;
        // Both tills must hold their relay link before anything can be relayed.
        till.on(|node| async move {
            tokio::time::timeout(Duration::from_secs(20), node.endpoint().online())
                .await
                .expect("the till reaches the store's relay");
        })
        .await;
        till
    }

    /// Start the till's node inside `dev` with no relay at all, finding the other
    /// tills by mDNS when `mdns` is set.
    pub async fn start_without_relay(self, dev: &Device, mdns: bool) -> Till {
        let config = NodeConfig {
            bind: Some(std::net::SocketAddr::from(([0, 0, 0, 0], 0))),
            sync_interval: SYNC_INTERVAL,
            mdns,
            ..NodeConfig::default()
        };
        self.start_with(dev, config).await
    }

    async fn start_with(self, dev: &Device, config: NodeConfig) -> Till {
        let relay = config.relays.first().cloned().unwrap_or_default();
        let Unstarted {
            name,
            key,
            store,
            outbox,
        } = self;
        let id = key.till_id();
        let handle = store.clone();
        let node = dev
            .spawn(move |_| async move { Node::spawn(handle, &key, config, Some(outbox)).await })
            .expect("device runtime")
            .await
            .expect("node task")
            .expect("node starts");
        Till {
            name,
            dev: dev.clone(),
            node: Arc::new(node),
            store,
            id,
            relay,
        }
    }
}

/// A running till.
pub struct Till {
    pub name: String,
    pub dev: Device,
    pub node: Arc<Node>,
    pub store: StoreHandle,
    pub id: TillId,
    relay: String,
}

/// What a probe connection saw of its selected path.
#[derive(Debug)]
pub struct PathWatch {
    /// The path right after the handshake: `relay` or `direct`.
    pub first: String,
    /// How long after the dial started the path first became direct.
    pub direct_after: Option<Duration>,
    /// How long the handshake took.
    pub handshake: Duration,
    /// Every distinct path seen, in order.
    pub seen: Vec<String>,
    /// Round-trip time of the selected path at the end (ms).
    pub last_rtt_ms: Option<f64>,
}

impl Till {
    /// Run `f` with the node on the till's device runtime (inside its namespace).
    pub async fn on<F, Fut, T>(&self, f: F) -> T
    where
        F: FnOnce(Arc<Node>) -> Fut + Send + 'static,
        Fut: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let node = self.node.clone();
        self.dev
            .spawn(move |_| f(node))
            .expect("device runtime")
            .await
            .expect("task on the device")
    }

    /// Tell the node where `peer` is: only through the relay, as a till that has
    /// never seen the peer's published addresses knows it.
    pub fn learn_relay_addr_of(&self, peer: &Till) {
        self.node.add_addr(
            &peer.id,
            &PeerAddr {
                ip: vec![],
                relay: vec![peer.relay.clone()],
            },
        );
    }

    /// Open a connection on the till's own mesh endpoint (its key, its sockets, its
    /// relay) to `peer`, knowing only the peer's relay, and follow the selected path
    /// for up to `window`, stopping early once it is direct if `stop_on_direct`.
    pub async fn watch_path(
        &self,
        peer: &Till,
        window: Duration,
        stop_on_direct: bool,
    ) -> PathWatch {
        let addr = PeerAddr {
            ip: vec![],
            relay: vec![peer.relay.clone()],
        }
        .endpoint_addr(&peer.id)
        .expect("endpoint address");
        self.on(move |node| async move {
            let start = Instant::now();
            let conn = tokio::time::timeout(
                Duration::from_secs(20),
                node.endpoint().connect(addr, SYNC_ALPN),
            )
            .await
            .expect("the probe connection is made within 20 s")
            .expect("the probe connection is accepted");
            let handshake = start.elapsed();
            let (first, _) = path_of(&conn);
            let mut seen = vec![first.clone()];
            let mut direct_after = None;
            let mut last_rtt_ms = None;
            loop {
                let (path, rtt) = path_of(&conn);
                last_rtt_ms = rtt.or(last_rtt_ms);
                if seen.last() != Some(&path) {
                    seen.push(path.clone());
                }
                if path == "direct" && direct_after.is_none() {
                    direct_after = Some(start.elapsed());
                    if stop_on_direct {
                        break;
                    }
                }
                if start.elapsed() >= window {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            conn.close(0u32.into(), b"probe done");
            PathWatch {
                first,
                direct_after,
                handshake,
                seen,
                last_rtt_ms,
            }
        })
        .await
    }

    /// Record a one-line sale; returns its receipt.
    pub async fn sell(&self) -> String {
        self.store
            .call(|s| s.record_sale(test_utils::sale("TEA", 1, Tender::Card)))
            .await
            .expect("store")
            .expect("sale")
            .receipt
            .to_string()
    }

    /// Every receipt this till holds.
    pub async fn receipts(&self) -> BTreeSet<String> {
        self.store
            .call(|s| s.sales(None, None))
            .await
            .expect("store")
            .expect("sales")
            .into_iter()
            .map(|r| r.entry.receipt.to_string())
            .collect()
    }

    /// What the node's own diagnostics say of its link to `peer`.
    pub fn link_to(&self, peer: &Till) -> Option<PeerLink> {
        self.node.links().get(&peer.id).cloned()
    }

    /// Stop the node on its own runtime, before the lab (and that runtime) goes.
    pub async fn shutdown(self) {
        let Till { node, dev, .. } = self;
        let Ok(node) = Arc::try_unwrap(node) else {
            return;
        };
        if let Ok(task) = dev.spawn(move |_| async move {
            let _ = tokio::time::timeout(Duration::from_secs(5), node.shutdown()).await;
        }) {
            let _ = task.await;
        }
    }
}

/// Wait until `check` holds, polling; panic naming `what` after `limit`. Returns
/// how long it took.
pub async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
