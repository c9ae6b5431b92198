//! Criterion benchmarks of one till's store on a real file with fsync: a durable
//! sale, and the lookups a checkout does on every scan.
//!
//! Run: `cargo bench -p tillmesh-store --bench store`. Data goes under
//! `target/bench-data` (real disk: a tmpfs would make fsync free and the numbers
//! meaningless). Percentiles and the large-store figures come from
//! `cargo run --release -p tillmesh-sim --bin store-bench`; see docs/PERFORMANCE.md.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{Criterion, criterion_group, criterion_main};
use tillmesh_store::{
    Barcode, LineRequest, NewProduct, NewStore, Role, SaleRequest, Sku, Store, StoreId,
    StoreOptions, Tender, TillKey, Unit,
};

fn bench_dir() -> tempfile::TempDir {
    let base = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-data");
    std::fs::create_dir_all(&base).expect("bench dir");
    tempfile::tempdir_in(base).expect("tempdir")
}

fn store_with_products(dir: &std::path::Path) -> Store {
    let mut store = Store::create(
        &dir.join("store.redb"),
        TillKey::generate(),
        NewStore {
            store_id: StoreId::random(),
            store_name: "Bench".into(),
            till_name: "B1".parse().expect("name"),
            role: Role::BackOffice,
            founder: true,
        },
        StoreOptions::default(),
    )
    .expect("create");
    for i in 0..200u32 {
        store
            .add_product(NewProduct {
                sku: format!("SKU{i:04}").parse().expect("sku"),
                name: format!("Product {i}"),
                barcodes: vec![Barcode::with_check_digit(&format!("400{i:09}")).expect("barcode")],
                price_cents: 100 + i64::from(i),
                unit: Unit::Each,
                tax_class: "standard".into(),
                category: "bench".into(),
            })
            .expect("product");
    }
    store
}

fn sale() -> SaleRequest {
    SaleRequest {
        lines: (0..3)
            .map(|i| LineRequest {
                code: format!("SKU{:04}", i * 7),
                qty: Some(1 + i),
                grams: None,
                discount_cents: 0,
            })
            .collect(),
        tender: Tender::Card,
    }
}

fn benches(c: &mut Criterion) {
    let dir = bench_dir();
    let mut store = store_with_products(dir.path());
    c.bench_function("sale_durable_3_lines", |b| {
        b.iter(|| black_box(store.record_sale(sale()).expect("sale")))
    });
    let sku: Sku = "SKU0042".parse().expect("sku");
    let barcode = Barcode::with_check_digit(&format!("400{:09}", 42)).expect("barcode");
    c.bench_function("product_by_sku", |b| {
        b.iter(|| black_box(store.product(&sku).expect("lookup")))
    });
    c.bench_function("product_by_barcode", |b| {
        b.iter(|| {
            let skus = store.skus_for_barcode(&barcode).expect("lookup");
            black_box(store.product(&skus[0]).expect("lookup"))
        })
    });
    c.bench_function("stock_on_hand", |b| {
        b.iter(|| black_box(store.stock(&sku).expect("stock")))
    });
}

criterion_group! {
    name = store;
    config = Criterion::default().sample_size(50);
    targets = benches
}
criterion_main!(store);
