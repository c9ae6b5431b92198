//! What a till knows: the store's data as Automerge documents in one redb file.
//!
//! A [`Store`] is one till's copy of a store (a shop). It holds the documents of
//! the design (`catalog`, `config`, `membership`, and per till `sales/<till>/<day>`,
//! `stock/<till>/<day>`, `audit/<till>/<month>`), the materialised views that
//! answer queries in one read (product by SKU and barcode, stock on hand, sales
//! totals by day and till), the conflict log, and this till's audit chain.
//!
//! Data moves in two ways, both through one write path that commits with fsync
//! before returning:
//! - local operations ([`Store::record_sale`], [`Store::set_price`],
//!   [`Store::count_stock`], ...) make an Automerge change stamped with the till's
//!   hybrid logical clock ([`Hlc`]);
//! - changes from other tills or backups arrive through [`Store::apply_changes`],
//!   which checks them (decodable, and written by the owner for single-writer
//!   documents) before merging. [`Store::changes_since`] is the other side.
//!
//! A whole product catalog file (CSV or JSON, [`CatalogFormat`]) goes in through
//! [`Store::import_catalog`]: every row is checked first, and the file is
//! written as one change in one commit, or not at all ([`ImportError::BadRows`]
//! names every bad row by line).
//!
//! ```
//! use tillmesh_store::{NewProduct, NewStore, Role, Store, StoreId, StoreOptions, TillKey, Unit};
//! use tillmesh_store::{LineRequest, SaleRequest, Tender};
//!
//! let dir = tempfile::tempdir()?;
//! let new = NewStore {
//!     store_id: StoreId::random(),
//!     store_name: "Corner Shop".into(),
//!     till_name: "T1".parse()?,
//!     role: Role::BackOffice,
//!     founder: true,
//! };
//! let mut store = Store::create(&dir.path().join("till.redb"), TillKey::generate(), new, StoreOptions::default())?;
//! store.add_product(NewProduct {
//!     sku: "MILK1L".parse()?,
//!     name: "Milk 1 l".into(),
//!     barcodes: vec!["4006381333931".parse()?],
//!     price_cents: 119,
//!     unit: Unit::Each,
//!     tax_class: "reduced".into(),
//!     category: "dairy".into(),
//! })?;
//! let sale = store.record_sale(SaleRequest {
//!     lines: vec![LineRequest { code: "4006381333931".into(), qty: Some(2), grams: None, discount_cents: 0 }],
//!     tender: Tender::Card,
//! })?;
//! assert_eq!(sale.receipt.to_string(), "T1-1");
//! assert_eq!(sale.total_cents, 238);
//! assert_eq!(store.stock(&"MILK1L".parse()?)?.on_hand, -2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

mod apply;
mod audit;
mod authorship;
mod catalog;
mod conflicts;
mod error;
pub mod fuzzing;
mod handle;
mod hlc;
mod ids;
mod import;
mod keys;
mod listing;
mod membership;
mod model;
mod money;
mod proofs;
mod sales;
pub mod settings;
mod stock;
mod store;
mod sync;
mod tables;
#[cfg(any(test, feature = "test-utils"))]
pub mod test_utils;
mod views;
mod writer;

pub use apply::ApplyReport;
pub use audit::{AuditEntry, AuditProblem, AuditProblemKind, ChainReport};
pub use automerge::ChangeHash;
pub use catalog::{
    BACKUP_INTERVAL, DEFAULT_TAX_RATES, MAX_CLOCK_SKEW, NewProduct, ProductEdit, RecoveryRecipient,
    SNAPSHOT_INTERVAL,
};
pub use error::{
    ApplyError, ConflictError, OpenStoreError, ProductError, SaleError, StockError, StorageError,
};
pub use handle::{Events, Outbox, StoreClosed, StoreHandle};
pub use hlc::{Clock, ClockSkew, DEFAULT_MAX_SKEW_S, Hlc, HlcState, ManualClock, SystemClock};
pub use ids::{Barcode, Day, DocId, Month, ParseIdError, Receipt, Sku, StoreId, TillId, TillName};
pub use import::{
    BadRow, CSV_COLUMNS, CatalogFormat, ImportError, ImportReport, ImportRow, parse_catalog_file,
};
pub use keys::{KeyFileError, TillKey, verify};
pub use listing::{
    BadCursor, ListError, MAX_IDEMPOTENCY_KEY, MAX_PAGE, ProductCell, ReportCell, SalesFilter,
    SalesPage, SalesReport, StoreEvent, TOP_PRODUCTS,
};
pub use membership::{MemberStatus, MembershipError, StoreSecret};
pub use model::{
    Conflict, ConflictStatus, ENTRY_VERSION, EntryKind, FieldValue, Line, Policy, Product,
    RefundLine, Role, SaleEntry, StockEntry, StockKind, StockLevel, Tender, TillInfo, Totals, Unit,
};
pub use money::{ParseMoneyError, parse_money};
pub use proofs::{
    BadProofs, OwnChange, PROOF_VERSION, Proof, Signature, role_may_write, writers_of,
};
pub use sales::{LineRequest, MAX_GRAMS, MAX_LINES, MAX_QTY, SaleRecord, SaleRequest};
pub use stock::MAX_STOCK_QTY;
pub use store::{NewStore, Store, StoreOptions};
pub use sync::{BUCKETS, BucketDigests, ENVELOPE, Unreplicated, bucket_of};
pub use tables::FORMAT_VERSION;

/// The Automerge sync protocol types the mesh persists and exchanges.
pub use automerge::sync::State as SyncState;
