//! A till whose clock is years ahead cannot drag another till's clock with it:
//! its edits merge, but the honest till's hybrid logical clock stays within the
//! configured bound of its own wall clock (also after a reopen), its sales are
//! filed under its own today, and the skew is recorded naming the till. A till
//! whose own clock was ahead and is put right files its sales under the right
//! day again although its clock state stays ahead.

use std::path::Path;
use std::sync::Arc;

use tillmesh_store::{
    Clock, ClockSkew, DEFAULT_MAX_SKEW_S, Day, DocId, MAX_CLOCK_SKEW, ManualClock, Sku, Store,
    StoreOptions, Tender, TillKey, test_utils,
};

/// 2026-05-04 10:00 UTC.
const NOW: u64 = 1_777_888_800_000;
const TEN_YEARS_MS: u64 = 10 * 365 * 86_400_000;

fn opts(clock: &ManualClock) -> StoreOptions {
    StoreOptions {
        clock: Arc::new(clock.clone()),
        durable: false,
        ..StoreOptions::default()
    }
}

fn tea() -> Sku {
    "TEA".parse().expect("sku")
}

/// Carry every change `from` holds to `to`, as a sync or a stick would.
fn carry(from: &mut Store, to: &mut Store) {
    for doc in from.doc_ids().expect("docs") {
        let changes = from.changes_since(&doc, &[]).expect("changes");
        let proofs = from.proofs(&doc).expect("proofs");
        // These tills are not certified: the test is about clocks, so the
        // changes go in as history from before signed changes.
        to.accept_legacy_history(true).expect("legacy door");
        to.apply_changes(&doc, &changes, &proofs).expect("apply");
        to.accept_legacy_history(false).expect("closed");
    }
}

fn sale_days(s: &mut Store) -> Vec<Day> {
    let me = s.till_id();
    s.doc_ids()
        .expect("docs")
        .into_iter()
        .filter_map(|d| match d {
            DocId::Sales(t, day) if t == me => Some(day),
            _ => None,
        })
        .collect()
}

fn assert_within_bound(s: &Store, wall: u64) {
    let bound = DEFAULT_MAX_SKEW_S * 1000;
    assert!(
        s.hlc().ms() <= wall + bound,
        "hlc {} is {} ms ahead of the wall clock",
        s.hlc(),
        s.hlc().ms().saturating_sub(wall)
    );
}

#[test]
fn a_till_ten_years_ahead_does_not_move_the_others_clock() {
    let dir = tempfile::tempdir().expect("tempdir");
    let honest = ManualClock::new(NOW);
    let ahead = ManualClock::new(NOW + TEN_YEARS_MS);
    let clocks = [honest.clone(), ahead.clone()];
    let path = |i: usize| dir.path().join(format!("till{i}.redb"));
    let mut stores = test_utils::certified_with_roles(
        "Corner",
        &["ADMIN".into(), "FAST".into()],
        &[
            tillmesh_store::Role::BackOffice,
            tillmesh_store::Role::Manager,
        ],
        |s| {
            s.add_product(test_utils::product("TEA", 200))
                .expect("product");
        },
        |i, key, new| Store::create(&path(i), key, new, opts(&clocks[i])).expect("store"),
    );
    let (mut fast, _) = stores.pop().expect("fast");
    let (mut admin, admin_key) = stores.pop().expect("admin");
    let fast_id = fast.till_id();
    assert_within_bound(&admin, NOW);

    // The till ten years ahead edits a price; the admin till merges it.
    fast.set_price(&tea(), 250).expect("price");
    assert!(fast.hlc().ms() >= NOW + TEN_YEARS_MS);
    carry(&mut fast, &mut admin);
    assert_eq!(
        admin
            .product(&tea())
            .expect("read")
            .expect("tea")
            .price_cents,
        250,
        "the change is merged all the same"
    );
    assert_within_bound(&admin, NOW);
    let skew: ClockSkew = admin.clock_skew().expect("skew").expect("a skew recorded");
    assert_eq!(skew.till, fast_id);
    assert!(skew.ahead_ms >= TEN_YEARS_MS, "{skew:?}");

    // Its next sale is filed under today, and so is the one after a reopen.
    let today = Day::from_unix_ms(NOW);
    admin
        .record_sale(test_utils::sale("TEA", 1, Tender::Cash))
        .expect("sale");
    assert_eq!(sale_days(&mut admin), vec![today]);
    assert_eq!(admin.sales(Some(today), None).expect("sales").len(), 1);
    assert_within_bound(&admin, NOW);
    drop(admin);
    let mut admin = Store::open(&path(0), admin_key, opts(&honest)).expect("reopen");
    assert_within_bound(&admin, NOW);
    assert_eq!(admin.clock_skew().expect("skew"), Some(skew));
    honest.advance(60_000);
    admin
        .record_sale(test_utils::sale("TEA", 1, Tender::Card))
        .expect("sale");
    assert_eq!(sale_days(&mut admin), vec![today]);
    assert_eq!(admin.sales(Some(today), None).expect("sales").len(), 2);
    assert_within_bound(&admin, honest.now_ms());

    // A smaller skew later does not replace the largest one recorded.
    ahead.set(NOW + 3_600_000);
    fast.set_price(&tea(), 260).expect("price");
    carry(&mut fast, &mut admin);
    assert_eq!(admin.clock_skew().expect("skew"), Some(skew));

    // The bound is the store's configuration: with twenty years allowed, the
    // same kind of timestamp is followed.
    admin
        .set_config_value(MAX_CLOCK_SKEW, serde_json::json!(20 * 365 * 86_400))
        .expect("config");
    assert_eq!(admin.max_clock_skew_s().expect("bound"), 20 * 365 * 86_400);
    ahead.set(NOW + TEN_YEARS_MS);
    fast.set_price(&tea(), 270).expect("price");
    carry(&mut fast, &mut admin);
    assert!(admin.hlc().ms() >= NOW + TEN_YEARS_MS);
}

#[test]
fn a_till_whose_clock_was_ahead_files_sales_by_its_corrected_clock() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(NOW + TEN_YEARS_MS);
    let key = TillKey::generate();
    let path = dir.path().join("till.redb");
    let create = |path: &Path, key: TillKey| {
        let mut s = Store::create(
            path,
            key,
            tillmesh_store::NewStore {
                store_id: tillmesh_store::StoreId::random(),
                store_name: "Corner".into(),
                till_name: "T1".parse().expect("name"),
                role: tillmesh_store::Role::BackOffice,
                founder: true,
            },
            opts(&clock),
        )
        .expect("store");
        s.add_product(test_utils::product("TEA", 200))
            .expect("product");
        s
    };
    let mut s = create(&path, key.clone());
    s.record_sale(test_utils::sale("TEA", 1, Tender::Cash))
        .expect("sale");
    let future = Day::from_unix_ms(NOW + TEN_YEARS_MS);
    assert_eq!(sale_days(&mut s), vec![future]);

    // The clock is put right; the clock state persisted stays ahead (it never
    // goes back), but the next sale goes to today's document, also after a
    // reopen.
    clock.set(NOW);
    drop(s);
    let mut s = Store::open(&path, key, opts(&clock)).expect("reopen");
    assert!(s.hlc().ms() >= NOW + TEN_YEARS_MS);
    let e = s
        .record_sale(test_utils::sale("TEA", 2, Tender::Cash))
        .expect("sale");
    assert!(e.hlc.ms() >= NOW + TEN_YEARS_MS, "entries keep their order");
    let today = Day::from_unix_ms(NOW);
    let mut days = sale_days(&mut s);
    days.sort();
    assert_eq!(days, vec![today, future]);
    assert_eq!(s.sales(Some(today), None).expect("sales").len(), 1);
    s.adjust_stock(&tea(), -1, "breakage").expect("adjust");
    assert!(
        s.doc_ids()
            .expect("docs")
            .contains(&DocId::Stock(s.till_id(), today)),
        "stock movements follow the wall clock too"
    );
    assert!(
        s.doc_ids()
            .expect("docs")
            .contains(&DocId::Audit(s.till_id(), today.month())),
        "and so does the audit month"
    );
}
