//! The till's typed local API for POS apps and other local programs: JSON in
//! and out under `/v1/`, described by the OpenAPI document served at
//! `GET /v1/openapi.json` (docs/openapi.json). Errors are
//! `application/problem+json` with a stable `code` and the `exit_code` the
//! command line gives for the same failure.
//!
//! A sale is recorded once per `Idempotency-Key`: a POS that lost the reply
//! retries with the same key and gets the same sale, across daemon restarts.

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use tillmesh_store::{
    Day, EntryKind, Line, LineRequest, NewProduct, Receipt, RefundLine, SaleRecord, SaleRequest,
    SalesFilter, Sku, Tender,
};

use crate::commands::Page;
use crate::daemon::Shared;
use crate::exit;
use crate::jobs::{JobKind, StartedBy};

/// The OpenAPI 3.1 document of this API.
pub const OPENAPI: &str = include_str!("../../docs/openapi.json");

/// Every route the API answers (besides `/v1/exec`, the command line's own),
/// as (method, path): the OpenAPI document names exactly these.
#[cfg(test)]
const ROUTES: &[(&str, &str)] = &[
    ("get", "/v1/openapi.json"),
    ("get", "/v1/status"),
    ("get", "/metrics"),
    ("get", "/v1/events"),
    ("post", "/v1/sales"),
    ("get", "/v1/sales"),
    ("get", "/v1/sales/{receipt}"),
    ("post", "/v1/sales/{receipt}/void"),
    ("post", "/v1/sales/{receipt}/refund"),
    ("get", "/v1/products"),
    ("post", "/v1/products"),
    ("get", "/v1/products/{sku}"),
    ("post", "/v1/products/import"),
    ("put", "/v1/products/{sku}/price"),
    ("get", "/v1/stock/{sku}"),
    ("post", "/v1/stock/{sku}"),
    ("post", "/v1/conflicts/{id}/resolve"),
    ("get", "/v1/members"),
    ("get", "/v1/reports/sales"),
    ("post", "/v1/backups"),
    ("get", "/v1/backups"),
    ("get", "/v1/conflicts"),
    ("get", "/v1/audit"),
    ("get", "/v1/relays"),
    ("post", "/v1/usb/sync"),
    ("post", "/v1/backups/verify"),
    ("get", "/v1/sinks"),
    ("post", "/v1/sinks"),
    ("delete", "/v1/sinks/{name}"),
    ("get", "/v1/jobs"),
    ("get", "/v1/jobs/{id}"),
    ("get", "/"),
    ("get", "/dashboard.js"),
    ("get", "/dashboard.css"),
    ("get", "/sw.js"),
    ("get", "/manifest.webmanifest"),
    ("get", "/icon.svg"),
    ("post", "/dashboard/session"),
    ("post", "/v1/dashboard/codes"),
];

/// The largest request body taken (a sale of the most lines is far smaller).
pub const MAX_BODY: usize = 1 << 20;

/// The largest body of a route that takes a file (a catalog of 300,000
/// products, a command with the file it reads).
pub const MAX_FILE_BODY: usize = 32 << 20;

/// The largest body `path` takes.
pub fn body_limit(path: &str) -> usize {
    match path {
        "/v1/products/import" | "/v1/exec" => MAX_FILE_BODY,
        _ => MAX_BODY,
    }
}

/// The routes, on the daemon's shared state.
pub fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/v1/openapi.json", get(openapi))
        .route("/v1/status", get(status))
        .route("/metrics", get(metrics))
        .route("/v1/events", get(events))
        .route("/v1/sales", post(record_sale).get(list_sales))
        .route("/v1/sales/{receipt}", get(get_sale))
        .route("/v1/sales/{receipt}/void", post(void_sale))
        .route("/v1/sales/{receipt}/refund", post(refund_sale))
        .route("/v1/products", get(list_products).post(add_product))
        .route("/v1/products/{sku}", get(get_product))
        .route(
            "/v1/products/import",
            post(import_products).layer(axum::extract::DefaultBodyLimit::max(MAX_FILE_BODY)),
        )
        .route("/v1/products/{sku}/price", put(set_price))
        .route("/v1/stock/{sku}", get(get_stock).post(move_stock))
        .route("/v1/conflicts/{id}/resolve", post(resolve_conflict))
        .route("/v1/members", get(members))
        .route("/v1/reports/sales", get(sales_report))
        .route("/v1/backups", post(start_backup).get(list_backups))
        .route("/v1/conflicts", get(conflicts))
        .route("/v1/audit", get(audit))
        .route("/v1/relays", get(relays))
        .route("/v1/usb/sync", post(usb_sync))
        .route("/v1/backups/verify", post(verify_backups))
        .route("/v1/sinks", get(list_sinks).post(add_sink))
        .route("/v1/sinks/{name}", delete(remove_sink))
        .route("/v1/jobs", get(list_jobs))
        .route("/v1/jobs/{id}", get(get_job))
        .fallback(|| async { Problem::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .method_not_allowed_fallback(|| async {
            Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not take that method (see GET /v1/openapi.json)",
            )
        })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
}

// ---------------------------------------------------------------- problems

/// An error reply (RFC 9457).
#[derive(Debug, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    kind: String,
    title: String,
    #[serde(skip)]
    status_code: StatusCode,
    status: u16,
    detail: String,
    /// Stable: `bad_json`, `invalid_body`, `bad_query`, `too_large`,
    /// `unsupported_media_type`, `unauthorized`, `forbidden`, `rejected`,
    /// `not_found`, `idempotency_key_required`, `idempotency_key_reused`,
    /// `busy`, `damaged`, `disk_full`, `unavailable`, `failure`.
    code: &'static str,
    /// The command line's exit code for the same failure.
    exit_code: i32,
}

impl Problem {
    /// A problem with `status`, `code` and what went wrong.
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        let exit_code = match code {
            "not_found" => exit::NOT_FOUND,
            "busy" | "unavailable" => exit::BUSY,
            "damaged" => exit::DAMAGED,
            "disk_full" => exit::DISK_FULL,
            "failure" => exit::FAILURE,
            _ => exit::REJECTED,
        };
        Self {
            kind: format!("urn:tillmesh:problem:{code}"),
            title: status.canonical_reason().unwrap_or("error").to_string(),
            status_code: status,
            status: status.as_u16(),
            detail: detail.into(),
            code,
            exit_code,
        }
    }

    fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the daemon is stopping",
        )
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self).unwrap_or_default();
        (
            self.status_code,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body,
        )
            .into_response()
    }
}

impl From<anyhow::Error> for Problem {
    fn from(e: anyhow::Error) -> Self {
        let detail = format!("{e:#}");
        for cause in e.chain() {
            if let Some(tillmesh_store::StorageError::Forbidden { .. }) = exit::storage_of(cause) {
                return Self::new(StatusCode::FORBIDDEN, "forbidden", detail);
            }
            if let Some(tillmesh_store::SaleError::KeyReused(_)) = cause.downcast_ref() {
                return Self::new(StatusCode::CONFLICT, "idempotency_key_reused", detail);
            }
            if cause.is::<tillmesh_mesh::StoreClosed>() {
                return Self::unavailable();
            }
        }
        let (status, code) = match exit::code(&e) {
            exit::REJECTED => (StatusCode::UNPROCESSABLE_ENTITY, "rejected"),
            exit::NOT_FOUND => (StatusCode::NOT_FOUND, "not_found"),
            exit::BUSY => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
            exit::DAMAGED => (StatusCode::INTERNAL_SERVER_ERROR, "damaged"),
            exit::DISK_FULL => (StatusCode::INSUFFICIENT_STORAGE, "disk_full"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "failure"),
        };
        Self::new(status, code, detail)
    }
}

fn rejected(detail: impl Into<String>) -> Problem {
    Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "rejected", detail)
}

type Reply<T> = Result<T, Problem>;

/// A JSON body, refused as a problem when it is not what the route takes.
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = Problem;
    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(e) => Err(match &e {
                JsonRejection::JsonSyntaxError(_) => {
                    Problem::new(StatusCode::BAD_REQUEST, "bad_json", e.body_text())
                }
                JsonRejection::JsonDataError(_) => Problem::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_body",
                    e.body_text(),
                ),
                JsonRejection::MissingJsonContentType(_) => Problem::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    "send the body as Content-Type: application/json",
                ),
                _ if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Problem::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    format!("a request body may hold at most {MAX_BODY} bytes"),
                ),
                _ => Problem::new(StatusCode::BAD_REQUEST, "bad_json", e.body_text()),
            }),
        }
    }
}

/// Query parameters, refused as a problem when unknown or unreadable.
#[derive(Debug)]
pub struct Params<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = Problem;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Params(q.0))
            .map_err(|e: QueryRejection| {
                Problem::new(StatusCode::BAD_REQUEST, "bad_query", e.body_text())
            })
    }
}

/// A path parameter.
#[derive(Debug)]
pub struct Segment(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Segment {
    type Rejection = Problem;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map(|p| Segment(p.0))
            .map_err(|e: PathRejection| {
                Problem::new(StatusCode::BAD_REQUEST, "bad_query", e.body_text())
            })
    }
}

/// Run `f` on the store thread; its error becomes a problem.
async fn on_store<T, F>(sh: &Shared, f: F) -> Reply<T>
where
    T: Send + 'static,
    F: FnOnce(&mut tillmesh_store::Store) -> anyhow::Result<T> + Send + 'static,
{
    sh.store
        .call(f)
        .await
        .map_err(|_| Problem::unavailable())?
        .map_err(Problem::from)
}

// ---------------------------------------------------------------- sales

/// A sales entry as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SaleOut {
    pub receipt: String,
    /// `sale`, `void` or `refund`.
    pub kind: String,
    /// The till's name.
    pub till: String,
    pub till_id: String,
    /// The day of the till's sales document (its wall clock).
    pub day: String,
    pub hlc: u64,
    pub time: String,
    pub lines: Vec<Line>,
    pub total_cents: i64,
    pub tax_cents: i64,
    pub tender: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refers_to: Option<String>,
}

impl From<&SaleRecord> for SaleOut {
    fn from(r: &SaleRecord) -> Self {
        let e = &r.entry;
        Self {
            receipt: e.receipt.to_string(),
            kind: e.kind.to_string(),
            till: e.receipt.till().to_string(),
            till_id: r.till.to_string(),
            day: r.day.clone(),
            hlc: e.hlc.as_u64(),
            time: crate::output::hlc_time(e.hlc),
            lines: e.lines.clone(),
            total_cents: e.total_cents,
            tax_cents: e.tax_cents,
            tender: e.tender.to_string(),
            refers_to: e.refers_to.as_ref().map(Receipt::to_string),
        }
    }
}

/// A line to ring up: a SKU or a barcode, pieces or grams.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineIn {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub barcode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qty: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grams: Option<i64>,
    #[serde(default)]
    pub discount_cents: i64,
}

/// A sale to record.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaleIn {
    pub lines: Vec<LineIn>,
    /// `cash` or `card`.
    pub tender: String,
}

/// The fingerprint of a sale request: of the request as parsed, so spacing
/// and field order do not change it; the command line and the route agree.
pub fn fingerprint(sale: &SaleIn) -> String {
    blake3::hash(&serde_json::to_vec(sale).unwrap_or_default())
        .to_hex()
        .to_string()
}

/// The error a problem reply stands for, with its exit code.
pub fn problem_error(body: &[u8]) -> anyhow::Error {
    #[derive(Deserialize)]
    struct Said {
        detail: String,
        exit_code: i32,
    }
    match serde_json::from_slice::<Said>(body) {
        Ok(p) => exit::Coded(p.exit_code, p.detail).into(),
        Err(_) => anyhow::anyhow!(
            "the daemon failed the request: {}",
            String::from_utf8_lossy(body)
        ),
    }
}

impl SaleIn {
    /// The store's request, or why the sale is refused.
    pub fn to_request(&self) -> anyhow::Result<SaleRequest> {
        self.request()
            .map_err(|p| exit::Coded(p.exit_code, p.detail).into())
    }

    fn request(&self) -> Reply<SaleRequest> {
        let tender: Tender = self.tender.parse().map_err(rejected)?;
        let lines = self
            .lines
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let code = match (&l.sku, &l.barcode) {
                    (Some(c), None) | (None, Some(c)) => c.clone(),
                    _ => {
                        return Err(rejected(format!(
                            "line {}: give either `sku` or `barcode`",
                            i + 1
                        )));
                    }
                };
                Ok(LineRequest {
                    code,
                    qty: l.qty,
                    grams: l.grams,
                    discount_cents: l.discount_cents,
                })
            })
            .collect::<Reply<Vec<_>>>()?;
        Ok(SaleRequest { lines, tender })
    }
}

/// `POST /v1/sales`: 201 with the sale the first time a key is used, 200 with
/// the same sale on every repeat, 409 for the key with another body.
async fn record_sale(
    State(sh): State<Arc<Shared>>,
    headers: HeaderMap,
    Body(sale): Body<SaleIn>,
) -> Reply<(StatusCode, Json<SaleOut>)> {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .ok_or_else(|| {
            Problem::new(
                StatusCode::BAD_REQUEST,
                "idempotency_key_required",
                "send an Idempotency-Key header (a new one per sale, the same one on a retry)",
            )
        })?
        .to_string();
    let req = sale.request()?;
    let fingerprint = fingerprint(&sale);
    let (shown, new) = on_store(&sh, move |s| {
        let (entry, new) = s.record_sale_once(&key, &fingerprint, req)?;
        Ok((crate::commands::recorded(s, entry)?, new))
    })
    .await?;
    if new {
        sh.node.sync_now();
    }
    let status = if new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(shown)))
}

/// Query of `GET /v1/sales`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SalesQuery {
    day: Option<String>,
    from: Option<String>,
    to: Option<String>,
    till: Option<String>,
    kind: Option<String>,
    limit: Option<usize>,
    after: Option<String>,
}

fn day(s: &str) -> Reply<Day> {
    crate::commands::parse_day(s).map_err(|e| rejected(format!("{e:#}")))
}

/// The default page size.
const PAGE: usize = 50;

/// A listing's `limit`: 1 to [`tillmesh_store::MAX_PAGE`], [`PAGE`] if not given.
fn page_limit(limit: Option<usize>) -> Reply<usize> {
    Ok(crate::commands::page_limit(limit, PAGE)?)
}

async fn list_sales(
    State(sh): State<Arc<Shared>>,
    Params(q): Params<SalesQuery>,
) -> Reply<Json<Page<SaleOut>>> {
    let (from, to) = match (&q.day, &q.from, &q.to) {
        (Some(d), None, None) => (Some(day(d)?), Some(day(d)?)),
        (None, f, t) => (
            f.as_deref().map(day).transpose()?,
            t.as_deref().map(day).transpose()?,
        ),
        _ => return Err(rejected("give `day`, or `from` and/or `to`, not both")),
    };
    let kind = match q.kind.as_deref() {
        None => None,
        Some("sale") => Some(EntryKind::Sale),
        Some("void") => Some(EntryKind::Void),
        Some("refund") => Some(EntryKind::Refund),
        Some(k) => {
            return Err(rejected(format!(
                "unknown kind {k:?}: sale, void or refund"
            )));
        }
    };
    let limit = page_limit(q.limit)?;
    let (till, after) = (q.till, q.after);
    let page = on_store(&sh, move |s| {
        let till = till
            .as_deref()
            .map(|t| crate::commands::find_till(s, t))
            .transpose()?;
        let filter = SalesFilter {
            from,
            to,
            till,
            kind,
        };
        s.sales_page(&filter, after.as_deref(), limit)
            .map_err(crate::export::page_error)
    })
    .await?;
    Ok(Json(Page {
        items: page.items.iter().map(SaleOut::from).collect(),
        next: page.next,
    }))
}

fn receipt(s: &str) -> Reply<Receipt> {
    s.parse().map_err(|e| rejected(format!("{e}")))
}

async fn get_sale(State(sh): State<Arc<Shared>>, Segment(r): Segment) -> Reply<Json<SaleOut>> {
    let r = receipt(&r)?;
    let record = on_store(&sh, move |s| {
        s.sale_record(&r)?
            .ok_or_else(|| tillmesh_store::SaleError::UnknownReceipt(r.to_string()).into())
    })
    .await?;
    Ok(Json(SaleOut::from(&record)))
}

/// Write an entry undoing a sale, and show it as recorded.
async fn undo(
    sh: &Shared,
    f: impl FnOnce(&mut tillmesh_store::Store) -> anyhow::Result<tillmesh_store::SaleEntry>
    + Send
    + 'static,
) -> Reply<(StatusCode, Json<SaleOut>)> {
    let shown = on_store(sh, move |s| {
        let entry = f(s)?;
        crate::commands::recorded(s, entry)
    })
    .await?;
    sh.node.sync_now();
    Ok((StatusCode::CREATED, Json(shown)))
}

async fn void_sale(
    State(sh): State<Arc<Shared>>,
    Segment(r): Segment,
) -> Reply<(StatusCode, Json<SaleOut>)> {
    let r = receipt(&r)?;
    undo(&sh, move |s| Ok(s.void(&r)?)).await
}

/// A refund: which lines, how many of each (default: all of it).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RefundIn {
    lines: Vec<RefundLineIn>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RefundLineIn {
    sku: String,
    #[serde(default)]
    qty: Option<i64>,
}

async fn refund_sale(
    State(sh): State<Arc<Shared>>,
    Segment(r): Segment,
    Body(body): Body<RefundIn>,
) -> Reply<(StatusCode, Json<SaleOut>)> {
    let r = receipt(&r)?;
    let lines = body
        .lines
        .iter()
        .map(|l| {
            Ok(RefundLine {
                sku: sku(&l.sku)?,
                qty: l.qty,
            })
        })
        .collect::<Reply<Vec<_>>>()?;
    undo(&sh, move |s| Ok(s.refund(&r, &lines)?)).await
}

// ---------------------------------------------------------------- products

fn sku(s: &str) -> Reply<Sku> {
    s.parse().map_err(|e| rejected(format!("{e}")))
}

/// Query of `GET /v1/products`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProductsQuery {
    barcode: Option<String>,
    limit: Option<usize>,
    after: Option<String>,
}

async fn list_products(
    State(sh): State<Arc<Shared>>,
    Params(q): Params<ProductsQuery>,
) -> Reply<Json<Page<tillmesh_store::Product>>> {
    let limit = page_limit(q.limit)?;
    Ok(Json(
        on_store(&sh, move |s| {
            crate::commands::products_page(s, q.barcode.as_deref(), q.after.as_deref(), limit)
        })
        .await?,
    ))
}

async fn get_product(
    State(sh): State<Arc<Shared>>,
    Segment(code): Segment,
) -> Reply<Json<tillmesh_store::Product>> {
    Ok(Json(
        on_store(&sh, move |s| Ok(s.product_by_code(&code)?)).await?,
    ))
}

/// A new product.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProductIn {
    sku: String,
    name: String,
    price_cents: i64,
    #[serde(default = "each")]
    unit: String,
    #[serde(default = "standard")]
    tax_class: String,
    #[serde(default)]
    category: String,
    #[serde(default)]
    barcodes: Vec<String>,
}

fn each() -> String {
    "each".into()
}

fn standard() -> String {
    "standard".into()
}

async fn add_product(
    State(sh): State<Arc<Shared>>,
    Body(p): Body<ProductIn>,
) -> Reply<(StatusCode, Json<tillmesh_store::Product>)> {
    let new = NewProduct {
        sku: sku(&p.sku)?,
        name: p.name,
        barcodes: p
            .barcodes
            .iter()
            .map(|b| b.parse().map_err(|e| rejected(format!("{e}"))))
            .collect::<Reply<Vec<_>>>()?,
        price_cents: p.price_cents,
        unit: p.unit.parse().map_err(rejected)?,
        tax_class: p.tax_class,
        category: p.category,
    };
    let product = on_store(&sh, move |s| Ok(s.add_product(new)?)).await?;
    sh.node.sync_now();
    Ok((StatusCode::CREATED, Json(product)))
}

/// How many products an import added, updated and left.
#[derive(Debug, Serialize)]
struct ImportOut {
    added: usize,
    updated: usize,
    unchanged: usize,
}

/// `POST /v1/products/import`: a catalog file as the body (`text/csv` or
/// `application/json`), all rows or none.
async fn import_products(
    State(sh): State<Arc<Shared>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Reply<Json<ImportOut>> {
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let format = match media.as_str() {
        "text/csv" => tillmesh_store::CatalogFormat::Csv,
        "application/json" => tillmesh_store::CatalogFormat::Json,
        _ => {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the catalog as Content-Type: text/csv or application/json",
            ));
        }
    };
    let report = on_store(&sh, move |s| Ok(s.import_catalog(&body, format)?)).await?;
    if report.wrote() {
        sh.node.sync_now();
    }
    Ok(Json(ImportOut {
        added: report.added,
        updated: report.updated,
        unchanged: report.unchanged,
    }))
}

/// A new price.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PriceIn {
    price_cents: i64,
}

async fn set_price(
    State(sh): State<Arc<Shared>>,
    Segment(code): Segment,
    Body(p): Body<PriceIn>,
) -> Reply<Json<tillmesh_store::Product>> {
    let code = sku(&code)?;
    let product = on_store(&sh, move |s| Ok(s.set_price(&code, p.price_cents)?)).await?;
    sh.node.sync_now();
    Ok(Json(product))
}

async fn get_stock(
    State(sh): State<Arc<Shared>>,
    Segment(code): Segment,
) -> Reply<Json<tillmesh_store::StockLevel>> {
    let code = sku(&code)?;
    Ok(Json(
        on_store(&sh, move |s| {
            if s.product(&code)?.is_none() {
                return Err(tillmesh_store::ProductError::Unknown(code.to_string()).into());
            }
            Ok(s.stock(&code)?)
        })
        .await?,
    ))
}

/// A stock movement: goods received, a correction (with its reason), a count.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StockIn {
    /// `receive`, `adjust` or `count`.
    kind: String,
    /// Pieces, or grams for products sold by weight (the change for `adjust`).
    qty: i64,
    #[serde(default)]
    reason: String,
}

async fn move_stock(
    State(sh): State<Arc<Shared>>,
    Segment(code): Segment,
    Body(m): Body<StockIn>,
) -> Reply<(StatusCode, Json<tillmesh_store::StockLevel>)> {
    let code = sku(&code)?;
    if !matches!(m.kind.as_str(), "receive" | "adjust" | "count") {
        return Err(rejected(format!(
            "unknown kind {:?}: receive, adjust or count",
            m.kind
        )));
    }
    let level = on_store(&sh, move |s| {
        match m.kind.as_str() {
            "receive" => s.receive_stock(&code, m.qty)?,
            "adjust" => s.adjust_stock(&code, m.qty, &m.reason)?,
            _ => s.count_stock(&code, m.qty)?,
        };
        Ok(s.stock(&code)?)
    })
    .await?;
    sh.node.sync_now();
    Ok((StatusCode::CREATED, Json(level)))
}

/// Which value of a conflict to keep (0 is the one the policy chose).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResolveIn {
    pick: usize,
}

async fn resolve_conflict(
    State(sh): State<Arc<Shared>>,
    Segment(id): Segment,
    Body(r): Body<ResolveIn>,
) -> Reply<Json<tillmesh_store::Conflict>> {
    let c = on_store(&sh, move |s| Ok(s.resolve_conflict(&id, r.pick)?)).await?;
    sh.node.sync_now();
    Ok(Json(c))
}

async fn members(State(sh): State<Arc<Shared>>) -> Reply<Json<Vec<tillmesh_store::TillInfo>>> {
    Ok(Json(on_store(&sh, |s| Ok(s.tills()?)).await?))
}

// ---------------------------------------------------------------- reports

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportQuery {
    from: String,
    to: String,
}

/// The longest range a report covers.
const MAX_REPORT_DAYS: u64 = 366;

async fn sales_report(
    State(sh): State<Arc<Shared>>,
    Params(q): Params<ReportQuery>,
) -> Reply<Json<tillmesh_store::SalesReport>> {
    let (from, to) = (day(&q.from)?, day(&q.to)?);
    if to < from {
        return Err(rejected("`to` is before `from`"));
    }
    if to.days_since_epoch() - from.days_since_epoch() >= MAX_REPORT_DAYS as i64 {
        return Err(rejected(format!(
            "a report covers at most {MAX_REPORT_DAYS} days"
        )));
    }
    Ok(Json(
        on_store(&sh, move |s| Ok(s.sales_report(from, to)?)).await?,
    ))
}

// ---------------------------------------------------------------- status, events

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// `GET /metrics`: the till's metrics, gauges set from a status report
/// taken now.
pub(crate) async fn metrics(State(sh): State<Arc<Shared>>) -> Reply<Response> {
    let report = crate::daemon::live_status(&sh)
        .await
        .map_err(Problem::from)?;
    let store_bytes = std::fs::metadata(sh.home.file(crate::home::HomeFile::Store))
        .ok()
        .map(|m| m.len());
    crate::metrics::observe(
        &report,
        crate::backups::now_ms(),
        store_bytes,
        sh.node.gossip_applied(),
    );
    let page = crate::metrics::render(sh.node.endpoint().metrics());
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        page,
    )
        .into_response())
}

async fn status(State(sh): State<Arc<Shared>>) -> Reply<Json<crate::status::StatusReport>> {
    crate::daemon::live_status(&sh)
        .await
        .map(Json)
        .map_err(Problem::from)
}

async fn events(
    State(sh): State<Arc<Shared>>,
    headers: HeaderMap,
) -> Reply<Sse<impl n0_future::Stream<Item = Result<SseEvent, std::convert::Infallible>>>> {
    let last = match headers.get("last-event-id") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    Problem::new(
                        StatusCode::BAD_REQUEST,
                        "bad_query",
                        "Last-Event-ID is the id of an event this stream sent",
                    )
                })?,
        ),
    };
    let follow = sh.hub.follow(last);
    let first: Vec<SseEvent> = follow
        .reset
        .then(|| {
            SseEvent::default()
                .event("reset")
                .data(r#"{"reason":"events were missed; re-read what you show"}"#)
        })
        .into_iter()
        .chain(follow.missed.iter().map(|e| sse(e)))
        .collect();
    let closed = Box::pin(sh.hub.closed());
    let stream = n0_future::stream::unfold(
        (first.into_iter(), follow.live, closed),
        |(mut first, mut live, mut closed)| async move {
            if let Some(e) = first.next() {
                return Some((Ok(e), (first, live, closed)));
            }
            let next = tokio::select! {
                r = live.recv() => r,
                () = &mut closed => return None,
            };
            match next {
                Ok(e) => Some((Ok(sse(&e)), (first, live, closed))),
                // Fell behind the buffer: tell the client to re-read.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    let e = SseEvent::default()
                        .event("reset")
                        .data(r#"{"reason":"events were missed; re-read what you show"}"#);
                    Some((Ok(e), (first, live, closed)))
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => None,
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

fn sse(e: &crate::events::Event) -> SseEvent {
    SseEvent::default().id(e.id.to_string()).event(e.kind).data(
        serde_json::to_string(&serde_json::json!({"at_ms": e.at_ms, "data": e.data}))
            .unwrap_or_default(),
    )
}

// ---------------------------------------------------------------- backups, USB

/// Which sink to back up to (default: every configured sink).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct BackupIn {
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    bundle: bool,
}

async fn start_backup(
    State(sh): State<Arc<Shared>>,
    Body(b): Body<BackupIn>,
) -> Reply<Json<serde_json::Value>> {
    let args = crate::args::BackupArgs {
        cmd: None,
        to: b.to.clone(),
        bundle: b.bundle,
        json: true,
    };
    let subject = serde_json::json!({"to": b.to, "bundle": b.bundle});
    let sh2 = sh.clone();
    let out = crate::jobs::tracked_result(
        Some(&sh.jobs),
        JobKind::Backup,
        StartedBy::Api,
        subject,
        true,
        |p| async move { crate::backups::backup(&sh2.store, &sh2.home, &args, &p).await },
    )
    .await?;
    Ok(Json(serde_json::from_slice(&out).unwrap_or_default()))
}

/// Query of `GET /v1/backups`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BackupsQuery {
    /// A configured sink's name, or a folder (default: the first sink).
    from: Option<String>,
}

async fn list_backups(
    State(sh): State<Arc<Shared>>,
    Params(q): Params<BackupsQuery>,
) -> Reply<Json<serde_json::Value>> {
    check_sink_ref(q.from.as_deref())?;
    let out = crate::backups::sink_cmd(
        &sh.store,
        &sh.home,
        crate::args::BackupCmd::List {
            from: q.from,
            json: true,
        },
    )
    .await?;
    Ok(Json(serde_json::from_slice(&out).unwrap_or_default()))
}

/// Query of `GET /v1/conflicts`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConflictsQuery {
    /// Every conflict seen, not only those waiting for an operator.
    #[serde(default)]
    all: bool,
}

async fn conflicts(
    State(sh): State<Arc<Shared>>,
    Params(q): Params<ConflictsQuery>,
) -> Reply<Json<Vec<tillmesh_store::Conflict>>> {
    Ok(Json(
        on_store(&sh, move |s| {
            Ok(if q.all {
                s.conflicts()?
            } else {
                s.pending_conflicts()?
            })
        })
        .await?,
    ))
}

/// Query of `GET /v1/audit`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    till: Option<String>,
    limit: Option<usize>,
    after: Option<String>,
}

async fn audit(
    State(sh): State<Arc<Shared>>,
    Params(q): Params<AuditQuery>,
) -> Reply<Json<Page<crate::commands::AuditOut>>> {
    let limit = page_limit(q.limit)?;
    Ok(Json(
        on_store(&sh, move |s| {
            let till = q
                .till
                .as_deref()
                .map(|t| crate::commands::find_till(s, t))
                .transpose()?;
            crate::commands::audit_page(s, till, q.after.as_deref(), limit)
        })
        .await?,
    ))
}

/// The store's relays.
#[derive(Debug, Serialize)]
struct RelaysOut {
    relays: Vec<String>,
    /// Certificate fingerprints by relay URL.
    certs: std::collections::BTreeMap<String, String>,
}

async fn relays(State(sh): State<Arc<Shared>>) -> Reply<Json<RelaysOut>> {
    Ok(Json(
        on_store(&sh, |s| {
            Ok(RelaysOut {
                relays: s.relays()?,
                certs: s.relay_certs()?,
            })
        })
        .await?,
    ))
}

/// The folder (USB stick, share) to merge with.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsbIn {
    dir: std::path::PathBuf,
}

async fn usb_sync(
    State(sh): State<Arc<Shared>>,
    Body(u): Body<UsbIn>,
) -> Reply<Json<serde_json::Value>> {
    if !u.dir.is_absolute() {
        return Err(rejected("`dir` must be an absolute path"));
    }
    let subject = serde_json::json!({"dir": u.dir});
    let sh2 = sh.clone();
    let out = crate::jobs::tracked(
        Some(&sh.jobs),
        JobKind::Usb,
        StartedBy::Api,
        subject,
        true,
        |p| async move { crate::backups::usb_sync(&sh2.store, &sh2.home, &u.dir, true, &p).await },
    )
    .await?;
    sh.node.sync_now();
    Ok(Json(serde_json::from_slice(&out).unwrap_or_default()))
}

/// Which backups to verify.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyIn {
    /// A configured sink's name, or an absolute folder (default: the first sink).
    #[serde(default)]
    from: Option<String>,
    /// Only the files whose names end with this.
    #[serde(default)]
    name: Option<String>,
}

/// Every verdict, and how many backups are damaged.
#[derive(Debug, Serialize)]
struct VerifyOut {
    damaged: usize,
    verdicts: Vec<tillmesh_backup::archive::Verified>,
}

async fn verify_backups(
    State(sh): State<Arc<Shared>>,
    Body(v): Body<VerifyIn>,
) -> Reply<Json<VerifyOut>> {
    check_sink_ref(v.from.as_deref())?;
    let subject = serde_json::json!({ "from": v.from, "name": v.name });
    let sh2 = sh.clone();
    let verdicts = crate::jobs::tracked_result(
        Some(&sh.jobs),
        JobKind::Verify,
        StartedBy::Api,
        subject,
        true,
        |p| async move {
            let v = crate::backups::verify_sink(&sh2.store, &sh2.home, v.from, v.name, &p).await?;
            let result = crate::backups::verify_summary(&v);
            Ok((v, result))
        },
    )
    .await?;
    Ok(Json(VerifyOut {
        damaged: verdicts.iter().filter(|v| v.error.is_some()).count(),
        verdicts,
    }))
}

/// A sink reference in a request: a configured sink's name or an absolute
/// folder, never a path relative to wherever the daemon runs.
fn check_sink_ref(from: Option<&str>) -> Reply<()> {
    match from {
        Some(f)
            if (f.contains('/') || f.starts_with('.'))
                && !std::path::Path::new(f).is_absolute() =>
        {
            Err(rejected("`from` is a sink's name or an absolute path"))
        }
        _ => Ok(()),
    }
}

async fn list_sinks(State(sh): State<Arc<Shared>>) -> Reply<Json<Vec<crate::backups::SinkView>>> {
    let home = sh.home.to_path_buf();
    Ok(Json(
        tokio::task::spawn_blocking(move || crate::backups::sink_list(&home))
            .await
            .map_err(anyhow::Error::from)??,
    ))
}

/// A sink to add.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SinkIn {
    name: String,
    kind: String,
    path: std::path::PathBuf,
    #[serde(default)]
    keep: Option<String>,
}

async fn add_sink(
    State(sh): State<Arc<Shared>>,
    Body(b): Body<SinkIn>,
) -> Reply<(StatusCode, Json<crate::backups::SinkView>)> {
    if !b.path.is_absolute() {
        return Err(rejected("`path` must be an absolute path"));
    }
    let home = sh.home.to_path_buf();
    let keep = b
        .keep
        .unwrap_or_else(|| tillmesh_backup::retention::Policy::default().to_string());
    let added = tokio::task::spawn_blocking(move || {
        crate::backups::sink_add(&home, &b.name, &b.kind, &b.path, &keep)
    })
    .await
    .map_err(anyhow::Error::from)??;
    Ok((StatusCode::CREATED, Json(added)))
}

async fn remove_sink(
    State(sh): State<Arc<Shared>>,
    Segment(name): Segment,
) -> Reply<Json<serde_json::Value>> {
    crate::backups::sink_remove(&sh.home, &name)?;
    Ok(Json(serde_json::json!({ "removed": name })))
}

async fn list_jobs(State(sh): State<Arc<Shared>>) -> Json<Vec<crate::jobs::Job>> {
    Json(sh.jobs.list())
}

async fn get_job(
    State(sh): State<Arc<Shared>>,
    Segment(id): Segment,
) -> Reply<Json<crate::jobs::Job>> {
    id.parse()
        .ok()
        .and_then(|id| sh.jobs.get(id))
        .map(Json)
        .ok_or_else(|| {
            Problem::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no job {id} (jobs are kept while the daemon runs, the last 64)"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openapi_document_names_every_route_and_no_other() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).expect("valid JSON");
        assert_eq!(doc["openapi"], "3.1.0");
        let mut documented: Vec<(String, String)> = doc["paths"]
            .as_object()
            .expect("paths")
            .iter()
            .flat_map(|(path, ops)| {
                ops.as_object()
                    .expect("operations")
                    .keys()
                    .map(move |m| (m.clone(), path.clone()))
            })
            .collect();
        documented.sort();
        let mut served: Vec<(String, String)> = ROUTES
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        served.sort();
        assert_eq!(documented, served);
        // Every event type is described with the stream.
        let events = doc["paths"]["/v1/events"]["get"]["summary"]
            .as_str()
            .expect("summary");
        for (kind, _) in crate::events::KINDS {
            let family = kind.split('.').next().expect("family");
            assert!(events.contains(family), "{kind} is not described");
        }
        // Every schema a document names exists.
        let text = OPENAPI;
        for part in text.split("#/components/schemas/").skip(1) {
            let name = part.split('"').next().expect("name");
            assert!(
                doc["components"]["schemas"].get(name).is_some(),
                "{name} is named but not defined"
            );
        }
    }

    #[test]
    fn problems_carry_the_exit_code_of_the_command_line() {
        let p = Problem::from(anyhow::Error::new(
            tillmesh_store::SaleError::UnknownReceipt("T1-000009".into()),
        ));
        assert_eq!(
            (p.status, p.code, p.exit_code),
            (404, "not_found", exit::NOT_FOUND)
        );
        let p = Problem::from(anyhow::Error::new(tillmesh_store::SaleError::KeyReused(
            "k".into(),
        )));
        assert_eq!((p.status, p.code), (409, "idempotency_key_reused"));
        let p = Problem::from(anyhow::Error::new(exit::Rejected("no".into())));
        assert_eq!(
            (p.status, p.code, p.exit_code),
            (422, "rejected", exit::REJECTED)
        );
    }
}
