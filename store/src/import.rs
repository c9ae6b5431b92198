//! Catalog import: a whole product file, CSV or JSON, checked row by row and
//! then written all at once or not at all.
//!
//! A file goes through two steps. [`parse_catalog_file`] reads it into
//! [`ImportRow`]s, each with the line it starts on; [`Store::import_products`]
//! checks every row against the rules of the catalog and the other rows of the
//! file, and only when none is bad writes them in one change of the catalog
//! document, with one audit entry, in one durable commit. A bad row never
//! leaves half a catalog behind: the error names every bad row by line, and the
//! store is as it was. [`Store::import_catalog`] does both steps at once and
//! reports the rows that do not read together with those that break a rule, so
//! one attempt shows everything to fix.
//!
//! Rows for SKUs the catalog has update those products (only the fields that
//! differ are written, so a re-import does not race other tills' edits of the
//! rest); rows for new SKUs add products. Products the file does not name are
//! left alone.

mod csv;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::str::FromStr;

use redb::ReadableDatabase;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::catalog::{check_name, check_price};
use crate::error::StorageError;
use crate::ids::{Barcode, DocId, Sku};
use crate::model::{Product, Unit};
use crate::money::parse_money;
use crate::store::Store;
use crate::tables;
use crate::views::read_json;

/// The columns of a catalog CSV file, in the order the docs give them (any
/// order is read).
pub const CSV_COLUMNS: [&str; 8] = [
    "sku",
    "name",
    "price",
    "unit",
    "tax_class",
    "category",
    "barcodes",
    "active",
];

/// The format of a catalog file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CatalogFormat {
    /// RFC 4180 CSV with a header row naming [`CSV_COLUMNS`].
    Csv,
    /// A JSON array of objects with the fields of [`ImportRow`].
    Json,
}

impl CatalogFormat {
    /// The format a file name's extension says (`.csv`, `.json`, any case).
    pub fn from_path(path: &std::path::Path) -> Option<Self> {
        path.extension()?
            .to_str()?
            .to_ascii_lowercase()
            .parse()
            .ok()
    }
}

impl fmt::Display for CatalogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CatalogFormat::Csv => "csv",
            CatalogFormat::Json => "json",
        })
    }
}

impl FromStr for CatalogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "csv" => Ok(CatalogFormat::Csv),
            "json" => Ok(CatalogFormat::Json),
            _ => Err(format!(
                "unknown catalog format {s:?}: expected csv or json"
            )),
        }
    }
}

/// One product of a catalog file, as written there: the values are checked by
/// [`Store::import_products`], not here, so that every bad row can be named.
///
/// In JSON this is the shape of each object; `category` (empty), `barcodes`
/// (none) and `active` (true) may be left out, any other field is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportRow {
    /// The SKU.
    pub sku: String,
    /// The name on the shelf label and receipt.
    pub name: String,
    /// Barcodes that scan to it (EAN-13 or UPC-A); they replace the product's.
    #[serde(default)]
    pub barcodes: Vec<String>,
    /// Price per piece or per kilogram, tax included, in cents.
    pub price_cents: i64,
    /// How it is sold: `each` or `kg`.
    pub unit: String,
    /// Tax class, one the store's configuration has.
    pub tax_class: String,
    /// Category, free text.
    #[serde(default)]
    pub category: String,
    /// Whether it may be sold.
    #[serde(default = "active_by_default")]
    pub active: bool,
}

fn active_by_default() -> bool {
    true
}

/// A row of a catalog file that cannot be imported, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BadRow {
    /// The line of the file the row starts on (from 1).
    pub line: usize,
    /// Its SKU as written, when the row has one.
    pub sku: Option<String>,
    /// What is wrong, for the operator.
    pub reason: String,
}

impl fmt::Display for BadRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.sku {
            Some(sku) if !sku.is_empty() => {
                write!(f, "line {} (SKU {sku}): {}", self.line, self.reason)
            }
            _ => write!(f, "line {}: {}", self.line, self.reason),
        }
    }
}

/// Importing a catalog file failed; nothing was written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// The file as a whole is not a catalog file of its format (not UTF-8,
    /// no or a wrong CSV header, not a JSON array).
    #[error("not a {format} catalog file: {reason}; nothing was imported")]
    Unreadable {
        /// The format it was read as.
        format: CatalogFormat,
        /// What is wrong.
        reason: String,
    },
    /// Rows that cannot be imported, every one of them, by line.
    #[error("{}", bad_rows_text(.0))]
    BadRows(Vec<BadRow>),
    /// Storage error, or this till's role may not write the catalog.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

fn bad_rows_text(rows: &[BadRow]) -> String {
    let lines: BTreeSet<usize> = rows.iter().map(|r| r.line).collect();
    let mut text = format!(
        "{} {} of the file cannot be imported; nothing was imported:",
        lines.len(),
        if lines.len() == 1 { "row" } else { "rows" }
    );
    for r in rows {
        text.push_str(&format!("\n  {r}"));
    }
    text
}

/// What an import did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct ImportReport {
    /// Products new to the catalog.
    pub added: usize,
    /// Products of the catalog whose fields changed.
    pub updated: usize,
    /// Products of the catalog the file holds as they were.
    pub unchanged: usize,
}

impl ImportReport {
    /// Whether the import wrote anything (it writes once or not at all).
    pub fn wrote(&self) -> bool {
        self.added + self.updated > 0
    }
}

/// Read a catalog file into rows, each with the line it starts on.
///
/// Fails with [`ImportError::BadRows`] naming every row that does not read
/// (a missing or extra field, a price that is not an amount, an unknown JSON
/// field), and with [`ImportError::Unreadable`] when the file as a whole does
/// not. The values themselves are checked by [`Store::import_products`].
pub fn parse_catalog_file(
    bytes: &[u8],
    format: CatalogFormat,
) -> Result<Vec<(usize, ImportRow)>, ImportError> {
    let parsed = parse_rows(bytes, format)?;
    if parsed.bad.is_empty() {
        Ok(parsed.rows)
    } else {
        Err(ImportError::BadRows(parsed.bad))
    }
}

/// A file read as far as it goes: the rows that read and the rows that do not.
struct Parsed {
    rows: Vec<(usize, ImportRow)>,
    bad: Vec<BadRow>,
}

fn parse_rows(bytes: &[u8], format: CatalogFormat) -> Result<Parsed, ImportError> {
    let unreadable = |reason: String| ImportError::Unreadable { format, reason };
    let text = std::str::from_utf8(bytes).map_err(|e| {
        unreadable(format!(
            "it is not UTF-8 text (byte {}); save it as UTF-8",
            e.valid_up_to()
        ))
    })?;
    match format {
        CatalogFormat::Csv => parse_csv(text).map_err(unreadable),
        CatalogFormat::Json => parse_json(text).map_err(unreadable),
    }
}

fn parse_csv(text: &str) -> Result<Parsed, String> {
    let mut records = csv::records(text);
    let header = match records.next() {
        None => return Err("it is empty; the first line names the columns".into()),
        Some(Err(e)) => return Err(format!("line {}: {}", e.line, e.reason)),
        Some(Ok((_, header))) => header,
    };
    let expected = CSV_COLUMNS.join(",");
    let mut column = HashMap::new();
    for (i, name) in header.iter().enumerate() {
        let name = name.trim().to_ascii_lowercase();
        if !CSV_COLUMNS.contains(&name.as_str()) {
            return Err(format!(
                "the header names an unknown column {name:?}; the columns are {expected}"
            ));
        }
        if column.insert(name.clone(), i).is_some() {
            return Err(format!("the header names column {name:?} twice"));
        }
    }
    if let Some(missing) = CSV_COLUMNS.iter().find(|c| !column.contains_key(**c)) {
        return Err(format!(
            "the header lacks column {missing:?}; the columns are {expected}"
        ));
    }
    let mut parsed = Parsed {
        rows: Vec::new(),
        bad: Vec::new(),
    };
    for record in records {
        let (line, fields) = match record {
            Ok(r) => r,
            Err(e) if e.fatal => return Err(format!("line {}: {}", e.line, e.reason)),
            Err(e) => {
                parsed.bad.push(BadRow {
                    line: e.line,
                    sku: None,
                    reason: e.reason,
                });
                continue;
            }
        };
        let cells = Cells {
            fields: &fields,
            column: &column,
        };
        let sku = Some(cells.get("sku").to_string());
        if fields.len() != header.len() {
            parsed.bad.push(BadRow {
                line,
                sku,
                reason: format!(
                    "the row has {} fields, the header {}: a field is missing or a comma \
                     is not in quotes",
                    fields.len(),
                    header.len()
                ),
            });
            continue;
        }
        match cells.row() {
            Ok(row) => parsed.rows.push((line, row)),
            Err(reason) => parsed.bad.push(BadRow { line, sku, reason }),
        }
    }
    Ok(parsed)
}

/// One CSV record, its fields found by column name.
struct Cells<'a> {
    fields: &'a [String],
    column: &'a HashMap<String, usize>,
}

impl<'a> Cells<'a> {
    /// The trimmed text of a column.
    fn get(&self, name: &str) -> &'a str {
        self.column
            .get(name)
            .and_then(|i| self.fields.get(*i))
            .map_or("", |s| s.trim())
    }

    /// The record as a row.
    fn row(&self) -> Result<ImportRow, String> {
        for required in ["sku", "name", "price", "unit", "tax_class"] {
            if self.get(required).is_empty() {
                return Err(format!("no {required}"));
            }
        }
        let price_cents = parse_money(self.get("price")).map_err(|e| format!("price {e}"))?;
        let active = match self.get("active").to_ascii_lowercase().as_str() {
            "" | "true" | "yes" | "1" => true,
            "false" | "no" | "0" => false,
            other => return Err(format!("active is {other:?}; write true or false")),
        };
        Ok(ImportRow {
            sku: self.get("sku").to_string(),
            name: self.get("name").to_string(),
            barcodes: self
                .get("barcodes")
                .split(|c: char| c.is_whitespace() || c == '|')
                .filter(|b| !b.is_empty())
                .map(str::to_string)
                .collect(),
            price_cents,
            unit: self.get("unit").to_string(),
            tax_class: self.get("tax_class").to_string(),
            category: self.get("category").to_string(),
            active,
        })
    }
}

fn parse_json(text: &str) -> Result<Parsed, String> {
    // Syntax first, for an error that points at the right line and column.
    serde_json::from_str::<serde::de::IgnoredAny>(text)
        .map_err(|e| format!("it is not valid JSON: {e}"))?;
    let line_at = |pos: usize| text[..pos].matches('\n').count() + 1;
    let skip_ws = |mut pos: usize| {
        while text
            .as_bytes()
            .get(pos)
            .is_some_and(u8::is_ascii_whitespace)
        {
            pos += 1;
        }
        pos
    };
    let mut pos = skip_ws(0);
    if text.as_bytes().get(pos) != Some(&b'[') {
        return Err("it is not a JSON array of products ([{...}, ...])".into());
    }
    pos = skip_ws(pos + 1);
    let mut parsed = Parsed {
        rows: Vec::new(),
        bad: Vec::new(),
    };
    if text.as_bytes().get(pos) == Some(&b']') {
        return Ok(parsed);
    }
    loop {
        let line = line_at(pos);
        let mut values =
            serde_json::Deserializer::from_str(&text[pos..]).into_iter::<serde_json::Value>();
        let value = match values.next() {
            Some(Ok(v)) => v,
            Some(Err(e)) => return Err(format!("line {line}: {e}")),
            None => return Err(format!("line {line}: the array is not closed")),
        };
        pos = skip_ws(pos + values.byte_offset());
        let sku = value
            .get("sku")
            .and_then(|s| s.as_str())
            .map(str::to_string);
        if !value.is_object() {
            parsed.bad.push(BadRow {
                line,
                sku,
                reason: format!("expected an object with the product's fields, found {value}"),
            });
        } else {
            match serde_json::from_value::<ImportRow>(value) {
                Ok(row) => parsed.rows.push((line, row)),
                Err(e) => parsed.bad.push(BadRow {
                    line,
                    sku,
                    reason: e.to_string(),
                }),
            }
        }
        match text.as_bytes().get(pos) {
            Some(b',') => pos = skip_ws(pos + 1),
            Some(b']') => return Ok(parsed),
            _ => return Err(format!("line {}: expected ',' or ']'", line_at(pos))),
        }
    }
}

/// A row that passed its own checks: the product as it will be written.
struct Checked {
    line: usize,
    product: Product,
}

impl Checked {
    /// Check one row on its own; every problem is a reason.
    fn of(line: usize, row: ImportRow, classes: &BTreeSet<String>) -> Result<Self, Vec<String>> {
        let mut problems = Vec::new();
        let sku = row
            .sku
            .trim()
            .parse::<Sku>()
            .map_err(|e| problems.push(e.to_string()))
            .ok();
        if let Err(e) = check_name(&row.name) {
            problems.push(e.to_string());
        }
        if let Err(e) = check_price(row.price_cents) {
            problems.push(e.to_string());
        }
        let unit = row
            .unit
            .trim()
            .parse::<Unit>()
            .map_err(|e| problems.push(e))
            .ok();
        let tax_class = row.tax_class.trim().to_string();
        if !classes.contains(&tax_class) {
            problems.push(format!(
                "unknown tax class {tax_class:?}; configured classes: {}",
                classes.iter().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        let mut barcodes = Vec::new();
        for code in &row.barcodes {
            match code.trim().parse::<Barcode>() {
                Ok(b) => barcodes.push(b),
                Err(e) => problems.push(e.to_string()),
            }
        }
        // The catalog view holds a product's barcodes sorted, once each.
        barcodes.sort();
        barcodes.dedup();
        match (sku, unit) {
            (Some(sku), Some(unit)) if problems.is_empty() => Ok(Checked {
                line,
                product: Product {
                    sku,
                    name: row.name.trim().to_string(),
                    barcodes,
                    price_cents: row.price_cents,
                    unit,
                    tax_class,
                    category: row.category.trim().to_string(),
                    active: row.active,
                },
            }),
            _ => Err(problems),
        }
    }

    /// The catalog fields to write for this row: all of them for a new
    /// product, those that differ for an existing one.
    fn fields(&self, old: Option<&Product>) -> Vec<(&'static str, serde_json::Value)> {
        let new = catalog_fields(&self.product);
        match old {
            None => new.into(),
            Some(old) => new
                .into_iter()
                .zip(catalog_fields(old))
                .filter(|((_, value), (_, was))| value != was)
                .map(|(field, _)| field)
                .collect(),
        }
    }
}

/// A product's fields as the catalog document holds them (as `add_product`
/// writes them), by key suffix.
fn catalog_fields(p: &Product) -> [(&'static str, serde_json::Value); 7] {
    [
        ("name", json!(p.name)),
        ("barcodes", json!(p.barcodes)),
        ("price_cents", json!(p.price_cents)),
        ("unit", json!(p.unit)),
        ("tax_class", json!(p.tax_class)),
        ("category", json!(p.category)),
        ("active", json!(p.active)),
    ]
}

impl Store {
    /// Read a catalog file and import it: [`parse_catalog_file`] and
    /// [`Store::import_products`] in one, where a refusal names the rows that
    /// do not read and the rows that break a rule together.
    pub fn import_catalog(
        &mut self,
        bytes: &[u8],
        format: CatalogFormat,
    ) -> Result<ImportReport, ImportError> {
        // A till that may not write the catalog learns so before any row.
        self.check_may_write(&DocId::Catalog)?;
        let parsed = parse_rows(bytes, format)?;
        self.import_checked(parsed.rows, parsed.bad)
    }

    /// Import products, all or none: every row is checked first (its SKU,
    /// name, price, unit, tax class and barcodes with their check digits; no
    /// SKU or barcode twice in the file; no barcode held by a product outside
    /// it; no change of an existing product's unit), and any bad row refuses
    /// the whole import with [`ImportError::BadRows`] naming every bad row.
    /// Otherwise every row is written in one change of the catalog, with one
    /// audit entry, in one durable commit. `rows` pairs each row with its line
    /// in the file, as [`parse_catalog_file`] gives them.
    pub fn import_products(
        &mut self,
        rows: Vec<(usize, ImportRow)>,
    ) -> Result<ImportReport, ImportError> {
        self.check_may_write(&DocId::Catalog)?;
        self.import_checked(rows, Vec::new())
    }

    fn import_checked(
        &mut self,
        rows: Vec<(usize, ImportRow)>,
        mut bad: Vec<BadRow>,
    ) -> Result<ImportReport, ImportError> {
        let classes: BTreeSet<String> = self.tax_classes()?.into_iter().map(|(c, _)| c).collect();
        let mut checked = Vec::new();
        for (line, row) in rows {
            let sku = Some(row.sku.trim().to_string());
            match Checked::of(line, row, &classes) {
                Ok(c) => checked.push(c),
                Err(reasons) => bad.extend(reasons.into_iter().map(|reason| BadRow {
                    line,
                    sku: sku.clone(),
                    reason,
                })),
            }
        }
        let known = self.known_to(&checked)?;
        bad.extend(known.conflicts_with(&checked));
        if !bad.is_empty() {
            bad.sort_by_key(|b| b.line);
            return Err(ImportError::BadRows(bad));
        }

        let mut report = ImportReport::default();
        let mut fields = Vec::new();
        let mut added = Vec::new();
        let mut updated = BTreeMap::new();
        for row in &checked {
            let new = &row.product;
            let old = known.products.get(&new.sku);
            let changed = row.fields(old);
            match old {
                None => {
                    report.added += 1;
                    added.push(new.sku.as_str());
                }
                Some(_) if changed.is_empty() => report.unchanged += 1,
                Some(old) => {
                    report.updated += 1;
                    let names: Vec<&str> = changed.iter().map(|(f, _)| *f).collect();
                    let mut detail = json!({ "fields": names });
                    if old.price_cents != new.price_cents {
                        detail["old_cents"] = json!(old.price_cents);
                        detail["new_cents"] = json!(new.price_cents);
                    }
                    updated.insert(new.sku.as_str(), detail);
                }
            }
            let sku = new.sku.as_str();
            fields.extend(changed.into_iter().map(|(f, v)| (format!("{sku}/{f}"), v)));
        }
        if fields.is_empty() {
            return Ok(report);
        }
        let hlc = self.tick();
        let mut w = self.writer()?;
        w.put_fields(DocId::Catalog, hlc, &fields)?;
        w.audit(
            "product-import",
            "catalog",
            json!({
                "added": added,
                "updated": updated,
                "unchanged": report.unchanged,
            }),
        )?;
        w.commit()?;
        Ok(report)
    }

    /// What the catalog holds that `rows` may meet, read in one transaction.
    fn known_to(&self, rows: &[Checked]) -> Result<Known, StorageError> {
        let txn = self.db.begin_read()?;
        let products = txn.open_table(tables::V_PRODUCTS)?;
        let index = txn.open_multimap_table(tables::V_BARCODES)?;
        let mut known = Known::default();
        for row in rows {
            let sku = &row.product.sku;
            if let Some(v) = products.get(sku.as_str())? {
                known
                    .products
                    .insert(sku.clone(), read_json("v_products", v.value())?);
            }
            for b in &row.product.barcodes {
                if known.holders.contains_key(b) {
                    continue;
                }
                let mut skus = Vec::new();
                for v in index.get(b.as_str())? {
                    if let Ok(sku) = v?.value().parse() {
                        skus.push(sku);
                    }
                }
                known.holders.insert(b.clone(), skus);
            }
        }
        Ok(known)
    }
}

/// The catalog as far as an import's rows meet it.
#[derive(Default)]
struct Known {
    /// The products the rows name that the catalog has.
    products: HashMap<Sku, Product>,
    /// The products holding each barcode of the rows.
    holders: HashMap<Barcode, Vec<Sku>>,
}

impl Known {
    /// The problems between rows, and between rows and the catalog: a SKU or
    /// a barcode twice in the file, a barcode a product outside the file holds
    /// (a barcode may move between two products the file both names), a
    /// product's unit changed (its stock is counted in pieces or grams).
    fn conflicts_with(&self, rows: &[Checked]) -> Vec<BadRow> {
        let mut bad = Vec::new();
        let mut first_sku: HashMap<&Sku, usize> = HashMap::new();
        let mut first_barcode: HashMap<&Barcode, (usize, &Sku)> = HashMap::new();
        let in_file: BTreeSet<&Sku> = rows.iter().map(|r| &r.product.sku).collect();
        for row in rows {
            let p = &row.product;
            let mut flag = |reason: String| {
                bad.push(BadRow {
                    line: row.line,
                    sku: Some(p.sku.to_string()),
                    reason,
                })
            };
            if let Some(first) = first_sku.get(&p.sku) {
                flag(format!("SKU {} is already on line {first}", p.sku));
            } else {
                first_sku.insert(&p.sku, row.line);
            }
            if let Some(old) = self.products.get(&p.sku)
                && old.unit != p.unit
            {
                flag(format!(
                    "the unit cannot change from {} to {}: its stock is counted in {}; give it a \
                     new SKU",
                    old.unit,
                    p.unit,
                    match old.unit {
                        Unit::Each => "pieces",
                        Unit::Kg => "grams",
                    }
                ));
            }
            for b in &p.barcodes {
                match first_barcode.get(b) {
                    Some((line, sku)) => {
                        flag(format!("barcode {b} is already on line {line} (SKU {sku})"))
                    }
                    None => {
                        first_barcode.insert(b, (row.line, &p.sku));
                    }
                }
                let outside = self
                    .holders
                    .get(b)
                    .into_iter()
                    .flatten()
                    .find(|s| **s != p.sku && !in_file.contains(s));
                if let Some(other) = outside {
                    flag(format!("barcode {b} already belongs to product {other}"));
                }
            }
        }
        bad
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_by_name() {
        for (name, format) in [
            ("a.csv", Some(CatalogFormat::Csv)),
            ("dir/b.JSON", Some(CatalogFormat::Json)),
            ("c.txt", None),
            ("csv", None),
        ] {
            assert_eq!(
                CatalogFormat::from_path(std::path::Path::new(name)),
                format,
                "{name}"
            );
        }
        assert_eq!("json".parse(), Ok(CatalogFormat::Json));
        assert_eq!(CatalogFormat::Csv.to_string(), "csv");
    }

    #[test]
    fn csv_rows_read_with_their_lines() {
        let text = "sku,name,price,unit,tax_class,category,barcodes,active\n\
                    MILK,\"Milk, 1 l\",1.19,each,reduced,dairy,4006381333931 0036000291452,\n\
                    APPLES,Apples,2.4,kg,reduced,,,false\n";
        let rows = parse_catalog_file(text.as_bytes(), CatalogFormat::Csv).expect("reads");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].0, 2);
        assert_eq!(rows[0].1.name, "Milk, 1 l");
        assert_eq!(rows[0].1.barcodes, ["4006381333931", "0036000291452"]);
        assert!(rows[0].1.active);
        assert_eq!(rows[1].0, 3);
        assert_eq!(rows[1].1.price_cents, 240);
        assert!(rows[1].1.barcodes.is_empty());
        assert!(!rows[1].1.active);
    }

    #[test]
    fn csv_headers_must_name_the_columns() {
        for (text, needle) in [
            ("", "empty"),
            ("sku,name,price\n", "lacks column \"unit\""),
            (
                "sku,name,price,unit,tax_class,category,barcodes,active,colour\n",
                "unknown column \"colour\"",
            ),
            (
                "sku,name,price,unit,tax_class,category,barcodes,active,sku\n",
                "twice",
            ),
        ] {
            let err =
                parse_catalog_file(text.as_bytes(), CatalogFormat::Csv).expect_err("a bad header");
            assert!(
                matches!(&err, ImportError::Unreadable { .. }) && err.to_string().contains(needle),
                "{text:?}: {err}"
            );
        }
        // Any order, any case.
        let text =
            "Active,barcodes,category,tax_class,unit,price,name,SKU\ntrue,,,zero,each,1,Tea,TEA\n";
        let rows = parse_catalog_file(text.as_bytes(), CatalogFormat::Csv).expect("reads");
        assert_eq!(rows[0].1.sku, "TEA");
    }

    #[test]
    fn json_rows_read_with_their_lines() {
        let text = r#"[
  {"sku": "MILK", "name": "Milk", "price_cents": 119, "unit": "each",
   "tax_class": "reduced", "category": "dairy", "barcodes": ["4006381333931"], "active": true},
  {"sku": "TEA", "name": "Tea", "price_cents": 250, "unit": "each", "tax_class": "standard"}
]"#;
        let rows = parse_catalog_file(text.as_bytes(), CatalogFormat::Json).expect("reads");
        assert_eq!(rows.iter().map(|r| r.0).collect::<Vec<_>>(), [2, 4]);
        assert_eq!(rows[1].1.category, "");
        assert!(rows[1].1.active);
        assert!(rows[1].1.barcodes.is_empty());

        let text = "[\n{\"sku\": \"A\", \"name\": \"A\", \"price_cents\": 1, \"unit\": \"each\", \"tax_class\": \"zero\", \"colour\": \"red\"},\n\
                    {\"sku\": \"B\", \"name\": \"B\", \"unit\": \"each\", \"tax_class\": \"zero\"},\n\
                    7\n]";
        let Err(ImportError::BadRows(bad)) =
            parse_catalog_file(text.as_bytes(), CatalogFormat::Json)
        else {
            panic!("bad rows expected");
        };
        assert_eq!(bad.iter().map(|b| b.line).collect::<Vec<_>>(), [2, 3, 4]);
        assert!(bad[0].reason.contains("unknown field `colour`"), "{bad:?}");
        assert_eq!(bad[0].sku.as_deref(), Some("A"));
        assert!(
            bad[1].reason.contains("missing field `price_cents`"),
            "{bad:?}"
        );

        for (text, needle) in [
            ("{}", "not a JSON array"),
            (
                "[{\"sku\": ",
                "not valid JSON: EOF while parsing a value at line 1",
            ),
            ("[\n{}\n{}]", "line 3 column 1"),
            ("[] []", "trailing characters"),
        ] {
            let err = parse_catalog_file(text.as_bytes(), CatalogFormat::Json)
                .expect_err("not a catalog");
            assert!(
                matches!(&err, ImportError::Unreadable { .. }) && err.to_string().contains(needle),
                "{text:?}: {err}"
            );
        }
    }

    #[test]
    fn bad_rows_are_listed_one_per_line() {
        let err = ImportError::BadRows(vec![
            BadRow {
                line: 3,
                sku: Some("BREAD".into()),
                reason: "no price".into(),
            },
            BadRow {
                line: 9,
                sku: None,
                reason: "text after the closing quote".into(),
            },
        ]);
        assert_eq!(
            err.to_string(),
            "2 rows of the file cannot be imported; nothing was imported:\n  \
             line 3 (SKU BREAD): no price\n  line 9: text after the closing quote"
        );
    }
}
