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
