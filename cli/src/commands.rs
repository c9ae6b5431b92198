//! The operator commands: parse what the operator typed into store calls, and
//! print what came back.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use serde::Serialize;
use tillmesh_store::{
    Barcode, CatalogFormat, Day, LineRequest, NewProduct, NewStore, Policy, Product, ProductEdit,
    Receipt, RefundLine, Role, SaleEntry, SaleRequest, Sku, Store, StoreId, StoreOptions,
    SystemClock, Tender, TillId, TillInfo, TillKey, Unit, parse_money,
};

use crate::api::SaleOut;
use crate::args::*;
use crate::exit::{Damaged, Rejected};
use crate::home::{Home, HomeFile};
use crate::output::{Qty, Table, hlc_time, money, parse_qty, qty_text};

/// Where a till keeps its files, and how to open its store.
#[derive(Debug)]
pub struct Ctx {
    pub home: Home,
    pub opts: StoreOptions,
}

/// The admin key's file in a till home (on the admin till only).
pub const ADMIN_KEY_FILE: &str = HomeFile::AdminKey.name();

/// The store's recovery key in a till home (on the admin till only, mode 0600,
/// like the admin key).
pub const RECOVERY_KEY_FILE: &str = HomeFile::RecoveryKey.name();

impl Ctx {
    pub fn new(cli: &Cli) -> Result<Self> {
        let home = match &cli.home {
            Some(h) => h.clone(),
            None => match crate::runconfig::configured_home(cli)? {
                Some(h) => h,
                None => dirs::data_dir()
                    .map(|d| d.join("tillmesh"))
                    .context("no --home given and no platform data directory; pass --home DIR")?,
            },
        };
        let mut opts = StoreOptions {
            clock: Arc::new(SystemClock::with_offset(cli.clock_offset_ms)),
            ..StoreOptions::default()
        };
        if let Some(n) = cli.compact_after {
            opts.compact_after = n.max(1);
        }
        Ok(Self {
            home: Home::new(home),
            opts,
        })
    }

    pub fn key_path(&self) -> PathBuf {
        self.home.file(HomeFile::TillKey)
    }
    pub fn admin_key_path(&self) -> PathBuf {
        self.home.file(HomeFile::AdminKey)
    }
    pub fn store_path(&self) -> PathBuf {
        self.home.file(HomeFile::Store)
    }

    /// This till's key.
    pub fn key(&self) -> Result<TillKey> {
        TillKey::load(&self.key_path())
            .with_context(|| format!("cannot read this till's key in {}", self.home.display()))
    }

    /// The store's admin key, on the admin till.
    pub fn admin_key(&self) -> Option<TillKey> {
        TillKey::load(&self.admin_key_path()).ok()
    }

    pub fn open(&self) -> Result<Store> {
        let store_path = self.store_path();
        if !store_path.exists() {
            return Err(
                tillmesh_store::OpenStoreError::NotFound(self.home.display().to_string()).into(),
            );
        }
        let mut store = Store::open(&store_path, self.key()?, self.opts.clone())?;
        adopt_admin_key(&mut store, &self.home);
        Ok(store)
    }

    /// [`Ctx::open`], waiting up to `patience` while another process of this
    /// till (a command, or the daemon starting) holds the store. `Ok(None)`
    /// when `give_way` says so meanwhile (the daemon's API came up: go through
    /// it instead).
    pub fn open_waiting(
        &self,
        patience: std::time::Duration,
        give_way: impl Fn() -> bool,
    ) -> Result<Option<Store>> {
        let until = std::time::Instant::now() + patience;
        loop {
            match self.open() {
                Err(e)
                    if matches!(
                        e.downcast_ref::<tillmesh_store::OpenStoreError>(),
                        Some(tillmesh_store::OpenStoreError::InUse(_))
                    ) && std::time::Instant::now() < until =>
                {
                    if give_way() {
                        return Ok(None);
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => return other.map(Some),
            }
        }
    }
}

/// How long a command waits for the store while another process of the till
/// holds it (a daemon starting, another command), and a starting daemon for a
/// command to finish.
pub const STORE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(20);

/// Hold the admin key from `admin.key` when it is the one the store's trust
/// root names; any other key there (a till key copied into its place, say) is
/// ignored with a warning and gives no admin rights.
pub fn adopt_admin_key(store: &mut Store, home: &Path) {
    let Ok(key) = TillKey::load(&home.join(ADMIN_KEY_FILE)) else {
        return;
    };
    if let Err(e) = store.set_admin_signer(key) {
        tracing::warn!(error = %e, "admin.key in this till home is not the store's admin key; ignoring it");
    }
}

pub(crate) fn rejected(msg: impl Into<String>) -> anyhow::Error {
    Rejected(msg.into()).into()
}

/// The name of till `id` among `tills`, or its id's short form when it is
/// none of them.
pub(crate) fn till_name(tills: &[TillInfo], id: &TillId) -> String {
    tills
        .iter()
        .find(|t| t.id == *id)
        .map(|t| t.name.clone())
        .unwrap_or_else(|| id.fmt_short())
}

pub(crate) fn print_json(out: &mut dyn Write, v: &impl Serialize) -> Result<()> {
    writeln!(out, "{}", serde_json::to_string_pretty(v)?)?;
    Ok(())
}

/// Create a till home at `home` (mode 0700).
pub fn create_home(home: &Path) -> Result<()> {
    Home::new(home).create()
}

pub fn init(ctx: &Ctx, a: &InitArgs, out: &mut dyn Write) -> Result<()> {
    let till_name = a.till.parse().map_err(|e| rejected(format!("{e}")))?;
    let role: Role = a.role.parse().map_err(rejected)?;
    for r in &a.relays {
        check_relay_url(r)?;
    }
    if ctx.store_path().exists() || ctx.key_path().exists() {
        return Err(
            tillmesh_store::OpenStoreError::AlreadyExists(ctx.home.display().to_string()).into(),
        );
    }
    create_home(&ctx.home)?;
    let key = TillKey::generate();
    let new = NewStore {
        store_id: StoreId::random(),
        store_name: a.store.clone(),
        till_name,
        role,
        founder: true,
    };
    let admin = TillKey::generate();
    // The store first: if anything fails, nothing is left behind to block a retry.
    let mut store = Store::create(&ctx.store_path(), key.clone(), new, ctx.opts.clone())?;
    let finish = |store: &mut Store| -> Result<()> {
        store.set_admin_key(admin.till_id())?;
        store.set_admin_signer(admin.clone())?;
        store.certify(
            &admin,
            key.till_id(),
            &store.till_name().clone(),
            store.role(),
        )?;
        if !a.relays.is_empty() {
            store.set_relays(&a.relays)?;
        }
        key.save(&ctx.key_path())?;
        admin.save(&ctx.admin_key_path())?;
        crate::backups::ensure_keys(store, &ctx.home)?;
        if let Some(file) = &a.recovery {
            crate::backups::write_recovery(store, &ctx.home, &admin, file)?;
        }
        Ok(())
    };
    if let Err(e) = finish(&mut store) {
        drop(store);
        for p in [
            ctx.store_path(),
            ctx.key_path(),
            ctx.admin_key_path(),
            ctx.home.join(RECOVERY_KEY_FILE),
            crate::backups::keys_path(&ctx.home),
        ] {
            let _ = std::fs::remove_file(p);
        }
        return Err(e).context("cannot finish creating the store; nothing was kept");
    }
    writeln!(
        out,
        "Created store {:?} ({}) with till {} ({}, {}) in {}",
        store.store_name(),
        store.store_id(),
        store.till_name(),
        store.till_id().fmt_short(),
        store.role(),
        ctx.home.display()
    )?;
    Ok(())
}

#[derive(Serialize)]
struct InfoJson<'a> {
    store: String,
    store_name: &'a str,
    till: &'a str,
    till_id: String,
    role: String,
    home: String,
    next_receipt: u64,
    tills: Vec<TillInfo>,
}

pub fn info(store: &mut Store, home: &Path, json: bool, out: &mut dyn Write) -> Result<()> {
    let tills = store.tills()?;
    if json {
        return print_json(
            out,
            &InfoJson {
                store: store.store_id().to_string(),
                store_name: store.store_name(),
                till: store.till_name().as_str(),
                till_id: store.till_id().to_string(),
                role: store.role().to_string(),
                home: home.display().to_string(),
                next_receipt: store.next_receipt_number(),
                tills,
            },
        );
    }
    writeln!(out, "Store   {} ({})", store.store_name(), store.store_id())?;
    writeln!(
        out,
        "Till    {} ({}, {})",
        store.till_name(),
        store.till_id(),
        store.role()
    )?;
    writeln!(out, "Home    {}", home.display())?;
    writeln!(
        out,
        "Next receipt  {}-{}",
        store.till_name(),
        store.next_receipt_number()
    )?;
    let mut t = Table::new(&["TILL", "ID", "ROLE"]);
    for till in tills {
        t.row(vec![till.name, till.id.fmt_short(), till.role.to_string()]);
    }
    write!(out, "\n{}", t.render())?;
    Ok(())
}

fn product_row(t: &mut Table, p: &Product) {
    t.row(vec![
        p.sku.to_string(),
        p.name.clone(),
        money(p.price_cents),
        p.unit.to_string(),
        p.tax_class.clone(),
        p.category.clone(),
        if p.active { "yes" } else { "no" }.into(),
        p.barcodes
            .iter()
            .map(Barcode::to_string)
            .collect::<Vec<_>>()
            .join(" "),
    ]);
}

const PRODUCT_HEAD: [&str; 8] = [
    "SKU", "NAME", ">PRICE", "UNIT", "TAX", "CATEGORY", "ACTIVE", "BARCODES",
];

fn parse_sku(s: &str) -> Result<Sku> {
    s.parse().map_err(|e| rejected(format!("{e}")))
}

fn parse_price(s: &str) -> Result<i64> {
    parse_money(s).map_err(|e| rejected(e.to_string()))
}

fn parse_barcodes(codes: &[String]) -> Result<Vec<Barcode>> {
    codes
        .iter()
        .map(|c| c.parse().map_err(|e| rejected(format!("{e}"))))
        .collect()
}

pub fn product(store: &mut Store, cmd: &ProductCmd, out: &mut dyn Write) -> Result<()> {
    match cmd {
        ProductCmd::Add(a) => {
            let p = store.add_product(NewProduct {
                sku: parse_sku(&a.sku)?,
                name: a.name.clone(),
                barcodes: parse_barcodes(&a.barcodes)?,
                price_cents: parse_price(&a.price)?,
                unit: a.unit.parse().map_err(rejected)?,
                tax_class: a.tax_class.clone(),
                category: a.category.clone(),
            })?;
            writeln!(
                out,
                "Added {} {:?} at {}{}",
                p.sku,
                p.name,
                money(p.price_cents),
                per_unit(p.unit)
            )?;
        }
        ProductCmd::SetPrice { sku, price } => {
            let sku = parse_sku(sku)?;
            let old = store.product(&sku)?.map(|p| p.price_cents);
            let p = store.set_price(&sku, parse_price(price)?)?;
            writeln!(
                out,
                "{} {:?}: {} -> {}{}",
                p.sku,
                p.name,
                old.map(money).unwrap_or_default(),
                money(p.price_cents),
                per_unit(p.unit)
            )?;
        }
        ProductCmd::Edit(a) => {
            let p = store.edit_product(
                &parse_sku(&a.sku)?,
                ProductEdit {
                    name: a.name.clone(),
                    price_cents: None,
                    add_barcodes: parse_barcodes(&a.add_barcodes)?,
                    remove_barcodes: parse_barcodes(&a.remove_barcodes)?,
                    tax_class: a.tax_class.clone(),
                    category: a.category.clone(),
                    active: a.active,
                },
            )?;
            let mut t = Table::new(&PRODUCT_HEAD);
            product_row(&mut t, &p);
            write!(out, "{}", t.render())?;
        }
        ProductCmd::List(a) => {
            let page = if a.page.paged() {
                products_page(
                    store,
                    None,
                    a.page.after.as_deref(),
                    page_limit(a.page.limit, 100)?,
                )?
            } else {
                Page {
                    items: store.products()?,
                    next: None,
                }
            };
            if a.json {
                return if a.page.paged() {
                    print_json(out, &page)
                } else {
                    print_json(out, &page.items)
                };
            }
            let mut t = Table::new(&PRODUCT_HEAD);
            for p in &page.items {
                product_row(&mut t, p);
            }
            write!(out, "{}", t.render())?;
            more(out, "product list", page.next.as_deref())?;
        }
        ProductCmd::Show { code, json } => {
            let p = find_product(store, code)?;
            if *json {
                return print_json(out, &p);
            }
            let stock = store.stock(&p.sku)?;
            writeln!(out, "SKU       {}", p.sku)?;
            writeln!(out, "Name      {}", p.name)?;
            writeln!(
                out,
                "Price     {}{}",
                money(p.price_cents),
                per_unit(p.unit)
            )?;
            writeln!(out, "Tax       {}", p.tax_class)?;
            writeln!(out, "Category  {}", p.category)?;
            writeln!(out, "Active    {}", if p.active { "yes" } else { "no" })?;
            writeln!(
                out,
                "Barcodes  {}",
                p.barcodes
                    .iter()
                    .map(Barcode::to_string)
                    .collect::<Vec<_>>()
                    .join(" ")
            )?;
            writeln!(out, "On hand   {}", qty_text(stock.on_hand, p.unit))?;
        }
        ProductCmd::Import { file, format, json } => {
            return import_products(store, file, format.as_deref(), *json, out);
        }
    }
    Ok(())
}

/// `tillmesh product import FILE`: the format from `--format` or the file's
/// name, then the store's all-or-nothing import.
fn import_products(
    store: &mut Store,
    file: &Path,
    format: Option<&str>,
    json: bool,
    out: &mut dyn Write,
) -> Result<()> {
    let format = match format {
        Some(f) => f.parse().map_err(rejected)?,
        None if file == Path::new("-") => {
            return Err(rejected(
                "a catalog on standard input needs its format: pass --format csv or --format json",
            ));
        }
        None => CatalogFormat::from_path(file).ok_or_else(|| {
            rejected(format!(
                "cannot tell the format of {} from its name: pass --format csv or --format json",
                file.display()
            ))
        })?,
    };
    let bytes = crate::core::caller_file(file)?;
    let report = store
        .import_catalog(&bytes, format)
        .with_context(|| format!("importing {}", file.display()))?;
    if json {
        return print_json(out, &report);
    }
    let total = report.added + report.updated + report.unchanged;
    if report.wrote() {
        writeln!(
            out,
            "Imported {total} products ({} added, {} updated, {} unchanged) in one write",
            report.added, report.updated, report.unchanged
        )?;
    } else {
        writeln!(
            out,
            "Nothing to change: the catalog already holds the {total} products of {} as they are",
            file.display()
        )?;
    }
    Ok(())
}

fn per_unit(u: Unit) -> &'static str {
    match u {
        Unit::Each => "",
        Unit::Kg => "/kg",
    }
}

fn find_product(store: &Store, code: &str) -> Result<Product> {
    Ok(store.product_by_code(code)?)
}

/// Parse `CODE[:QTY|:<grams>g][:-DISCOUNT]`.
fn parse_line(s: &str) -> Result<LineRequest> {
    let mut parts = s.split(':');
    let code = parts.next().unwrap_or_default().trim();
    if code.is_empty() {
        return Err(rejected(format!("line {s:?} has no SKU or barcode")));
    }
    let mut req = LineRequest {
        code: code.to_string(),
        qty: None,
        grams: None,
        discount_cents: 0,
    };
    for part in parts {
        if let Some(d) = part.strip_prefix('-') {
            req.discount_cents =
                parse_money(d).map_err(|e| rejected(format!("line {s:?}: discount {e}")))?;
        } else {
            match parse_qty(part).map_err(|e| rejected(format!("line {s:?}: {e}")))? {
                Qty::Pieces(n) => req.qty = Some(n),
                Qty::Grams(g) => req.grams = Some(g),
            }
        }
    }
    Ok(req)
}

/// A sales entry just written here, as listings and the API show it (with
/// the day of its document: this till's wall-clock day).
pub(crate) fn recorded(store: &mut Store, e: SaleEntry) -> Result<SaleOut> {
    let r = e.receipt.clone();
    Ok(SaleOut::from(&store.sale_record(&r)?.unwrap_or(
        tillmesh_store::SaleRecord {
            day: Day::from_unix_ms(e.hlc.ms()).to_string(),
            entry: e,
            till: store.till_id(),
        },
    )))
}

/// Print a sale, void or refund as the receipt the cashier sees, or as JSON.
pub(crate) fn show_entry(s: &SaleOut, json: bool, out: &mut dyn Write) -> Result<()> {
    if json {
        return print_json(out, s);
    }
    print_receipt(s, out)
}

fn print_receipt(e: &SaleOut, out: &mut dyn Write) -> Result<()> {
    let what = match &e.refers_to {
        Some(r) => format!("{} of {r}", e.kind),
        None => e.kind.to_string(),
    };
    writeln!(
        out,
        "Receipt {}  {}  {}  {}",
        e.receipt, what, e.tender, e.time
    )?;
    let mut t = Table::new(&["SKU", ">QTY", ">PRICE", ">AMOUNT"]);
    for l in &e.lines {
        let (qty, price) = match (l.qty, l.grams) {
            (_, Some(g)) => (format!("{g}g"), format!("{}/kg", money(l.unit_price_cents))),
            (q, None) => (q.unwrap_or(1).to_string(), money(l.unit_price_cents)),
        };
        t.row(vec![l.sku.to_string(), qty, price, money(l.amount_cents)]);
        if l.discount_cents != 0 {
            t.row(vec![
                "  discount".into(),
                String::new(),
                String::new(),
                money(-l.discount_cents),
            ]);
        }
    }
    t.row(vec![
        "TOTAL".into(),
        String::new(),
        String::new(),
        money(e.total_cents),
    ]);
    t.row(vec![
        "  incl. tax".into(),
        String::new(),
        String::new(),
        money(e.tax_cents),
    ]);
    write!(out, "{}", t.render())?;
    Ok(())
}

/// `tillmesh sale`'s lines as the local API takes a sale.
pub(crate) fn sale_in(a: &SaleArgs) -> Result<crate::api::SaleIn> {
    let lines = a
        .lines
        .iter()
        .map(|l| {
            parse_line(l).map(|r| crate::api::LineIn {
                sku: Some(r.code),
                barcode: None,
                qty: r.qty,
                grams: r.grams,
                discount_cents: r.discount_cents,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(crate::api::SaleIn {
        lines,
        tender: a.tender.clone(),
    })
}

pub fn sale(store: &mut Store, a: &SaleArgs, out: &mut dyn Write) -> Result<()> {
    let lines = a
        .lines
        .iter()
        .map(|l| parse_line(l))
        .collect::<Result<Vec<_>>>()?;
    let tender: Tender = a.tender.parse().map_err(rejected)?;
    let e = store.record_sale(SaleRequest { lines, tender })?;
    show_entry(&recorded(store, e)?, a.json, out)
}

fn parse_receipt(s: &str) -> Result<Receipt> {
    s.parse().map_err(|e| rejected(format!("{e}")))
}

pub fn void(store: &mut Store, a: &VoidArgs, out: &mut dyn Write) -> Result<()> {
    let r = parse_receipt(&a.receipt)?;
    let e = store.void(&r)?;
    show_entry(&recorded(store, e)?, a.json, out)
}

pub fn refund(store: &mut Store, a: &RefundArgs, out: &mut dyn Write) -> Result<()> {
    let r = parse_receipt(&a.receipt)?;
    let mut lines = Vec::new();
    for l in &a.lines {
        let (sku, qty) = match l.split_once(':') {
            Some((s, q)) => (s, Some(parse_qty(q).map_err(rejected)?.value())),
            None => (l.as_str(), None),
        };
        lines.push(RefundLine {
            sku: parse_sku(sku)?,
            qty,
        });
    }
    let e = store.refund(&r, &lines)?;
    show_entry(&recorded(store, e)?, a.json, out)
}

pub(crate) fn find_till(store: &Store, s: &str) -> Result<TillId> {
    let tills = store.tills()?;
    if let Some(t) = tills.iter().find(|t| t.name == s) {
        return Ok(t.id);
    }
    let matches: Vec<&TillInfo> = tills
        .iter()
        .filter(|t| t.id.to_string().starts_with(s))
        .collect();
    match matches.as_slice() {
        [one] => Ok(one.id),
        [] => Err(rejected(format!(
            "no till named {s:?}; known tills: {}",
            tills
                .iter()
                .map(|t| t.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
        _ => Err(rejected(format!(
            "{s:?} matches several till ids; give more digits"
        ))),
    }
}

pub(crate) fn parse_day(s: &str) -> Result<Day> {
    if s == "today" {
        return Ok(Day::from_unix_ms(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
        ));
    }
    s.parse().map_err(|e| rejected(format!("{e}")))
}

/// The entries an export covers.
pub fn export_filter(store: &Store, e: &SalesExportArgs) -> Result<tillmesh_store::SalesFilter> {
    Ok(tillmesh_store::SalesFilter {
        from: e.from.as_deref().map(parse_day).transpose()?,
        to: e.to.as_deref().map(parse_day).transpose()?,
        till: e.till.as_deref().map(|t| find_till(store, t)).transpose()?,
        kind: None,
    })
}

/// Run a sales export over `pages`; says where it went (nothing for `-`).
pub fn sales_export(
    e: &SalesExportArgs,
    pages: &mut crate::export::Pages<'_>,
    out: &mut (dyn Write + Send),
) -> Result<()> {
    let format = crate::export::Format::of(e.format.as_deref(), &e.file)?;
    let to_stdout = e.file == Path::new("-");
    let mut w: Box<dyn Write + Send + '_> = if to_stdout {
        Box::new(&mut *out)
    } else {
        crate::export::open_output(&e.file)?
    };
    let n = crate::export::sales(pages, format, &mut w)?;
    crate::export::finish(w, &e.file)?;
    if !to_stdout {
        writeln!(out, "Exported {n} entries to {}", e.file.display())?;
    }
    Ok(())
}

pub fn sales(store: &mut Store, a: &SalesArgs, out: &mut dyn Write) -> Result<()> {
    if a.cmd.is_some() {
        bail!("sales export runs in steps (export::sales_stepped)")
    }
    let day = a.day.as_deref().map(parse_day).transpose()?;
    let till = a.till.as_deref().map(|t| find_till(store, t)).transpose()?;
    let paged = a.limit.is_some() || a.after.is_some();
    let filter = tillmesh_store::SalesFilter {
        from: day,
        to: day,
        till,
        kind: None,
    };
    // From the sales index: one page, or every page.
    let (records, next) = if paged {
        let limit = page_limit(a.limit, 100)?;
        let page = store
            .sales_page(&filter, a.after.as_deref(), limit)
            .map_err(crate::export::page_error)?;
        (page.items, page.next)
    } else {
        let mut all = Vec::new();
        crate::export::each_page(&mut crate::export::pages_of(store, filter), |items| {
            all.extend(items);
            Ok(())
        })?;
        (all, None)
    };
    if a.json {
        let items: Vec<SaleOut> = records.iter().map(SaleOut::from).collect();
        if paged {
            return print_json(out, &Page { items, next });
        }
        return print_json(out, &items);
    }
    let mut t = Table::new(&[
        "RECEIPT",
        "KIND",
        "TIME",
        ">ITEMS",
        ">TOTAL",
        "TENDER",
        "REFERS TO",
    ]);
    let mut net = 0i64;
    for r in &records {
        let e = &r.entry;
        let sign = if e.kind == tillmesh_store::EntryKind::Sale {
            1
        } else {
            -1
        };
        net += sign * e.total_cents;
        t.row(vec![
            e.receipt.to_string(),
            e.kind.to_string(),
            hlc_time(e.hlc),
            e.lines.len().to_string(),
            money(sign * e.total_cents),
            e.tender.to_string(),
            e.refers_to
                .as_ref()
                .map(Receipt::to_string)
                .unwrap_or_default(),
        ]);
    }
    if t.is_empty() {
        writeln!(out, "No sales.")?;
        return Ok(());
    }
    write!(out, "{}", t.render())?;
    writeln!(out, "{} entries, net {}", records.len(), money(net))?;
    more(out, "sales", next.as_deref())
}

/// The last line of a page that is not the last: how to read the next one.
fn more(out: &mut dyn Write, command: &str, next: Option<&str>) -> Result<()> {
    if let Some(next) = next {
        writeln!(out, "More: tillmesh {command} --after {next}")?;
    }
    Ok(())
}

#[derive(Serialize)]
struct StockJson {
    sku: String,
    name: String,
    unit: Unit,
    on_hand: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    counted_at: Option<String>,
}

pub fn stock(store: &mut Store, a: &StockArgs, out: &mut dyn Write) -> Result<()> {
    if let Some(StockCmd::Export { file, format }) = &a.action {
        let format = crate::export::Format::of(format.as_deref(), file)?;
        let mut w: Box<dyn Write + '_> = if file == Path::new("-") {
            Box::new(&mut *out)
        } else {
            crate::export::open_output(file)?
        };
        let n = crate::export::stock(store, format, &mut w)?;
        crate::export::finish(w, file)?;
        if file != Path::new("-") {
            writeln!(
                out,
                "Exported the stock of {n} products to {}",
                file.display()
            )?;
        }
        return Ok(());
    }
    if let Some(action) = &a.action {
        let (sku, entry) = match action {
            StockCmd::Receive { sku, qty } => {
                let sku = parse_sku(sku)?;
                let q = stock_qty(store, &sku, qty)?;
                (sku.clone(), store.receive_stock(&sku, q)?)
            }
            StockCmd::Adjust { sku, delta, reason } => {
                let sku = parse_sku(sku)?;
                let q = stock_qty(store, &sku, delta)?;
                (sku.clone(), store.adjust_stock(&sku, q, reason)?)
            }
            StockCmd::Count { sku, qty } => {
                let sku = parse_sku(sku)?;
                let q = stock_qty(store, &sku, qty)?;
                (sku.clone(), store.count_stock(&sku, q)?)
            }
            StockCmd::Export { .. } => unreachable!("handled above"),
        };
        let level = store.stock(&sku)?;
        let unit = store.product(&sku)?.map(|p| p.unit).unwrap_or(Unit::Each);
        writeln!(
            out,
            "Recorded {} of {} {}; on hand now {}",
            entry.kind,
            qty_text(entry.qty, unit),
            sku,
            qty_text(level.on_hand, unit)
        )?;
        return Ok(());
    }
    let products = store.products()?;
    let mut rows = Vec::new();
    match &a.sku {
        Some(s) => {
            let p = find_product(store, s)?;
            let l = store.stock(&p.sku)?;
            rows.push((p, l));
        }
        None => {
            for (p, l) in products.into_iter().zip(store.stock_levels()?) {
                rows.push((p, l));
            }
        }
    }
    if a.json {
        let list: Vec<StockJson> = rows
            .iter()
            .map(|(p, l)| StockJson {
                sku: p.sku.to_string(),
                name: p.name.clone(),
                unit: p.unit,
                on_hand: l.on_hand,
                counted_at: l.counted_at.map(hlc_time),
            })
            .collect();
        return print_json(out, &list);
    }
    let mut t = Table::new(&["SKU", "NAME", ">ON HAND", "LAST COUNT"]);
    for (p, l) in &rows {
        t.row(vec![
            p.sku.to_string(),
            p.name.clone(),
            qty_text(l.on_hand, p.unit),
            l.counted_at.map(hlc_time).unwrap_or_else(|| "never".into()),
        ]);
    }
    write!(out, "{}", t.render())?;
    Ok(())
}

/// A stock quantity in the product's unit: pieces for `each`, grams for `kg`.
fn stock_qty(store: &Store, sku: &Sku, s: &str) -> Result<i64> {
    let p = store
        .product(sku)?
        .ok_or_else(|| tillmesh_store::StockError::UnknownProduct(sku.to_string()))?;
    match (parse_qty(s).map_err(rejected)?, p.unit) {
        (Qty::Pieces(n), Unit::Each) | (Qty::Grams(n), Unit::Kg) => Ok(n),
        (Qty::Grams(_), Unit::Each) => {
            Err(rejected(format!("{sku} is counted in pieces, not grams")))
        }
        (Qty::Pieces(_), Unit::Kg) => Err(rejected(format!(
            "{sku} is sold by weight: give grams like {s}g"
        ))),
    }
}

pub fn conflicts(store: &mut Store, a: &ConflictsArgs, out: &mut dyn Write) -> Result<()> {
    match &a.action {
        Some(ConflictsCmd::Resolve { id, pick }) => {
            let c = store.resolve_conflict(id, *pick)?;
            writeln!(
                out,
                "Conflict {} on {}: {}",
                c.id,
                c.key,
                c.resolution.unwrap_or_default()
            )?;
            return Ok(());
        }
        Some(ConflictsCmd::Policy { kind, policy }) => {
            if !matches!(kind.as_str(), "catalog" | "config" | "membership") {
                bail!(rejected(format!(
                    "unknown document kind {kind:?}: expected catalog, config or membership"
                )));
            }
            let p: Policy = policy.parse().map_err(rejected)?;
            store.set_conflict_policy(kind, p)?;
            writeln!(out, "Conflict policy for {kind} is now {p}")?;
            return Ok(());
        }
        None => {}
    }
    let list: Vec<_> = store
        .conflicts()?
        .into_iter()
        .filter(|c| a.all || c.status == tillmesh_store::ConflictStatus::Pending)
        .collect();
    if a.json {
        return print_json(out, &list);
    }
    if list.is_empty() {
        writeln!(
            out,
            "No {}conflicts.{}",
            if a.all { "" } else { "pending " },
            if a.all {
                ""
            } else {
                " (--all shows decided ones)"
            }
        )?;
        return Ok(());
    }
    let tills = store.tills()?;
    let name = |id: &TillId| till_name(&tills, id);
    let mut t = Table::new(&["ID", "STATUS", "POLICY", "FIELD", "#", "VALUE", "BY", "AT"]);
    for c in &list {
        for (i, v) in c.values.iter().enumerate() {
            let first = i == 0;
            t.row(vec![
                if first { c.id.clone() } else { String::new() },
                if first {
                    format!("{:?}", c.status).to_lowercase()
                } else {
                    String::new()
                },
                if first {
                    c.policy.to_string()
                } else {
                    String::new()
                },
                if first {
                    format!("{} {}", c.doc, c.key)
                } else {
                    String::new()
                },
                format!("{}{}", i + 1, if first { "*" } else { "" }),
                v.value.to_string(),
                format!("{} ({})", name(&v.till), v.role),
                hlc_time(v.hlc),
            ]);
        }
    }
    write!(out, "{}", t.render())?;
    writeln!(
        out,
        "* the value in effect. Keep another with: tillmesh conflicts resolve ID --pick N"
    )?;
    Ok(())
}

pub fn audit(store: &mut Store, a: &AuditArgs, out: &mut dyn Write) -> Result<()> {
    if let Some(AuditCmd::Verify { json }) = &a.action {
        let reports = store.verify_audit()?;
        if *json {
            print_json(out, &reports)?;
        } else {
            let mut t = Table::new(&["TILL", ">ENTRIES", "CHAIN", "MISSING"]);
            let tills = store.tills()?;
            let name_of = |id: &TillId| till_name(&tills, id);
            for r in &reports {
                t.row(vec![
                    name_of(&r.till),
                    r.entries.to_string(),
                    if r.intact() {
                        "intact".into()
                    } else {
                        format!("BROKEN ({} problems)", r.problems.len())
                    },
                    if r.missing.is_empty() {
                        "-".into()
                    } else {
                        format!("{} not yet received", r.missing.len())
                    },
                ]);
            }
            write!(out, "{}", t.render())?;
            for r in &reports {
                for p in &r.problems {
                    writeln!(
                        out,
                        "! till {} ({}) entry {}: {}",
                        name_of(&r.till),
                        r.till.fmt_short(),
                        p.seq,
                        p.text
                    )?;
                }
            }
        }
        let broken: Vec<_> = reports.iter().filter(|r| !r.intact()).collect();
        if !broken.is_empty() {
            let first = broken
                .iter()
                .flat_map(|r| r.problems.iter().map(move |p| (r.till, p)))
                .next()
                .map(|(till, p)| {
                    format!(
                        "; first: till {} entry {}: {}",
                        till.fmt_short(),
                        p.seq,
                        p.text
                    )
                })
                .unwrap_or_default();
            return Err(Damaged(format!(
                "audit chain of {} till(s) failed verification: entries were altered, removed or forked{first}",
                broken.len()
            ))
            .into());
        }
        return Ok(());
    }
    if a.page.paged() {
        let till = a.till.as_deref().map(|t| find_till(store, t)).transpose()?;
        let limit = page_limit(a.page.limit, 100)?;
        let page = audit_page(store, till, a.page.after.as_deref(), limit)?;
        if a.json {
            return print_json(out, &page);
        }
        let mut t = Table::new(&["TILL", ">SEQ", "TIME", "KIND", "SUBJECT", "DETAIL"]);
        for e in &page.items {
            let e2 = &e.entry;
            t.row(vec![
                e.till_id.chars().take(10).collect(),
                e2.seq.to_string(),
                hlc_time(e2.hlc),
                e2.kind.clone(),
                e2.subject.clone(),
                e2.detail.to_string(),
            ]);
        }
        write!(out, "{}", t.render())?;
        return more(out, "audit", page.next.as_deref());
    }
    let till = match &a.till {
        Some(t) => find_till(store, t)?,
        None => store.till_id(),
    };
    let entries = store
        .audit_entries(Some(till))?
        .remove(&till)
        .unwrap_or_default();
    if a.json {
        return print_json(out, &entries);
    }
    let mut t = Table::new(&[">SEQ", "TIME", "KIND", "SUBJECT", "DETAIL"]);
    for e in &entries {
        t.row(vec![
            e.seq.to_string(),
            hlc_time(e.hlc),
            e.kind.clone(),
            e.subject.clone(),
            e.detail.to_string(),
        ]);
    }
    if t.is_empty() {
        writeln!(out, "No audit entries.")?;
    } else {
        write!(out, "{}", t.render())?;
    }
    Ok(())
}

/// A page of a listing, as the API and `--limit`/`--after` give it: pass
/// `next` as `after` for the following one; `None` at the end.
#[derive(Debug, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

impl<T> Page<T> {
    /// A page of at most `limit` of `items` (read one beyond it, to know
    /// whether more follow), its cursor from the last item.
    fn of(mut items: Vec<T>, limit: usize, cursor: impl Fn(&T) -> String) -> Self {
        let next = (items.len() > limit).then(|| {
            items.truncate(limit);
            items.last().map(&cursor).unwrap_or_default()
        });
        Page { items, next }
    }
}

/// A page size as asked (`default` when not), 1 to [`tillmesh_store::MAX_PAGE`].
pub fn page_limit(limit: Option<usize>, default: usize) -> Result<usize> {
    let limit = limit.unwrap_or(default);
    if (1..=tillmesh_store::MAX_PAGE).contains(&limit) {
        Ok(limit)
    } else {
        Err(rejected(format!(
            "a page holds 1 to {} entries (limit)",
            tillmesh_store::MAX_PAGE
        )))
    }
}

/// A page of the catalog by SKU, or of the products a barcode scans to.
pub fn products_page(
    store: &Store,
    barcode: Option<&str>,
    after: Option<&str>,
    limit: usize,
) -> Result<Page<Product>> {
    let mut all = match barcode {
        Some(b) => {
            let code: Barcode = b.parse().map_err(|e| rejected(format!("{e}")))?;
            let mut found = Vec::new();
            for sku in store.skus_for_barcode(&code)? {
                found.extend(store.product(&sku)?);
            }
            found
        }
        None => store.products()?,
    };
    all.sort_by(|a, b| a.sku.as_str().cmp(b.sku.as_str()));
    let start = after.map_or(0, |a| all.partition_point(|p| p.sku.as_str() <= a));
    let items = all.into_iter().skip(start).take(limit + 1).collect();
    Ok(Page::of(items, limit, |p| p.sku.to_string()))
}

/// An audit entry with its till.
#[derive(Debug, Serialize)]
pub struct AuditOut {
    pub till_id: String,
    #[serde(flatten)]
    pub entry: tillmesh_store::AuditEntry,
}

/// A page of the audit trail by till and sequence number (`till`: one till's
/// only); the cursor is `TILL_ID:SEQ` of the last entry given.
pub fn audit_page(
    store: &mut Store,
    till: Option<TillId>,
    after: Option<&str>,
    limit: usize,
) -> Result<Page<AuditOut>> {
    let after = match after {
        None => None,
        Some(c) => Some(
            c.split_once(':')
                .and_then(|(t, n)| Some((t.to_string(), n.parse::<u64>().ok()?)))
                .ok_or_else(|| rejected(format!("cursor {c:?} is not one a listing gave")))?,
        ),
    };
    let mut items = Vec::new();
    'tills: for (t, entries) in store.audit_entries(till)? {
        let t = t.to_string();
        for e in entries {
            let past = after
                .as_ref()
                .is_none_or(|(at, n)| (t.as_str(), e.seq) > (at.as_str(), *n));
            if past {
                items.push(AuditOut {
                    till_id: t.clone(),
                    entry: e,
                });
            }
            if items.len() > limit {
                break 'tills;
            }
        }
    }
    Ok(Page::of(items, limit, |e| {
        format!("{}:{}", e.till_id, e.entry.seq)
    }))
}

/// Run a command that works on the store in one call, on the store's thread,
/// writing what it prints to `out`; [`crate::core::execute`] sends every such
/// command here, for the command line and the daemon's local API alike.
pub fn dispatch(store: &mut Store, home: &Path, cmd: &Command, out: &mut dyn Write) -> Result<()> {
    match cmd {
        Command::Product(c) => product(store, c, out),
        Command::Sale(a) => sale(store, a, out),
        Command::Void(a) => void(store, a, out),
        Command::Refund(a) => refund(store, a, out),
        Command::Sales(a) => sales(store, a, out),
        Command::Stock(a) => stock(store, a, out),
        Command::Conflicts(a) => conflicts(store, a, out),
        Command::Audit(a) => audit(store, a, out),
        Command::Info(f) => info(store, home, f.json, out),
        Command::Revoke { till } => revoke(store, home, till, out),
        Command::Clock(a) => clock(store, a, out),
        Command::Config(c) => crate::config::run(store, c, out),
        Command::Alerts(a) => alerts(store, home, a, out),
        Command::ExportUnsynced { file } => crate::admin::export_unsynced(store, file, out),
        Command::Admin(c) => crate::admin::admin(store, home, c, out),
        Command::Relays(c) => relays(store, c, out),
        Command::Keys(c) => crate::backups::keys_cmd(store, home, c, out),
        Command::Backup(a) => crate::backups::backup_schedule(store, a, out),
        Command::Sink(c) => crate::backups::sink(home, c, out),
        Command::Usb(c) => crate::backups::usb(c, out),
        Command::Recovery(RecoveryCmd::Create { file, new_key }) => {
            crate::backups::recovery_create(store, home, file, *new_key, out)
        }
        Command::Recovery(_) | Command::Restore(_) => Err(rejected(
            "restoring writes a new till home: run it with --home NEWDIR, not on a live till",
        )),
        Command::Events(_) => Err(rejected(
            "events come from the daemon; start it with `tillmesh run`",
        )),
        Command::Report(a) => crate::report::run(store, home, a, out),
        Command::Dashboard(_) => Err(rejected(
            "the dashboard is served by the daemon; start it with `tillmesh run`",
        )),
        Command::Drive(_) | Command::DriveEmulator(_) => {
            bail!("this command runs in the operator's process (core::run)")
        }
        Command::Status(_) | Command::Invite(_) | Command::Stop => {
            bail!("this command runs in the core (core::execute)")
        }
        Command::Init(_)
        | Command::Demo(_)
        | Command::Run(_)
        | Command::Join(_)
        | Command::Relay(_) => {
            bail!("this command does not work on an open store")
        }
    }
}

/// `tillmesh alerts ...`: the webhooks here; the listing without a daemon
/// (with one, the core answers from the daemon's book).
fn alerts(store: &mut Store, home: &Path, a: &AlertsArgs, out: &mut dyn Write) -> Result<()> {
    use crate::args::{AlertsCmd, WebhookCmd};
    match &a.cmd {
        None => {
            // No daemon: the alerts as they stand now, beside the book's
            // history; none of them is pushed.
            let mut book = crate::alerts::load(home);
            let report = crate::status::collect(store, home, None)?;
            book.observe(&report.alert_details, crate::backups::now_ms(), &[], false);
            crate::alerts::render(&book, a.all, a.json, out)?;
            if !a.json {
                writeln!(
                    out,
                    "The daemon is not running: these are the alerts as they stand now, and none is pushed."
                )?;
            }
            Ok(())
        }
        Some(AlertsCmd::Webhook(WebhookCmd::Add { url, secret })) => {
            let hook = crate::alerts::add_webhook(store, url, secret.as_deref())?;
            writeln!(out, "Alerts are POSTed to {}", hook.url)?;
            if secret.is_none() {
                writeln!(
                    out,
                    "Its secret (check each body's {} header, sha256=HMAC-SHA256 of the body in hex, with it): {}",
                    crate::alerts::SIGNATURE_HEADER,
                    hook.secret
                )?;
            }
            Ok(())
        }
        Some(AlertsCmd::Webhook(WebhookCmd::Remove { url })) => {
            crate::alerts::remove_webhook(store, url)?;
            writeln!(out, "Removed the webhook {url}")?;
            Ok(())
        }
        Some(AlertsCmd::Threshold {
            name,
            minutes: Some(m),
            ..
        }) => {
            let name = name.as_deref().unwrap_or_default();
            crate::alerts::set_threshold(store, name, *m)?;
            writeln!(
                out,
                "Alert threshold {name} is now {m} minutes for the whole store"
            )?;
            Ok(())
        }
        Some(AlertsCmd::Threshold { name, json, .. }) => {
            #[derive(serde::Serialize)]
            struct Row {
                name: &'static str,
                minutes: u64,
                default: u64,
                means: &'static str,
            }
            if let Some(n) = name {
                crate::alerts::threshold(store, n)?;
            }
            let mut rows = Vec::new();
            for (n, setting) in crate::alerts::thresholds() {
                if name.as_deref().is_none_or(|want| want == n) {
                    rows.push(Row {
                        name: n,
                        minutes: store.setting(setting.key)?,
                        default: setting.default,
                        means: setting.help,
                    });
                }
            }
            if *json {
                return print_json(out, &rows);
            }
            let mut t = Table::new(&["THRESHOLD", ">MINUTES", ">DEFAULT", "MEANS"]);
            for r in &rows {
                t.row(vec![
                    r.name.into(),
                    r.minutes.to_string(),
                    r.default.to_string(),
                    r.means.into(),
                ]);
            }
            write!(out, "{}", t.render())?;
            Ok(())
        }
        Some(AlertsCmd::Webhook(WebhookCmd::List(f))) => {
            let urls: Vec<String> = crate::alerts::webhooks(store)?
                .into_iter()
                .map(|h| h.url)
                .collect();
            if f.json {
                return print_json(out, &urls);
            }
            if urls.is_empty() {
                writeln!(
                    out,
                    "No webhooks: add one with `tillmesh alerts webhook add URL`"
                )?;
            }
            for u in urls {
                writeln!(out, "{u}")?;
            }
            Ok(())
        }
    }
}

fn revoke(store: &mut Store, home: &Path, till: &str, out: &mut dyn Write) -> Result<()> {
    let admin = TillKey::load(&home.join(ADMIN_KEY_FILE)).map_err(|_| {
        rejected("only the admin till (the one that ran `tillmesh init`) can revoke")
    })?;
    let id = find_till(store, till)?;
    if id == store.till_id() {
        return Err(rejected("a till cannot revoke itself"));
    }
    store
        .revoke(&admin, id)
        .map_err(|e| rejected(e.to_string()))?;
    writeln!(
        out,
        "Revoked till {till} ({}); every member refuses it once this change reaches them.",
        id.fmt_short()
    )?;
    // The revoked till holds the backup keys so far: new backups go to a new one.
    let key = crate::backups::rotate_keys(store, home)?;
    writeln!(
        out,
        "New backup key {}: backups from now on are encrypted to it; the other tills fetch it from this one, the revoked till never gets it. {}",
        key.key_id,
        crate::backups::recovery_note(store, home)?
    )?;
    Ok(())
}

/// `tillmesh clock [--max-skew DURATION]`: show, or set, the store's clock bound.
fn clock(store: &mut Store, a: &ClockArgs, out: &mut dyn Write) -> Result<()> {
    if let Some(d) = &a.max_skew {
        let secs = crate::backups::parse_duration(d)?;
        if secs > 86_400 {
            return Err(rejected(format!(
                "{d}: the clock bound is at most 1d; a larger one lets a wrong clock move every till's"
            )));
        }
        store.check_may_write(&tillmesh_store::DocId::Config)?;
        store.set_config_value(tillmesh_store::MAX_CLOCK_SKEW, secs.into())?;
    }
    let secs = store.max_clock_skew_s()?;
    if a.json {
        return print_json(out, &serde_json::json!({ "max_skew_s": secs }));
    }
    writeln!(
        out,
        "Clock bound: {secs} s. A timestamp further ahead of a till's own clock is merged but does not move that till's clock; the skew is shown in status."
    )?;
    Ok(())
}

/// A relay URL as tills take it (`http://` or `https://`), or a clear refusal.
pub fn check_relay_url(url: &str) -> Result<()> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(rejected(format!(
            "{url:?}: a relay URL starts with http:// or https://"
        )));
    }
    url.parse::<iroh::RelayUrl>()
        .map_err(|e| rejected(format!("{url:?} is not a URL: {e}")))?;
    Ok(())
}

fn relays(store: &mut Store, cmd: &RelaysCmd, out: &mut dyn Write) -> Result<()> {
    let mut list = store.relays()?;
    let mut certs = store.relay_certs()?;
    match cmd {
        RelaysCmd::List(f) => {
            if f.json {
                return print_json(out, &list);
            }
            if list.is_empty() {
                writeln!(out, "No relays: tills sync over direct connections only.")?;
            }
            for r in &list {
                match certs.get(r) {
                    Some(fp) => writeln!(out, "{r}  address discovery, certificate {fp}")?,
                    None => writeln!(out, "{r}")?,
                }
            }
            return Ok(());
        }
        RelaysCmd::Add { url, cert } => {
            check_relay_url(url)?;
            let fp = match cert {
                Some(fp) if !tillmesh_mesh::relay::is_fingerprint(fp.trim()) => {
                    return Err(rejected(format!(
                        "{fp:?} is not a relay certificate fingerprint (64 hex digits, as `tillmesh relay` prints it)"
                    )));
                }
                Some(fp) => Some(fp.trim().to_ascii_lowercase()),
                None => None,
            };
            match (list.contains(url), fp) {
                (true, None) => return Err(rejected(format!("{url} is already in the list"))),
                (true, Some(fp)) if certs.get(url) == Some(&fp) => {
                    return Err(rejected(format!(
                        "{url} is already in the list with that certificate"
                    )));
                }
                (listed, fp) => {
                    if !listed {
                        list.push(url.clone());
                    }
                    if let Some(fp) = fp {
                        certs.insert(url.clone(), fp);
                        store.set_relay_certs(&certs)?;
                    }
                }
            }
        }
        RelaysCmd::Remove { url } => {
            if !list.contains(url) {
                return Err(rejected(format!("{url} is not in the list")));
            }
            list.retain(|r| r != url);
            if certs.remove(url).is_some() {
                store.set_relay_certs(&certs)?;
            }
        }
    }
    store.set_relays(&list)?;
    writeln!(
        out,
        "Relays: {}",
        if list.is_empty() {
            "none".to_string()
        } else {
            list.join(" ")
        }
    )?;
    let discovery: Vec<&str> = list
        .iter()
        .filter(|r| certs.contains_key(*r))
        .map(String::as_str)
        .collect();
    if !discovery.is_empty() {
        writeln!(
            out,
            "Tills learn their public address from: {}",
            discovery.join(" ")
        )?;
    }
    writeln!(out, "Tills use the new list when their daemon restarts.")?;
    Ok(())
}
