//! Sync sessions between two stores over an in-memory duplex stream: they converge,
//! a second session moves only a few kilobytes, and a peer that speaks garbage or
//! belongs to another store gets an error while nothing of the till changes.

use tillmesh_mesh::{StoreHandle, run_session, wire};
use tillmesh_store::{Role, Store, StoreId, StoreOptions, Tender, TillKey, test_utils};
use tokio::io::AsyncWriteExt;

fn till(id: StoreId, name: &str, founder: bool) -> Store {
    test_utils::till(id, name, Role::Manager, founder, StoreOptions::default())
}

async fn session(
    a: &StoreHandle,
    b: &StoreHandle,
    id: StoreId,
    ia: tillmesh_store::TillId,
    ib: tillmesh_store::TillId,
) -> (tillmesh_mesh::SessionReport, tillmesh_mesh::SessionReport) {
    let (x, y) = tokio::io::duplex(64 * 1024);
    let (xr, xw) = tokio::io::split(x);
    let (yr, yw) = tokio::io::split(y);
    let (ra, rb) = tokio::join!(
        run_session(a, id, ib, xr, xw),
        run_session(b, id, ia, yr, yw)
    );
    (ra.expect("session on a"), rb.expect("session on b"))
}

#[tokio::test]
async fn two_tills_converge_and_the_next_session_is_small() {
    let (mut a, b) = test_utils::members_pair(Role::Manager, Role::Manager);
    let id = a.store_id();
    let (ia, ib) = (a.till_id(), b.till_id());
    a.add_product(test_utils::product("TEA", 200))
        .expect("product");
    for _ in 0..50 {
        a.record_sale(test_utils::sale("TEA", 1, Tender::Card))
            .expect("sale");
    }
    let (ha, _ta) = StoreHandle::spawn(a, None);
    let (hb, _tb) = StoreHandle::spawn(b, None);
    let (ra, rb) = session(&ha, &hb, id, ia, ib).await;
    assert!(rb.changes_received >= 50, "{rb:?}");
    assert!(ra.docs >= 3 && ra.docs == rb.docs, "{ra:?} {rb:?}");
    let (va, vb) = (
        ha.call(|s| s.view_dump()).await.expect("a").expect("dump"),
        hb.call(|s| s.view_dump()).await.expect("b").expect("dump"),
    );
    assert_eq!(va, vb);
    assert_eq!(
        hb.call(|s| s.sales(None, None))
            .await
            .expect("b")
            .expect("sales")
            .len(),
        50
    );

    // Nothing changed since: the manifest buckets match, nothing else moves.
    let (ra, rb) = session(&ha, &hb, id, ia, ib).await;
    assert_eq!((ra.docs, rb.docs), (0, 0));
    assert!(
        ra.bytes_sent < 10_000,
        "an idle session is a few kilobytes: {ra:?}"
    );
    assert_eq!(rb.changes_received, 0);
}

#[tokio::test]
async fn garbage_and_strangers_are_refused() {
    let id = StoreId::random();
    let a = till(id, "A", true);
    let ia = a.till_id();
    let (ha, _t) = StoreHandle::spawn(a, None);
    let before = ha.call(|s| s.view_dump()).await.expect("a").expect("dump");

    // A peer that sends garbage after connecting.
    let (x, y) = tokio::io::duplex(64 * 1024);
    let (xr, xw) = tokio::io::split(x);
    let (_yr, mut yw) = tokio::io::split(y);
    yw.write_all(&[0, 0, 0, 5, 1, 2, 3, 4, 5])
        .await
        .expect("write");
    let stranger = TillKey::generate().till_id();
    let err = run_session(&ha, id, stranger, xr, xw)
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("malformed"), "{err}");

    // A till of another store.
    let other_store = StoreId::random();
    let b = till(other_store, "B", true);
    let ib = b.till_id();
    let (hb, _t2) = StoreHandle::spawn(b, None);
    let (x, y) = tokio::io::duplex(64 * 1024);
    let (xr, xw) = tokio::io::split(x);
    let (yr, yw) = tokio::io::split(y);
    let (ra, rb) = tokio::join!(
        run_session(&ha, id, ib, xr, xw),
        run_session(&hb, other_store, ia, yr, yw)
    );
    assert!(
        matches!(ra, Err(tillmesh_mesh::SessionError::WrongStore { .. })),
        "{ra:?}"
    );
    assert!(rb.is_err());

    // An oversized frame announcement.
    let (x, y) = tokio::io::duplex(64 * 1024);
    let (xr, xw) = tokio::io::split(x);
    let (_yr, mut yw) = tokio::io::split(y);
    yw.write_all(&((wire::MAX_FRAME as u32) + 1).to_be_bytes())
        .await
        .expect("write");
    let err = run_session(&ha, id, stranger, xr, xw)
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("limit"), "{err}");

    let after = ha.call(|s| s.view_dump()).await.expect("a").expect("dump");
    assert_eq!(before, after, "nothing of the till changed");
}

/// A document whose sync message is over the 16 MiB frame limit crosses in
/// pieces (`SyncPart`) and arrives whole.
#[tokio::test]
async fn a_document_larger_than_a_frame_crosses_in_pieces() {
    use rand::RngCore;
    let (mut a, b) = test_utils::members_pair(Role::Manager, Role::Manager);
    let id = a.store_id();
    let (ia, ib) = (a.till_id(), b.till_id());
    // Three settings of 12 MiB of hex each: random, so they do not compress
    // below the frame limit.
    let mut rng = rand::rng();
    for i in 0..3 {
        let mut raw = vec![0u8; 6 * 1024 * 1024];
        rng.fill_bytes(&mut raw);
        a.set_config_value(&format!("blob/{i}"), serde_json::json!(hex::encode(raw)))
            .expect("setting");
    }
    let want = a.config_value("blob/2").expect("read").expect("set");
    let (ha, _ta) = StoreHandle::spawn(a, None);
    let (hb, _tb) = StoreHandle::spawn(b, None);
    let (_, rb) = session(&ha, &hb, id, ia, ib).await;
    assert!(
        rb.bytes_received > wire::MAX_FRAME,
        "the catch-up is larger than one frame: {rb:?}"
    );
    let got = hb
        .call(|s| s.config_value("blob/2"))
        .await
        .expect("b")
        .expect("read");
    assert_eq!(got, Some(want));
}
