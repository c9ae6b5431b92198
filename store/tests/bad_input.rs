//! Bad input gets a clear error and loses nothing: malformed barcodes, prices,
//! quantities, discounts, unknown products and tax classes are refused with an
//! error that names the problem, and the store is exactly as before each refusal;
//! damaged, truncated or overwritten store files, a missing file and the wrong
//! till key make `Store::open` fail with an operator-readable error instead of a
//! panic; garbage, truncated and foreign changes offered to `apply_changes` are
//! refused whole with nothing kept; and a forged rewrite of an audit entry,
//! though accepted as a change (it carries the till's actor id), shows up as a
//! broken chain in `verify_audit`.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use automerge::transaction::Transactable;
use automerge::{ActorId, Automerge, ROOT, ReadDoc};
use tillmesh_store::{
    ApplyError, AuditEntry, Barcode, ChangeHash, Conflict, DocId, Hlc, LineRequest, ManualClock,
    NewProduct, NewStore, OpenStoreError, ProductEdit, ProductError, Receipt, RefundLine, Role,
    SaleError, SaleRequest, Sku, StockError, Store, StoreId, StoreOptions, Tender, TillKey, Unit,
};

const NOW_MS: u64 = 1_773_100_800_000; // 2026-03-10 00:00 UTC

fn sku(s: &str) -> Sku {
    s.parse().expect("valid SKU")
}

fn barcode(s: &str) -> Barcode {
    s.parse().expect("valid barcode")
}

fn new_store(store_id: StoreId, name: &str, founder: bool) -> NewStore {
    NewStore {
        store_id,
        store_name: "Bad Input Grocers".into(),
        till_name: name.parse().expect("till name"),
        role: Role::Manager,
        founder,
    }
}

fn mem_opts() -> StoreOptions {
    StoreOptions {
        clock: Arc::new(ManualClock::new(NOW_MS)),
        ..StoreOptions::default()
    }
}

fn milk() -> NewProduct {
    NewProduct {
        sku: sku("MILK"),
        name: "Milk 1 l".into(),
        barcodes: vec![barcode("4006381333931")],
        price_cents: 119,
        unit: Unit::Each,
        tax_class: "reduced".into(),
        category: "dairy".into(),
    }
}

fn apples() -> NewProduct {
    NewProduct {
        sku: sku("APPLES"),
        name: "Apples".into(),
        barcodes: vec![barcode("0036000291452")],
        price_cents: 299,
        unit: Unit::Kg,
        tax_class: "reduced".into(),
        category: "fruit".into(),
    }
}

fn line(code: &str, qty: Option<i64>, grams: Option<i64>, discount_cents: i64) -> SaleRequest {
    SaleRequest {
        lines: vec![LineRequest {
            code: code.into(),
            qty,
            grams,
            discount_cents,
        }],
        tender: Tender::Card,
    }
}

/// A founder till with two products, a sale and some stock.
fn stocked_store() -> Store {
    let mut s = Store::create_in_memory(
        TillKey::generate(),
        new_store(StoreId::random(), "T1", true),
        mem_opts(),
    )
    .expect("create");
    let admin = TillKey::generate();
    s.set_admin_key(admin.till_id()).expect("trust root");
    let me = s.till_id();
    s.certify(&admin, me, &"T1".parse().expect("name"), Role::Manager)
        .expect("certify");
    s.add_product(milk()).expect("milk");
    s.add_product(apples()).expect("apples");
    s.receive_stock(&sku("MILK"), 24).expect("receive");
    s.record_sale(line("MILK", Some(2), None, 0)).expect("sale");
    s
}

/// Everything a refusal must leave alone.
#[derive(Debug, PartialEq)]
struct Snapshot {
    views: BTreeMap<String, String>,
    next_receipt: u64,
    hlc: Hlc,
    heads: BTreeMap<DocId, Vec<ChangeHash>>,
    conflicts: Vec<Conflict>,
    audit: BTreeMap<String, Vec<AuditEntry>>,
}

fn snapshot(s: &mut Store) -> Snapshot {
    let mut heads = BTreeMap::new();
    for id in s.doc_ids().expect("doc ids") {
        let mut h = s.heads(&id).expect("heads");
        h.sort();
        heads.insert(id, h);
    }
    Snapshot {
        views: s.view_dump().expect("dump"),
        next_receipt: s.next_receipt_number(),
        hlc: s.hlc(),
        heads,
        conflicts: s.conflicts().expect("conflicts"),
        audit: s
            .audit_entries(None)
            .expect("audit")
            .into_iter()
            .map(|(t, es)| (t.to_string(), es))
            .collect(),
    }
}

/// Run a refused operation: it must fail, its message must contain every one of
/// `words`, and the store must be unchanged.
fn refused<T: std::fmt::Debug, E: std::fmt::Display + std::fmt::Debug>(
    s: &mut Store,
    what: &str,
    words: &[&str],
    op: impl FnOnce(&mut Store) -> Result<T, E>,
) -> E {
    let before = snapshot(s);
    let err = match op(s) {
        Ok(v) => panic!("{what}: accepted ({v:?})"),
        Err(e) => e,
    };
    let msg = err.to_string();
    for w in words {
        assert!(
            msg.contains(w),
            "{what}: error {msg:?} does not mention {w:?}"
        );
    }
    assert_eq!(snapshot(s), before, "{what}: the store changed");
    err
}

#[test]
fn invalid_barcodes_are_refused_by_parsing() {
    for (code, why) in [
        ("4006381333932", "check digit"),
        ("4006381333930", "check digit"),
        ("036000291453", "check digit"),
        ("40063813339", "13 digits"),
        ("40063813339311", "13 digits"),
        ("40063813339x1", "13 digits"),
        ("ABCDEFGHIJKLM", "13 digits"),
        ("", "13 digits"),
        (" 4006381333931", "13 digits"),
    ] {
        let err = code.parse::<Barcode>().expect_err(code);
        let msg = err.to_string();
        assert!(
            msg.contains("barcode") && msg.contains(why),
            "{code}: {msg}"
        );
        // The same check guards barcodes arriving as JSON.
        assert!(serde_json::from_str::<Barcode>(&format!("{code:?}")).is_err());
    }
    // UPC-A is accepted and stored as EAN-13.
    assert_eq!(barcode("036000291452").as_str(), "0036000291452");
}

#[test]
fn bad_products_are_refused_and_nothing_changes() {
    let mut s = stocked_store();

    refused(&mut s, "negative price", &["negative", "-1"], |s| {
        s.add_product(NewProduct {
            sku: sku("BREAD"),
            price_cents: -1,
            ..milk_like()
        })
    });
    refused(&mut s, "absurd price", &["limit"], |s| {
        s.add_product(NewProduct {
            sku: sku("BREAD"),
            price_cents: 100_000_001,
            ..milk_like()
        })
    });
    let e = refused(
        &mut s,
        "unknown tax class",
        &["luxury", "standard", "reduced"],
        |s| {
            s.add_product(NewProduct {
                sku: sku("BREAD"),
                tax_class: "luxury".into(),
                ..milk_like()
            })
        },
    );
    assert!(matches!(e, ProductError::Invalid(_)));
    refused(&mut s, "empty name", &["name"], |s| {
        s.add_product(NewProduct {
            sku: sku("BREAD"),
            name: "   ".into(),
            ..milk_like()
        })
    });
    let e = refused(
        &mut s,
        "barcode of another product",
        &["4006381333931", "MILK"],
        |s| {
            s.add_product(NewProduct {
                sku: sku("BREAD"),
                barcodes: vec![barcode("4006381333931")],
                ..milk_like()
            })
        },
    );
    assert!(matches!(e, ProductError::BarcodeTaken { .. }));
    let e = refused(&mut s, "existing SKU", &["MILK"], |s| s.add_product(milk()));
    assert!(matches!(e, ProductError::Exists(_)));

    let e = refused(&mut s, "negative new price", &["negative"], |s| {
        s.set_price(&sku("MILK"), -5)
    });
    assert!(matches!(e, ProductError::Invalid(_)));
    let e = refused(&mut s, "price of unknown SKU", &["NOPE"], |s| {
        s.set_price(&sku("NOPE"), 100)
    });
    assert!(matches!(e, ProductError::Unknown(_)));
    refused(&mut s, "edit to unknown tax class", &["luxury"], |s| {
        s.edit_product(
            &sku("MILK"),
            ProductEdit {
                tax_class: Some("luxury".into()),
                ..ProductEdit::default()
            },
        )
    });
    refused(
        &mut s,
        "edit adding a taken barcode",
        &["0036000291452", "APPLES"],
        |s| {
            s.edit_product(
                &sku("MILK"),
                ProductEdit {
                    add_barcodes: vec![barcode("036000291452")],
                    ..ProductEdit::default()
                },
            )
        },
    );
    // A valid edit after all that still works.
    assert_eq!(
        s.set_price(&sku("MILK"), 129).expect("price").price_cents,
        129
    );
}

fn milk_like() -> NewProduct {
    NewProduct {
        barcodes: vec![],
        ..milk()
    }
}

#[test]
fn bad_sales_are_refused_and_nothing_changes() {
    let mut s = stocked_store();

    let e = refused(&mut s, "unknown SKU", &["NOPE"], |s| {
        s.record_sale(line("NOPE", Some(1), None, 0))
    });
    assert!(matches!(e, SaleError::UnknownProduct(ref c) if c == "NOPE"));
    let e = refused(&mut s, "unknown barcode", &["5901234123457"], |s| {
        s.record_sale(line("5901234123457", Some(1), None, 0))
    });
    assert!(matches!(e, SaleError::UnknownProduct(_)));
    let e = refused(
        &mut s,
        "barcode with a wrong check digit",
        &["check digit"],
        |s| s.record_sale(line("4006381333932", Some(1), None, 0)),
    );
    assert!(matches!(e, SaleError::Invalid(_)));
    let e = refused(&mut s, "text that is neither", &["MILK!"], |s| {
        s.record_sale(line("MILK!", Some(1), None, 0))
    });
    assert!(matches!(e, SaleError::UnknownProduct(_)));

    let e = refused(
        &mut s,
        "kg product without grams",
        &["APPLES", "weight"],
        |s| s.record_sale(line("APPLES", None, None, 0)),
    );
    assert!(matches!(e, SaleError::Invalid(_)));
    refused(
        &mut s,
        "kg product by the piece",
        &["APPLES", "grams"],
        |s| s.record_sale(line("APPLES", Some(2), None, 0)),
    );
    refused(&mut s, "zero grams", &["grams"], |s| {
        s.record_sale(line("APPLES", None, Some(0), 0))
    });
    refused(&mut s, "too many grams", &["grams"], |s| {
        s.record_sale(line("APPLES", None, Some(100_001), 0))
    });
    refused(&mut s, "each product by weight", &["MILK", "each"], |s| {
        s.record_sale(line("MILK", None, Some(500), 0))
    });
    refused(&mut s, "zero quantity", &["quantity"], |s| {
        s.record_sale(line("MILK", Some(0), None, 0))
    });
    refused(&mut s, "negative quantity", &["quantity", "-3"], |s| {
        s.record_sale(line("MILK", Some(-3), None, 0))
    });
    refused(&mut s, "huge quantity", &["quantity"], |s| {
        s.record_sale(line("MILK", Some(10_001), None, 0))
    });
    // 2 x 1.19 = 2.38: a discount of 2.39 is more than the line.
    let e = refused(
        &mut s,
        "discount above the line",
        &["discount", "238", "239"],
        |s| s.record_sale(line("MILK", Some(2), None, 239)),
    );
    assert!(matches!(e, SaleError::Invalid(_)));
    refused(&mut s, "negative discount", &["discount"], |s| {
        s.record_sale(line("MILK", Some(1), None, -1))
    });
    // 350 g at 2.99/kg is 1.05.
    refused(
        &mut s,
        "discount above a weighed line",
        &["discount", "105"],
        |s| s.record_sale(line("APPLES", None, Some(350), 106)),
    );
    refused(&mut s, "no lines", &["line"], |s| {
        s.record_sale(SaleRequest {
            lines: vec![],
            tender: Tender::Cash,
        })
    });
    // One bad line spoils the whole sale.
    refused(&mut s, "one bad line among good ones", &["NOPE"], |s| {
        s.record_sale(SaleRequest {
            lines: vec![
                LineRequest {
                    code: "MILK".into(),
                    qty: Some(1),
                    grams: None,
                    discount_cents: 0,
                },
                LineRequest {
                    code: "NOPE".into(),
                    qty: Some(1),
                    grams: None,
                    discount_cents: 0,
                },
            ],
            tender: Tender::Cash,
        })
    });

    // Voids and refunds of what does not exist or cannot be undone.
    let ghost: Receipt = "T1-99".parse().expect("receipt");
    let e = refused(&mut s, "void of an unknown receipt", &["T1-99"], |s| {
        s.void(&ghost)
    });
    assert!(matches!(e, SaleError::UnknownReceipt(_)));
    let sale = s
        .record_sale(line("MILK", Some(2), None, 0))
        .expect("a good sale");
    refused(&mut s, "refund of more than sold", &["only 2"], |s| {
        s.refund(
            &sale.receipt,
            &[RefundLine {
                sku: sku("MILK"),
                qty: Some(3),
            }],
        )
    });
    refused(
        &mut s,
        "refund of a product not on the sale",
        &["APPLES"],
        |s| {
            s.refund(
                &sale.receipt,
                &[RefundLine {
                    sku: sku("APPLES"),
                    qty: Some(1),
                }],
            )
        },
    );
    let void = s.void(&sale.receipt).expect("void");
    let e = refused(
        &mut s,
        "second void",
        &["already voided", &void.receipt.to_string()],
        |s| s.void(&sale.receipt),
    );
    assert!(matches!(e, SaleError::NotAllowed(_)));
    refused(&mut s, "void of a void", &["not a sale"], |s| {
        s.void(&void.receipt)
    });
    refused(&mut s, "refund of a voided sale", &["voided"], |s| {
        s.refund(&sale.receipt, &[])
    });
    // Good sales still get the next receipt number.
    let next = s
        .record_sale(line("APPLES", None, Some(350), 5))
        .expect("sale");
    assert_eq!(next.receipt.number(), void.receipt.number() + 1);
    assert_eq!(next.total_cents, 100);
}

#[test]
fn bad_stock_movements_are_refused_and_nothing_changes() {
    let mut s = stocked_store();
    let nope = sku("NOPE");
    let milk = sku("MILK");
    for (what, e) in [
        (
            "receive",
            refused(&mut s, "receive unknown", &["NOPE"], |s| {
                s.receive_stock(&nope, 5)
            }),
        ),
        (
            "adjust",
            refused(&mut s, "adjust unknown", &["NOPE"], |s| {
                s.adjust_stock(&nope, -1, "theft")
            }),
        ),
        (
            "count",
            refused(&mut s, "count unknown", &["NOPE"], |s| {
                s.count_stock(&nope, 3)
            }),
        ),
    ] {
        assert!(matches!(e, StockError::UnknownProduct(_)), "{what}: {e:?}");
    }
    refused(&mut s, "receive nothing", &["positive"], |s| {
        s.receive_stock(&milk, 0)
    });
    refused(&mut s, "receive negative", &["positive", "-4"], |s| {
        s.receive_stock(&milk, -4)
    });
    refused(&mut s, "adjust by zero", &["0"], |s| {
        s.adjust_stock(&milk, 0, "why")
    });
    refused(&mut s, "adjust without reason", &["reason"], |s| {
        s.adjust_stock(&milk, -2, "  ")
    });
    refused(&mut s, "negative count", &["negative"], |s| {
        s.count_stock(&milk, -1)
    });
    refused(&mut s, "absurd quantity", &["typo"], |s| {
        s.receive_stock(&milk, 2_000_000_000)
    });
    assert_eq!(s.stock(&milk).expect("stock").on_hand, 22);
}

/// A real store file with a few sales, closed.
fn store_file(dir: &Path, key: &TillKey) -> std::path::PathBuf {
    let path = dir.join("till.redb");
    let mut s = Store::create(
        &path,
        key.clone(),
        new_store(StoreId::random(), "T1", true),
        StoreOptions::default(),
    )
    .expect("create");
    s.add_product(milk()).expect("milk");
    for q in 1..=20 {
        s.record_sale(line("MILK", Some(q % 4 + 1), None, 0))
            .expect("sale");
    }
    path
}

/// Open a damaged file without a panic. A refusal must be a "damaged" error
/// naming the file; `None` then, else the store that opened.
fn try_open_damaged(path: &Path, key: &TillKey, what: &str) -> Option<Store> {
    let result =
        std::panic::catch_unwind(|| Store::open(path, key.clone(), StoreOptions::default()))
            .unwrap_or_else(|_| panic!("{what}: opening the store panicked"));
    let err = match result {
        Ok(s) => return Some(s),
        Err(e) => e,
    };
    let msg = err.to_string();
    assert!(
        matches!(err, OpenStoreError::Corrupt { .. }),
        "{what}: expected a 'damaged' error, got {err:?}"
    );
    assert!(msg.contains(&path.display().to_string()), "{what}: {msg}");
    assert!(
        msg.contains("damaged") && msg.contains("restore"),
        "{what}: {msg}"
    );
    None
}

fn open_damaged(path: &Path, key: &TillKey, what: &str) {
    assert!(
        try_open_damaged(path, key, what).is_none(),
        "{what}: the damaged store opened"
    );
}

/// What an intact copy of the store reads back.
#[derive(Debug, PartialEq)]
struct Contents {
    sales: Vec<String>,
    views: BTreeMap<String, String>,
    audit_intact: bool,
}

fn contents(s: &mut Store) -> Contents {
    Contents {
        sales: s
            .sales(None, None)
            .expect("sales")
            .into_iter()
            .map(|r| format!("{} {}", r.entry.receipt, r.entry.total_cents))
            .collect(),
        views: s.view_dump().expect("views"),
        audit_intact: s.verify_audit().expect("audit").iter().all(|r| r.intact()),
    }
}

#[test]
fn damaged_store_files_fail_to_open_with_a_clear_error() {
    const PAGE: usize = 4096;
    let dir = tempfile::tempdir().expect("tempdir");
    let key = TillKey::generate();
    let path = store_file(dir.path(), &key);
    let good = std::fs::read(&path).expect("read store");
    assert!(good.len() >= 8 * PAGE, "store file is {} bytes", good.len());
    let intact = {
        let mut s = Store::open(&path, key.clone(), StoreOptions::default()).expect("intact store");
        contents(&mut s)
    };
    assert_eq!(intact.sales.len(), 20);

    // Bytes overwritten in the middle of the file, one page at a time across its
    // middle half. redb reads only the live pages it needs and does not verify
    // checksums on open, so a page it never reads (free, or an older copy) leaves
    // a store that opens; it must then read back exactly as before. A page open
    // does read must give a clean error, and some of them must.
    let mut refused = 0;
    let mut opened = 0;
    for start in (good.len() / 4 / PAGE * PAGE..good.len() * 3 / 4).step_by(PAGE) {
        let mut bytes = good.clone();
        let end = (start + PAGE).min(bytes.len());
        for (i, b) in bytes[start..end].iter_mut().enumerate() {
            *b ^= (i as u8).wrapping_mul(37) | 1;
        }
        let p = dir.path().join(format!("middle-{start}.redb"));
        std::fs::write(&p, &bytes).expect("write");
        let what = format!("page at {start} overwritten");
        match try_open_damaged(&p, &key, &what) {
            None => refused += 1,
            Some(mut s) => {
                opened += 1;
                let got =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| contents(&mut s)))
                        .unwrap_or_else(|_| panic!("{what}: reading the store panicked"));
                assert!(
                    got == intact,
                    "{what}: the store opened but reads back differently"
                );
            }
        }
    }
    eprintln!("middle pages overwritten: {refused} refused at open, {opened} unused and harmless");
    assert!(refused > 0, "no overwritten page was noticed at open");

    // Cut in half.
    let p = dir.path().join("truncated.redb");
    std::fs::write(&p, &good[..good.len() / 2]).expect("write");
    open_damaged(&p, &key, "truncated");

    // Garbage all over.
    let garbage: Vec<u8> = (0..good.len()).map(|i| (i * 7919 % 251) as u8).collect();
    let p = dir.path().join("garbage.redb");
    std::fs::write(&p, &garbage).expect("write");
    open_damaged(&p, &key, "garbage");

    // Empty file.
    let p = dir.path().join("empty.redb");
    std::fs::write(&p, b"").expect("write");
    open_damaged(&p, &key, "empty");
}

#[test]
fn missing_store_and_wrong_key_are_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nowhere.redb");
    let err = Store::open(&missing, TillKey::generate(), StoreOptions::default())
        .expect_err("no store there");
    assert!(matches!(err, OpenStoreError::NotFound(_)), "{err:?}");
    assert!(err.to_string().contains(&missing.display().to_string()));

    let key = TillKey::generate();
    let path = store_file(dir.path(), &key);
    let other = TillKey::generate();
    let err = Store::open(&path, other, StoreOptions::default()).expect_err("wrong key");
    match &err {
        OpenStoreError::WrongKey(till) => {
            assert_eq!(till, &key.till_id().fmt_short(), "names the store's till");
        }
        other => panic!("expected WrongKey, got {other:?}"),
    }
    assert!(err.to_string().contains("key"), "{err}");
    // Still opens with the right key, with all its sales.
    let mut s = Store::open(&path, key, StoreOptions::default()).expect("right key");
    assert_eq!(s.sales(None, None).expect("sales").len(), 20);
    assert_eq!(s.next_receipt_number(), 21);
}

/// Two tills of one store, each with a sale; B has received A's catalog.
fn two_tills() -> (Store, Store) {
    let (mut a, mut b) = tillmesh_store::test_utils::members_pair(Role::Manager, Role::Manager);
    a.add_product(milk()).expect("milk");
    for doc in a.doc_ids().expect("ids") {
        if doc.owner().is_none() {
            let changes = a.changes_since(&doc, &[]).expect("changes");
            let proofs = a.proofs(&doc).expect("proofs");
            b.apply_changes(&doc, &changes, &proofs).expect("join");
        }
    }
    a.record_sale(line("MILK", Some(1), None, 0))
        .expect("sale a");
    b.record_sale(line("MILK", Some(3), None, 0))
        .expect("sale b");
    (a, b)
}

fn sales_doc(s: &mut Store) -> DocId {
    let till = s.till_id();
    s.doc_ids()
        .expect("ids")
        .into_iter()
        .find(|d| matches!(d, DocId::Sales(t, _) if *t == till))
        .expect("a sales document")
}

#[test]
fn malformed_changes_are_refused_whole() {
    let (mut a, mut b) = two_tills();
    let doc = sales_doc(&mut a);
    let real = a.changes_since(&doc, &[]).expect("changes");
    let proofs = a.proofs(&doc).expect("proofs");
    assert!(!real.is_empty());
    let cut = real[0][..real[0].len() / 2].to_vec();
    let mut flipped = real[0].clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0xFF;

    for (what, batch, index) in [
        (
            "garbage bytes",
            vec![b"definitely not automerge".to_vec()],
            0,
        ),
        ("a truncated change", vec![cut], 0),
        ("an empty change", vec![Vec::new()], 0),
        ("a change with a flipped byte", vec![flipped], 0),
        (
            "a good change then garbage",
            vec![real[0].clone(), vec![0x85, 0x6f, 0x4a, 0x83, 1, 2, 3]],
            1,
        ),
        (
            "garbage then a good change",
            vec![vec![0u8; 64], real[0].clone()],
            0,
        ),
    ] {
        let before = snapshot(&mut b);
        let err = b.apply_changes(&doc, &batch, &proofs).expect_err(what);
        match &err {
            ApplyError::Malformed {
                index: i, doc: d, ..
            } => {
                assert_eq!(*i, index, "{what}: index of the bad change");
                assert_eq!(d, &doc.to_string(), "{what}");
            }
            other => panic!("{what}: expected Malformed, got {other:?}"),
        }
        assert!(
            err.to_string().contains("not a valid change"),
            "{what}: {err}"
        );
        assert_eq!(snapshot(&mut b), before, "{what}: something was kept");
        assert!(
            !b.doc_ids().expect("ids").contains(&doc),
            "{what}: document created"
        );
    }
    // The real changes are still welcome afterwards.
    let report = b.apply_changes(&doc, &real, &proofs).expect("real changes");
    assert_eq!(report.new_changes, real.len());
    assert_eq!(b.sales(None, None).expect("sales").len(), 2);
}

#[test]
fn changes_presented_as_another_tills_document_are_refused() {
    let (mut a, mut b) = two_tills();
    let a_doc = sales_doc(&mut a);
    let DocId::Sales(_, day) = a_doc else {
        unreachable!()
    };
    let a_changes = a.changes_since(&a_doc, &[]).expect("changes");
    let a_proofs = a.proofs(&a_doc).expect("proofs");
    let c = TillKey::generate().till_id();

    for (what, target) in [
        ("A's sales as C's", DocId::Sales(c, day)),
        ("A's sales as C's stock", DocId::Stock(c, day)),
        ("A's sales as B's own", DocId::Sales(b.till_id(), day)),
        ("A's sales as C's audit", DocId::Audit(c, day.month())),
    ] {
        let existed = b.doc_ids().expect("ids").contains(&target);
        let before = snapshot(&mut b);
        let err = b
            .apply_changes(&target, &a_changes, &a_proofs)
            .expect_err(what);
        match &err {
            ApplyError::NotOwner { doc, writer } => {
                assert_eq!(doc, &target.to_string(), "{what}");
                assert_eq!(writer, &a.till_id().fmt_short(), "{what}: names the writer");
            }
            other => panic!("{what}: expected NotOwner, got {other:?}"),
        }
        assert!(err.to_string().contains("only its owner"), "{what}: {err}");
        assert_eq!(snapshot(&mut b), before, "{what}: something was kept");
        assert_eq!(
            b.doc_ids().expect("ids").contains(&target),
            existed,
            "{what}: document created"
        );
    }

    // A batch mixing A's change with B's own change for A's document is refused whole.
    let b_doc = sales_doc(&mut b);
    let b_changes = b.changes_since(&b_doc, &[]).expect("changes");
    let mut mixed = a_changes.clone();
    mixed.extend(b_changes);
    let before = snapshot(&mut b);
    let err = b
        .apply_changes(&a_doc, &mixed, &a_proofs)
        .expect_err("mixed writers");
    assert!(matches!(err, ApplyError::NotOwner { .. }), "{err:?}");
    assert_eq!(snapshot(&mut b), before);
    // Under its true name the same changes are accepted.
    b.apply_changes(&a_doc, &a_changes, &a_proofs)
        .expect("A's own document");
    assert_eq!(b.sales(None, None).expect("sales").len(), 2);
}

/// Build a change to `victim`'s audit document, as if written by `victim`'s till,
/// that replaces entry `key` with `forged`.
fn forge_audit_change(victim: &mut Store, doc: &DocId, key: &str, forged: &AuditEntry) -> Vec<u8> {
    let mut actor = victim.till_id().as_bytes().to_vec();
    actor.extend_from_slice(&[0xEE; 8]);
    let mut am = Automerge::new();
    am.set_actor(ActorId::from(actor));
    let changes = victim.changes_since(doc, &[]).expect("audit changes");
    for c in &changes {
        am.load_incremental(c).expect("load a real change");
    }
    assert!(
        am.get(ROOT, key).expect("read").is_some(),
        "entry {key} exists"
    );
    let json = serde_json::to_string(forged).expect("json");
    am.transact::<_, _, automerge::AutomergeError>(|tx| {
        tx.put(ROOT, key, json)?;
        Ok(())
    })
    .expect("forge");
    am.get_last_local_change()
        .expect("the forged change")
        .raw_bytes()
        .to_vec()
}

/// A proof over `change` signed with the key of the till holding `s`.
fn signed_by_owner(s: &Store, doc: &DocId, change: &[u8]) -> Vec<tillmesh_store::Proof> {
    let hash = automerge::Change::from_bytes(change.to_vec())
        .expect("a change")
        .hash();
    vec![tillmesh_store::Proof::sign(
        s.till_key(),
        &s.store_id(),
        doc,
        0,
        vec![hash],
    )]
}

#[derive(serde::Serialize)]
struct Body<'a> {
    v: u32,
    seq: u64,
    prev: &'a str,
    hlc: Hlc,
    kind: &'a str,
    subject: &'a str,
    detail: &'a serde_json::Value,
}

/// The entry hash as the store computes it, so a forger can make it match.
fn entry_hash(e: &AuditEntry) -> String {
    let body = Body {
        v: e.version,
        seq: e.seq,
        prev: &e.prev,
        hlc: e.hlc,
        kind: &e.kind,
        subject: &e.subject,
        detail: &e.detail,
    };
    let mut h = blake3::Hasher::new_derive_key("tillmesh audit entry v1");
    h.update(&serde_json::to_vec(&body).expect("json"));
    h.finalize().to_hex().to_string()
}

fn audited_store() -> (Store, DocId) {
    let mut s = stocked_store();
    s.set_price(&sku("MILK"), 129).expect("price");
    s.adjust_stock(&sku("MILK"), -2, "breakage")
        .expect("adjust");
    s.count_stock(&sku("MILK"), 17).expect("count");
    let till = s.till_id();
    let doc = s
        .doc_ids()
        .expect("ids")
        .into_iter()
        .find(|d| matches!(d, DocId::Audit(t, _) if *t == till))
        .expect("an audit document");
    (s, doc)
}

#[test]
fn audit_chain_detects_forged_rewrites() {
    // Untouched: every chain intact, nothing missing.
    let (mut s, doc) = audited_store();
    let reports = s.verify_audit().expect("verify");
    assert_eq!(reports.len(), 1);
    assert!(
        reports[0].intact() && reports[0].missing.is_empty(),
        "{reports:?}"
    );
    let entries = s.audit_entries(None).expect("entries")[&s.till_id()].clone();
    assert!(entries.len() >= 5, "{} audit entries", entries.len());
    let views = s.view_dump().expect("dump");

    // 1. A price change rewritten to look smaller, hash left as it was.
    let victim = entries
        .iter()
        .find(|e| e.kind == "price")
        .expect("price entry");
    let key = format!("{:012}", victim.seq);
    let mut forged = victim.clone();
    forged.detail = serde_json::json!({"old_cents": 119, "new_cents": 121});
    let change = forge_audit_change(&mut s, &doc, &key, &forged);
    // Without its till's signature the rewrite does not get in at all.
    let err = s
        .apply_changes(&doc, std::slice::from_ref(&change), &[])
        .expect_err("unproven");
    assert!(matches!(err, ApplyError::Unproven { .. }), "{err:?}");
    // A forger holding the till's key (a stolen till) gets it in; the audit
    // chain still tells.
    let proofs = signed_by_owner(&s, &doc, &change);
    s.apply_changes(&doc, &[change], &proofs)
        .expect("signed with the till's own key");
    let report = &s.verify_audit().expect("verify")[0];
    assert!(!report.intact(), "forgery went unnoticed: {report:?}");
    assert!(
        report
            .broken
            .iter()
            .any(|b| b.contains(&format!("entry {}", victim.seq)) && b.contains("altered")),
        "{report:?}"
    );
    assert_eq!(
        s.view_dump().expect("dump"),
        views,
        "a rewrite moves no view"
    );

    // 2. A forger who recomputes the hash still cannot sign it.
    let (mut s, doc) = audited_store();
    let entries = s.audit_entries(None).expect("entries")[&s.till_id()].clone();
    let victim = entries
        .iter()
        .find(|e| e.kind == "stock-adjust")
        .expect("adjust entry");
    let key = format!("{:012}", victim.seq);
    let mut forged = victim.clone();
    forged.detail = serde_json::json!({"qty": -1, "reason": "breakage"});
    forged.hash = entry_hash(&forged);
    assert_ne!(forged.hash, victim.hash);
    let change = forge_audit_change(&mut s, &doc, &key, &forged);
    let proofs = signed_by_owner(&s, &doc, &change);
    s.apply_changes(&doc, &[change], &proofs)
        .expect("accepted as a change");
    let report = &s.verify_audit().expect("verify")[0];
    assert!(
        report
            .broken
            .iter()
            .any(|b| b.contains(&format!("entry {}", victim.seq)) && b.contains("not signed")),
        "{report:?}"
    );
    // And the next entry no longer follows it.
    assert!(
        report
            .broken
            .iter()
            .any(|b| b.contains(&format!("entry {} does not follow", victim.seq + 1))),
        "{report:?}"
    );

    // 3. Another till's key cannot be used to write this till's audit document.
    let (mut s, doc) = audited_store();
    let mut other = Automerge::new();
    let mut actor = TillKey::generate().till_id().as_bytes().to_vec();
    actor.extend_from_slice(&[1; 8]);
    other.set_actor(ActorId::from(actor));
    for c in s.changes_since(&doc, &[]).expect("changes") {
        other.load_incremental(&c).expect("load");
    }
    other
        .transact::<_, _, automerge::AutomergeError>(|tx| tx.put(ROOT, "000000000001", "x"))
        .expect("forge");
    let change = other
        .get_last_local_change()
        .expect("change")
        .raw_bytes()
        .to_vec();
    let before = snapshot(&mut s);
    let err = s
        .apply_changes(&doc, &[change], &[])
        .expect_err("foreign writer");
    assert!(matches!(err, ApplyError::NotOwner { .. }), "{err:?}");
    assert_eq!(snapshot(&mut s), before);
    assert!(s.verify_audit().expect("verify")[0].intact());
}
