//! The redb tables of a till store, and the format version they make up.
//!
//! Documents: `doc_saved` holds each document's last compacted save, `doc_changes`
//! the changes appended since, `docs` the bookkeeping of both. Everything named
//! `v_*` is a materialised view: derived from the documents, updated in the same
//! transaction as the change that moves it, and rebuildable from them
//! ([`crate::Store::rebuild_views`]). `conflicts` and `open_conflicts` are this
//! till's log of what it saw, not a view.

use redb::{MultimapTableDefinition, TableDefinition};

/// The store format written by this build; `meta.format` holds the file's.
pub const FORMAT_VERSION: u32 = 3;

/// The format that brought signed changes (proofs).
pub(crate) const FORMAT_PROOFS: u32 = 2;

pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
pub(crate) const DOCS: TableDefinition<&str, &[u8]> = TableDefinition::new("docs");
pub(crate) const DOC_SAVED: TableDefinition<&str, &[u8]> = TableDefinition::new("doc_saved");
pub(crate) const DOC_CHANGES: TableDefinition<(&str, u64), &[u8]> =
    TableDefinition::new("doc_changes");

pub(crate) const V_PRODUCTS: TableDefinition<&str, &[u8]> = TableDefinition::new("v_products");
pub(crate) const V_BARCODES: MultimapTableDefinition<&str, &str> =
    MultimapTableDefinition::new("v_barcodes");
pub(crate) const V_STOCK: TableDefinition<&str, &[u8]> = TableDefinition::new("v_stock");
pub(crate) const V_MOVES: TableDefinition<&[u8], i64> = TableDefinition::new("v_moves");
pub(crate) const V_TOTALS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("v_totals");
pub(crate) const V_RECEIPTS: TableDefinition<&str, &[u8]> = TableDefinition::new("v_receipts");
pub(crate) const V_TILLS: TableDefinition<&str, &[u8]> = TableDefinition::new("v_tills");
pub(crate) const V_CONFIG: TableDefinition<&str, &[u8]> = TableDefinition::new("v_config");
/// Sales index: day, HLC, till → the entry as listings show it (format 3).
pub(crate) const V_SALES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("v_sales");
/// Report cells: (day, `hour:HH` | `tender:T` | `sku:S`) → count, cents, units
/// (format 3).
pub(crate) const V_REPORT: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("v_report");
/// Idempotency keys of sales made through the local API (format 3).
pub(crate) const IDEMPOTENCY: TableDefinition<&str, &[u8]> = TableDefinition::new("idempotency");

/// Heads of each document (hex hashes joined by ','), for manifests.
pub(crate) const DOC_HEADS: TableDefinition<&str, &str> = TableDefinition::new("doc_heads");
/// XOR of the digests of the documents in each of 256 buckets.
pub(crate) const BUCKETS: TableDefinition<u8, &[u8]> = TableDefinition::new("buckets");
/// Automerge sync state per peer and document (`<peer>\0<doc>`).
pub(crate) const SYNC_STATES: TableDefinition<&str, &[u8]> = TableDefinition::new("sync_states");

/// Proofs of authorship kept per document, signer and head actor
/// (`<doc>\0<signer>\0<actor>` → an encoded one-proof list).
pub(crate) const PROOFS: TableDefinition<&str, &[u8]> = TableDefinition::new("proofs");
/// Hashes a valid proof reached before this till held them (`<doc>\0<hash>` →
/// the signers, 32 bytes each): the change is proven when it arrives.
pub(crate) const PROVEN: TableDefinition<&str, &[u8]> = TableDefinition::new("proven");

/// One-time invitations made on this till (BLAKE3 of the secret → state).
pub(crate) const INVITES: TableDefinition<&str, &[u8]> = TableDefinition::new("invites");

pub(crate) const CONFLICTS: TableDefinition<&str, &[u8]> = TableDefinition::new("conflicts");
pub(crate) const OPEN_CONFLICTS: TableDefinition<&str, &str> =
    TableDefinition::new("open_conflicts");

/// Meta keys.
pub(crate) mod meta {
    pub const FORMAT: &str = "format";
    pub const STORE_ID: &str = "store_id";
    pub const STORE_NAME: &str = "store_name";
    pub const TILL_ID: &str = "till_id";
    pub const TILL_NAME: &str = "till_name";
    pub const ROLE: &str = "role";
    pub const ACTOR: &str = "actor";
    pub const HLC: &str = "hlc";
    pub const NEXT_RECEIPT: &str = "next_receipt";
    pub const AUDIT_HEAD: &str = "audit_head";
    pub const ADMIN_KEY: &str = "admin_key";
    pub const STORE_SECRETS: &str = "store_secrets";
    /// Present on a store made before signed changes until the admin key has
    /// signed the heads of every document it held then.
    pub const LEGACY_HISTORY: &str = "legacy_history";
    /// The largest clock skew of another till seen beyond the bound
    /// ([`crate::hlc::ClockSkew`], JSON).
    pub const CLOCK_SKEW: &str = "clock_skew";
}

/// Bookkeeping of one document's storage.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct DocState {
    /// Sequence number for the next appended change.
    pub next_seq: u64,
    /// Changes appended since the last compaction.
    pub pending: u64,
}
