//! The store side of the sync protocol: bucket digests find exactly the documents
//! that differ, the Automerge sync protocol brings two tills level, a catch-up cut
//! short resumes from the persisted sync state, and a peer cannot slip changes to
//! another till's documents in through a sync message.

use std::collections::BTreeSet;

use tillmesh_store::{DocId, Role, Store, SyncState, Tender, TillKey, test_utils};

fn pair() -> (Store, Store) {
    test_utils::members_pair(Role::Manager, Role::Manager)
}

fn sell(s: &mut Store, n: usize) {
    for _ in 0..n {
        s.record_sale(test_utils::sale("TEA", 1, Tender::Cash))
            .expect("sale");
    }
}

fn differing(a: &Store, b: &Store) -> BTreeSet<DocId> {
    let (ba, bb) = (
        a.manifest_buckets().expect("a"),
        b.manifest_buckets().expect("b"),
    );
    let buckets: BTreeSet<u8> = (0..=255u8)
        .filter(|i| ba[*i as usize] != bb[*i as usize])
        .collect();
    let ma = a.manifest(&buckets).expect("a");
    let mb = b.manifest(&buckets).expect("b");
    let mut docs = BTreeSet::new();
    for (d, h) in &ma {
        if mb.iter().find(|(x, _)| x == d).map(|(_, hb)| hb) != Some(h) {
            docs.insert(*d);
        }
    }
    for (d, _) in &mb {
        if !ma.iter().any(|(x, _)| x == d) {
            docs.insert(*d);
        }
    }
    docs
}

/// Two tills of one store, level after a first sync of A's catalog.
fn synced_pair() -> (Store, Store) {
    let (mut a, mut b) = pair();
    a.add_product(test_utils::product("TEA", 200))
        .expect("product");
    let docs = differing(&a, &b);
    run_sync(&mut a, &mut b, &docs, None);
    (a, b)
}

/// Run the sync protocol on `docs` for at most `rounds` rounds (None: to the end).
/// Returns the number of messages exchanged.
fn run_sync(a: &mut Store, b: &mut Store, docs: &BTreeSet<DocId>, rounds: Option<usize>) -> usize {
    let (ia, ib) = (a.till_id(), b.till_id());
    let mut sa: Vec<SyncState> = docs
        .iter()
        .map(|d| a.sync_state(&ib, d).expect("state"))
        .collect();
    let mut sb: Vec<SyncState> = docs
        .iter()
        .map(|d| b.sync_state(&ia, d).expect("state"))
        .collect();
    let mut messages = 0;
    for round in 0.. {
        if rounds.is_some_and(|r| round >= r) {
            break;
        }
        let mut quiet = true;
        for (i, d) in docs.iter().enumerate() {
            if let Some(m) = a.sync_generate(d, &mut sa[i]).expect("gen") {
                b.sync_receive(d, &mut sb[i], &m).expect("recv");
                quiet = false;
                messages += 1;
            }
            if let Some(m) = b.sync_generate(d, &mut sb[i]).expect("gen") {
                a.sync_receive(d, &mut sa[i], &m).expect("recv");
                quiet = false;
                messages += 1;
            }
        }
        if quiet {
            break;
        }
    }
    let docs: Vec<DocId> = docs.iter().copied().collect();
    let pa: Vec<(DocId, &SyncState)> = docs.iter().copied().zip(sa.iter()).collect();
    a.save_sync_states(&ib, &pa).expect("save");
    let pb: Vec<(DocId, &SyncState)> = docs.iter().copied().zip(sb.iter()).collect();
    b.save_sync_states(&ia, &pb).expect("save");
    messages
}

#[test]
fn buckets_find_the_differences_and_sync_levels_the_tills() {
    let (mut a, mut b) = pair();
    a.add_product(test_utils::product("TEA", 200))
        .expect("product");
    let first = differing(&a, &b);
    assert!(first.contains(&DocId::Catalog) && first.contains(&DocId::Config));
    run_sync(&mut a, &mut b, &first, None);
    assert!(differing(&a, &b).is_empty(), "level after a full sync");
    assert_eq!(
        a.manifest_buckets().expect("a"),
        b.manifest_buckets().expect("b")
    );

    // Only the documents that changed differ afterwards.
    sell(&mut a, 3);
    let diff = differing(&a, &b);
    let sales: Vec<&DocId> = diff
        .iter()
        .filter(|d| matches!(d, DocId::Sales(..)))
        .collect();
    assert_eq!(sales.len(), 1);
    assert!(
        diff.iter()
            .all(|d| matches!(d, DocId::Sales(..) | DocId::Audit(..))),
        "{diff:?}"
    );
    run_sync(&mut a, &mut b, &diff, None);
    assert_eq!(b.sales(None, None).expect("sales").len(), 3);
    assert_eq!(a.view_dump().expect("a"), b.view_dump().expect("b"));
}

#[test]
fn several_changes_to_a_document_both_have_travel_in_one_message() {
    let (mut a, mut b) = synced_pair();
    // Both now hold the catalog; A edits it several times, B once.
    let tea = "TEA".parse().expect("sku");
    for cents in [210, 220, 230] {
        a.set_price(&tea, cents).expect("price");
    }
    b.edit_product(
        &tea,
        tillmesh_store::ProductEdit {
            category: Some("drinks".into()),
            ..Default::default()
        },
    )
    .expect("edit");
    let docs = differing(&a, &b);
    assert!(docs.contains(&DocId::Catalog));
    run_sync(&mut a, &mut b, &docs, None);
    assert!(differing(&a, &b).is_empty());
    for s in [&a, &b] {
        let p = s.product(&tea).expect("lookup").expect("product");
        assert_eq!((p.price_cents, p.category.as_str()), (230, "drinks"));
    }
}

#[test]
fn an_interrupted_catch_up_resumes_instead_of_restarting() {
    let (mut a, mut b) = synced_pair();
    sell(&mut a, 40);
    let docs = differing(&a, &b);
    // Two rounds: heads and bloom filters, then the changes; the session ends
    // before the final acknowledgements.
    run_sync(&mut a, &mut b, &docs, Some(2));
    assert_eq!(b.sales(None, None).expect("sales").len(), 40);
    // What the cut session reached is on disk on both sides: a new session's
    // state starts from the heads the two tills were known to share.
    let sales_doc = *docs
        .iter()
        .find(|d| matches!(d, DocId::Sales(..)))
        .expect("sales doc");
    let resumed_state = b.sync_state(&a.till_id(), &sales_doc).expect("state");
    assert_eq!(
        resumed_state.shared_heads,
        b.heads(&sales_doc).expect("heads")
    );
    // The next session starts from the persisted state: it only confirms heads,
    // it does not send the 40 sales again.
    let before = b.heads(docs.iter().next().expect("doc")).expect("heads");
    let resumed = run_sync(&mut a, &mut b, &docs, None);
    assert!(
        resumed <= 2 * docs.len(),
        "resumed session exchanged {resumed} messages"
    );
    assert_eq!(
        b.heads(docs.iter().next().expect("doc")).expect("heads"),
        before
    );
    assert!(differing(&a, &b).is_empty());
}

#[test]
fn a_sync_message_cannot_write_another_tills_sales() {
    let (mut a, mut b) = pair();
    let c = TillKey::generate().till_id();
    a.add_product(test_utils::product("TEA", 200))
        .expect("product");
    sell(&mut a, 1);
    let sales_doc = a
        .doc_ids()
        .expect("docs")
        .into_iter()
        .find(|d| matches!(d, DocId::Sales(..)))
        .expect("sales doc");
    let DocId::Sales(_, day) = sales_doc else {
        unreachable!()
    };
    // A presents its own sales as those of till C: B asks for C's document, A
    // answers with its own changes.
    let forged = DocId::Sales(c, day);
    let mut bstate = SyncState::new();
    let mut state = SyncState::new();
    let ask = b
        .sync_generate(&forged, &mut bstate)
        .expect("gen")
        .expect("message");
    a.sync_receive(&sales_doc, &mut state, &ask).expect("recv");
    let msg = a
        .sync_generate(&sales_doc, &mut state)
        .expect("gen")
        .expect("message");
    let err = b
        .sync_receive(&forged, &mut bstate, &msg)
        .expect_err("refused");
    assert!(err.to_string().contains("another till"), "{err}");
    assert!(b.heads(&forged).expect("heads").is_empty(), "nothing kept");
    assert!(b.sales(None, None).expect("sales").is_empty());
}
