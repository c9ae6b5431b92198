//! Conflict policies between two tills that edit the same price concurrently:
//! `latest-wins` picks the later HLC, `role-priority` the back office whatever the
//! time, `manual` queues the conflict until an operator picks a value, and every
//! decision is logged and audited. Also: a till whose clock is three hours slow
//! still orders a stock count after the sales it has received.

use tillmesh_store::{
    ConflictStatus, DocId, MAX_CLOCK_SKEW, ManualClock, Policy, Role, Sku, Store, Tender,
    test_utils,
};

const T0: u64 = 1_790_000_000_000;

/// Give `to` every change `from` has that `to` lacks.
fn sync(from: &mut Store, to: &mut Store) -> usize {
    test_utils::sync_from(from, to)
}

fn pair(role_b: Role) -> (Store, Store, ManualClock, ManualClock) {
    let ca = ManualClock::new(T0);
    let cb = ManualClock::new(T0);
    let (a, b) = test_utils::pair_with_clocks(role_b, &ca, &cb, |a| {
        a.add_product(test_utils::product("TEA", 200))
            .expect("product");
    });
    (a, b, ca, cb)
}

fn price(s: &Store) -> i64 {
    s.product(&"TEA".parse::<Sku>().expect("sku"))
        .expect("lookup")
        .expect("product")
        .price_cents
}

/// A edits first, B edits later (by clock), neither having seen the other.
fn concurrent_edits(a: &mut Store, b: &mut Store, ca: &ManualClock, cb: &ManualClock) {
    let tea: Sku = "TEA".parse().expect("sku");
    ca.advance(1_000);
    a.set_price(&tea, 210).expect("edit on A");
    cb.advance(5_000);
    b.set_price(&tea, 250).expect("edit on B");
    let logged = sync(a, b) + sync(b, a);
    assert_eq!(logged, 2, "each till logs the conflict once");
}

#[test]
fn latest_wins_by_hlc() {
    let (mut a, mut b, ca, cb) = pair(Role::Manager);
    concurrent_edits(&mut a, &mut b, &ca, &cb);
    assert_eq!((price(&a), price(&b)), (250, 250));
    for s in [&a, &b] {
        let c = s.conflicts().expect("conflicts");
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].status, ConflictStatus::Decided);
        assert_eq!(c[0].policy, Policy::LatestWins);
        assert_eq!(c[0].values[0].value, 250);
        assert_eq!(c[0].values[1].value, 210);
    }
    assert_eq!(
        a.conflicts().expect("a")[0].id,
        b.conflicts().expect("b")[0].id
    );
    // Both tills audited their decision, and their chains verify.
    for s in [&mut a, &mut b] {
        let mine = s.audit_entries(Some(s.till_id())).expect("audit");
        assert!(mine[&s.till_id()].iter().any(|e| e.kind == "conflict"));
        assert!(s.verify_audit().expect("verify").iter().all(|r| r.intact()));
    }
}

#[test]
fn role_priority_prefers_the_back_office_even_when_older() {
    let (mut a, mut b, ca, cb) = pair(Role::Manager);
    a.set_conflict_policy("catalog", Policy::RolePriority)
        .expect("policy");
    sync(&mut a, &mut b);
    concurrent_edits(&mut a, &mut b, &ca, &cb);
    // A (back office) edited earlier than B (till), and still wins.
    assert_eq!((price(&a), price(&b)), (210, 210));
    assert_eq!(
        b.conflicts().expect("conflicts")[0].policy,
        Policy::RolePriority
    );
}

/// Two tills that set the same price at once agree: nothing to choose and
/// nothing logged, even under `manual`.
#[test]
fn concurrent_edits_of_one_value_are_no_conflict() {
    let (mut a, mut b, ca, cb) = pair(Role::Manager);
    a.set_conflict_policy("catalog", Policy::Manual)
        .expect("policy");
    sync(&mut a, &mut b);
    let tea: Sku = "TEA".parse().expect("sku");
    ca.advance(1_000);
    a.set_price(&tea, 230).expect("edit on A");
    cb.advance(5_000);
    b.set_price(&tea, 230).expect("edit on B");
    assert_eq!(sync(&mut a, &mut b) + sync(&mut b, &mut a), 0);
    for s in [&a, &b] {
        assert_eq!(price(s), 230);
        assert!(s.conflicts().expect("conflicts").is_empty());
        assert!(s.pending_conflicts().expect("pending").is_empty());
    }
}

#[test]
fn manual_queues_until_an_operator_picks() {
    let (mut a, mut b, ca, cb) = pair(Role::Manager);
    a.set_conflict_policy("catalog", Policy::Manual)
        .expect("policy");
    sync(&mut a, &mut b);
    concurrent_edits(&mut a, &mut b, &ca, &cb);
    // Meanwhile the deterministic latest-wins value is in effect on both.
    assert_eq!((price(&a), price(&b)), (250, 250));
    let pending = a.pending_conflicts().expect("pending");
    assert_eq!(pending.len(), 1);
    assert_eq!(b.pending_conflicts().expect("pending").len(), 1);

    // The operator on A keeps the older value (number 2 in the listing).
    ca.advance(10_000);
    let resolved = a.resolve_conflict(&pending[0].id, 2).expect("resolve");
    assert_eq!(resolved.status, ConflictStatus::Resolved);
    assert!(a.resolve_conflict(&pending[0].id, 1).is_err(), "only once");
    assert!(a.pending_conflicts().expect("pending").is_empty());
    assert_eq!(price(&a), 210);
    sync(&mut a, &mut b);
    // B sees the decision as a later edit: the price settles and its queue clears.
    assert_eq!(price(&b), 210);
    assert!(b.pending_conflicts().expect("pending").is_empty());
    let audit = a.audit_entries(Some(a.till_id())).expect("audit");
    assert!(
        audit[&a.till_id()]
            .iter()
            .any(|e| e.kind == "conflict-resolve")
    );
    assert_eq!(a.view_dump().expect("a"), b.view_dump().expect("b"));
}

#[test]
fn a_slow_clock_still_counts_after_the_sales_it_has_seen() {
    let ca = ManualClock::new(T0);
    // B's clock is three hours slow.
    let cb = ManualClock::new(T0 - 3 * 3_600_000);
    let (mut a, mut b) = test_utils::pair_with_clocks(Role::Manager, &ca, &cb, |a| {
        // Three hours is beyond the default bound on following another till's
        // clock (five minutes, against a clock years ahead); this store allows four.
        a.set_config_value(MAX_CLOCK_SKEW, serde_json::json!(4 * 3_600))
            .expect("bound");
        a.add_product(test_utils::product("TEA", 200))
            .expect("product");
    });
    let tea: Sku = "TEA".parse().expect("sku");
    a.receive_stock(&tea, 10).expect("receive");
    for _ in 0..3 {
        ca.advance(1_000);
        a.record_sale(test_utils::sale("TEA", 1, Tender::Cash))
            .expect("sale");
    }
    sync(&mut a, &mut b);
    assert_eq!(b.stock(&tea).expect("stock").on_hand, 7);
    // B counts the shelf after seeing A's sales: 6 are there.
    let count = b.count_stock(&tea, 6).expect("count");
    assert!(
        count.hlc > a.hlc(),
        "the count is ordered after what B had seen"
    );
    sync(&mut b, &mut a);
    assert_eq!(a.stock(&tea).expect("stock").on_hand, 6);
    assert_eq!(b.stock(&tea).expect("stock").on_hand, 6);
    // A sale on A after the count moves both tills the same way.
    ca.advance(1_000);
    a.record_sale(test_utils::sale("TEA", 2, Tender::Card))
        .expect("sale");
    sync(&mut a, &mut b);
    assert_eq!(a.stock(&tea).expect("a").on_hand, 4);
    assert_eq!(b.stock(&tea).expect("b").on_hand, 4);
    let docs_a = a.doc_ids().expect("docs");
    assert!(docs_a.iter().any(|d| matches!(d, DocId::Stock(..))));
}
