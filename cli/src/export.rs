//! `tillmesh sales export` and `tillmesh stock export`: files for accounting,
//! CSV (one row per sold line) or JSON (one object per entry), written as the
//! pages of the sales index are read, so a month of a hundred tills never sits
//! in memory. Each page is one short call on the store thread: tills keep
//! selling while a month is exported.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use tillmesh_store::{SaleRecord, SalesFilter, SalesPage, Store, StoreHandle};

use crate::args::SalesExportArgs;

use crate::api::SaleOut;
use crate::commands::rejected;

/// A page source: the page after a cursor.
pub type Pages<'a> = dyn FnMut(Option<String>) -> Result<SalesPage> + 'a;

/// Entries per page read.
const PAGE: usize = 500;

/// File formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Json,
}

impl Format {
    /// `--format` if given, else by the file's extension, else CSV.
    pub fn of(given: Option<&str>, file: &Path) -> Result<Self> {
        match given.map(str::to_ascii_lowercase).as_deref() {
            Some("csv") => Ok(Self::Csv),
            Some("json") => Ok(Self::Json),
            Some(other) => Err(rejected(format!("unknown format {other:?}: csv or json"))),
            None => Ok(
                match file
                    .extension()
                    .and_then(|e| e.to_str())
                    .map(str::to_ascii_lowercase)
                {
                    Some(e) if e == "json" => Self::Json,
                    _ => Self::Csv,
                },
            ),
        }
    }
}

/// The CSV header of a sales export.
pub const SALES_CSV_HEADER: &str = "receipt,kind,refers_to,till,till_id,day,time,tender,sku,qty,grams,unit_price_cents,discount_cents,amount_cents,tax_cents";

/// A CSV field, quoted when it needs to be.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn write_csv_rows(r: &SaleRecord, out: &mut dyn Write) -> Result<()> {
    let s = SaleOut::from(r);
    for l in &s.lines {
        let fields = [
            s.receipt.clone(),
            s.kind.clone(),
            s.refers_to.clone().unwrap_or_default(),
            s.till.clone(),
            s.till_id.clone(),
            s.day.clone(),
            s.time.clone(),
            s.tender.clone(),
            l.sku.to_string(),
            l.qty.map(|q| q.to_string()).unwrap_or_default(),
            l.grams.map(|g| g.to_string()).unwrap_or_default(),
            l.unit_price_cents.to_string(),
            l.discount_cents.to_string(),
            l.amount_cents.to_string(),
            l.tax_cents.to_string(),
        ];
        let row: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        writeln!(out, "{}", row.join(","))?;
    }
    Ok(())
}

/// Write every entry `pages` yields to `out`; gives how many.
pub fn sales(pages: &mut Pages<'_>, format: Format, out: &mut dyn Write) -> Result<u64> {
    let mut n = 0u64;
    match format {
        Format::Csv => writeln!(out, "{SALES_CSV_HEADER}")?,
        Format::Json => write!(out, "[")?,
    }
    each_page(pages, |items| {
        for r in &items {
            match format {
                Format::Csv => write_csv_rows(r, out)?,
                Format::Json => {
                    if n > 0 {
                        write!(out, ",")?;
                    }
                    write!(out, "\n{}", serde_json::to_string(&SaleOut::from(r))?)?;
                }
            }
            n += 1;
        }
        Ok(())
    })?;
    if format == Format::Json {
        writeln!(out, "\n]")?;
    }
    Ok(n)
}

/// Hand every page `pages` yields to `f`, first to last.
pub fn each_page(
    pages: &mut Pages<'_>,
    mut f: impl FnMut(Vec<SaleRecord>) -> Result<()>,
) -> Result<()> {
    let mut after = None;
    loop {
        let page = pages(after.take())?;
        f(page.items)?;
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(()),
        }
    }
}

/// The page of `filter` after `after`, [`PAGE`] entries long.
fn page_of(store: &Store, filter: &SalesFilter, after: Option<&str>) -> Result<SalesPage> {
    store.sales_page(filter, after, PAGE).map_err(page_error)
}

/// The pages of `filter` read from `store` directly.
pub fn pages_of<'a>(store: &'a Store, filter: SalesFilter) -> Box<Pages<'a>> {
    Box::new(move |after| page_of(store, &filter, after.as_deref()))
}

/// `tillmesh sales export`: the filter is read in one store call, then each page
/// in one short call of its own while the file is written beside the store, so
/// tills keep selling while a month is exported. An export to `-` goes to
/// `out`, page by page; gives `out` back.
pub async fn sales_stepped(
    store: &StoreHandle,
    e: SalesExportArgs,
    mut out: crate::core::Out,
) -> Result<crate::core::Out> {
    let e = std::sync::Arc::new(e);
    let e2 = e.clone();
    let filter = store
        .call(move |s| crate::commands::export_filter(s, &e2))
        .await??;
    let store = store.clone();
    let rt = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let mut pages = move |after: Option<String>| {
            let filter = filter.clone();
            rt.block_on(store.call(move |s| page_of(s, &filter, after.as_deref())))?
        };
        crate::commands::sales_export(&e, &mut pages, &mut out)?;
        Ok(out)
    })
    .await?
}

/// A listing error as the command line reports it.
pub fn page_error(e: tillmesh_store::ListError) -> anyhow::Error {
    match e {
        tillmesh_store::ListError::Cursor(c) => rejected(c.to_string()),
        tillmesh_store::ListError::Storage(s) => s.into(),
    }
}

/// Open the file an export writes: a new file, never one that exists (the
/// callers write `-` to the command's own output).
pub fn open_output(file: &Path) -> Result<Box<dyn Write + Send>> {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(file)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                rejected(format!(
                    "{} exists; an export never overwrites a file",
                    file.display()
                ))
            } else {
                anyhow::Error::new(e).context(format!("cannot write {}", file.display()))
            }
        })?;
    Ok(Box::new(std::io::BufWriter::new(f)))
}

/// Stock of every product: CSV or JSON.
pub fn stock(store: &Store, format: Format, out: &mut dyn Write) -> Result<u64> {
    let products = store.products()?;
    let mut n = 0;
    match format {
        Format::Csv => writeln!(out, "sku,name,unit,on_hand,counted_at")?,
        Format::Json => write!(out, "[")?,
    }
    for p in &products {
        let level = store.stock(&p.sku)?;
        let counted = level
            .counted_at
            .map(crate::output::hlc_time)
            .unwrap_or_default();
        match format {
            Format::Csv => writeln!(
                out,
                "{},{},{},{},{}",
                csv_field(p.sku.as_str()),
                csv_field(&p.name),
                p.unit,
                level.on_hand,
                counted
            )?,
            Format::Json => {
                if n > 0 {
                    write!(out, ",")?;
                }
                write!(
                    out,
                    "\n{}",
                    serde_json::json!({
                        "sku": p.sku.as_str(), "name": p.name, "unit": p.unit,
                        "on_hand": level.on_hand, "counted_at": counted,
                    })
                )?;
            }
        }
        n += 1;
    }
    if format == Format::Json {
        writeln!(out, "\n]")?;
    }
    Ok(n)
}

/// Finish an export file: flushed, and on disk before the command says so.
pub fn finish(mut out: impl Write, file: &Path) -> Result<()> {
    out.flush()
        .with_context(|| format!("cannot write {}", file.display()))?;
    drop(out);
    if file != Path::new("-") {
        std::fs::File::open(file)
            .and_then(|f| f.sync_all())
            .with_context(|| format!("cannot write {}", file.display()))?;
    }
    Ok(())
}
