//! A stranger with a forged ticket, over real endpoints on loopback: the admin
//! till checks the secret before anything else (the refusal does not tell which
//! till names exist) and audits the stranger's repeated attempts once; a holder
//! of a real ticket who picks a name already taken keeps the ticket.

use std::net::SocketAddr;
use std::time::Duration;

use tillmesh_mesh::{JoinReply, Node, NodeConfig, StoreHandle, Ticket, endpoint, request_join};
use tillmesh_store::{TillKey, test_utils};

#[derive(Debug, Clone)]
struct NoHooks;
impl iroh::endpoint::EndpointHooks for NoHooks {}

fn loopback() -> Option<SocketAddr> {
    Some(SocketAddr::from(([127, 0, 0, 1], 0)))
}

async fn ask(ep: &iroh::Endpoint, t: &Ticket, name: &str) -> JoinReply {
    request_join(ep, t, name).await.expect("an answer")
}

fn refused(r: JoinReply) -> String {
    match r {
        JoinReply::Refused(why) => why,
        other => panic!("want a refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forged_ticket_learns_nothing_and_is_audited_once() {
    let (store, key, admin) = test_utils::founder_in_memory("Gate Shop");
    let id = store.store_id();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let (ha, _t) = StoreHandle::spawn(store, Some(tx));
    let node = Node::spawn(
        ha.clone(),
        &key,
        NodeConfig {
            bind: loopback(),
            sync_interval: Duration::from_secs(3600),
            admin: Some(admin.clone()),
            ..NodeConfig::default()
        },
        Some(rx),
    )
    .await
    .expect("node");
    let expires = 4_000_000_000_000;
    let adm = admin.clone();
    let secret = ha
        .call(move |s| s.create_invite(&adm, expires))
        .await
        .expect("call")
        .expect("invite");
    let real = Ticket {
        version: 1,
        store: *id.as_bytes(),
        admin_key: *admin.till_id().as_bytes(),
        admin_till: *key.till_id().as_bytes(),
        addr: node.addr(),
        secret,
        expires_ms: expires,
        relay_certs: Vec::new(),
    };
    let forged = Ticket {
        secret: rand::random(),
        ..real.clone()
    };

    let stranger = TillKey::generate();
    let ep = endpoint(
        &stranger,
        loopback(),
        &[],
        &Default::default(),
        None::<NoHooks>,
    )
    .await
    .expect("endpoint");
    // "A" exists and "Z" does not: the stranger cannot tell.
    for name in ["A", "Z", "A"] {
        let why = refused(ask(&ep, &forged, name).await);
        assert_eq!(why, "unknown invitation", "{name}");
    }
    let audited = ha
        .call(|s| s.audit_entries(None))
        .await
        .expect("call")
        .expect("audit")
        .into_values()
        .flatten()
        .filter(|e| e.kind == "refused" && e.subject == stranger.till_id().to_string())
        .count();
    assert_eq!(audited, 1, "three refusals for one cause, audited once");

    // The holder of the real ticket picks a taken name, is told so, and the
    // ticket still works with another name.
    let why = refused(ask(&ep, &real, "A").await);
    assert!(why.contains("already exists"), "{why}");
    match ask(&ep, &real, "B").await {
        JoinReply::Accepted { .. } | JoinReply::AcceptedWithKeys { .. } => {}
        JoinReply::Refused(why) => panic!("the ticket was used up: {why}"),
    }
    ep.close().await;
    node.shutdown().await;
}
