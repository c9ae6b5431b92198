//! Synthetic but realistic store data: products, and each till's day of sales as
//! the exact changes the till itself would have written.

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, Automerge, ROOT};
use rand::Rng;
use tillmesh_store::{
    Barcode, Day, DocId, ENTRY_VERSION, EntryKind, Hlc, Line, NewProduct, NewStore, Proof, Receipt,
    Role, SaleEntry, Sku, Store, StoreId, StoreOptions, Tender, TillId, TillKey, TillName, Unit,
};

/// The SKU of product `i` in [`add_products`].
pub fn sku(i: usize) -> Sku {
    format!("P{i:05}").parse().expect("valid sku")
}

/// The barcode of product `i` in [`add_products`].
pub fn barcode(i: usize) -> String {
    Barcode::with_check_digit(&format!("200{i:09}"))
        .expect("12 digits")
        .to_string()
}

/// Add `n` products sold each, with one barcode each.
pub fn add_products(store: &mut Store, n: usize) -> anyhow::Result<()> {
    for i in 0..n {
        store.add_product(NewProduct {
            sku: sku(i),
            name: format!("Product {i}"),
            barcodes: vec![barcode(i).parse()?],
            price_cents: 50 + (i as i64 * 37) % 2000,
            unit: Unit::Each,
            tax_class: "standard".into(),
            category: "grocery".into(),
        })?;
    }
    Ok(())
}

/// One till's day of `n` sales, as the raw Automerge changes the till writes
/// (one change per sale, under the till's actor), starting at receipt `first`.
pub fn day_of_sales(
    till: TillId,
    name: &TillName,
    day: Day,
    first: u64,
    n: usize,
    products: usize,
    rng: &mut impl Rng,
) -> Vec<Vec<u8>> {
    let mut actor = till.as_bytes().to_vec();
    actor.extend_from_slice(&rng.random::<[u8; 8]>());
    let mut doc = Automerge::new().with_actor(ActorId::from(actor));
    let open_ms = day.days_since_epoch() as u64 * 86_400_000 + 8 * 3_600_000;
    for i in 0..n {
        let hlc = Hlc::from_ms(open_ms + i as u64 * 43_000);
        let lines: Vec<Line> = (0..rng.random_range(1..=4))
            .map(|_| {
                let p = rng.random_range(0..products);
                let qty = rng.random_range(1..=3);
                let price = 50 + (p as i64 * 37) % 2000;
                Line {
                    sku: sku(p),
                    qty: Some(qty),
                    grams: None,
                    unit_price_cents: price,
                    discount_cents: 0,
                    amount_cents: price * qty,
                    tax_cents: (price * qty * 2000 + 6000) / 12_000,
                }
            })
            .collect();
        let receipt = Receipt::new(name.clone(), first + i as u64);
        let entry = SaleEntry {
            version: ENTRY_VERSION,
            kind: EntryKind::Sale,
            receipt: receipt.clone(),
            refers_to: None,
            total_cents: lines.iter().map(|l| l.amount_cents).sum(),
            tax_cents: lines.iter().map(|l| l.tax_cents).sum(),
            lines,
            tender: if i % 3 == 0 {
                Tender::Cash
            } else {
                Tender::Card
            },
            hlc,
        };
        let json = serde_json::to_string(&entry).expect("entry serialises");
        doc.transact_with(
            |_| CommitOptions::default().with_time((hlc.ms() / 1000) as i64),
            |tx| tx.put(ROOT, receipt.to_string(), json),
        )
        .expect("put entry");
    }
    doc.get_changes(&[])
        .into_iter()
        .map(|c| c.raw_bytes().to_vec())
        .collect()
}

/// [`day_of_sales`] by the till of `key`, with the proof it signs over the
/// day's heads, as the till itself sends it: apply both with
/// `Store::apply_changes` on a till where the seller is a member.
#[allow(clippy::too_many_arguments)]
pub fn signed_day_of_sales(
    key: &TillKey,
    store: &StoreId,
    name: &TillName,
    day: Day,
    first: u64,
    n: usize,
    products: usize,
    rng: &mut impl Rng,
) -> (Vec<Vec<u8>>, Vec<Proof>) {
    let changes = day_of_sales(key.till_id(), name, day, first, n, products, rng);
    let proofs = proofs_for(key, store, &DocId::Sales(key.till_id(), day), &changes);
    (changes, proofs)
}

/// The proof `key` signs over the heads of a chain of its own `changes` (a
/// prefix of a day is a chain too: its heads are its last change).
pub fn proofs_for(key: &TillKey, store: &StoreId, doc: &DocId, changes: &[Vec<u8>]) -> Vec<Proof> {
    let Some(last) = changes
        .last()
        .and_then(|c| automerge::Change::from_bytes(c.clone()).ok())
    else {
        return Vec::new();
    };
    vec![Proof::sign(key, store, doc, 0, vec![last.hash()])]
}

/// A store holding `tills` tills' `days` days of `per_day` sales each, as one
/// back-office till would hold it after syncing them all; built once in a
/// folder and reused by the benchmarks.
#[derive(Debug, Clone, Copy)]
pub struct BigStore {
    /// Tills that sold.
    pub tills: usize,
    /// Days of sales per till.
    pub days: usize,
    /// Sales per till and day.
    pub per_day: usize,
    /// Products in the catalog.
    pub products: usize,
}

impl BigStore {
    /// The first day of sales (2026-01-01).
    pub fn first_day() -> Day {
        Day::from_unix_ms(1_767_225_600_000)
    }

    /// Sales in all.
    pub fn sales(&self) -> u64 {
        (self.tills * self.days * self.per_day) as u64
    }

    /// Build the store in `dir` unless a complete one is there (marked by a
    /// `complete-v2` file); gives the store file, the key of the till holding it
    /// (a back-office member) and the store's admin key.
    pub fn build(
        &self,
        dir: &std::path::Path,
        rng: &mut impl Rng,
    ) -> anyhow::Result<(std::path::PathBuf, TillKey, TillKey)> {
        let path = dir.join("store.redb");
        let key_path = dir.join("till.key");
        let admin_path = dir.join("admin.key");
        if dir.join("complete-v2").exists() {
            return Ok((path, TillKey::load(&key_path)?, TillKey::load(&admin_path)?));
        }
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir)?;
        let key = TillKey::generate();
        key.save(&key_path)?;
        let admin = TillKey::generate();
        admin.save(&admin_path)?;
        let mut store = Store::create(
            &path,
            key.clone(),
            NewStore {
                store_id: StoreId::random(),
                store_name: "Bench".into(),
                till_name: "B0".parse()?,
                role: Role::BackOffice,
                founder: true,
            },
            StoreOptions::default(),
        )?;
        store.set_admin_key(admin.till_id())?;
        store.set_admin_signer(admin.clone())?;
        let me = store.till_id();
        store.certify(&admin, me, &"B0".parse()?, Role::BackOffice)?;
        add_products(&mut store, self.products)?;
        let store_id = store.store_id();
        let start = std::time::Instant::now();
        for t in 0..self.tills {
            let seller = TillKey::generate();
            let till = seller.till_id();
            let name: TillName = format!("T{t:03}").parse()?;
            store.certify(&admin, till, &name, Role::Till)?;
            for d in 0..self.days {
                let day = Self::first_day().add_days(d as i64);
                let (changes, proofs) = signed_day_of_sales(
                    &seller,
                    &store_id,
                    &name,
                    day,
                    (d * self.per_day) as u64 + 1,
                    self.per_day,
                    self.products,
                    rng,
                );
                store.apply_changes(&DocId::Sales(till, day), &changes, &proofs)?;
            }
            if (t + 1) % 10 == 0 {
                eprintln!("generated {} tills in {:.0?}", t + 1, start.elapsed());
            }
        }
        eprintln!(
            "generated {} sales in {:.1?}",
            self.sales(),
            start.elapsed()
        );
        std::fs::write(dir.join("complete-v2"), b"")?;
        Ok((path, key, admin))
    }
}
