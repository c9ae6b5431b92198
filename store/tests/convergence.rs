//! Convergence: several tills of one store, some with wall clocks hours wrong,
//! make sales, price edits, stock movements, voids and refunds while their
//! changes travel between them in random order, partially, twice, and with
//! dependencies arriving after the changes that need them. Once everything has
//! reached everyone, every till holds the same documents and shows the same
//! views, every sale is listed exactly once everywhere, stock on hand equals a
//! reference model computed from the operations alone, and the conflict log of
//! each till holds exactly the concurrent price edits that till saw side by side
//! (no more, no fewer), where concurrency is decided by the test's own record
//! of which till had received which edit.
//!
//! Each proptest case draws one seed that drives everything; a failure message
//! names it, and `TILLMESH_SEED=<seed>` replays just that scenario (Automerge
//! actor ids stay random, so ties between concurrent values may fall otherwise).
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use automerge::Change;
use proptest::prelude::*;
use proptest::test_runner::RngSeed;
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use tillmesh_store::{
    ApplyError, Barcode, ChangeHash, Day, DocId, EntryKind, Hlc, LineRequest, ManualClock,
    NewProduct, NewStore, Proof, RefundLine, Role, SaleEntry, SaleError, SaleRequest, Sku, Store,
    StoreId, StoreOptions, Tender, TillId, TillKey, Totals, Unit,
};

const HOUR_MS: i64 = 3_600_000;

/// Clock error of each till: some hours wrong either way.
const CLOCK_OFFSETS: [i64; 6] = [0, 3 * HOUR_MS, -3 * HOUR_MS, 0, 2 * HOUR_MS, -HOUR_MS / 2];

/// The catalog the founder seeds: SKU, unit, tax class, barcode prefix (12 digits).
const PRODUCTS: [(&str, Unit, &str, &str); 4] = [
    ("MILK", Unit::Each, "reduced", "400638133393"),
    ("BREAD", Unit::Each, "reduced", "501234567890"),
    ("SOAP", Unit::Each, "standard", "871234567890"),
    ("APPLES", Unit::Kg, "reduced", "200000000001"),
];

/// SKUs whose price is edited, few so that concurrent edits are likely.
const PRICE_SKUS: [&str; 2] = ["MILK", "APPLES"];

fn sku(s: &str) -> Sku {
    s.parse().expect("valid SKU")
}

/// The EAN-13 of a 12-digit prefix: the prefix and its GS1 check digit.
fn ean13(prefix: &str) -> Barcode {
    Barcode::with_check_digit(prefix).expect("12 digits")
}

/// 2026-03-09 23:30 UTC: tills whose clock is ahead are already on the next day.
fn base_ms() -> u64 {
    let day: Day = "2026-03-09".parse().expect("day");
    day.days_since_epoch() as u64 * 86_400_000 + 23 * 3_600_000 + 30 * 60_000
}

/// One write of a product's price (the founder's initial price counts as one).
#[derive(Debug)]
struct PriceEdit {
    till: TillId,
    sku: Sku,
    price: i64,
    /// Edits the writing till had applied when it wrote this one.
    ancestors: HashSet<usize>,
}

/// A batch of changes on its way to a till.
#[derive(Debug, Clone)]
struct Msg {
    to: usize,
    doc: DocId,
    changes: Vec<Vec<u8>>,
    /// The sender's proofs of authorship when it sent the batch.
    proofs: Vec<Proof>,
}

#[derive(Debug, Clone, Copy)]
enum StockEv {
    Move(i64),
    Count(i64),
}

/// The test's own record of what happened, to compare the tills against.
#[derive(Default)]
struct Model {
    /// Every sale, void and refund, with the till index that recorded it.
    entries: Vec<(usize, SaleEntry)>,
    /// Stock events by SKU: (hlc, till, event).
    stock: BTreeMap<Sku, Vec<(Hlc, TillId, StockEv)>>,
    /// Dependencies of every catalog change seen.
    deps: HashMap<ChangeHash, Vec<ChangeHash>>,
    /// Catalog changes each till holds (made, or delivered to it).
    held: Vec<HashSet<ChangeHash>>,
    /// Catalog changes each till has applied: held with all dependencies applied.
    applied: Vec<HashSet<ChangeHash>>,
    edits: Vec<PriceEdit>,
    edit_of_change: HashMap<ChangeHash, usize>,
    edit_of_value: HashMap<(TillId, i64), usize>,
    /// Per till: the sets of concurrent price edits it held side by side at some
    /// point, as (SKU, edit ids).
    side_by_side: Vec<BTreeSet<(Sku, BTreeSet<usize>)>>,
    next_price: i64,
}

impl Model {
    fn recompute_applied(&mut self, t: usize) {
        loop {
            let ready: Vec<ChangeHash> = self.held[t]
                .iter()
                .filter(|h| !self.applied[t].contains(*h))
                .filter(|h| {
                    self.deps
                        .get(*h)
                        .is_some_and(|ds| ds.iter().all(|d| self.applied[t].contains(d)))
                })
                .copied()
                .collect();
            if ready.is_empty() {
                return;
            }
            self.applied[t].extend(ready);
        }
    }

    fn concurrent(&self, a: usize, b: usize) -> bool {
        a != b && !self.edits[a].ancestors.contains(&b) && !self.edits[b].ancestors.contains(&a)
    }

    /// The price edits of `sku` that till `t` holds and no edit it holds supersedes.
    fn current_edits(&self, t: usize, sku: &Sku) -> BTreeSet<usize> {
        let known: Vec<usize> = self.applied[t]
            .iter()
            .filter_map(|h| self.edit_of_change.get(h).copied())
            .filter(|e| &self.edits[*e].sku == sku)
            .collect();
        known
            .iter()
            .copied()
            .filter(|e| !known.iter().any(|o| self.edits[*o].ancestors.contains(e)))
            .collect()
    }

    fn unique_price(&mut self, rng: &mut StdRng) -> i64 {
        self.next_price += 1;
        // Distinct for every edit, so a value names its edit.
        80 + self.next_price * 4 + rng.random_range(0..4)
    }

    /// Stock on hand by the rule: the latest count (by HLC, then till) plus every
    /// movement ordered after it, or the sum of all movements if never counted.
    fn on_hand(&self, sku: &Sku) -> i64 {
        let Some(events) = self.stock.get(sku) else {
            return 0;
        };
        let mut events = events.clone();
        events.sort_by_key(|(hlc, till, _)| (*hlc, *till));
        let mut total = 0;
        for (_, _, ev) in events {
            match ev {
                StockEv::Move(d) => total += d,
                StockEv::Count(q) => total = q,
            }
        }
        total
    }
}

fn add_to_totals(t: &mut Totals, e: &SaleEntry) {
    let signed = match e.kind {
        EntryKind::Sale => {
            t.sales += 1;
            t.sales_cents += e.total_cents;
            t.tax_cents += e.tax_cents;
            e.total_cents
        }
        EntryKind::Void => {
            t.voids += 1;
            t.voided_cents += e.total_cents;
            t.tax_cents -= e.tax_cents;
            -e.total_cents
        }
        EntryKind::Refund => {
            t.refunds += 1;
            t.refunded_cents += e.total_cents;
            t.tax_cents -= e.tax_cents;
            -e.total_cents
        }
    };
    t.net_cents += signed;
    match e.tender {
        Tender::Cash => t.cash_cents += signed,
        Tender::Card => t.card_cents += signed,
    }
}

struct Sim {
    seed: u64,
    rng: StdRng,
    tills: Vec<Store>,
    clocks: Vec<ManualClock>,
    ids: Vec<TillId>,
    queue: Vec<Msg>,
    m: Model,
    stats: Stats,
}

#[derive(Debug, Default)]
struct Stats {
    sales: usize,
    price_edits: usize,
    stock_ops: usize,
    voids: usize,
    refunds: usize,
    deliveries: usize,
    queued_batches: usize,
    /// Batches refused because no proof reached them.
    unproven: usize,
    /// Catalog deliveries after which the till held changes still waiting for
    /// their dependencies.
    catalog_waiting: usize,
}

impl Sim {
    fn new(seed: u64, n: usize) -> Sim {
        let mut rng = StdRng::seed_from_u64(seed);
        let store_id = StoreId::from_bytes(rng.random());
        let mut tills = Vec::new();
        let mut clocks = Vec::new();
        let mut ids = Vec::new();
        for i in 0..n {
            let clock = ManualClock::new((base_ms() as i64 + CLOCK_OFFSETS[i % 6]) as u64);
            let key = TillKey::from_seed(rng.random());
            let new = NewStore {
                store_id,
                store_name: "Convergence Grocers".into(),
                till_name: format!("T{i}").parse().expect("till name"),
                // Managers: every till edits prices here.
                role: if i == 0 {
                    Role::BackOffice
                } else {
                    Role::Manager
                },
                founder: i == 0,
            };
            let opts = StoreOptions {
                clock: Arc::new(clock.clone()),
                // Compact often and keep few documents loaded, so both the
                // compaction and the reload paths run while changes are queued.
                compact_after: 8,
                cache_docs: 4,
                ..StoreOptions::default()
            };
            let store = Store::create_in_memory(key, new, opts).expect("create till");
            ids.push(store.till_id());
            tills.push(store);
            clocks.push(clock);
        }
        // The founder holds the store's admin key and certifies every till.
        let admin = TillKey::from_seed(rng.random());
        for t in &mut tills {
            t.set_admin_key(admin.till_id()).expect("trust root");
        }
        tills[0].set_admin_signer(admin.clone()).expect("admin key");
        for (i, id) in ids.iter().enumerate() {
            let role = if i == 0 {
                Role::BackOffice
            } else {
                Role::Manager
            };
            let name = format!("T{i}").parse().expect("till name");
            tills[0].certify(&admin, *id, &name, role).expect("certify");
        }
        Sim {
            seed,
            rng,
            tills,
            clocks,
            ids,
            queue: Vec::new(),
            m: Model {
                held: vec![HashSet::new(); n],
                applied: vec![HashSet::new(); n],
                side_by_side: vec![BTreeSet::new(); n],
                ..Model::default()
            },
            stats: Stats::default(),
        }
    }

    fn n(&self) -> usize {
        self.tills.len()
    }

    /// Merge a batch into till `to`, keeping the model's catalog record in step.
    /// A batch that no proof of authorship reaches (a random subset of a
    /// till's changes, say) is refused whole, like a lost message.
    fn deliver(&mut self, to: usize, doc: DocId, changes: &[Vec<u8>], proofs: &[Proof]) -> usize {
        let seed = self.seed;
        let report = match self.tills[to].apply_changes(&doc, changes, proofs) {
            Ok(r) => r,
            Err(ApplyError::Unproven { .. }) => {
                self.stats.unproven += 1;
                return 0;
            }
            Err(e) => panic!("seed {seed}: till {to} refused a batch for {doc}: {e}"),
        };
        self.stats.deliveries += 1;
        if doc == DocId::Catalog {
            for bytes in changes {
                let c = Change::from_bytes(bytes.clone()).expect("a change the store produced");
                self.m
                    .deps
                    .entry(c.hash())
                    .or_insert_with(|| c.deps().to_vec());
                self.m.held[to].insert(c.hash());
            }
            self.m.recompute_applied(to);
            if self.m.applied[to].len() < self.m.held[to].len() {
                self.stats.catalog_waiting += 1;
            }
            self.check_catalog(to);
        }
        report.new_changes
    }

    /// The store applied exactly the catalog changes whose dependencies it holds,
    /// and logged every set of concurrent price edits it now holds side by side.
    fn check_catalog(&mut self, t: usize) {
        let seed = self.seed;
        let store_has: HashSet<ChangeHash> = self.tills[t]
            .changes_since(&DocId::Catalog, &[])
            .expect("catalog changes")
            .into_iter()
            .map(|b| Change::from_bytes(b).expect("change").hash())
            .collect();
        assert_eq!(
            store_has, self.m.applied[t],
            "seed {seed}: till {t} applied a different set of catalog changes than it holds \
             causally complete"
        );
        let conflicts = self.tills[t].conflicts().expect("conflicts");
        for s in PRICE_SKUS {
            let s = sku(s);
            let current = self.m.current_edits(t, &s);
            if current.len() < 2 {
                continue;
            }
            let want: BTreeSet<(TillId, i64)> = current
                .iter()
                .map(|e| (self.m.edits[*e].till, self.m.edits[*e].price))
                .collect();
            let key = format!("{s}/price_cents");
            let logged = conflicts.iter().any(|c| {
                c.doc == "catalog"
                    && c.key == key
                    && c.values
                        .iter()
                        .map(|v| (v.till, v.value.as_i64().unwrap_or(-1)))
                        .collect::<BTreeSet<_>>()
                        == want
            });
            assert!(
                logged,
                "seed {seed}: till {t} holds concurrent prices {want:?} of {s} side by side \
                 but its conflict log lacks them; it has {:?}",
                conflicts
                    .iter()
                    .filter(|c| c.key == key)
                    .map(|c| c
                        .values
                        .iter()
                        .map(|v| (v.till, v.value.clone()))
                        .collect::<Vec<_>>())
                    .collect::<Vec<_>>()
            );
            self.m.side_by_side[t].insert((s, current));
        }
    }

    fn advance_clocks(&mut self) {
        let delta = self.rng.random_range(0..90_000);
        for c in &self.clocks {
            c.advance(delta);
        }
    }

    /// Join: every till receives all of the founder's documents.
    fn join_all(&mut self) {
        let mut docs = self.tills[0].doc_ids().expect("doc ids");
        docs.sort_by_key(|d| *d != DocId::Membership);
        for t in 1..self.n() {
            for doc in &docs {
                let changes = self.tills[0].changes_since(doc, &[]).expect("changes");
                let proofs = self.tills[0].proofs(doc).expect("proofs");
                self.deliver(t, *doc, &changes, &proofs);
            }
        }
    }

    fn seed_catalog(&mut self) {
        for (s, unit, class, prefix) in PRODUCTS {
            let price = self.m.unique_price(&mut self.rng);
            let before = self.tills[0].heads(&DocId::Catalog).expect("heads");
            self.tills[0]
                .add_product(NewProduct {
                    sku: sku(s),
                    name: format!("{s} product"),
                    barcodes: vec![ean13(prefix)],
                    price_cents: price,
                    unit,
                    tax_class: class.into(),
                    category: "groceries".into(),
                })
                .expect("add product");
            self.record_local_catalog_edit(0, &before, &sku(s), price);
        }
        for t in 1..self.n() {
            let changes = self.tills[0]
                .changes_since(&DocId::Catalog, &[])
                .expect("changes");
            let proofs = self.tills[0].proofs(&DocId::Catalog).expect("proofs");
            self.deliver(t, DocId::Catalog, &changes, &proofs);
        }
    }

    /// Note the catalog change till `t` just made, which wrote `price` for `sku`.
    fn record_local_catalog_edit(
        &mut self,
        t: usize,
        before: &[ChangeHash],
        sku: &Sku,
        price: i64,
    ) {
        let seed = self.seed;
        let new = self.tills[t]
            .changes_since(&DocId::Catalog, before)
            .expect("changes");
        assert_eq!(new.len(), 1, "seed {seed}: one local edit makes one change");
        let c = Change::from_bytes(new[0].clone()).expect("change");
        // It depends on the heads it was made on (Automerge may also name the
        // writer's own previous change, an ancestor of those heads).
        assert!(
            before.iter().all(|h| c.deps().contains(h))
                && c.deps().iter().all(|d| self.m.applied[t].contains(d)),
            "seed {seed}: a local edit depends on the heads it was made on"
        );
        let ancestors: HashSet<usize> = self.m.applied[t]
            .iter()
            .filter_map(|h| self.m.edit_of_change.get(h).copied())
            .collect();
        let id = self.m.edits.len();
        self.m.edits.push(PriceEdit {
            till: self.ids[t],
            sku: sku.clone(),
            price,
            ancestors,
        });
        self.m.edit_of_change.insert(c.hash(), id);
        let dup = self.m.edit_of_value.insert((self.ids[t], price), id);
        assert!(dup.is_none(), "prices are unique per edit");
        self.m.deps.insert(c.hash(), c.deps().to_vec());
        self.m.held[t].insert(c.hash());
        self.m.applied[t].insert(c.hash());
        self.check_catalog(t);
    }

    fn op_sale(&mut self, t: usize) {
        let seed = self.seed;
        let n_lines = self.rng.random_range(1..=3);
        let mut lines = Vec::new();
        for _ in 0..n_lines {
            let (s, unit, _, prefix) = *PRODUCTS.choose(&mut self.rng).expect("products");
            let product = self.tills[t]
                .product(&sku(s))
                .expect("product")
                .expect("catalog propagated");
            let (qty, grams, gross) = match unit {
                Unit::Each => {
                    let q = self.rng.random_range(1..=4);
                    (Some(q), None, product.price_cents * q)
                }
                Unit::Kg => {
                    let g = self.rng.random_range(50..=2_500);
                    (None, Some(g), product.price_cents * g / 1000)
                }
            };
            let discount_cents = if self.rng.random_bool(0.25) {
                self.rng.random_range(0..=gross / 2)
            } else {
                0
            };
            let code = if self.rng.random_bool(0.5) {
                s.to_string()
            } else {
                ean13(prefix).to_string()
            };
            lines.push(LineRequest {
                code,
                qty,
                grams,
                discount_cents,
            });
        }
        let tender = if self.rng.random_bool(0.5) {
            Tender::Cash
        } else {
            Tender::Card
        };
        let entry = self.tills[t]
            .record_sale(SaleRequest { lines, tender })
            .unwrap_or_else(|e| panic!("seed {seed}: till {t} sale failed: {e}"));
        self.stats.sales += 1;
        self.record_entry(t, entry);
    }

    fn record_entry(&mut self, t: usize, entry: SaleEntry) {
        for l in &entry.lines {
            let delta = match entry.kind {
                EntryKind::Sale => -l.base_qty(),
                EntryKind::Void | EntryKind::Refund => l.base_qty(),
            };
            self.m.stock.entry(l.sku.clone()).or_default().push((
                entry.hlc,
                self.ids[t],
                StockEv::Move(delta),
            ));
        }
        self.m.entries.push((t, entry));
    }

    fn op_price(&mut self, t: usize) {
        let seed = self.seed;
        let s = sku(PRICE_SKUS.choose(&mut self.rng).expect("skus"));
        let price = self.m.unique_price(&mut self.rng);
        let before = self.tills[t].heads(&DocId::Catalog).expect("heads");
        let p = self.tills[t]
            .set_price(&s, price)
            .unwrap_or_else(|e| panic!("seed {seed}: till {t} set_price failed: {e}"));
        assert_eq!(
            p.price_cents, price,
            "seed {seed}: a till's own latest edit is later than all it has seen"
        );
        self.stats.price_edits += 1;
        self.record_local_catalog_edit(t, &before, &s, price);
    }

    fn op_stock(&mut self, t: usize) {
        let seed = self.seed;
        let (s, unit, _, _) = *PRODUCTS.choose(&mut self.rng).expect("products");
        let s = sku(s);
        let scale = if unit == Unit::Kg { 100 } else { 1 };
        let (entry, ev) = match self.rng.random_range(0..3) {
            0 => {
                let q = self.rng.random_range(1..=40) * scale;
                (self.tills[t].receive_stock(&s, q), StockEv::Move(q))
            }
            1 => {
                let mut d = self.rng.random_range(1..=5) * scale;
                if self.rng.random_bool(0.6) {
                    d = -d;
                }
                (
                    self.tills[t].adjust_stock(&s, d, "breakage"),
                    StockEv::Move(d),
                )
            }
            _ => {
                let q = self.rng.random_range(0..=60) * scale;
                (self.tills[t].count_stock(&s, q), StockEv::Count(q))
            }
        };
        let entry = entry.unwrap_or_else(|e| panic!("seed {seed}: till {t} stock op failed: {e}"));
        self.stats.stock_ops += 1;
        self.m
            .stock
            .entry(s)
            .or_default()
            .push((entry.hlc, self.ids[t], ev));
    }

    fn op_undo(&mut self, t: usize) {
        let seed = self.seed;
        // Mostly a sale this till lists (its own or one it received), sometimes
        // any sale, which it may not have received yet.
        let visible: HashSet<String> = self.tills[t]
            .sales(None, None)
            .expect("sales")
            .into_iter()
            .map(|r| r.entry.receipt.to_string())
            .collect();
        let any = self.rng.random_bool(0.2);
        let sales: Vec<(usize, SaleEntry)> = self
            .m
            .entries
            .iter()
            .filter(|(_, e)| e.kind == EntryKind::Sale)
            .filter(|(_, e)| any || visible.contains(&e.receipt.to_string()))
            .cloned()
            .collect();
        let Some((owner, sale)) = sales.choose(&mut self.rng).cloned() else {
            return;
        };
        let void = self.rng.random_bool(0.5);
        let result = if void {
            self.tills[t].void(&sale.receipt)
        } else if self.rng.random_bool(0.5) {
            self.tills[t].refund(&sale.receipt, &[])
        } else {
            let line = &sale.lines[0];
            self.tills[t].refund(
                &sale.receipt,
                &[RefundLine {
                    sku: line.sku.clone(),
                    qty: Some(1),
                }],
            )
        };
        match result {
            Ok(entry) => {
                assert_eq!(entry.refers_to.as_ref(), Some(&sale.receipt));
                if void {
                    self.stats.voids += 1;
                } else {
                    self.stats.refunds += 1;
                }
                self.record_entry(t, entry);
            }
            // A till may not have received another till's sale yet.
            Err(SaleError::UnknownReceipt(_)) if owner != t => {}
            // Already voided or fully refunded, as far as this till knows.
            Err(SaleError::NotAllowed(_)) => {}
            Err(e) => panic!("seed {seed}: till {t} undoing {}: {e}", sale.receipt),
        }
    }

    /// Put batches of one till's changes on the way to another: all of them, a
    /// random subset, only the latest ones, or split with the later part first.
    fn send_some(&mut self) {
        let n = self.n();
        for _ in 0..self.rng.random_range(1..=4) {
            let from = self.rng.random_range(0..n);
            let mut to = self.rng.random_range(0..n - 1);
            if to >= from {
                to += 1;
            }
            let docs = self.tills[from].doc_ids().expect("doc ids");
            // Favour the catalog, where the conflicts are.
            let doc = if self.rng.random_bool(0.4) {
                DocId::Catalog
            } else {
                *docs.choose(&mut self.rng).expect("docs")
            };
            let all = self.tills[from].changes_since(&doc, &[]).expect("changes");
            if all.is_empty() {
                continue;
            }
            let proofs = self.tills[from].proofs(&doc).expect("proofs");
            match self.rng.random_range(0..4) {
                0 => self.queue.push(Msg {
                    to,
                    doc,
                    changes: all,
                    proofs: proofs.clone(),
                }),
                1 => {
                    let subset: Vec<Vec<u8>> = all
                        .into_iter()
                        .filter(|_| self.rng.random_bool(0.5))
                        .collect();
                    if !subset.is_empty() {
                        self.queue.push(Msg {
                            to,
                            doc,
                            changes: subset,
                            proofs: proofs.clone(),
                        });
                    }
                }
                2 => {
                    let k = self.rng.random_range(1..=all.len().min(3));
                    let tail = all[all.len() - k..].to_vec();
                    self.queue.push(Msg {
                        to,
                        doc,
                        changes: tail,
                        proofs: proofs.clone(),
                    });
                }
                _ => {
                    let cut = self.rng.random_range(0..=all.len());
                    let (early, late) = all.split_at(cut);
                    for part in [late, early] {
                        if !part.is_empty() {
                            self.queue.push(Msg {
                                to,
                                doc,
                                changes: part.to_vec(),
                                proofs: proofs.clone(),
                            });
                        }
                    }
                }
            }
            self.stats.queued_batches += 1;
        }
    }

    /// Deliver a random few queued batches, sometimes newest first, sometimes
    /// keeping a copy to deliver again later.
    fn deliver_some(&mut self) {
        if self.queue.is_empty() {
            return;
        }
        let k = self.rng.random_range(1..=self.queue.len().min(5));
        let mut batch = Vec::new();
        for _ in 0..k {
            let i = self.rng.random_range(0..self.queue.len());
            if self.rng.random_bool(0.2) {
                batch.push(self.queue[i].clone());
            } else {
                batch.push(self.queue.swap_remove(i));
            }
        }
        if self.rng.random_bool(0.5) {
            batch.reverse();
        }
        for msg in batch {
            self.deliver(msg.to, msg.doc, &msg.changes, &msg.proofs);
        }
    }

    fn run_ops(&mut self, n_ops: usize) {
        let n = self.n();
        for _ in 0..n_ops {
            self.advance_clocks();
            let t = self.rng.random_range(0..n);
            match self.rng.random_range(0..100) {
                0..40 => self.op_sale(t),
                40..65 => self.op_price(t),
                65..85 => self.op_stock(t),
                _ => self.op_undo(t),
            }
            if self.rng.random_bool(0.7) {
                self.send_some();
            }
            if self.rng.random_bool(0.6) {
                self.deliver_some();
            }
        }
    }

    /// Deliver what is still queued, then everything to everyone until nothing new moves.
    fn settle(&mut self) {
        let mut rest = std::mem::take(&mut self.queue);
        rest.shuffle(&mut self.rng);
        for msg in rest {
            self.deliver(msg.to, msg.doc, &msg.changes, &msg.proofs);
        }
        let n = self.n();
        for round in 0.. {
            assert!(
                round < 20,
                "seed {}: no quiescence after 20 rounds",
                self.seed
            );
            let mut moved = 0;
            for from in 0..n {
                for to in 0..n {
                    if from == to {
                        continue;
                    }
                    for doc in self.tills[from].doc_ids().expect("doc ids") {
                        let have = self.tills[to].heads(&doc).expect("heads");
                        let changes = self.tills[from]
                            .changes_since(&doc, &have)
                            .expect("changes");
                        if !changes.is_empty() {
                            let proofs = self.tills[from].proofs(&doc).expect("proofs");
                            moved += self.deliver(to, doc, &changes, &proofs);
                        }
                    }
                }
            }
            if moved == 0 {
                break;
            }
        }
    }

    fn check_converged(&mut self) {
        let seed = self.seed;
        let n = self.n();

        // Same documents, same heads.
        let mut docs0 = self.tills[0].doc_ids().expect("doc ids");
        docs0.sort();
        for t in 1..n {
            let mut docs = self.tills[t].doc_ids().expect("doc ids");
            docs.sort();
            assert_eq!(
                docs, docs0,
                "seed {seed}: till {t} holds other documents than till 0"
            );
        }
        for doc in &docs0 {
            let mut h0 = self.tills[0].heads(doc).expect("heads");
            h0.sort();
            for t in 1..n {
                let mut h = self.tills[t].heads(doc).expect("heads");
                h.sort();
                assert_eq!(h, h0, "seed {seed}: till {t} has other heads of {doc}");
            }
        }

        // Same views.
        let dump0 = self.tills[0].view_dump().expect("dump");
        let products0 = self.tills[0].products().expect("products");
        let levels0 = self.tills[0].stock_levels().expect("stock");
        let days: BTreeSet<Day> = docs0
            .iter()
            .filter_map(|d| match d {
                DocId::Sales(_, day) => Some(*day),
                _ => None,
            })
            .collect();
        assert!(!days.is_empty(), "seed {seed}: some sales were made");
        for t in 1..n {
            let dump = self.tills[t].view_dump().expect("dump");
            if dump != dump0 {
                let diff: Vec<_> = dump0
                    .iter()
                    .filter(|(k, v)| dump.get(*k) != Some(*v))
                    .map(|(k, v)| (k.clone(), v.clone(), dump.get(k).cloned()))
                    .chain(
                        dump.iter()
                            .filter(|(k, _)| !dump0.contains_key(*k))
                            .map(|(k, v)| (k.clone(), String::new(), Some(v.clone()))),
                    )
                    .collect();
                panic!("seed {seed}: till {t} views differ from till 0's: {diff:#?}");
            }
            assert_eq!(
                self.tills[t].products().expect("products"),
                products0,
                "seed {seed}"
            );
            assert_eq!(
                self.tills[t].stock_levels().expect("stock"),
                levels0,
                "seed {seed}"
            );
            for day in &days {
                assert_eq!(
                    self.tills[t].day_totals(*day).expect("totals"),
                    self.tills[0].day_totals(*day).expect("totals"),
                    "seed {seed}: totals of {day} differ on till {t}"
                );
            }
        }

        // Totals as the model computes them.
        let mut want_totals: BTreeMap<(Day, TillId), Totals> = BTreeMap::new();
        for (t, e) in &self.m.entries {
            let day = Day::from_unix_ms(e.hlc.ms());
            add_to_totals(want_totals.entry((day, self.ids[*t])).or_default(), e);
        }
        for ((day, till), want) in &want_totals {
            assert_eq!(
                &self.tills[0].totals(*day, *till).expect("totals"),
                want,
                "seed {seed}: totals of {day} for {till:?}"
            );
        }
        let listed_days: usize = days
            .iter()
            .map(|d| self.tills[0].day_totals(*d).expect("totals").len())
            .sum();
        assert_eq!(
            listed_days,
            want_totals.len(),
            "seed {seed}: no totals beyond the model's"
        );

        // Every entry exactly once, and nothing else.
        let mut want: Vec<(TillId, String, SaleEntry)> = self
            .m
            .entries
            .iter()
            .map(|(t, e)| (self.ids[*t], e.receipt.to_string(), e.clone()))
            .collect();
        want.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        for t in 0..n {
            let mut got: Vec<(TillId, String, SaleEntry)> = self.tills[t]
                .sales(None, None)
                .expect("sales")
                .into_iter()
                .map(|r| (r.till, r.entry.receipt.to_string(), r.entry))
                .collect();
            got.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
            assert_eq!(
                got.len(),
                want.len(),
                "seed {seed}: till {t} lists other entries"
            );
            assert!(got == want, "seed {seed}: till {t} lists other entries");
        }

        // Stock as the reference model computes it.
        for (s, _, _, _) in PRODUCTS {
            let s = sku(s);
            let want = self.m.on_hand(&s);
            for t in 0..n {
                assert_eq!(
                    self.tills[t].stock(&s).expect("stock").on_hand,
                    want,
                    "seed {seed}: stock of {s} on till {t}"
                );
            }
        }

        // Conflicts: exactly the side-by-side sets of each till, all truly concurrent.
        //
        // Not every concurrent pair is logged, and need not be: if till A edits
        // twice (a1, then a2) while till B edits once (b), a1 and b are concurrent,
        // but a till that receives a1 and a2 together never holds a1 and b side by
        // side, as a2 already replaced a1; it logs {a2, b} instead. So each till's
        // log is compared with the sets it actually held side by side, which the
        // model tracks (checked as they appear, in `check_catalog`), and every
        // concurrent pair that some till held side by side is in that till's log.
        for t in 0..n {
            let mut logged = BTreeSet::new();
            for c in self.tills[t].conflicts().expect("conflicts") {
                assert_eq!(c.doc, "catalog", "seed {seed}: only price edits conflict");
                let (s, field) = c.key.split_once('/').expect("catalog key");
                assert_eq!(field, "price_cents", "seed {seed}: only prices are edited");
                let ids: BTreeSet<usize> = c
                    .values
                    .iter()
                    .map(|v| {
                        let price = v.value.as_i64().expect("a price");
                        *self
                            .m
                            .edit_of_value
                            .get(&(v.till, price))
                            .unwrap_or_else(|| {
                                panic!("seed {seed}: logged value {price} was never written")
                            })
                    })
                    .collect();
                assert_eq!(
                    ids.len(),
                    c.values.len(),
                    "seed {seed}: a value logged twice"
                );
                for a in &ids {
                    for b in &ids {
                        assert!(
                            a == b || self.m.concurrent(*a, *b),
                            "seed {seed}: till {t} logged a conflict between edits \
                             {:?} and {:?}, one of which had seen the other",
                            self.m.edits[*a],
                            self.m.edits[*b]
                        );
                    }
                }
                logged.insert((sku(s), ids));
            }
            assert_eq!(
                logged, self.m.side_by_side[t],
                "seed {seed}: till {t} logged other conflicts than it saw"
            );
        }
        // Concurrent edits still both current at the end are logged on every till.
        for s in PRICE_SKUS {
            let s = sku(s);
            let current = self.m.current_edits(0, &s);
            if current.len() > 1 {
                for t in 0..n {
                    assert!(
                        self.m.side_by_side[t].contains(&(s.clone(), current.clone())),
                        "seed {seed}: till {t} does not show the open conflict on {s}"
                    );
                }
            }
        }
    }

    /// Concurrent pairs of price edits, and how many of them some till logged.
    fn concurrent_pairs(&self) -> (usize, usize) {
        let mut pairs = 0;
        let mut logged = 0;
        for a in 0..self.m.edits.len() {
            for b in a + 1..self.m.edits.len() {
                if self.m.edits[a].sku != self.m.edits[b].sku || !self.m.concurrent(a, b) {
                    continue;
                }
                pairs += 1;
                if self
                    .m
                    .side_by_side
                    .iter()
                    .flatten()
                    .any(|(_, set)| set.contains(&a) && set.contains(&b))
                {
                    logged += 1;
                }
            }
        }
        (pairs, logged)
    }
}

fn run_case(seed: u64, n_tills: usize, n_ops: usize) -> (usize, usize) {
    let mut sim = Sim::new(seed, n_tills);
    sim.join_all();
    sim.seed_catalog();
    sim.run_ops(n_ops);
    sim.settle();
    sim.check_converged();
    let (pairs, logged) = sim.concurrent_pairs();
    eprintln!(
        "seed {seed}: {n_tills} tills, {n_ops} ops, {:?}, concurrent price pairs {pairs} \
         (logged {logged})",
        sim.stats
    );
    (pairs, logged)
}

/// Scenarios that once failed, run every time: the first found tills showing
/// different prices after a conflicting edit was superseded out of sight of the
/// Automerge diff; the second, a local edit naming its writer's previous change
/// among its dependencies. With `TILLMESH_SEED=<seed>`, that scenario instead:
/// `TILLMESH_SEED=<seed> cargo test -p tillmesh-store --test suites convergence::regressions`.
#[test]
fn regressions() {
    let seeds: Vec<u64> = match std::env::var("TILLMESH_SEED") {
        Ok(s) => vec![s.parse().expect("TILLMESH_SEED is a number")],
        Err(_) => vec![9_247_510_437_830_780_327, 7_962_254_145_241_733_617],
    };
    for seed in seeds {
        let (n_tills, n_ops) = params_of(seed);
        run_case(seed, n_tills, n_ops);
    }
}

fn params_of(seed: u64) -> (usize, usize) {
    (5 + (seed % 2) as usize, 30 + (seed / 2 % 31) as usize)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 24,
        rng_seed: RngSeed::Fixed(0x7111_3e54),
        failure_persistence: None,
        max_shrink_iters: 0,
        ..ProptestConfig::default()
    })]

    #[test]
    fn tills_converge(seed in any::<u64>()) {
        let (n_tills, n_ops) = params_of(seed);
        run_case(seed, n_tills, n_ops);
    }
}
