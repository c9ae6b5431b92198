//! Store benchmarks beyond criterion: latency percentiles of a durable sale, and a
//! store of a hundred tills' months of sales (open time, lookups, bytes per sale).
//!
//! ```text
//! cargo run --release -p tillmesh-sim --bin store-bench -- [--tills 100] [--days 30]
//!     [--per-day 500] [--sales 2000] [--dir target/bench-data]
//! ```
//! Prints a Markdown report; docs/PERFORMANCE.md holds the numbers of record.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Result;
use rand::{Rng, SeedableRng};
use tillmesh_sim::report::{flags, percentile};
use tillmesh_sim::workload;
use tillmesh_store::{
    LineRequest, NewStore, Role, SaleRequest, Store, StoreId, StoreOptions, Tender, TillKey,
};

struct Args {
    tills: usize,
    days: usize,
    per_day: usize,
    sales: usize,
    products: usize,
    dir: PathBuf,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        tills: 100,
        days: 30,
        per_day: 500,
        sales: 2000,
        products: 2000,
        dir: PathBuf::from("target/bench-data"),
    };
    for (flag, v) in flags()? {
        match flag.as_str() {
            "--tills" => a.tills = v.parse()?,
            "--days" => a.days = v.parse()?,
            "--per-day" => a.per_day = v.parse()?,
            "--sales" => a.sales = v.parse()?,
            "--products" => a.products = v.parse()?,
            "--dir" => a.dir = v.into(),
            _ => anyhow::bail!("unknown flag {flag}"),
        }
    }
    Ok(a)
}

fn new_store(path: &Path, key: TillKey, name: &str) -> Result<Store> {
    Ok(Store::create(
        path,
        key,
        NewStore {
            store_id: StoreId::random(),
            store_name: "Bench".into(),
            till_name: name.parse()?,
            role: Role::BackOffice,
            founder: true,
        },
        StoreOptions::default(),
    )?)
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn sale_request(rng: &mut impl Rng, products: usize) -> SaleRequest {
    SaleRequest {
        lines: (0..rng.random_range(1..=4))
            .map(|_| LineRequest {
                code: workload::barcode(rng.random_range(0..products)),
                qty: Some(rng.random_range(1..=3)),
                grams: None,
                discount_cents: 0,
            })
            .collect(),
        tender: Tender::Card,
    }
}

fn latency(a: &Args, rng: &mut impl Rng) -> Result<()> {
    let dir = a.dir.join("latency");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let mut store = new_store(&dir.join("store.redb"), TillKey::generate(), "L1")?;
    workload::add_products(&mut store, a.products)?;
    let mut times = Vec::with_capacity(a.sales);
    let start = Instant::now();
    for _ in 0..a.sales {
        let req = sale_request(rng, a.products);
        let t = Instant::now();
        store.record_sale(req)?;
        times.push(t.elapsed());
    }
    let total = start.elapsed();
    times.sort();
    let size = std::fs::metadata(dir.join("store.redb"))?.len();
    println!("## Durable sale (1-4 lines by barcode, fsync per sale)\n");
    println!("| sales | sales/s | p50 | p99 | max | file bytes/sale |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| {} | {:.0} | {} | {} | {} | {} |\n",
        a.sales,
        a.sales as f64 / total.as_secs_f64(),
        ms(percentile(&times, 0.5)),
        ms(percentile(&times, 0.99)),
        ms(*times.last().unwrap_or(&Duration::ZERO)),
        size / a.sales as u64
    );
    Ok(())
}

fn big_store(a: &Args, rng: &mut impl Rng) -> Result<()> {
    let dir = a
        .dir
        .join(format!("big-{}x{}x{}", a.tills, a.days, a.per_day));
    let big = workload::BigStore {
        tills: a.tills,
        days: a.days,
        per_day: a.per_day,
        products: a.products,
    };
    let (path, key, _admin) = big.build(&dir, rng)?;
    let total_sales = big.sales();
    let first_day = workload::BigStore::first_day();
    let size = std::fs::metadata(&path)?.len();
    // A store of an earlier format is upgraded on its first open (the sales
    // index and report view are built): timed apart from a plain open.
    let t = Instant::now();
    drop(Store::open(&path, key.clone(), StoreOptions::default())?);
    let first_open = t.elapsed();
    let t = Instant::now();
    let mut store = Store::open(&path, key, StoreOptions::default())?;
    let open = t.elapsed();
    let listing = listings(&store, &big)?;

    let n = 10_000;
    let t = Instant::now();
    for i in 0..n {
        let skus = store.skus_for_barcode(&workload::barcode(i % a.products).parse()?)?;
        std::hint::black_box(store.product(&skus[0])?);
    }
    let by_barcode = t.elapsed() / n as u32;
    let t = Instant::now();
    for i in 0..n {
        std::hint::black_box(store.stock(&workload::sku(i % a.products))?);
    }
    let stock = t.elapsed() / n as u32;
    let t = Instant::now();
    let day_totals = store.day_totals(first_day)?;
    let totals = t.elapsed();
    let t = Instant::now();
    store.record_sale(sale_request(rng, a.products))?;
    let first_sale = t.elapsed();

    println!(
        "## A store of {} tills x {} days x {} sales ({total_sales} sales)\n",
        a.tills, a.days, a.per_day
    );
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| first open (upgrade if the file is older) | {} |",
        ms(first_open)
    );
    println!("| open the store | {} |", ms(open));
    for (what, took) in &listing {
        println!("| {what} | {} |", ms(*took));
    }
    println!(
        "| product by barcode (mean of {n}) | {:.1} µs |",
        by_barcode.as_secs_f64() * 1e6
    );
    println!(
        "| stock on hand of a SKU (mean of {n}) | {:.1} µs |",
        stock.as_secs_f64() * 1e6
    );
    println!(
        "| sales totals of one day, all {} tills | {} |",
        day_totals.len(),
        ms(totals)
    );
    println!("| first durable sale after open | {} |", ms(first_sale));
    println!("| file size | {:.1} MiB |", size as f64 / 1048576.0);
    println!("| on-disk bytes per sale | {} |\n", size / total_sales);
    Ok(())
}

/// Pages of 50 at the start, in the middle and at the end of the sales index;
/// a month's report; a month exported page by page (resident memory measured
/// before and after).
fn listings(store: &Store, big: &workload::BigStore) -> Result<Vec<(String, Duration)>> {
    use tillmesh_store::SalesFilter;
    let first_day = workload::BigStore::first_day();
    let runs = 100u32;
    let mut out = Vec::new();
    for (name, day) in [
        ("first", first_day),
        ("middle", first_day.add_days(big.days as i64 / 2)),
        ("last", first_day.add_days(big.days as i64 - 1)),
    ] {
        let filter = SalesFilter {
            from: Some(day),
            ..SalesFilter::default()
        };
        let start = store.sales_page(&filter, None, 50)?.next;
        let t = Instant::now();
        for _ in 0..runs {
            let page = store.sales_page(&filter, start.as_deref(), 50)?;
            anyhow::ensure!(page.items.len() == 50, "a full page");
            std::hint::black_box(page);
        }
        out.push((
            format!("a page of 50 sales, {name} day (mean of {runs})"),
            t.elapsed() / runs,
        ));
    }
    let last = first_day.add_days(big.days as i64 - 1);
    let t = Instant::now();
    for _ in 0..10 {
        std::hint::black_box(store.sales_report(first_day, last)?);
    }
    out.push((
        format!(
            "sales report of {} days, all {} tills (mean of 10)",
            big.days, big.tills
        ),
        t.elapsed() / 10,
    ));
    let rss_before = rss_kib();
    let t = Instant::now();
    let mut after: Option<String> = None;
    let mut bytes = 0usize;
    let mut entries = 0usize;
    loop {
        let page = store.sales_page(&SalesFilter::default(), after.as_deref(), 500)?;
        for r in &page.items {
            bytes += serde_json::to_vec(r)?.len();
            entries += 1;
        }
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    out.push((
        format!(
            "export of every sale ({entries} entries, {:.0} MiB of JSON), pages of 500; resident memory {} → {} MiB",
            bytes as f64 / 1048576.0,
            rss_before / 1024,
            rss_kib() / 1024
        ),
        t.elapsed(),
    ));
    Ok(out)
}

/// This process's resident memory (Linux), in KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// A catalog of 2,000 products imported from CSV into a new store: one
/// durable write.
fn catalog_import(a: &Args) -> Result<()> {
    let dir = a.dir.join("import");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let mut store = new_store(&dir.join("store.redb"), TillKey::generate(), "T1")?;
    let mut csv = tillmesh_store::CSV_COLUMNS.join(",");
    csv.push('\n');
    let n = 2000;
    for i in 0..n {
        csv.push_str(&format!(
            "{},\"Product {i}, 1 kg\",{}.{:02},each,standard,aisle {},{},\n",
            workload::sku(i),
            1 + i % 20,
            i % 100,
            i % 12,
            workload::barcode(i)
        ));
    }
    let t = Instant::now();
    let report = store.import_catalog(csv.as_bytes(), tillmesh_store::CatalogFormat::Csv)?;
    let took = t.elapsed();
    anyhow::ensure!(report.added == n, "every product added");
    println!("## Catalog import\n");
    println!("| products | bytes of CSV | time (check every row, one durable write) |");
    println!("|---|---|---|");
    println!("| {n} | {} | {} |\n", csv.len(), ms(took));
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

fn main() -> Result<()> {
    let a = parse_args()?;
    std::fs::create_dir_all(&a.dir)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    latency(&a, &mut rng)?;
    catalog_import(&a)?;
    big_store(&a, &mut rng)?;
    Ok(())
}
