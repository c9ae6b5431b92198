//! Sales, voids and refunds: the till's own `sales/<till>/<day>` documents, each
//! entry under its gap-free receipt number.

use redb::ReadableDatabase;
use serde::Serialize;
use serde_json::json;

use crate::error::{SaleError, StorageError};
use crate::hlc::Hlc;
use crate::ids::{Barcode, Day, DocId, Receipt, Sku, TillId};
use crate::model::{
    ENTRY_VERSION, EntryKind, Line, Product, ReceiptInfo, RefundLine, SaleEntry, Tender, Totals,
    Unit,
};
use crate::store::Store;
use crate::tables;
use crate::views::{read_entry, read_json};

/// At most this many lines on one sale.
pub const MAX_LINES: usize = 500;
/// At most this many pieces on one line.
pub const MAX_QTY: i64 = 10_000;
/// At most this many grams on one line (100 kg).
pub const MAX_GRAMS: i64 = 100_000;

/// One line the cashier rang up.
#[derive(Debug, Clone)]
pub struct LineRequest {
    /// A SKU or a barcode.
    pub code: String,
    /// Pieces (products sold each; default 1).
    pub qty: Option<i64>,
    /// Grams (products sold by weight; required for them).
    pub grams: Option<i64>,
    /// Discount on the line in cents.
    pub discount_cents: i64,
}

/// A sale to record.
#[derive(Debug, Clone)]
pub struct SaleRequest {
    /// The lines.
    pub lines: Vec<LineRequest>,
    /// How the customer paid.
    pub tender: Tender,
}

/// A sales entry with where it lives, as listings show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct SaleRecord {
    /// The entry itself.
    #[serde(flatten)]
    pub entry: SaleEntry,
    /// The till that recorded it.
    #[serde(with = "crate::model::till_hex", rename = "till_id")]
    pub till: TillId,
    /// The day of its document.
    pub day: String,
}

/// Round `num / den` to the nearest integer, halves away from zero.
pub(crate) fn div_round(num: i128, den: i128) -> i128 {
    let q = num / den;
    let r = num % den;
    if 2 * r.abs() >= den.abs() {
        q + num.signum() * den.signum()
    } else {
        q
    }
}

/// Tax included in a tax-inclusive amount at `bp` basis points.
pub(crate) fn included_tax(amount: i64, bp: i64) -> i64 {
    div_round(i128::from(amount) * i128::from(bp), 10_000 + i128::from(bp)) as i64
}

impl Store {
    /// The product a till scans or types: by SKU, else by barcode. A barcode that
    /// two products claim after a merge is refused until the catalog is fixed.
    pub fn product_by_code(&self, code: &str) -> Result<Product, SaleError> {
        if let Ok(sku) = code.parse::<Sku>()
            && let Some(p) = self.product(&sku)?
        {
            return Ok(p);
        }
        if Barcode::looks_like(code) {
            let b: Barcode = code
                .parse()
                .map_err(|e| SaleError::Invalid(format!("{e}")))?;
            let skus = self.skus_for_barcode(&b)?;
            match skus.as_slice() {
                [] => {}
                [one] => {
                    if let Some(p) = self.product(one)? {
                        return Ok(p);
                    }
                }
                many => {
                    return Err(SaleError::AmbiguousBarcode {
                        barcode: b.to_string(),
                        skus: many
                            .iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                    });
                }
            }
        }
        Err(SaleError::UnknownProduct(code.to_string()))
    }

    fn price_line(&self, req: &LineRequest) -> Result<Line, SaleError> {
        let p = self.product_by_code(&req.code)?;
        if !p.active {
            return Err(SaleError::Inactive(p.sku.to_string()));
        }
        let (qty, grams, gross) = match p.unit {
            Unit::Each => {
                if req.grams.is_some() {
                    return Err(SaleError::Invalid(format!(
                        "{} is sold each: give a quantity like {}:2, not grams",
                        p.sku, p.sku
                    )));
                }
                let q = req.qty.unwrap_or(1);
                if !(1..=MAX_QTY).contains(&q) {
                    return Err(SaleError::Invalid(format!(
                        "quantity for {} must be 1 to {MAX_QTY} (got {q})",
                        p.sku
                    )));
                }
                (Some(q), None, i128::from(p.price_cents) * i128::from(q))
            }
            Unit::Kg => {
                let Some(g) = req.grams else {
                    return Err(SaleError::Invalid(format!(
                        "{} is sold by weight: give grams like {}:350g",
                        p.sku, p.sku
                    )));
                };
                if req.qty.is_some() || !(1..=MAX_GRAMS).contains(&g) {
                    return Err(SaleError::Invalid(format!(
                        "weight for {} must be 1 to {MAX_GRAMS} grams (got {g})",
                        p.sku
                    )));
                }
                (
                    None,
                    Some(g),
                    div_round(i128::from(p.price_cents) * i128::from(g), 1000),
                )
            }
        };
        let gross = gross as i64;
        if req.discount_cents < 0 || req.discount_cents > gross {
            return Err(SaleError::Invalid(format!(
                "discount on {} must be 0 to {gross} cents (got {})",
                p.sku, req.discount_cents
            )));
        }
        let amount = gross - req.discount_cents;
        let bp = self.tax_rate(&p.tax_class)?.unwrap_or_else(|| {
            tracing::warn!(sku = %p.sku, class = %p.tax_class, "unknown tax class; no tax");
            0
        });
        Ok(Line {
            sku: p.sku,
            qty,
            grams,
            unit_price_cents: p.price_cents,
            discount_cents: req.discount_cents,
            amount_cents: amount,
            tax_cents: included_tax(amount, bp),
        })
    }

    /// Record a sale. When this returns `Ok`, the sale is on disk.
    pub fn record_sale(&mut self, req: SaleRequest) -> Result<SaleEntry, SaleError> {
        self.record_sale_with(req, None)
    }

    /// Record a sale, noting the idempotency key and request fingerprint
    /// `once` in the same transaction.
    pub(crate) fn record_sale_with(
        &mut self,
        req: SaleRequest,
        once: Option<(&str, &str)>,
    ) -> Result<SaleEntry, SaleError> {
        if req.lines.is_empty() {
            return Err(SaleError::Invalid("a sale needs at least one line".into()));
        }
        if req.lines.len() > MAX_LINES {
            return Err(SaleError::Invalid(format!(
                "a sale has at most {MAX_LINES} lines"
            )));
        }
        let lines = req
            .lines
            .iter()
            .map(|l| self.price_line(l))
            .collect::<Result<Vec<_>, _>>()?;
        self.write_entry(EntryKind::Sale, None, lines, req.tender, None, once)
    }

    fn write_entry(
        &mut self,
        kind: EntryKind,
        refers_to: Option<Receipt>,
        lines: Vec<Line>,
        tender: Tender,
        audit: Option<serde_json::Value>,
        once: Option<(&str, &str)>,
    ) -> Result<SaleEntry, SaleError> {
        // The day comes from the wall clock, not the HLC: a timestamp from a till
        // whose clock was far ahead must not file today's sales under its day.
        let now = self.opts.clock.now_ms();
        let hlc = self.hlc.tick(now);
        let receipt = Receipt::new(self.till_name.clone(), self.next_receipt);
        let entry = SaleEntry {
            version: ENTRY_VERSION,
            kind,
            receipt: receipt.clone(),
            refers_to,
            total_cents: lines.iter().map(|l| l.amount_cents).sum(),
            tax_cents: lines.iter().map(|l| l.tax_cents).sum(),
            lines,
            tender,
            hlc,
        };
        let doc = DocId::Sales(self.till, Day::from_unix_ms(now));
        let mut w = self.writer()?;
        w.put_entry(doc, &receipt.to_string(), &entry, hlc)?;
        w.next_receipt += 1;
        if let Some(detail) = audit {
            w.audit(&kind.to_string(), &receipt.to_string(), detail)?;
        }
        if let Some((key, fingerprint)) = once {
            crate::listing::note_key_use(w.txn(), key, fingerprint, &receipt, now)?;
        }
        w.commit()?;
        Ok(entry)
    }

    pub(crate) fn receipt_info(&self, r: &Receipt) -> Result<Option<ReceiptInfo>, StorageError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(tables::V_RECEIPTS)?;
        t.get(r.to_string().as_str())?
            .map(|v| read_json("v_receipts", v.value()))
            .transpose()
    }

    /// The sale behind a receipt, and what has been undone of it.
    fn original_sale(&mut self, r: &Receipt) -> Result<(SaleEntry, ReceiptInfo), SaleError> {
        let info = self
            .receipt_info(r)?
            .ok_or_else(|| SaleError::UnknownReceipt(r.to_string()))?;
        let doc_id: DocId = match (&info.doc, info.kind) {
            (Some(d), Some(EntryKind::Sale)) => d
                .parse()
                .map_err(|_| SaleError::UnknownReceipt(r.to_string()))?,
            (Some(_), Some(kind)) => {
                return Err(SaleError::NotAllowed(format!(
                    "{r} is a {kind}, not a sale"
                )));
            }
            _ => return Err(SaleError::UnknownReceipt(r.to_string())),
        };
        let doc = self.doc(&doc_id)?;
        let sale: SaleEntry = read_entry(doc, &doc_id, &r.to_string())
            .ok_or_else(|| SaleError::UnknownReceipt(r.to_string()))?;
        Ok((sale, info))
    }

    /// Void a whole sale: a new entry that cancels it. Audited.
    pub fn void(&mut self, r: &Receipt) -> Result<SaleEntry, SaleError> {
        let (sale, info) = self.original_sale(r)?;
        if let Some(v) = info.voided_by {
            return Err(SaleError::NotAllowed(format!(
                "{r} was already voided by {v}"
            )));
        }
        if !info.refunds.is_empty() {
            return Err(SaleError::NotAllowed(format!(
                "{r} has refunds ({}); refund the rest instead of voiding",
                info.refunds.join(", ")
            )));
        }
        let detail = json!({"sale": r.to_string(), "total_cents": sale.total_cents});
        self.write_entry(
            EntryKind::Void,
            Some(r.clone()),
            sale.lines,
            sale.tender,
            Some(detail),
            None,
        )
    }

    /// Refund lines of a sale (all that is left of it when `lines` is empty). Audited.
    pub fn refund(&mut self, r: &Receipt, lines: &[RefundLine]) -> Result<SaleEntry, SaleError> {
        let (sale, info) = self.original_sale(r)?;
        if let Some(v) = &info.voided_by {
            return Err(SaleError::NotAllowed(format!("{r} was voided by {v}")));
        }
        // What is left to refund of each line: earlier refunds of a SKU use up its
        // lines in order.
        let mut already = info.refunded.clone();
        let mut left: Vec<(Line, i64)> = Vec::new();
        for l in &sale.lines {
            let refunded = already.entry(l.sku.to_string()).or_default();
            let used = (*refunded).min(l.base_qty());
            *refunded -= used;
            left.push((l.clone(), l.base_qty() - used));
        }
        let wanted: Vec<RefundLine> = if lines.is_empty() {
            left.iter()
                .filter(|(_, rem)| *rem > 0)
                .map(|(l, rem)| RefundLine {
                    sku: l.sku.clone(),
                    qty: Some(*rem),
                })
                .collect()
        } else {
            lines.to_vec()
        };
        if wanted.is_empty() {
            return Err(SaleError::NotAllowed(format!(
                "{r} is already fully refunded"
            )));
        }
        let mut out = Vec::new();
        for want in &wanted {
            let mut need = want.qty.unwrap_or_else(|| {
                left.iter()
                    .filter(|(l, _)| l.sku == want.sku)
                    .map(|(_, rem)| *rem)
                    .sum()
            });
            if need <= 0 {
                return Err(SaleError::Invalid(format!(
                    "refund quantity for {} must be positive",
                    want.sku
                )));
            }
            let available: i64 = left
                .iter()
                .filter(|(l, _)| l.sku == want.sku)
                .map(|(_, rem)| *rem)
                .sum();
            if available == 0 && !sale.lines.iter().any(|l| l.sku == want.sku) {
                return Err(SaleError::Invalid(format!(
                    "{r} has no line for {}",
                    want.sku
                )));
            }
            if need > available {
                return Err(SaleError::NotAllowed(format!(
                    "only {available} of {} left to refund on {r} (asked {need})",
                    want.sku
                )));
            }
            for (l, rem) in left.iter_mut().filter(|(l, _)| l.sku == want.sku) {
                if need == 0 {
                    break;
                }
                let take = need.min(*rem);
                if take == 0 {
                    continue;
                }
                *rem -= take;
                need -= take;
                let base = l.base_qty().max(1);
                let amount = div_round(
                    i128::from(l.amount_cents) * i128::from(take),
                    i128::from(base),
                ) as i64;
                let tax =
                    div_round(i128::from(l.tax_cents) * i128::from(take), i128::from(base)) as i64;
                out.push(Line {
                    sku: l.sku.clone(),
                    qty: l.qty.map(|_| take),
                    grams: l.grams.map(|_| take),
                    unit_price_cents: l.unit_price_cents,
                    discount_cents: 0,
                    amount_cents: amount,
                    tax_cents: tax,
                });
            }
        }
        let total: i64 = out.iter().map(|l| l.amount_cents).sum();
        let detail = json!({"sale": r.to_string(), "total_cents": total});
        self.write_entry(
            EntryKind::Refund,
            Some(r.clone()),
            out,
            sale.tender,
            Some(detail),
            None,
        )
    }

    /// Sales, voids and refunds of a day (all days when `None`), of one till or all,
    /// ordered by time.
    pub fn sales(
        &mut self,
        day: Option<Day>,
        till: Option<TillId>,
    ) -> Result<Vec<SaleRecord>, StorageError> {
        let ids: Vec<DocId> = self
            .doc_ids()?
            .into_iter()
            .filter(|d| match d {
                DocId::Sales(t, d) => day.is_none_or(|x| x == *d) && till.is_none_or(|x| x == *t),
                _ => false,
            })
            .collect();
        let mut out = Vec::new();
        for id in ids {
            let DocId::Sales(t, d) = id else { continue };
            let doc = self.doc(&id)?;
            for key in automerge::ReadDoc::keys(doc, automerge::ROOT) {
                if let Some(entry) = read_entry::<SaleEntry>(doc, &id, &key) {
                    out.push(SaleRecord {
                        entry,
                        till: t,
                        day: d.to_string(),
                    });
                }
            }
        }
        out.sort_by_key(|r| (r.entry.hlc, r.till));
        Ok(out)
    }

    /// This till's own sales, voids and refunds that no till in `peers` is
    /// known to hold (by the sync states of past sessions), ordered by time: what
    /// a revoked till hands the back office for review.
    pub fn unsynced_sales(&mut self, peers: &[TillId]) -> Result<Vec<SaleRecord>, StorageError> {
        let me = self.till_id();
        let own: Vec<DocId> = self
            .doc_ids()?
            .into_iter()
            .filter(|d| matches!(d, DocId::Sales(t, _) if *t == me))
            .collect();
        let mut out = Vec::new();
        for id in own {
            let DocId::Sales(t, d) = id else { continue };
            let mut held = Vec::new();
            for p in peers {
                held.extend(self.sync_state(p, &id)?.shared_heads);
            }
            held.sort();
            held.dedup();
            let doc = self.doc(&id)?;
            // What the peers hold: the document as of their shared heads.
            let shared = doc
                .fork_at(&held)
                .map_err(|e| crate::error::damaged(&id, format!("at its shared heads: {e}")))?;
            for key in automerge::ReadDoc::keys(doc, automerge::ROOT) {
                let known = automerge::ReadDoc::get(&shared, automerge::ROOT, key.as_str())
                    .ok()
                    .flatten()
                    .is_some();
                if !known && let Some(entry) = read_entry::<SaleEntry>(doc, &id, &key) {
                    out.push(SaleRecord {
                        entry,
                        till: t,
                        day: d.to_string(),
                    });
                }
            }
        }
        out.sort_by_key(|r| (r.entry.hlc, r.till));
        Ok(out)
    }

    /// Whether this till holds the entry with receipt `r`.
    pub fn has_receipt(&self, r: &Receipt) -> Result<bool, StorageError> {
        Ok(self.receipt_info(r)?.is_some_and(|i| i.doc.is_some()))
    }

    /// Totals of one till's sales of one day.
    pub fn totals(&self, day: Day, till: TillId) -> Result<Totals, StorageError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(tables::V_TOTALS)?;
        let (d, t_s) = (day.to_string(), till.to_string());
        Ok(match t.get((d.as_str(), t_s.as_str()))? {
            Some(v) => read_json("v_totals", v.value())?,
            None => Totals::default(),
        })
    }

    /// Totals of every till with sales on a day.
    pub fn day_totals(&self, day: Day) -> Result<Vec<(TillId, Totals)>, StorageError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(tables::V_TOTALS)?;
        let d = day.to_string();
        let mut out = Vec::new();
        for row in t.range((d.as_str(), "")..=(d.as_str(), "g"))? {
            let (k, v) = row?;
            if let Ok(till) = k.value().1.parse() {
                out.push((till, read_json("v_totals", v.value())?));
            }
        }
        Ok(out)
    }

    /// When the last entry of this till was made, if any (for status screens).
    pub fn last_local_hlc(&self) -> Hlc {
        self.hlc.last()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_and_included_tax() {
        assert_eq!(div_round(5, 2), 3);
        assert_eq!(div_round(-5, 2), -3);
        assert_eq!(div_round(4, 3), 1);
        // 1.20 including 20 % tax holds 0.20 of tax.
        assert_eq!(included_tax(120, 2000), 20);
        assert_eq!(included_tax(199, 2000), 33);
        assert_eq!(included_tax(199, 0), 0);
    }
}
