//! QUIC address discovery from the store's relay, on loopback: a till that pins
//! the relay's certificate learns the address its packets come from; a till that
//! pins another certificate refuses the relay's answer and learns nothing, but
//! still reaches the relay.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use iroh::Watcher;
use iroh::endpoint::EndpointHooks;
use tillmesh_mesh::endpoint;
use tillmesh_mesh::relay::{Relay, RelayIdentity};
use tillmesh_store::TillKey;

#[derive(Debug)]
struct NoHooks;
impl EndpointHooks for NoHooks {}

/// The first net report in which `done` holds, or the last one seen by `limit`.
async fn report_until(
    ep: &iroh::Endpoint,
    limit: Duration,
    done: impl Fn(&iroh::unstable_net_report::NetReport) -> bool,
) -> Option<iroh::unstable_net_report::NetReport> {
    let start = tokio::time::Instant::now();
    loop {
        let report = ep.net_report().get();
        if report.as_ref().is_some_and(&done) || start.elapsed() > limit {
            return report;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A till endpoint on loopback with `url` as its relay, pinning `pinned`'s
/// certificate for it.
async fn pinned_endpoint(url: &str, pinned: &RelayIdentity) -> iroh::Endpoint {
    let pins = BTreeMap::from([(url.to_string(), pinned.fingerprint())]);
    endpoint(
        &TillKey::generate(),
        Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        &[url.to_string()],
        &pins,
        None::<NoHooks>,
    )
    .await
    .expect("endpoint")
}

#[tokio::test]
async fn a_till_learns_its_address_only_from_the_relay_it_pinned() {
    let identity = RelayIdentity::generate().expect("identity");
    let relay = Relay::spawn(SocketAddr::from(([127, 0, 0, 1], 0)), Some(&identity))
        .await
        .expect("relay");
    let url = relay.url().to_string();

    // Pinned: the relay tells the till the address its packets come from, which on
    // loopback is the till's own socket.
    let ep = pinned_endpoint(&url, &identity).await;
    let report = report_until(&ep, Duration::from_secs(20), |r| r.global_v4.is_some())
        .await
        .expect("a net report");
    let local = ep
        .bound_sockets()
        .into_iter()
        .find(|a| a.is_ipv4())
        .expect("an IPv4 socket");
    let seen = report
        .global_v4
        .expect("the relay reported this till's address");
    assert_eq!(SocketAddr::V4(seen), local, "{report:?}");
    assert!(report.udp_v4);
    ep.close().await;

    // Pinned to some other certificate: the answer is refused; the relay itself
    // is still used.
    let other = RelayIdentity::generate().expect("identity");
    let ep = pinned_endpoint(&url, &other).await;
    tokio::time::timeout(Duration::from_secs(20), ep.online())
        .await
        .expect("the till still reaches the relay");
    let report = report_until(&ep, Duration::from_secs(6), |r| r.global_v4.is_some()).await;
    assert!(
        report
            .as_ref()
            .is_none_or(|r| r.global_v4.is_none() && !r.udp_v4),
        "{report:?}"
    );
    ep.close().await;
    relay.shutdown().await;
}
