//! What the local API reads and writes beyond single records: the sales index
//! (`v_sales`, one row per sales entry in (day, time, till) order, so a page
//! reads its own rows and no more), the report view (`v_report`: per day, by
//! hour, tender and product), idempotency keys that make a retried sale one
//! sale, and the events a write raises for whoever watches the store.
//!
//! Both views are functions of the set of entries alone, like every view.

use std::collections::BTreeMap;
use std::ops::Bound;

use redb::{ReadableDatabase, ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use crate::error::{SaleError, StorageError, damaged};
use crate::ids::{Day, DocId, Receipt, TillId};
use crate::model::{EntryKind, SaleEntry, Totals};
use crate::sales::{SaleRecord, SaleRequest};
use crate::store::Store;
use crate::tables;
use crate::views::{read_entry, read_json};

/// The most entries one page of a listing holds.
pub const MAX_PAGE: usize = 1000;

/// Which sales entries a listing or report covers.
#[derive(Debug, Clone, Default)]
pub struct SalesFilter {
    /// First day (inclusive), by the day of the entry's document.
    pub from: Option<Day>,
    /// Last day (inclusive).
    pub to: Option<Day>,
    /// Only this till's entries.
    pub till: Option<TillId>,
    /// Only sales, voids or refunds.
    pub kind: Option<EntryKind>,
}

/// One page of a listing.
#[derive(Debug, Clone, Serialize)]
pub struct SalesPage {
    /// The entries, in (day, time, till) order.
    pub items: Vec<SaleRecord>,
    /// Where the next page starts (`after`), when there may be more.
    pub next: Option<String>,
}

/// A cursor that is not one this store hands out.
#[derive(Debug, thiserror::Error)]
#[error("cursor {0:?} is not one a listing gave (pass the `next` of the previous page)")]
pub struct BadCursor(pub String);

/// Errors of [`Store::sales_page`].
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    /// The `after` cursor is unreadable.
    #[error(transparent)]
    Cursor(#[from] BadCursor),
    /// Storage error.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Key of an entry in the sales index: day (10 ASCII bytes), HLC (big-endian),
/// till id.
fn index_key(day: &str, e: &SaleEntry, till: &TillId) -> Vec<u8> {
    let mut k = Vec::with_capacity(50);
    k.extend_from_slice(day.as_bytes());
    k.extend_from_slice(&e.hlc.as_u64().to_be_bytes());
    k.extend_from_slice(till.as_bytes());
    k
}

const KEY_LEN: usize = 10 + 8 + 32;

/// One cell of the report view: how many, how much, how many units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportCell {
    /// Sales counted (voids and refunds do not count down).
    pub count: u64,
    /// Net cents: sales less voids and refunds.
    pub cents: i64,
    /// Net units: pieces or grams sold less those voided or refunded.
    #[serde(default)]
    pub qty: i64,
}

impl ReportCell {
    fn absorb(&mut self, o: &ReportCell) {
        self.count += o.count;
        self.cents += o.cents;
        self.qty += o.qty;
    }
}

/// The report dimensions one entry moves: `hour:HH` (UTC), `tender:T`,
/// `sku:S` (category is looked up when reporting, so a recategorised product
/// moves its history with it and every till reports alike).
fn report_cells(e: &SaleEntry) -> Vec<(String, ReportCell)> {
    let (sign, count) = match e.kind {
        EntryKind::Sale => (1, 1),
        EntryKind::Void | EntryKind::Refund => (-1, 0),
    };
    let whole = ReportCell {
        count,
        cents: sign * e.total_cents,
        qty: 0,
    };
    let hour = (e.hlc.ms() / 3_600_000) % 24;
    let mut out = vec![
        (format!("hour:{hour:02}"), whole),
        (format!("tender:{}", e.tender), whole),
    ];
    for l in &e.lines {
        out.push((
            format!("sku:{}", l.sku),
            ReportCell {
                count,
                cents: sign * l.amount_cents,
                qty: sign * l.base_qty(),
            },
        ));
    }
    out
}

/// Add entries of `till` on `day` to the sales index and the report view, in
/// the write's transaction.
pub(crate) fn index_entries(
    txn: &WriteTransaction,
    till: TillId,
    day: Day,
    entries: &[(String, SaleEntry)],
) -> Result<(), StorageError> {
    let day_s = day.to_string();
    let mut index = txn.open_table(tables::V_SALES)?;
    let mut cells: BTreeMap<String, ReportCell> = BTreeMap::new();
    for (_, e) in entries {
        let record = SaleRecord {
            entry: e.clone(),
            till,
            day: day_s.clone(),
        };
        let bytes =
            serde_json::to_vec(&record).map_err(|e| StorageError::Database(e.to_string()))?;
        index.insert(index_key(&day_s, e, &till).as_slice(), bytes.as_slice())?;
        for (dim, cell) in report_cells(e) {
            cells.entry(dim).or_default().absorb(&cell);
        }
    }
    let mut report = txn.open_table(tables::V_REPORT)?;
    for (dim, add) in cells {
        let mut cell: ReportCell = match report.get((day_s.as_str(), dim.as_str()))? {
            Some(v) => read_json("v_report", v.value())?,
            None => ReportCell::default(),
        };
        cell.absorb(&add);
        let bytes = serde_json::to_vec(&cell).map_err(|e| StorageError::Database(e.to_string()))?;
        report.insert((day_s.as_str(), dim.as_str()), bytes.as_slice())?;
    }
    Ok(())
}

/// A sales report over a range of days.
#[derive(Debug, Clone, Serialize)]
pub struct SalesReport {
    /// First day covered.
    pub from: String,
    /// Last day covered.
    pub to: String,
    /// Totals over the range.
    pub totals: Totals,
    /// Totals per day with sales.
    pub by_day: BTreeMap<String, Totals>,
    /// Totals per till (by till id).
    pub by_till: BTreeMap<String, Totals>,
    /// Net takings per hour of the day (UTC, `00`..`23`).
    pub by_hour: BTreeMap<String, ReportCell>,
    /// Net takings per tender.
    pub by_tender: BTreeMap<String, ReportCell>,
    /// Net takings per product category (as the catalog has it now).
    pub by_category: BTreeMap<String, ReportCell>,
    /// The products with the largest net takings, largest first.
    pub top_products: Vec<ProductCell>,
}

/// A product's line in a report.
#[derive(Debug, Clone, Serialize)]
pub struct ProductCell {
    /// The product.
    pub sku: String,
    /// Its figures.
    #[serde(flatten)]
    pub cell: ReportCell,
}

/// How many products a report ranks.
pub const TOP_PRODUCTS: usize = 20;

impl Store {
    /// One page of sales, voids and refunds matching `filter`, after the cursor
    /// `after` (the `next` of the previous page), at most `limit` (1 to
    /// [`MAX_PAGE`]) entries. Reads only the index rows it returns or skips.
    pub fn sales_page(
        &self,
        filter: &SalesFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<SalesPage, ListError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let start = match after {
            Some(c) => {
                let k = hex::decode(c)
                    .ok()
                    .filter(|k| k.len() == KEY_LEN)
                    .ok_or_else(|| BadCursor(c.to_string()))?;
                Bound::Excluded(k)
            }
            None => Bound::Included(
                filter
                    .from
                    .map(|d| d.to_string().into_bytes())
                    .unwrap_or_default(),
            ),
        };
        let to = filter.to.map(|d| d.to_string());
        let txn = self.db.begin_read().map_err(StorageError::from)?;
        let t = txn
            .open_table(tables::V_SALES)
            .map_err(StorageError::from)?;
        let range = t
            .range::<&[u8]>((start.as_ref().map(Vec::as_slice), Bound::Unbounded))
            .map_err(StorageError::from)?;
        let mut items = Vec::new();
        let mut last: Option<Vec<u8>> = None;
        let mut more = false;
        for row in range {
            let (k, v) = row.map_err(StorageError::from)?;
            let key = k.value();
            if to.as_ref().is_some_and(|to| key[..10] > *to.as_bytes()) {
                break;
            }
            if items.len() == limit {
                more = true;
                break;
            }
            // A row left out by the filter still moves the cursor, so the next
            // page does not read it again.
            last = Some(key.to_vec());
            if let Some(till) = filter.till
                && key[18..] != *till.as_bytes()
            {
                continue;
            }
            let record: SaleRecord = read_json("v_sales", v.value())?;
            if filter.kind.is_some_and(|k| k != record.entry.kind) {
                continue;
            }
            items.push(record);
        }
        Ok(SalesPage {
            next: last.filter(|_| more).map(hex::encode),
            items,
        })
    }

    /// The sales entry with receipt `r`, with where it lives.
    pub fn sale_record(&mut self, r: &Receipt) -> Result<Option<SaleRecord>, StorageError> {
        let Some(info) = self.receipt_info(r)? else {
            return Ok(None);
        };
        let Some(doc_id) = info.doc.as_deref().and_then(|d| d.parse::<DocId>().ok()) else {
            return Ok(None);
        };
        let DocId::Sales(till, day) = doc_id else {
            return Ok(None);
        };
        let doc = self.doc(&doc_id)?;
        Ok(
            read_entry::<SaleEntry>(doc, &doc_id, &r.to_string()).map(|entry| SaleRecord {
                entry,
                till,
                day: day.to_string(),
            }),
        )
    }

    /// A report of the days `from` to `to` (inclusive), from the views.
    pub fn sales_report(&self, from: Day, to: Day) -> Result<SalesReport, StorageError> {
        let (from_s, to_s) = (from.to_string(), to.to_string());
        let txn = self.db.begin_read()?;
        let mut totals = Totals::default();
        let mut by_day: BTreeMap<String, Totals> = BTreeMap::new();
        let mut by_till: BTreeMap<String, Totals> = BTreeMap::new();
        {
            let t = txn.open_table(tables::V_TOTALS)?;
            for row in t.range((from_s.as_str(), "")..=(to_s.as_str(), "g"))? {
                let (k, v) = row?;
                let (day, till) = k.value();
                let row: Totals = read_json("v_totals", v.value())?;
                totals.absorb(&row);
                by_day.entry(day.to_string()).or_default().absorb(&row);
                by_till.entry(till.to_string()).or_default().absorb(&row);
            }
        }
        let mut by_hour = BTreeMap::new();
        let mut by_tender = BTreeMap::new();
        let mut by_sku: BTreeMap<String, ReportCell> = BTreeMap::new();
        {
            let t = txn.open_table(tables::V_REPORT)?;
            for row in t.range((from_s.as_str(), "")..=(to_s.as_str(), "~"))? {
                let (k, v) = row?;
                let (_, dim) = k.value();
                let cell: ReportCell = read_json("v_report", v.value())?;
                let (map, name) = match dim.split_once(':') {
                    Some(("hour", h)) => (&mut by_hour, h),
                    Some(("tender", t)) => (&mut by_tender, t),
                    Some(("sku", s)) => (&mut by_sku, s),
                    _ => continue,
                };
                map.entry(name.to_string())
                    .or_insert_with(ReportCell::default)
                    .absorb(&cell);
            }
        }
        let mut by_category: BTreeMap<String, ReportCell> = BTreeMap::new();
        {
            let products = txn.open_table(tables::V_PRODUCTS)?;
            for (sku, cell) in &by_sku {
                let category = products
                    .get(sku.as_str())?
                    .and_then(|v| serde_json::from_slice::<crate::model::Product>(v.value()).ok())
                    .map(|p| p.category)
                    .unwrap_or_default();
                by_category.entry(category).or_default().absorb(cell);
            }
        }
        let mut top_products: Vec<ProductCell> = by_sku
            .into_iter()
            .map(|(sku, cell)| ProductCell { sku, cell })
            .collect();
        top_products.sort_by(|a, b| {
            b.cell
                .cents
                .cmp(&a.cell.cents)
                .then_with(|| a.sku.cmp(&b.sku))
        });
        top_products.truncate(TOP_PRODUCTS);
        Ok(SalesReport {
            from: from_s,
            to: to_s,
            totals,
            by_day,
            by_till,
            by_hour,
            by_tender,
            by_category,
            top_products,
        })
    }

    /// Record a sale once per idempotency `key`: the first call records it
    /// (`true`); a repeat with the same `fingerprint` (of the request) gives
    /// the sale the first recorded (`false`), even after a restart, since the
    /// key is written in the sale's own transaction; a repeat with another
    /// fingerprint is refused.
    pub fn record_sale_once(
        &mut self,
        key: &str,
        fingerprint: &str,
        req: SaleRequest,
    ) -> Result<(SaleEntry, bool), SaleError> {
        if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY {
            return Err(SaleError::Invalid(format!(
                "an idempotency key has 1 to {MAX_IDEMPOTENCY_KEY} characters"
            )));
        }
        if let Some(seen) = self.idempotency(key)? {
            if seen.fingerprint != fingerprint {
                return Err(SaleError::KeyReused(key.to_string()));
            }
            let r: Receipt = seen
                .receipt
                .parse()
                .map_err(|e| damaged(&DocId::Config, format!("idempotency record: {e}")))?;
            let record = self
                .sale_record(&r)?
                .ok_or_else(|| SaleError::UnknownReceipt(r.to_string()))?;
            return Ok((record.entry, false));
        }
        let entry = self.record_sale_with(req, Some((key, fingerprint)))?;
        Ok((entry, true))
    }

    fn idempotency(&self, key: &str) -> Result<Option<KeyUse>, StorageError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(tables::IDEMPOTENCY)?;
        t.get(key)?
            .map(|v| read_json("idempotency", v.value()))
            .transpose()
    }

    /// Forget idempotency keys used before `before_ms`; gives how many.
    pub fn prune_idempotency_keys(&mut self, before_ms: u64) -> Result<usize, StorageError> {
        let txn = self.begin_write()?;
        let mut n = 0;
        {
            let mut t = txn.open_table(tables::IDEMPOTENCY)?;
            let old: Vec<String> = t
                .iter()?
                .filter_map(Result::ok)
                .filter(|(_, v)| {
                    serde_json::from_slice::<KeyUse>(v.value()).is_ok_and(|u| u.at_ms < before_ms)
                })
                .map(|(k, _)| k.value().to_string())
                .collect();
            for k in old {
                t.remove(k.as_str())?;
                n += 1;
            }
        }
        txn.commit()?;
        Ok(n)
    }

    /// Start or stop keeping [`StoreEvent`]s for [`Store::take_events`].
    pub fn watch_events(&mut self, on: bool) {
        self.watching = on;
        if !on {
            self.events.clear();
        }
    }

    /// The events raised by writes since the last call (when watched).
    pub fn take_events(&mut self) -> Vec<StoreEvent> {
        std::mem::take(&mut self.events)
    }

    /// Build the sales index and report view from the sales documents (a
    /// store made before they existed).
    pub(crate) fn migrate_to_listings(&mut self) -> Result<(), StorageError> {
        let ids: Vec<DocId> = self
            .doc_ids()?
            .into_iter()
            .filter(|d| matches!(d, DocId::Sales(..)))
            .collect();
        let txn = self.begin_write()?;
        txn.delete_table(tables::V_SALES)?;
        txn.delete_table(tables::V_REPORT)?;
        crate::store::create_tables(&txn)?;
        for id in ids {
            let DocId::Sales(till, day) = id else {
                continue;
            };
            let entries = crate::views::all_entries::<SaleEntry>(self.doc(&id)?, &id);
            index_entries(&txn, till, day, &entries)?;
        }
        txn.open_table(tables::META)?.insert(
            tables::meta::FORMAT,
            tables::FORMAT_VERSION.to_le_bytes().as_slice(),
        )?;
        txn.commit()?;
        tracing::info!("store upgraded: sales index and report view built");
        Ok(())
    }
}

/// The longest idempotency key taken.
pub const MAX_IDEMPOTENCY_KEY: usize = 200;

/// What an idempotency key was used for (`idempotency` table, version 1).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct KeyUse {
    pub v: u32,
    /// Fingerprint of the request that used it.
    pub fingerprint: String,
    /// The receipt it recorded.
    pub receipt: String,
    /// When (wall clock, ms since the epoch).
    pub at_ms: u64,
}

/// Note `key` as used for `receipt` in the write's transaction.
pub(crate) fn note_key_use(
    txn: &WriteTransaction,
    key: &str,
    fingerprint: &str,
    receipt: &Receipt,
    at_ms: u64,
) -> Result<(), StorageError> {
    let used = KeyUse {
        v: 1,
        fingerprint: fingerprint.to_string(),
        receipt: receipt.to_string(),
        at_ms,
    };
    let bytes = serde_json::to_vec(&used).map_err(|e| StorageError::Database(e.to_string()))?;
    txn.open_table(tables::IDEMPOTENCY)?
        .insert(key, bytes.as_slice())?;
    Ok(())
}

/// Something a committed write did, for whoever watches the store (the
/// daemon's event stream).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StoreEvent {
    /// A sales entry (sale, void, refund) is in the store: made here
    /// (`local`) or arrived from another till.
    Sale {
        /// The entry.
        record: SaleRecord,
        /// Whether this till made it.
        local: bool,
    },
    /// Two tills wrote the same field at once.
    ConflictRaised {
        /// The conflict's id.
        id: String,
        /// The document.
        doc: String,
        /// The field.
        key: String,
    },
    /// A conflict was settled.
    ConflictResolved {
        /// The conflict's id.
        id: String,
        /// How.
        how: String,
    },
    /// The membership (tills, roles, revocations) changed.
    MembershipChanged,
}

/// At most this many events wait for [`Store::take_events`].
pub(crate) const EVENTS_LIMIT: usize = 10_000;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Tender;
    use crate::test_utils::{founder_in_memory, product, sale};

    fn everything(s: &Store) -> (Vec<SaleRecord>, SalesReport) {
        let page = s
            .sales_page(&SalesFilter::default(), None, MAX_PAGE)
            .expect("page");
        let day = Day::from_unix_ms(s.opts.clock.now_ms());
        (page.items, s.sales_report(day, day).expect("report"))
    }

    #[test]
    fn a_store_of_the_previous_format_gets_its_listings_built() {
        let (mut s, _, _) = founder_in_memory("Shop");
        s.add_product(product("BREAD", 250)).expect("bread");
        for i in 0..5 {
            let e = s
                .record_sale(sale("BREAD", i + 1, Tender::Card))
                .expect("sale");
            if i == 3 {
                s.void(&e.receipt).expect("void");
            }
        }
        let before = everything(&s);
        assert_eq!(before.0.len(), 6);
        // As a format-2 store holds it: no index, no report cells.
        let txn = s.db.begin_write().expect("txn");
        txn.delete_table(tables::V_SALES).expect("drop");
        txn.delete_table(tables::V_REPORT).expect("drop");
        crate::store::create_tables(&txn).expect("tables");
        txn.commit().expect("commit");
        assert!(everything(&s).0.is_empty());
        s.migrate_to_listings().expect("migrate");
        let after = everything(&s);
        assert_eq!(after.0, before.0);
        assert_eq!(
            serde_json::to_value(&after.1).expect("json"),
            serde_json::to_value(&before.1).expect("json")
        );
    }
}
