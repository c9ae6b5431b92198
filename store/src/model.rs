//! The grocery data model: what the documents hold and what the views return.
//!
//! Money is integer minor units (cents), weight is integer grams, rates are basis
//! points. Entries of the single-writer documents (sales, stock, audit) are stored
//! as one versioned JSON value each (field `v`), because they are written once and
//! never edited: one Automerge operation per entry keeps documents small and fast.
//! The multi-writer documents (catalog, config, membership) store one
//! [`FieldValue`] per field, so concurrent edits of different fields merge and
//! concurrent edits of one field become a visible conflict.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::hlc::Hlc;
use crate::ids::{Barcode, Receipt, Sku, TillId};

/// The version of entry and field JSON written by this build.
pub const ENTRY_VERSION: u32 = 1;

/// What a till may do, and whose edit wins under `role-priority`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// A checkout till.
    Till,
    /// A manager's till or laptop.
    Manager,
    /// The back office.
    BackOffice,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Till => "till",
            Role::Manager => "manager",
            Role::BackOffice => "back-office",
        })
    }
}
impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "till" => Ok(Role::Till),
            "manager" => Ok(Role::Manager),
            "back-office" | "backoffice" => Ok(Role::BackOffice),
            _ => Err(format!(
                "unknown role {s:?}: expected till, manager or back-office"
            )),
        }
    }
}

/// How a product is sold.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    /// By the piece; quantities are counts.
    Each,
    /// By weight; the price is per kilogram and quantities are grams.
    Kg,
}
impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Unit::Each => "each",
            Unit::Kg => "kg",
        })
    }
}
impl FromStr for Unit {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "each" => Ok(Unit::Each),
            "kg" => Ok(Unit::Kg),
            _ => Err(format!("unknown unit {s:?}: expected each or kg")),
        }
    }
}

/// How a payment was made.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tender {
    /// Notes and coins.
    Cash,
    /// A payment card.
    Card,
}
impl fmt::Display for Tender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Tender::Cash => "cash",
            Tender::Card => "card",
        })
    }
}
impl FromStr for Tender {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cash" => Ok(Tender::Cash),
            "card" => Ok(Tender::Card),
            _ => Err(format!("unknown tender {s:?}: expected cash or card")),
        }
    }
}

/// Which concurrent edit of one field wins.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// The edit with the latest HLC wins (ties: the greater till id).
    #[default]
    LatestWins,
    /// Back office over manager over till, then latest-wins.
    RolePriority,
    /// Latest-wins for now, and the conflict waits on the review queue.
    Manual,
}
impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Policy::LatestWins => "latest-wins",
            Policy::RolePriority => "role-priority",
            Policy::Manual => "manual",
        })
    }
}
impl FromStr for Policy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "latest-wins" => Ok(Policy::LatestWins),
            "role-priority" => Ok(Policy::RolePriority),
            "manual" => Ok(Policy::Manual),
            _ => Err(format!(
                "unknown conflict policy {s:?}: expected latest-wins, role-priority or manual"
            )),
        }
    }
}

/// One write of one field of a multi-writer document, with who wrote it and when.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct FieldValue {
    /// Entry format version.
    #[serde(rename = "v")]
    pub version: u32,
    /// The value written.
    pub value: serde_json::Value,
    /// When it was written.
    pub hlc: Hlc,
    /// Which till wrote it.
    #[serde(with = "till_hex")]
    pub till: TillId,
    /// The writer's role at the time.
    pub role: Role,
}

impl FieldValue {
    /// The order under `policy`: the greatest wins.
    fn rank(&self, policy: Policy) -> (u8, Hlc, TillId) {
        let role = match policy {
            Policy::RolePriority => self.role as u8,
            Policy::LatestWins | Policy::Manual => 0,
        };
        (role, self.hlc, self.till)
    }
}

/// Order concurrent values so the winner under `policy` comes first.
pub fn rank_values(values: &mut [FieldValue], policy: Policy) {
    values.sort_by_key(|v| std::cmp::Reverse(v.rank(policy)));
}

/// Serialise till ids as hex strings in JSON.
pub(crate) mod till_hex {
    use super::TillId;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &TillId, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(t)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<TillId, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A product as the catalog view shows it (after conflict policy).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Product {
    /// The product's SKU.
    pub sku: Sku,
    /// The name on the shelf label and receipt.
    pub name: String,
    /// Barcodes that scan to this product.
    pub barcodes: Vec<Barcode>,
    /// Price per piece, or per kilogram for [`Unit::Kg`], tax included, in cents.
    pub price_cents: i64,
    /// How it is sold.
    pub unit: Unit,
    /// Tax class name, a key of the config's tax rates.
    pub tax_class: String,
    /// Category, free text.
    pub category: String,
    /// Whether it may be sold.
    pub active: bool,
}

/// The fields of a product, by document key suffix.
pub(crate) const PRODUCT_FIELDS: [&str; 7] = [
    "name",
    "barcodes",
    "price_cents",
    "unit",
    "tax_class",
    "category",
    "active",
];

/// A line of a sale, void or refund.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Line {
    /// What was sold.
    pub sku: Sku,
    /// Pieces, for products sold each.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qty: Option<i64>,
    /// Grams, for products sold by weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grams: Option<i64>,
    /// Catalog price at the time, per piece or per kilogram, in cents.
    pub unit_price_cents: i64,
    /// Line discount in cents (positive reduces the amount).
    #[serde(default)]
    pub discount_cents: i64,
    /// What the customer paid for the line, tax included, in cents.
    pub amount_cents: i64,
    /// Tax included in the amount, in cents.
    pub tax_cents: i64,
}

impl Line {
    /// The stock quantity of the line in base units (pieces or grams).
    pub fn base_qty(&self) -> i64 {
        self.qty.or(self.grams).unwrap_or(0)
    }
}

/// What kind of sales entry.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    /// A sale.
    Sale,
    /// The cancellation of a whole sale.
    Void,
    /// Money back for some or all lines of a sale.
    Refund,
}
impl fmt::Display for EntryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EntryKind::Sale => "sale",
            EntryKind::Void => "void",
            EntryKind::Refund => "refund",
        })
    }
}

/// One entry of a till's sales document: a sale, a void or a refund.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct SaleEntry {
    /// Entry format version.
    #[serde(rename = "v")]
    pub version: u32,
    /// Sale, void or refund.
    pub kind: EntryKind,
    /// This entry's receipt number.
    pub receipt: Receipt,
    /// For voids and refunds: the sale they undo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refers_to: Option<Receipt>,
    /// The lines (for a void, the whole sale's lines).
    pub lines: Vec<Line>,
    /// Total paid (sale) or paid back (void, refund), tax included, in cents.
    pub total_cents: i64,
    /// Tax included in the total, in cents.
    pub tax_cents: i64,
    /// How it was paid or paid back.
    pub tender: Tender,
    /// When, by the till's hybrid logical clock.
    pub hlc: Hlc,
}

/// What kind of stock movement.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StockKind {
    /// Goods received.
    Receive,
    /// A correction with a reason (breakage, theft, expiry).
    Adjust,
    /// A stocktake: the quantity on the shelf, replacing what came before.
    Count,
}
impl fmt::Display for StockKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StockKind::Receive => "receive",
            StockKind::Adjust => "adjust",
            StockKind::Count => "count",
        })
    }
}

/// One entry of a till's stock document.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct StockEntry {
    /// Entry format version.
    #[serde(rename = "v")]
    pub version: u32,
    /// Receive, adjust or count.
    pub kind: StockKind,
    /// The product.
    pub sku: Sku,
    /// Receive and adjust: the change; count: the quantity counted (pieces or grams).
    pub qty: i64,
    /// Why (required for adjustments).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// When, by the till's hybrid logical clock.
    pub hlc: Hlc,
}

/// Stock on hand of one product, as the view shows it.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct StockLevel {
    /// The product.
    pub sku: Sku,
    /// Pieces, or grams for products sold by weight.
    pub on_hand: i64,
    /// When the latest stocktake counted it, if ever.
    pub counted_at: Option<Hlc>,
}

/// Totals of one till's sales of one day.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct Totals {
    /// Number of sales.
    pub sales: u64,
    /// Takings from sales, in cents.
    pub sales_cents: i64,
    /// Tax included in sales, in cents.
    pub tax_cents: i64,
    /// Number of voids.
    pub voids: u64,
    /// Cents voided.
    pub voided_cents: i64,
    /// Number of refunds.
    pub refunds: u64,
    /// Cents refunded.
    pub refunded_cents: i64,
    /// Sales less voids and refunds, in cents.
    pub net_cents: i64,
    /// Net cash, in cents.
    pub cash_cents: i64,
    /// Net card, in cents.
    pub card_cents: i64,
}

impl Totals {
    /// Add another set of totals to these.
    pub(crate) fn absorb(&mut self, o: &Totals) {
        self.sales += o.sales;
        self.sales_cents += o.sales_cents;
        self.tax_cents += o.tax_cents;
        self.voids += o.voids;
        self.voided_cents += o.voided_cents;
        self.refunds += o.refunds;
        self.refunded_cents += o.refunded_cents;
        self.net_cents += o.net_cents;
        self.cash_cents += o.cash_cents;
        self.card_cents += o.card_cents;
    }

    /// Count an entry into the totals.
    pub(crate) fn add(&mut self, e: &SaleEntry) {
        let signed = match e.kind {
            EntryKind::Sale => {
                self.sales += 1;
                self.sales_cents += e.total_cents;
                self.tax_cents += e.tax_cents;
                e.total_cents
            }
            EntryKind::Void => {
                self.voids += 1;
                self.voided_cents += e.total_cents;
                self.tax_cents -= e.tax_cents;
                -e.total_cents
            }
            EntryKind::Refund => {
                self.refunds += 1;
                self.refunded_cents += e.total_cents;
                self.tax_cents -= e.tax_cents;
                -e.total_cents
            }
        };
        self.net_cents += signed;
        match e.tender {
            Tender::Cash => self.cash_cents += signed,
            Tender::Card => self.card_cents += signed,
        }
    }
}

/// A till of the store, from the membership document.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct TillInfo {
    /// Its id.
    #[serde(with = "till_hex")]
    pub id: TillId,
    /// Its short name, used in receipts.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// The admin's signature of its membership (hex), if certified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<String>,
    /// The admin's signature of its revocation (hex), if revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<String>,
    /// How to reach it, as it published (the mesh's format).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr: Option<serde_json::Value>,
}

/// State of a conflict on the review queue.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConflictStatus {
    /// The policy chose; nothing to do.
    Decided,
    /// `manual` policy: waiting for an operator.
    Pending,
    /// An operator, or a later edit, settled it.
    Resolved,
}

/// Concurrent writes of one field, and what the policy made of them.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct Conflict {
    /// Stable id: the same on every till that sees the same writes.
    pub id: String,
    /// The document, like `catalog`.
    pub doc: String,
    /// The field key, like `4006381333931/price_cents`.
    pub key: String,
    /// The policy that chose.
    pub policy: Policy,
    /// The concurrent values, winner first.
    pub values: Vec<FieldValue>,
    /// When this till saw it.
    pub detected: Hlc,
    /// Decided, pending or resolved.
    pub status: ConflictStatus,
    /// How it was resolved, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<String>,
}

/// A refund request line: which product and how much (pieces or grams).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct RefundLine {
    /// The product.
    pub sku: Sku,
    /// Pieces or grams to refund; `None` refunds what is left of the line.
    pub qty: Option<i64>,
}

/// What the receipt index knows of a receipt.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub(crate) struct ReceiptInfo {
    /// The document holding the entry, once it has arrived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doc: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<EntryKind>,
    /// Receipt of the void of this sale, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voided_by: Option<String>,
    /// Refund receipts of this sale.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refunds: Vec<String>,
    /// Base quantity refunded so far, by SKU.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub refunded: BTreeMap<String, i64>,
}
