//! The store's relay over HTTPS, on loopback: two tills that can only use the
//! relay (no IP transports) and pin its certificate talk through it; a till that
//! pins another certificate refuses the relay and never gets online.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use iroh::EndpointAddr;
use iroh::endpoint::EndpointHooks;
use tillmesh_mesh::endpoint;
use tillmesh_mesh::relay::{Relay, RelayIdentity};
use tillmesh_store::TillKey;

#[derive(Debug)]
struct NoHooks;
impl EndpointHooks for NoHooks {}

const ALPN: &[u8] = b"tillmesh/test/relay-tls";

/// A relay-only till endpoint (no IP transports) for `url`, pinning `pinned`.
async fn relay_only(url: &str, pinned: &RelayIdentity) -> iroh::Endpoint {
    let pins = BTreeMap::from([(url.to_string(), pinned.fingerprint())]);
    let ep = endpoint(
        &TillKey::generate(),
        None,
        &[url.to_string()],
        &pins,
        None::<NoHooks>,
    )
    .await
    .expect("endpoint");
    ep.set_alpns(vec![ALPN.to_vec()]);
    ep
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

#[tokio::test]
async fn tills_talk_through_the_relay_over_https_with_its_pinned_certificate() {
    let identity = RelayIdentity::generate().expect("identity");
    let relay = Relay::spawn_tls(loopback(), loopback(), &identity)
        .await
        .expect("relay");
    let url = relay.url().to_string();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");

    let a = relay_only(&url, &identity).await;
    let b = relay_only(&url, &identity).await;
    for ep in [&a, &b] {
        tokio::time::timeout(Duration::from_secs(20), ep.online())
            .await
            .expect("the till reaches the relay over HTTPS");
    }
    let addr = EndpointAddr::new(a.id()).with_relay_url(url.parse().expect("relay URL"));
    let serve = tokio::spawn({
        let a = a.clone();
        async move {
            let conn = a.accept().await.expect("incoming").await.expect("accept");
            let (mut send, mut recv) = conn.accept_bi().await.expect("stream");
            let got = recv.read_to_end(1024).await.expect("read");
            send.write_all(&got).await.expect("echo");
            send.finish().expect("finish");
            conn.closed().await;
        }
    });
    let conn = tokio::time::timeout(Duration::from_secs(20), b.connect(addr, ALPN))
        .await
        .expect("connect in time")
        .expect("connect through the relay");
    let (mut send, mut recv) = conn.open_bi().await.expect("stream");
    send.write_all(b"a sale").await.expect("write");
    send.finish().expect("finish");
    let echoed = recv.read_to_end(1024).await.expect("read");
    assert_eq!(echoed, b"a sale");
    assert!(
        conn.paths()
            .iter()
            .filter(|p| p.is_selected())
            .all(|p| p.is_relay()),
        "relay-only tills talk through the relay"
    );
    conn.close(0u32.into(), b"done");
    let _ = tokio::time::timeout(Duration::from_secs(5), serve).await;

    // Pinned to another certificate: the relay's HTTPS is refused.
    let other = RelayIdentity::generate().expect("identity");
    let c = relay_only(&url, &other).await;
    assert!(
        tokio::time::timeout(Duration::from_secs(5), c.online())
            .await
            .is_err(),
        "a till that pins another certificate must not use the relay"
    );
    for ep in [a, b, c] {
        ep.close().await;
    }
    relay.shutdown().await;
}

#[test]
fn a_configured_certificate_is_read_from_pem_files_and_bad_files_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let made = rcgen::generate_simple_self_signed(vec!["relay.shop.lan".to_string()])
        .expect("certificate");
    let cert = dir.path().join("relay.pem");
    let key = dir.path().join("relay-key.pem");
    std::fs::write(&cert, made.cert.pem()).expect("cert");
    std::fs::write(&key, made.signing_key.serialize_pem()).expect("key");
    let id = RelayIdentity::from_pem_files(&cert, &key).expect("a usable certificate");
    assert_eq!(
        id.fingerprint(),
        tillmesh_mesh::relay::fingerprint(made.cert.der()),
        "the fingerprint is the leaf certificate's"
    );

    // A key that is not the certificate's, a file that is not PEM, a missing file.
    let other = rcgen::KeyPair::generate().expect("key");
    let wrong = dir.path().join("other-key.pem");
    std::fs::write(&wrong, other.serialize_pem()).expect("key");
    assert!(RelayIdentity::from_pem_files(&cert, &wrong).is_err());
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, b"hello").expect("garbage");
    assert!(RelayIdentity::from_pem_files(&garbage, &key).is_err());
    assert!(RelayIdentity::from_pem_files(&cert, &garbage).is_err());
    let missing = dir.path().join("missing.pem");
    let err = RelayIdentity::from_pem_files(&missing, &key).expect_err("missing");
    assert!(err.to_string().contains("missing.pem"), "{err}");
}
