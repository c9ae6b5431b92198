//! Stock movements other than sales: goods received, adjustments with a reason,
//! and stocktake counts, in the till's own `stock/<till>/<day>` documents.

use redb::ReadableDatabase;
use serde_json::json;

use crate::error::StockError;
use crate::error::StorageError;
use crate::ids::{Day, DocId, Sku};
use crate::model::{ENTRY_VERSION, StockEntry, StockKind, StockLevel};
use crate::store::Store;
use crate::tables;
use crate::views::{StockState, read_json};

/// At most this many pieces or grams in one movement: a typo guard.
pub const MAX_STOCK_QTY: i64 = 1_000_000_000;

impl Store {
    fn stock_entry(
        &mut self,
        kind: StockKind,
        sku: &Sku,
        qty: i64,
        reason: &str,
    ) -> Result<StockEntry, StockError> {
        if self.product(sku)?.is_none() {
            return Err(StockError::UnknownProduct(sku.to_string()));
        }
        match kind {
            StockKind::Receive if qty <= 0 => {
                return Err(StockError::Invalid(format!(
                    "received quantity must be positive (got {qty})"
                )));
            }
            StockKind::Adjust if qty == 0 => {
                return Err(StockError::Invalid(
                    "an adjustment of 0 changes nothing".into(),
                ));
            }
            StockKind::Adjust if reason.trim().is_empty() => {
                return Err(StockError::Invalid(
                    "an adjustment needs a reason (breakage, theft, expiry, ...)".into(),
                ));
            }
            StockKind::Count if qty < 0 => {
                return Err(StockError::Invalid(format!(
                    "a count cannot be negative (got {qty})"
                )));
            }
            _ => {}
        }
        if qty.abs() > MAX_STOCK_QTY {
            return Err(StockError::Invalid(format!(
                "quantity {qty} is beyond {MAX_STOCK_QTY}; typo?"
            )));
        }
        // The day comes from the wall clock, not the HLC (see `write_entry` of sales).
        let now = self.opts.clock.now_ms();
        let hlc = self.hlc.tick(now);
        let entry = StockEntry {
            version: ENTRY_VERSION,
            kind,
            sku: sku.clone(),
            qty,
            reason: reason.trim().to_string(),
            hlc,
        };
        let doc = DocId::Stock(self.till, Day::from_unix_ms(now));
        let mut w = self.writer()?;
        // The HLC is unique per till, so it names the entry.
        w.put_entry(doc, &format!("{kind}-{:016x}", hlc.as_u64()), &entry, hlc)?;
        match kind {
            StockKind::Adjust => w.audit(
                "stock-adjust",
                sku.as_str(),
                json!({"qty": qty, "reason": entry.reason}),
            )?,
            StockKind::Count => w.audit("stock-count", sku.as_str(), json!({"qty": qty}))?,
            StockKind::Receive => {}
        }
        w.commit()?;
        Ok(entry)
    }

    /// Record goods received (pieces, or grams for products sold by weight).
    pub fn receive_stock(&mut self, sku: &Sku, qty: i64) -> Result<StockEntry, StockError> {
        self.stock_entry(StockKind::Receive, sku, qty, "")
    }

    /// Record a correction (positive or negative) with a reason. Audited.
    pub fn adjust_stock(
        &mut self,
        sku: &Sku,
        delta: i64,
        reason: &str,
    ) -> Result<StockEntry, StockError> {
        self.stock_entry(StockKind::Adjust, sku, delta, reason)
    }

    /// Record a stocktake count: what is on the shelf now. Audited.
    pub fn count_stock(&mut self, sku: &Sku, qty: i64) -> Result<StockEntry, StockError> {
        self.stock_entry(StockKind::Count, sku, qty, "")
    }

    /// Stock on hand of one product.
    pub fn stock(&self, sku: &Sku) -> Result<StockLevel, StorageError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(tables::V_STOCK)?;
        let state: StockState = match t.get(sku.as_str())? {
            Some(v) => read_json("v_stock", v.value())?,
            None => StockState::default(),
        };
        Ok(StockLevel {
            sku: sku.clone(),
            on_hand: state.on_hand,
            counted_at: state.counted_at,
        })
    }

    /// Stock on hand of every product in the catalog, by SKU.
    pub fn stock_levels(&self) -> Result<Vec<StockLevel>, StorageError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(tables::V_STOCK)?;
        let mut out = Vec::new();
        for p in self.products()? {
            let state: StockState = match t.get(p.sku.as_str())? {
                Some(v) => read_json("v_stock", v.value())?,
                None => StockState::default(),
            };
            out.push(StockLevel {
                sku: p.sku,
                on_hand: state.on_hand,
                counted_at: state.counted_at,
            });
        }
        Ok(out)
    }
}
