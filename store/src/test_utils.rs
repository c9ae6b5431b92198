//! Helpers for tests of this crate and of the crates built on it (feature
//! `test-utils`): in-memory tills, a product, a sale.

use crate::{
    LineRequest, NewProduct, NewStore, Role, SaleRequest, Store, StoreId, StoreOptions, Tender,
    TillKey, Unit,
};

/// A till of store `store_id` in memory (real redb, no file, no fsync).
pub fn till(store_id: StoreId, name: &str, role: Role, founder: bool, opts: StoreOptions) -> Store {
    Store::create_in_memory(
        TillKey::generate(),
        NewStore {
            store_id,
            store_name: "Test Shop".into(),
            till_name: name.parse().expect("valid till name"),
            role,
            founder,
        },
        opts,
    )
    .expect("in-memory store")
}

/// A product sold each, standard tax, no barcode.
pub fn product(sku: &str, price_cents: i64) -> NewProduct {
    NewProduct {
        sku: sku.parse().expect("valid sku"),
        name: sku.to_string(),
        barcodes: vec![],
        price_cents,
        unit: Unit::Each,
        tax_class: "standard".into(),
        category: String::new(),
    }
}

/// A one-line sale of `qty` pieces of `code`, paid `tender`.
pub fn sale(code: &str, qty: i64, tender: Tender) -> SaleRequest {
    SaleRequest {
        lines: vec![LineRequest {
            code: code.into(),
            qty: Some(qty),
            grams: None,
            discount_cents: 0,
        }],
        tender,
    }
}

/// A store of tills named `names`, as after each of them joined: the first founds
/// it as the back office, `setup` gives it what it should hold (products, say), and
/// it certifies every till (the others as tills) with a fresh admin key; the others
/// start from its documents. `create(i, key, new)` makes till `i`'s store (in
/// memory, or in a file). Gives each store with its till key, founder first.
pub fn certified_stores(
    store_name: &str,
    names: &[String],
    setup: impl FnOnce(&mut Store),
    mut create: impl FnMut(usize, TillKey, NewStore) -> Store,
) -> Vec<(Store, TillKey)> {
    let store_id = StoreId::random();
    let admin = TillKey::generate();
    let keys: Vec<TillKey> = names.iter().map(|_| TillKey::generate()).collect();
    let role = |i: usize| if i == 0 { Role::BackOffice } else { Role::Till };
    let new = |i: usize| NewStore {
        store_id,
        store_name: store_name.into(),
        till_name: names[i].parse().expect("till name"),
        role: role(i),
        founder: i == 0,
    };
    let mut founder = create(0, keys[0].clone(), new(0));
    founder.set_admin_key(admin.till_id()).expect("admin key");
    setup(&mut founder);
    for (i, k) in keys.iter().enumerate() {
        let name = names[i].parse().expect("till name");
        founder
            .certify(&admin, k.till_id(), &name, role(i))
            .expect("certify");
    }
    let mut seed = Vec::new();
    for doc in founder.doc_ids().expect("docs") {
        seed.push((doc, founder.changes_since(&doc, &[]).expect("changes")));
    }
    let mut out = vec![(founder, keys[0].clone())];
    for (i, k) in keys.iter().enumerate().skip(1) {
        let mut s = create(i, k.clone(), new(i));
        s.set_admin_key(admin.till_id()).expect("admin key");
        for (doc, changes) in &seed {
            s.apply_changes(doc, changes).expect("seed");
        }
        out.push((s, k.clone()));
    }
    out
}

/// [`certified_stores`] in memory.
pub fn certified_in_memory(
    store_name: &str,
    names: &[String],
    setup: impl FnOnce(&mut Store),
) -> Vec<(Store, TillKey)> {
    certified_stores(store_name, names, setup, |_, key, new| {
        Store::create_in_memory(key, new, StoreOptions::default()).expect("in-memory store")
    })
}
