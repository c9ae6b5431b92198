//! Catalog import, all or nothing: a 2,000-product CSV lands in one change of
//! the catalog, one audit entry and one commit, and is all there after the
//! store file is opened again; a file with bad rows of every kind (a wrong
//! check digit, an unknown tax class, a SKU or barcode twice, a barcode of
//! another product, a negative price, a missing field, an unknown JSON field)
//! writes nothing and names every bad row by its line; quoted CSV fields keep
//! their commas, quotes and line breaks; a re-import updates what changed and
//! writes nothing when nothing did; a till whose role may not edit the catalog
//! is refused as `add_product` refuses it.

use tillmesh_store::test_utils::{
    certified_in_memory, founder_in_memory, managers_in_memory, product,
};
use tillmesh_store::{
    AuditEntry, BadRow, Barcode, CatalogFormat, DocId, ImportError, ImportReport, NewProduct,
    NewStore, Product, ProductError, Role, StorageError, Store, StoreId, StoreOptions, TillKey,
    Unit, parse_catalog_file,
};

const HEADER: &str = "sku,name,price,unit,tax_class,category,barcodes,active\n";

fn csv(rows: &[&str]) -> Vec<u8> {
    let mut text = HEADER.to_string();
    for r in rows {
        text.push_str(r);
        text.push('\n');
    }
    text.into_bytes()
}

/// The EAN-13 numbered `n` (with its check digit).
fn ean(n: usize) -> Barcode {
    Barcode::with_check_digit(&format!("200{n:09}")).expect("12 digits")
}

fn own_audit(store: &mut Store) -> Vec<AuditEntry> {
    let me = store.till_id();
    store
        .audit_entries(Some(me))
        .expect("audit")
        .remove(&me)
        .unwrap_or_default()
}

fn milk() -> NewProduct {
    NewProduct {
        sku: "MILK".parse().expect("sku"),
        name: "Milk 1 l".into(),
        barcodes: vec!["4006381333931".parse().expect("barcode")],
        price_cents: 119,
        unit: Unit::Each,
        tax_class: "reduced".into(),
        category: "dairy".into(),
    }
}

/// What a refusal must leave as it was: the products and the catalog's heads.
fn catalog_state(store: &mut Store) -> (Vec<Product>, Vec<tillmesh_store::ChangeHash>) {
    (
        store.products().expect("products"),
        store.heads(&DocId::Catalog).expect("heads"),
    )
}

fn bad_rows(result: Result<ImportReport, ImportError>) -> Vec<BadRow> {
    match result {
        Err(ImportError::BadRows(rows)) => rows,
        other => panic!("expected bad rows, got {other:?}"),
    }
}

#[test]
fn two_thousand_products_import_in_one_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("till.redb");
    let key = TillKey::generate();
    let new = NewStore {
        store_id: StoreId::random(),
        store_name: "Big Grocer".into(),
        till_name: "T1".parse().expect("till name"),
        role: Role::BackOffice,
        founder: true,
    };
    let mut store =
        Store::create(&path, key.clone(), new, StoreOptions::default()).expect("create");
    // Ten of the products are in the catalog already, at other prices.
    for i in 0..10 {
        store
            .add_product(product(&format!("P{i:04}"), 1))
            .expect("add");
    }
    let heads = store.heads(&DocId::Catalog).expect("heads");
    let audited = own_audit(&mut store).len();

    let mut text = HEADER.to_string();
    for i in 0..2000 {
        text.push_str(&format!(
            "P{i:04},Product {i},{}.{:02},each,standard,aisle {},{},true\n",
            i / 100,
            i % 100,
            i % 20,
            ean(i)
        ));
    }
    let report = store
        .import_catalog(text.as_bytes(), CatalogFormat::Csv)
        .expect("import");
    assert_eq!(
        report,
        ImportReport {
            added: 1990,
            updated: 10,
            unchanged: 0
        }
    );

    // One write: one new change of the catalog (row by row would make 2,000)
    // and one new audit entry.
    let changes = store
        .changes_since(&DocId::Catalog, &heads)
        .expect("changes");
    assert_eq!(changes.len(), 1, "the import is one change of the catalog");
    let audit = own_audit(&mut store);
    assert_eq!(audit.len(), audited + 1, "one audit entry for the import");
    let entry = audit.last().expect("entry");
    assert_eq!(entry.kind, "product-import");
    assert_eq!(entry.detail["added"].as_array().map(Vec::len), Some(1990));
    assert_eq!(entry.detail["updated"]["P0007"]["old_cents"], 1);
    assert_eq!(entry.detail["updated"]["P0007"]["new_cents"], 7);

    // Durable: all of it is there in the file opened again.
    drop(store);
    let store = Store::open(&path, key, StoreOptions::default()).expect("reopen");
    let products = store.products().expect("products");
    assert_eq!(products.len(), 2000);
    let p = store
        .product_by_code(ean(1234).as_str())
        .expect("by barcode");
    assert_eq!(p.sku.as_str(), "P1234");
    assert_eq!(p.name, "Product 1234");
    assert_eq!(p.price_cents, 1234);
    assert_eq!(p.category, "aisle 14");
    assert!(p.active);
}

#[test]
fn bad_rows_write_nothing_and_are_named_by_line() {
    let (mut store, ..) = founder_in_memory("Careful Grocer");
    store.add_product(milk()).expect("milk");
    let before = catalog_state(&mut store);
    let audited = own_audit(&mut store).len();

    let file = csv(&[
        /* 2 */ "TEA,Tea,2.50,each,standard,drinks,,true",
        /* 3 */ "BREAD,Bread,1.80,each,reduced,bakery,4006381333932,true",
        /* 4 */ "CAKE,Cake,3.00,each,luxury,bakery,,true",
        /* 5 */ "TEA,Green tea,2.90,each,standard,drinks,,true",
        /* 6 */ "JAM,Jam,-1.00,each,reduced,,,true",
        /* 7 */ "EGGS,Eggs,2.20,each,reduced,,true",
        /* 8 */ "SOAP,Soap,1.00,each,standard,,4006381333931,true",
        /* 9 */ "\"OIL\",\"Oil, olive\",6.00,each,standard,,0036000291452,true",
        /* 10 */ "RICE,Rice,2.00,each,standard,,0036000291452,true",
        /* 11 */ "FLOUR,Flour,abc,each,standard,,,true",
        /* 12 */ "SALT,Salt,0.80,litre,standard,,,maybe",
        /* 13 */ "BAD SKU,Nothing,1.00,each,standard,,,true",
    ]);
    let rows = bad_rows(store.import_catalog(&file, CatalogFormat::Csv));
    let lines: Vec<usize> = rows.iter().map(|r| r.line).collect();
    assert_eq!(lines, [3, 4, 5, 6, 7, 8, 10, 11, 12, 13], "{rows:#?}");
    let reason = |line: usize| {
        rows.iter()
            .filter(|r| r.line == line)
            .map(|r| r.to_string())
            .collect::<Vec<_>>()
            .join("; ")
    };
    for (line, needles) in [
        (3, &["SKU BREAD", "4006381333932", "check digit"][..]),
        (4, &["unknown tax class \"luxury\""]),
        (5, &["SKU TEA is already on line 2"]),
        (6, &["negative"]),
        (7, &["7 fields", "header 8"]),
        (
            8,
            &["barcode 4006381333931 already belongs to product MILK"],
        ),
        (
            10,
            &["barcode 0036000291452 is already on line 9 (SKU OIL)"],
        ),
        (11, &["\"abc\" is not an amount"]),
        (12, &["active is \"maybe\""]),
        (13, &["invalid SKU \"BAD SKU\""]),
    ] {
        for needle in needles {
            assert!(
                reason(line).contains(needle),
                "line {line}: {}",
                reason(line)
            );
        }
    }
    let text = ImportError::BadRows(rows.clone()).to_string();
    assert!(
        text.starts_with("10 rows of the file cannot be imported; nothing was imported:"),
        "{text}"
    );
    assert_eq!(catalog_state(&mut store), before, "nothing was written");
    assert_eq!(own_audit(&mut store).len(), audited);

    // The same in JSON, with an unknown field and a missing one.
    let json = r#"[
  {"sku": "TEA", "name": "Tea", "price_cents": 250, "unit": "each", "tax_class": "standard"},
  {"sku": "BREAD", "name": "Bread", "price_cents": 180, "unit": "each",
   "tax_class": "reduced", "barcodes": ["4006381333932"]},
  {"sku": "CAKE", "name": "Cake", "price_cents": 300, "unit": "each", "tax_class": "luxury"},
  {"sku": "JAM", "name": "Jam", "price_cents": -100, "unit": "each", "tax_class": "reduced"},
  {"sku": "EGGS", "name": "Eggs", "unit": "each", "tax_class": "reduced"},
  {"sku": "SOAP", "name": "Soap", "price_cents": 100, "unit": "each", "tax_class": "standard",
   "colour": "green"},
  {"sku": "TEA", "name": "Tea", "price_cents": 250, "unit": "each", "tax_class": "standard"}
]"#;
    let rows = bad_rows(store.import_catalog(json.as_bytes(), CatalogFormat::Json));
    let got: Vec<(usize, Option<&str>)> = rows.iter().map(|r| (r.line, r.sku.as_deref())).collect();
    assert_eq!(
        got,
        [
            (3, Some("BREAD")),
            (5, Some("CAKE")),
            (6, Some("JAM")),
            (7, Some("EGGS")),
            (8, Some("SOAP")),
            (10, Some("TEA")),
        ],
        "{rows:#?}"
    );
    assert!(rows[3].reason.contains("missing field `price_cents`"));
    assert!(rows[4].reason.contains("unknown field `colour`"));
    assert_eq!(catalog_state(&mut store), before, "nothing was written");

    // Read on its own, a file with rows that do not read is refused as such.
    let Err(ImportError::BadRows(rows)) = parse_catalog_file(json.as_bytes(), CatalogFormat::Json)
    else {
        panic!("rows 7 and 8 do not read");
    };
    assert_eq!(rows.iter().map(|r| r.line).collect::<Vec<_>>(), [7, 8]);
}

#[test]
fn quoted_csv_fields_keep_commas_quotes_and_line_breaks() {
    let (mut store, ..) = founder_in_memory("Quoted Grocer");
    let file = csv(&[
        "CHEESE,\"Cheese, \"\"Old Amsterdam\"\"\",4.99,kg,reduced,\"deli, cheese\",\"4006381333931|0036000291452\",true",
        "\"NOTE\",\"Gift card\",5,each,zero,\"two",
        "lines\",,false",
        "TEA,Tea,2.5,each,standard,,,TRUE",
    ]);
    let rows = parse_catalog_file(&file, CatalogFormat::Csv).expect("reads");
    assert_eq!(
        rows.iter().map(|(l, _)| *l).collect::<Vec<_>>(),
        [2, 3, 5],
        "a row starts on the line after a quoted line break"
    );
    let report = store.import_products(rows).expect("import");
    assert_eq!(report.added, 3);
    let cheese = store
        .product(&"CHEESE".parse().expect("sku"))
        .expect("read")
        .expect("cheese");
    assert_eq!(cheese.name, "Cheese, \"Old Amsterdam\"");
    assert_eq!(cheese.category, "deli, cheese");
    assert_eq!(cheese.unit, Unit::Kg);
    assert_eq!(cheese.price_cents, 499);
    assert_eq!(
        cheese
            .barcodes
            .iter()
            .map(Barcode::as_str)
            .collect::<Vec<_>>(),
        ["0036000291452", "4006381333931"]
    );
    let note = store
        .product(&"NOTE".parse().expect("sku"))
        .expect("read")
        .expect("note");
    assert_eq!(note.category, "two\nlines");
    assert!(!note.active);
    assert_eq!(note.price_cents, 500);

    let rows = bad_rows(store.import_catalog(
        &csv(&[
            "A,\"Apple\"s,1,each,zero,,,true",
            "B,Bean\"s,1,each,zero,,,true",
        ]),
        CatalogFormat::Csv,
    ));
    assert_eq!(rows.iter().map(|r| r.line).collect::<Vec<_>>(), [2, 3]);
    assert!(
        rows[0].reason.contains("after the closing quote"),
        "{rows:?}"
    );
    assert!(rows[1].reason.contains("not in quotes"), "{rows:?}");
}

#[test]
fn reimport_updates_prices_and_writes_only_what_changed() {
    let (mut store, ..) = founder_in_memory("Busy Grocer");
    let first = csv(&[
        "MILK,Milk 1 l,1.19,each,reduced,dairy,4006381333931,true",
        "TEA,Tea,2.50,each,standard,drinks,,true",
        "APPLES,Apples,2.40,kg,reduced,fruit,0036000291452,true",
    ]);
    let report = store
        .import_catalog(&first, CatalogFormat::Csv)
        .expect("first import");
    assert_eq!(report.added, 3);

    let second = csv(&[
        "MILK,Milk 1 l,1.29,each,reduced,dairy,4006381333931,true",
        "TEA,Tea,2.50,each,standard,drinks,,true",
        "APPLES,Apples,2.20,kg,reduced,fruit,0036000291452,true",
    ]);
    let heads = store.heads(&DocId::Catalog).expect("heads");
    let report = store
        .import_catalog(&second, CatalogFormat::Csv)
        .expect("re-import");
    assert_eq!(
        report,
        ImportReport {
            added: 0,
            updated: 2,
            unchanged: 1
        }
    );
    let price = |store: &Store, sku: &str| {
        store
            .product(&sku.parse().expect("sku"))
            .expect("read")
            .expect("product")
            .price_cents
    };
    assert_eq!(price(&store, "MILK"), 129);
    assert_eq!(price(&store, "APPLES"), 220);
    assert_eq!(price(&store, "TEA"), 250);
    let entry = own_audit(&mut store).pop().expect("audit entry");
    assert_eq!(entry.kind, "product-import");
    assert_eq!(
        entry.detail["updated"]["MILK"],
        serde_json::json!({"fields": ["price_cents"], "old_cents": 119, "new_cents": 129})
    );

    // Only the two prices were written: a concurrent edit of any other field
    // on another till does not meet a write from this import.
    let change = store
        .changes_since(&DocId::Catalog, &heads)
        .expect("changes");
    assert_eq!(change.len(), 1);
    let ops = automerge::Change::try_from(change[0].as_slice())
        .expect("a change")
        .decode()
        .operations;
    let mut keys: Vec<String> = ops
        .iter()
        .filter_map(|op| match &op.key {
            automerge::legacy::Key::Map(k) => Some(k.to_string()),
            automerge::legacy::Key::Seq(_) => None,
        })
        .collect();
    keys.sort();
    assert_eq!(keys, ["APPLES/price_cents", "MILK/price_cents"]);

    // The same file again: nothing to write, and nothing written.
    let heads = store.heads(&DocId::Catalog).expect("heads");
    let audited = own_audit(&mut store).len();
    let report = store
        .import_catalog(&second, CatalogFormat::Csv)
        .expect("again");
    assert!(!report.wrote());
    assert_eq!(report.unchanged, 3);
    assert_eq!(store.heads(&DocId::Catalog).expect("heads"), heads);
    assert_eq!(own_audit(&mut store).len(), audited);
}

#[test]
fn barcodes_move_within_a_file_and_units_do_not_change() {
    let (mut store, ..) = founder_in_memory("Moving Grocer");
    store.add_product(milk()).expect("milk");
    store
        .add_product(product("OATMILK", 199))
        .expect("oat milk");

    // The barcode leaves MILK and goes to OATMILK in the same file: allowed.
    let file = csv(&[
        "MILK,Milk 1 l,1.19,each,reduced,dairy,,true",
        "OATMILK,Oat milk,1.99,each,standard,,4006381333931,true",
    ]);
    store
        .import_catalog(&file, CatalogFormat::Csv)
        .expect("barcode moves");
    let p = store.product_by_code("4006381333931").expect("scans");
    assert_eq!(p.sku.as_str(), "OATMILK");

    let rows = bad_rows(store.import_catalog(
        &csv(&["MILK,Milk 1 l,1.19,kg,reduced,dairy,,true"]),
        CatalogFormat::Csv,
    ));
    assert_eq!(rows.len(), 1);
    assert!(
        rows[0]
            .reason
            .contains("unit cannot change from each to kg"),
        "{rows:?}"
    );
}

#[test]
fn a_till_that_may_not_edit_the_catalog_is_refused_like_add_product() {
    let names = ["A".to_string(), "B".to_string()];
    let mut tills = certified_in_memory("Strict Grocer", &names, |_| {});
    let (mut till, _) = tills.pop().expect("till B");
    let before = catalog_state(&mut till);
    let file = csv(&["TEA,Tea,2.50,each,standard,,,true"]);
    let err = till
        .import_catalog(&file, CatalogFormat::Csv)
        .expect_err("a checkout till may not import");
    assert!(
        matches!(err, ImportError::Storage(StorageError::Forbidden { .. })),
        "{err:?}"
    );
    let add = till
        .add_product(product("TEA", 250))
        .expect_err("nor add a product");
    assert!(matches!(
        add,
        ProductError::Storage(StorageError::Forbidden { .. })
    ));
    assert_eq!(err.to_string(), add.to_string());
    let rows = parse_catalog_file(&file, CatalogFormat::Csv).expect("reads");
    assert!(matches!(
        till.import_products(rows),
        Err(ImportError::Storage(StorageError::Forbidden { .. }))
    ));
    assert_eq!(catalog_state(&mut till), before);

    // A manager may.
    let mut tills = managers_in_memory("Strict Grocer", &names, |_| {});
    let (mut manager, _) = tills.pop().expect("manager B");
    let report = manager
        .import_catalog(&file, CatalogFormat::Csv)
        .expect("a manager may import");
    assert_eq!(report.added, 1);
}
