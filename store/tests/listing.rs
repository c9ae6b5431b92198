//! Listings, reports, idempotent sales and store events: what the local API
//! reads and writes beyond single records.

use tillmesh_store::test_utils::{pair_with_clocks, product, sale, sync_from};
use tillmesh_store::{
    Day, EntryKind, ManualClock, NewStore, Role, SaleError, SalesFilter, Store, StoreEvent,
    StoreId, StoreOptions, Tender, TillKey,
};

const DAY_MS: u64 = 86_400_000;
/// 2026-03-02 09:00 UTC.
const START: u64 = 1_772_442_000_000;

/// Two tills A and B sharing products, each with `per_day` sales on each of
/// `days` days (one in five paid cash, every tenth voided), A holding all.
fn shop(days: u64, per_day: u64) -> (Store, Store, ManualClock) {
    let (ca, cb) = (ManualClock::new(START), ManualClock::new(START));
    let (mut a, mut b) = pair_with_clocks(Role::Till, &ca, &cb, |s| {
        s.add_product(product("BREAD", 250)).expect("bread");
        s.add_product(product("MILK", 99)).expect("milk");
    });
    for d in 0..days {
        for i in 0..per_day {
            for (s, c) in [(&mut a, &ca), (&mut b, &cb)] {
                c.set(START + d * DAY_MS + i * 60_000);
                let tender = if i % 5 == 0 {
                    Tender::Cash
                } else {
                    Tender::Card
                };
                let code = if i % 2 == 0 { "BREAD" } else { "MILK" };
                let e = s
                    .record_sale(sale(code, 1 + i as i64 % 3, tender))
                    .expect("sale");
                if i % 10 == 9 {
                    s.void(&e.receipt).expect("void");
                }
            }
        }
    }
    sync_from(&mut b, &mut a);
    (a, b, ca)
}

fn all_pages(s: &Store, filter: &SalesFilter, limit: usize) -> Vec<tillmesh_store::SaleRecord> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = s.sales_page(filter, after.as_deref(), limit).expect("page");
        assert!(page.items.len() <= limit);
        out.extend(page.items);
        match page.next {
            Some(n) => after = Some(n),
            None => return out,
        }
    }
}

#[test]
fn pages_cover_every_entry_once_in_order() {
    let (mut a, _b, _) = shop(3, 20);
    let whole = a.sales(None, None).expect("sales");
    // 3 days × 2 tills × (20 sales + 2 voids).
    assert_eq!(whole.len(), 132);
    let paged = all_pages(&a, &SalesFilter::default(), 50);
    assert_eq!(paged.len(), whole.len());
    let mut keys: Vec<_> = paged
        .iter()
        .map(|r| (r.day.clone(), r.entry.hlc, r.till))
        .collect();
    let sorted = {
        let mut k = keys.clone();
        k.sort();
        k
    };
    assert_eq!(keys, sorted, "pages come in (day, time, till) order");
    keys.dedup();
    assert_eq!(keys.len(), whole.len(), "no entry twice");
    let mut a_set: Vec<_> = whole.iter().map(|r| r.entry.receipt.to_string()).collect();
    let mut p_set: Vec<_> = paged.iter().map(|r| r.entry.receipt.to_string()).collect();
    a_set.sort();
    p_set.sort();
    assert_eq!(a_set, p_set);
}

#[test]
fn filters_by_day_till_and_kind() {
    let (mut a, b, _) = shop(3, 20);
    let day2 = Day::from_unix_ms(START + DAY_MS);
    let filter = SalesFilter {
        from: Some(day2),
        to: Some(day2),
        till: Some(b.till_id()),
        kind: Some(EntryKind::Void),
    };
    let got = all_pages(&a, &filter, 1);
    assert_eq!(got.len(), 2, "two voids of B on day 2");
    for r in &got {
        assert_eq!(r.till, b.till_id());
        assert_eq!(r.day, day2.to_string());
        assert_eq!(r.entry.kind, EntryKind::Void);
    }
    let want = a
        .sales(Some(day2), Some(b.till_id()))
        .expect("sales")
        .into_iter()
        .filter(|r| r.entry.kind == EntryKind::Void)
        .count();
    assert_eq!(got.len(), want);
    // A range of two days.
    let two = SalesFilter {
        from: Some(Day::from_unix_ms(START)),
        to: Some(day2),
        ..SalesFilter::default()
    };
    assert_eq!(all_pages(&a, &two, 7).len(), 88);
}

#[test]
fn a_cursor_not_handed_out_is_refused() {
    let (a, _b, _) = shop(1, 3);
    for bad in ["zz", "00", &"ab".repeat(60)] {
        let err = a
            .sales_page(&SalesFilter::default(), Some(bad), 10)
            .expect_err("bad cursor");
        assert!(err.to_string().contains("cursor"), "{err}");
    }
}

#[test]
fn report_sums_match_the_entries() {
    let (mut a, _b, _) = shop(2, 10);
    let (from, to) = (Day::from_unix_ms(START), Day::from_unix_ms(START + DAY_MS));
    let report = a.sales_report(from, to).expect("report");
    let entries = a.sales(None, None).expect("sales");
    let net: i64 = entries
        .iter()
        .map(|r| match r.entry.kind {
            EntryKind::Sale => r.entry.total_cents,
            _ => -r.entry.total_cents,
        })
        .sum();
    assert_eq!(report.totals.net_cents, net);
    assert_eq!(report.by_day.len(), 2);
    assert_eq!(report.by_till.len(), 2);
    let hours: i64 = report.by_hour.values().map(|c| c.cents).sum();
    let tenders: i64 = report.by_tender.values().map(|c| c.cents).sum();
    let categories: i64 = report.by_category.values().map(|c| c.cents).sum();
    assert_eq!((hours, tenders, categories), (net, net, net));
    assert_eq!(report.by_tender["cash"].cents, report.totals.cash_cents);
    assert_eq!(report.top_products.len(), 2);
    assert!(report.top_products[0].cell.cents >= report.top_products[1].cell.cents);
    let bread_qty: i64 = entries
        .iter()
        .flat_map(|r| {
            let sign = if r.entry.kind == EntryKind::Sale {
                1
            } else {
                -1
            };
            r.entry
                .lines
                .iter()
                .filter(|l| l.sku.as_str() == "BREAD")
                .map(move |l| sign * l.base_qty())
        })
        .sum();
    let bread = report
        .top_products
        .iter()
        .find(|p| p.sku == "BREAD")
        .expect("bread ranked");
    assert_eq!(bread.cell.qty, bread_qty);
    // One day alone is a part of it.
    let one = a.sales_report(from, from).expect("report");
    assert!(one.totals.sales < report.totals.sales);
}

#[test]
fn an_idempotent_sale_is_recorded_once_even_after_reopening() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store.redb");
    let key = TillKey::generate();
    let new = NewStore {
        store_id: StoreId::random(),
        store_name: "Shop".into(),
        till_name: "A".parse().expect("name"),
        role: Role::BackOffice,
        founder: true,
    };
    let mut s = Store::create(&path, key.clone(), new, StoreOptions::default()).expect("create");
    s.add_product(product("BREAD", 250)).expect("bread");
    let (first, new) = s
        .record_sale_once("key-1", "fp-a", sale("BREAD", 2, Tender::Card))
        .expect("first");
    assert!(new);
    let (again, new) = s
        .record_sale_once("key-1", "fp-a", sale("BREAD", 2, Tender::Card))
        .expect("repeat");
    assert!(!new);
    assert_eq!(again, first);
    let err = s
        .record_sale_once("key-1", "fp-b", sale("BREAD", 3, Tender::Card))
        .expect_err("another body");
    assert!(matches!(err, SaleError::KeyReused(_)), "{err}");
    drop(s);
    let mut s = Store::open(&path, key, StoreOptions::default()).expect("reopen");
    let (after, new) = s
        .record_sale_once("key-1", "fp-a", sale("BREAD", 2, Tender::Card))
        .expect("after reopening");
    assert!(!new);
    assert_eq!(after, first);
    assert_eq!(s.sales(None, None).expect("sales").len(), 1);
    let (other, new) = s
        .record_sale_once("key-2", "fp-a", sale("BREAD", 2, Tender::Card))
        .expect("another key");
    assert!(new);
    assert_ne!(other.receipt, first.receipt);
    // Keys older than now are forgotten, and the key then records anew.
    assert_eq!(s.prune_idempotency_keys(u64::MAX).expect("prune"), 2);
    let (_, new) = s
        .record_sale_once("key-1", "fp-a", sale("BREAD", 2, Tender::Card))
        .expect("after pruning");
    assert!(new);
    assert!(matches!(
        s.record_sale_once("", "fp", sale("BREAD", 1, Tender::Card)),
        Err(SaleError::Invalid(_))
    ));
}

#[test]
fn watched_writes_raise_events_local_and_remote() {
    let (ca, cb) = (ManualClock::new(START), ManualClock::new(START));
    let (mut a, mut b) = pair_with_clocks(Role::Till, &ca, &cb, |s| {
        s.add_product(product("BREAD", 250)).expect("bread");
    });
    a.record_sale(sale("BREAD", 1, Tender::Cash))
        .expect("unwatched");
    assert!(a.take_events().is_empty(), "no events unless watched");
    a.watch_events(true);
    let mine = a.record_sale(sale("BREAD", 1, Tender::Cash)).expect("sale");
    let theirs = b.record_sale(sale("BREAD", 2, Tender::Card)).expect("sale");
    sync_from(&mut b, &mut a);
    let events = a.take_events();
    let sales: Vec<(String, bool)> = events
        .iter()
        .filter_map(|e| match e {
            StoreEvent::Sale { record, local } => Some((record.entry.receipt.to_string(), *local)),
            _ => None,
        })
        .collect();
    assert_eq!(
        sales,
        vec![
            (mine.receipt.to_string(), true),
            (theirs.receipt.to_string(), false)
        ]
    );
    assert!(a.take_events().is_empty(), "taken once");
}
