//! Real iroh endpoints on loopback: a till joins with a one-time ticket, sales
//! sync both ways, a used ticket is refused, and neither a stranger nor a revoked
//! till gets any data.

use std::net::SocketAddr;
use std::time::Duration;

use tillmesh_mesh::{
    JoinReply, Node, NodeConfig, PeerAddr, StoreHandle, Ticket, endpoint, request_join,
    run_session, wire,
};
use tillmesh_store::{
    NewStore, Role, SaleRequest, Store, StoreId, StoreOptions, Tender, TillKey, test_utils,
};

fn loopback() -> Option<SocketAddr> {
    Some(SocketAddr::from(([127, 0, 0, 1], 0)))
}

fn config(admin: Option<TillKey>) -> NodeConfig {
    NodeConfig {
        bind: loopback(),
        sync_interval: Duration::from_secs(3600),
        admin,
        ..NodeConfig::default()
    }
}

fn sale() -> SaleRequest {
    test_utils::sale("TEA", 1, Tender::Card)
}

/// The founding till: store, admin key, a product, its node.
async fn founder() -> (Node, StoreHandle, TillKey, TillKey, StoreId) {
    let (mut store, key, admin) = test_utils::founder_in_memory("Loop Shop");
    let id = store.store_id();
    store
        .add_product(test_utils::product("TEA", 200))
        .expect("product");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let (handle, _t) = StoreHandle::spawn(store, Some(tx));
    let node = Node::spawn(handle.clone(), &key, config(Some(admin.clone())), Some(rx))
        .await
        .expect("node");
    (node, handle, key, admin, id)
}

async fn ticket(
    a: &Node,
    ha: &StoreHandle,
    admin: &TillKey,
    id: StoreId,
    till: &TillKey,
) -> Ticket {
    let adm = admin.clone();
    let expires = 4_000_000_000_000;
    let secret = ha
        .call(move |s| s.create_invite(&adm, expires))
        .await
        .expect("call")
        .expect("invite");
    let t = Ticket {
        version: 1,
        store: *id.as_bytes(),
        admin_key: *admin.till_id().as_bytes(),
        admin_till: *till.till_id().as_bytes(),
        addr: a.addr(),
        secret,
        expires_ms: expires,
        relay_certs: Vec::new(),
    };
    assert_eq!(Ticket::decode(&t.encode()).expect("round trip"), t);
    t
}

/// A new till redeems `ticket` and fetches the store, as `tillmesh join` does.
async fn join(ticket: &Ticket, name: &str) -> Result<(Node, StoreHandle, TillKey), String> {
    let key = TillKey::generate();
    let ep = bare_endpoint(&key).await;
    let reply = request_join(&ep, ticket, name)
        .await
        .map_err(|e| e.to_string())?;
    ep.close().await;
    match reply {
        JoinReply::Accepted { .. } | JoinReply::AcceptedWithKeys { .. } => {}
        JoinReply::Refused(why) => return Err(why),
    }
    let mut store = Store::create_in_memory(
        key.clone(),
        NewStore {
            store_id: StoreId::from_bytes(ticket.store),
            store_name: "Loop Shop".into(),
            till_name: name.parse().expect("name"),
            role: Role::Till,
            founder: false,
        },
        StoreOptions::default(),
    )
    .expect("store");
    store
        .set_admin_key(tillmesh_store::TillId::from_bytes(ticket.admin_key))
        .expect("admin key");
    // Until the first sync, the admin till is known from the ticket alone.
    let admin_till = tillmesh_store::TillId::from_bytes(ticket.admin_till);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let (handle, _t) = StoreHandle::spawn(store, Some(tx));
    let node = Node::spawn(handle.clone(), &key, config(None), Some(rx))
        .await
        .expect("node");
    node.endpoint().address_lookup().expect("lookup").add({
        let l = iroh::address_lookup::memory::MemoryLookup::new();
        l.add_endpoint_info(ticket.addr.endpoint_addr(&admin_till).expect("addr"));
        l
    });
    node.sync_with(admin_till)
        .await
        .map_err(|e| e.to_string())?;
    node.refresh().await.expect("refresh");
    node.publish_address().await.expect("publish");
    Ok((node, handle, key))
}

/// Logs at the level of `TILLMESH_LOG` (default warn).
fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("TILLMESH_LOG").unwrap_or_else(|_| "warn".into()))
        .with_test_writer()
        .try_init();
}

/// An endpoint of `key` on loopback with no node behind it.
async fn bare_endpoint(key: &TillKey) -> iroh::Endpoint {
    endpoint(key, loopback(), &[], &Default::default(), None::<NoHooks>)
        .await
        .expect("endpoint")
}

#[derive(Debug, Clone)]
struct NoHooks;
impl iroh::endpoint::EndpointHooks for NoHooks {}

async fn sales(h: &StoreHandle) -> usize {
    h.call(|s| s.sales(None, None))
        .await
        .expect("call")
        .expect("sales")
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_sync_and_refusals_over_real_endpoints() {
    logs();
    let (a, ha, ka, admin, id) = founder().await;
    let t = ticket(&a, &ha, &admin, id, &ka).await;

    let (b, hb, kb) = join(&t, "B").await.expect("join");
    // B received the catalog, and knows A as a member.
    assert!(
        hb.call(|s| s.products())
            .await
            .expect("call")
            .expect("products")
            .len()
            == 1
    );

    // The ticket cannot be used twice.
    let again = join(&t, "C").await.expect_err("second use refused");
    assert!(again.contains("already used"), "{again}");

    // A sale on B reaches A; one on A reaches B (by gossip or by the session,
    // whichever comes first: after the session both hold it).
    hb.call(|s| s.record_sale(sale()))
        .await
        .expect("call")
        .expect("sale");
    a.refresh().await.expect("refresh");
    a.sync_with(kb.till_id()).await.expect("sync a->b");
    assert_eq!(sales(&ha).await, 1);
    ha.call(|s| s.record_sale(sale()))
        .await
        .expect("call")
        .expect("sale");
    b.sync_with(ka.till_id()).await.expect("sync b->a");
    assert_eq!(sales(&hb).await, 2);
    let link = b.links()[&ka.till_id()].clone();
    assert_eq!(link.path, "direct");
    assert!(link.last_sync.is_some());

    // A stranger with A's address gets nothing: refused at the handshake.
    let stranger = TillKey::generate();
    let ep = bare_endpoint(&stranger).await;
    let addr = a.addr().endpoint_addr(&ka.till_id()).expect("addr");
    let refused = async {
        let conn = ep
            .connect(addr, wire::SYNC_ALPN)
            .await
            .map_err(|e| e.to_string())?;
        let (send, recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
        let (hs, _t) = StoreHandle::spawn(
            Store::create_in_memory(
                stranger.clone(),
                NewStore {
                    store_id: id,
                    store_name: "x".into(),
                    till_name: "X".parse().expect("name"),
                    role: Role::Till,
                    founder: false,
                },
                StoreOptions::default(),
            )
            .expect("store"),
            None,
        );
        let r = run_session(&hs, id, ka.till_id(), recv, send).await;
        let got = sales(&hs).await;
        Ok::<_, String>((r.is_err(), got))
    }
    .await;
    // Either refused before a stream opened (Err), or the session failed.
    if let Ok((failed, got)) = refused {
        assert!(failed, "the session must fail");
        assert_eq!(got, 0, "the stranger received no data");
    }
    ep.close().await;
    // The refusal is in A's audit trail.
    let audit = ha
        .call(move |s| s.audit_entries(None))
        .await
        .expect("call")
        .expect("audit");
    assert!(
        audit
            .values()
            .flatten()
            .any(|e| e.kind == "refused" && e.subject == stranger.till_id().to_string()),
        "refusal audited"
    );

    // A new backup key on A (a rotation): B fetches it from A, once.
    let key = |id: &str, at: u64| tillmesh_store::StoreSecret {
        key_id: id.into(),
        created_ms: at,
        identity: format!("secret of {id}"),
    };
    let k2 = key("k2", 2);
    ha.call(move |s| s.add_store_secret(k2))
        .await
        .expect("call")
        .expect("rotate");
    assert_eq!(
        b.fetch_keys(ka.till_id(), |_| true).await.expect("fetch"),
        1
    );
    assert_eq!(
        b.fetch_keys(ka.till_id(), |_| true).await.expect("again"),
        0
    );
    let held = |h: StoreHandle| async move {
        h.call(|s| s.store_secrets())
            .await
            .expect("call")
            .expect("secrets")
            .into_iter()
            .map(|k| k.key_id)
            .collect::<Vec<_>>()
    };
    assert!(held(hb.clone()).await.contains(&"k2".to_string()));

    // Revoke B: once A knows, B gets nothing more.
    let adm = admin.clone();
    let kbid = kb.till_id();
    ha.call(move |s| s.revoke(&adm, kbid))
        .await
        .expect("call")
        .expect("revoke");
    a.refresh().await.expect("refresh");
    ha.call(|s| s.record_sale(sale()))
        .await
        .expect("call")
        .expect("sale");
    let before = sales(&hb).await;
    assert!(
        b.sync_with(ka.till_id()).await.is_err(),
        "revoked till is refused"
    );
    // Give gossip time to deliver, had the revoked till kept its connections.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(sales(&hb).await, before, "no data reached the revoked till");
    // The key made at the revocation is not handed to the revoked till.
    let k3 = key("k3", 3);
    ha.call(move |s| s.add_store_secret(k3))
        .await
        .expect("call")
        .expect("rotate on revoke");
    assert!(
        b.fetch_keys(ka.till_id(), |_| true).await.is_err(),
        "keys refused"
    );
    assert!(!held(hb.clone()).await.contains(&"k3".to_string()));

    b.shutdown().await;
    a.shutdown().await;
    let _ = PeerAddr::default();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_spreads_a_sale_without_a_sync_session() {
    logs();
    let (a, ha, ka, admin, id) = founder().await;
    let t = ticket(&a, &ha, &admin, id, &ka).await;
    let (b, hb, _kb) = join(&t, "B").await.expect("join");
    // From here on nobody runs a sync session: the anti-entropy interval is an
    // hour and, once the two are gossip neighbours, nothing wakes it. Only gossip
    // can carry the sale.
    for _ in 0..200 {
        if a.gossip_neighbours() > 0 && b.gossip_neighbours() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(b.gossip_neighbours() > 0, "B joined the gossip swarm");
    // The sessions of the join (the admin till pushes the new certificate at
    // once) are over when the last sync time stands still for a while.
    let mut synced_before = b.links().get(&ka.till_id()).and_then(|l| l.last_sync);
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = b.links().get(&ka.till_id()).and_then(|l| l.last_sync);
        if now == synced_before {
            break;
        }
        synced_before = now;
    }
    let receipt = hb
        .call(|s| s.record_sale(sale()))
        .await
        .expect("call")
        .expect("sale")
        .receipt
        .to_string();
    let mut arrived = false;
    for _ in 0..200 {
        let have = ha
            .call(|s| s.sales(None, None))
            .await
            .expect("call")
            .expect("sales");
        if have.iter().any(|r| r.entry.receipt.to_string() == receipt) {
            arrived = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(arrived, "the sale reached A by gossip");
    // And the link table shows no session after the join's.
    assert_eq!(
        b.links().get(&ka.till_id()).and_then(|l| l.last_sync),
        synced_before,
        "no sync session ran"
    );
    b.shutdown().await;
    a.shutdown().await;
}

/// A member that opens more sync connections at once than a till runs with one
/// peer gets the extra ones closed with `BUSY`; the others stay up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_gets_at_most_two_sync_sessions_at_once() {
    logs();
    let (a, ha, ka, admin, _id) = founder().await;
    // A member whose node does not run: only these connections are its sessions.
    let member = TillKey::generate();
    let (adm, m) = (admin.clone(), member.till_id());
    ha.call(move |s| s.certify(&adm, m, &"M".parse().expect("name"), Role::Till))
        .await
        .expect("call")
        .expect("certify");
    a.refresh().await.expect("refresh");
    let ep = bare_endpoint(&member).await;
    let addr = a.addr().endpoint_addr(&ka.till_id()).expect("addr");
    let mut conns = Vec::new();
    for _ in 0..=tillmesh_mesh::MAX_SESSIONS_PER_PEER {
        let conn = ep
            .connect(addr.clone(), wire::SYNC_ALPN)
            .await
            .expect("connect");
        // A stream is seen by the other side once something is written on it;
        // one byte of a frame leaves the session waiting for the rest. The
        // connection over the limit may be refused before its stream opens or
        // its byte goes: its close reason is checked below.
        let stream = match conn.open_bi().await {
            Ok((mut send, recv)) => {
                let _ = send.write_all(&[0]).await;
                Some((send, recv))
            }
            Err(_) => None,
        };
        conns.push((conn, stream));
    }
    let mut busy = 0;
    for _ in 0..200 {
        busy = conns
            .iter()
            .filter(|(c, _)| {
                matches!(
                    c.close_reason(),
                    Some(iroh::endpoint::ConnectionError::ApplicationClosed(ref f))
                        if f.error_code == iroh::endpoint::VarInt::from_u32(tillmesh_mesh::BUSY)
                )
            })
            .count();
        if busy > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(busy, 1, "one connection over the limit is refused");
    let open = conns
        .iter()
        .filter(|(c, _)| c.close_reason().is_none())
        .count();
    assert_eq!(open, tillmesh_mesh::MAX_SESSIONS_PER_PEER as usize);
    ep.close().await;
    a.shutdown().await;
}
