//! Errors, one enum per operation, each written for the operator who reads it.

use crate::ids::{DocId, ParseIdError};

/// The storage underneath failed: the redb file or a document in it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// redb reported an error.
    #[error("store database error: {0}")]
    Database(String),
    /// The disk is full.
    #[error("the disk holding the store is full; free some space, nothing was recorded")]
    DiskFull,
    /// This till's certified role may not write the document; nothing was written.
    #[error("this till may not change the {doc}: only {needed} may")]
    Forbidden {
        /// The document (kind).
        doc: String,
        /// Who may.
        needed: &'static str,
    },
    /// A document or value stored in the file cannot be read.
    #[error("stored document {doc} is damaged: {reason}")]
    Damaged {
        /// Which document.
        doc: String,
        /// What is wrong.
        reason: String,
    },
}

fn is_disk_full(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::StorageFull || e.raw_os_error() == Some(28)
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StorageError {
            fn from(e: $t) -> Self {
                let e: redb::Error = e.into();
                if let redb::Error::Io(io) = &e {
                    if is_disk_full(io) {
                        return StorageError::DiskFull;
                    }
                }
                StorageError::Database(e.to_string())
            }
        }
    )*};
}
from_redb!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// Opening or creating a till's store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenStoreError {
    /// There is no store at the path.
    #[error("no till store at {0}; run `tillmesh init` first")]
    NotFound(String),
    /// A store already exists at the path.
    #[error("a till store already exists at {0}; refusing to overwrite it")]
    AlreadyExists(String),
    /// Another process holds the store.
    #[error("the till store at {0} is in use by another process (is `tillmesh run` running?)")]
    InUse(String),
    /// The file is not a readable store.
    #[error(
        "the till store at {path} is damaged and cannot be opened ({reason}); keep the file for \
         inspection and restore this till from a backup or from its peers"
    )]
    Corrupt {
        /// The file.
        path: String,
        /// What redb or the format check said.
        reason: String,
    },
    /// The store was written by a newer tillmesh.
    #[error(
        "the till store uses format version {found}, newer than this tillmesh understands \
         ({supported}); upgrade tillmesh"
    )]
    TooNew {
        /// The file's version.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
    },
    /// The till key does not belong to this store.
    #[error("the till key does not match this store's till ({0}); wrong --home?")]
    WrongKey(String),
    /// An argument was invalid.
    #[error("{0}")]
    Invalid(String),
    /// File system error around the store.
    #[error("cannot open the till store: {0}")]
    Io(#[from] std::io::Error),
    /// Storage error.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Adding or editing a product failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProductError {
    /// A field is invalid.
    #[error("{0}")]
    Invalid(String),
    /// An id did not parse.
    #[error(transparent)]
    Parse(#[from] ParseIdError),
    /// The SKU is taken.
    #[error("product {0} already exists; use `tillmesh product set-price` or edit it")]
    Exists(String),
    /// No such product.
    #[error("unknown product {0}")]
    Unknown(String),
    /// The barcode belongs to another product.
    #[error("barcode {barcode} already belongs to product {sku}")]
    BarcodeTaken {
        /// The barcode.
        barcode: String,
        /// Its product.
        sku: String,
    },
    /// Storage error; nothing was changed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Recording a sale, void or refund failed; nothing was recorded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SaleError {
    /// A line is invalid.
    #[error("{0}")]
    Invalid(String),
    /// No product has this SKU or barcode.
    #[error("no product has SKU or barcode {0}")]
    UnknownProduct(String),
    /// The barcode is ambiguous after a merge.
    #[error(
        "barcode {barcode} belongs to several products ({skus}); sell by SKU and fix the catalog"
    )]
    AmbiguousBarcode {
        /// The barcode.
        barcode: String,
        /// The products.
        skus: String,
    },
    /// The product may not be sold.
    #[error("product {0} is inactive and cannot be sold")]
    Inactive(String),
    /// Unknown receipt.
    #[error("no sale with receipt {0} is known on this till")]
    UnknownReceipt(String),
    /// The operation is not allowed on that receipt.
    #[error("{0}")]
    NotAllowed(String),
    /// An idempotency key came back with another request than its first.
    #[error("idempotency key {0:?} was already used for a different sale")]
    KeyReused(String),
    /// Storage error; nothing was recorded.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Recording a stock movement failed; nothing was recorded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StockError {
    /// Invalid input.
    #[error("{0}")]
    Invalid(String),
    /// No such product.
    #[error("unknown product {0}")]
    UnknownProduct(String),
    /// Storage error; nothing was recorded.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Changes from another till or a backup were refused; nothing of them was kept.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyError {
    /// The bytes are not an Automerge change.
    #[error("change {index} for {doc} is not a valid change: {reason}")]
    Malformed {
        /// The document.
        doc: String,
        /// Index of the bad change in the batch.
        index: usize,
        /// What the decoder said.
        reason: String,
    },
    /// A change for a single-writer document by someone else.
    #[error(
        "refused a change to {doc} written by another till ({writer}); only its owner may write it"
    )]
    NotOwner {
        /// The document.
        doc: String,
        /// Who wrote the change (actor id prefix).
        writer: String,
    },
    /// A change no valid proof of authorship covers.
    #[error(
        "refused changes to {doc}: a change by {writer} carries no valid proof that its author wrote it"
    )]
    Unproven {
        /// The document.
        doc: String,
        /// Who the change claims wrote it (actor id prefix).
        writer: String,
    },
    /// A change by a till whose role may not write the document.
    #[error("refused a change to {doc} by {writer}: only {needed} may write it")]
    Forbidden {
        /// The document.
        doc: String,
        /// Who wrote the change.
        writer: String,
        /// Who may.
        needed: &'static str,
    },
    /// The document id is unknown.
    #[error(transparent)]
    Doc(#[from] ParseIdError),
    /// Automerge refused the change.
    #[error("change for {doc} refused: {reason}")]
    Refused {
        /// The document.
        doc: String,
        /// Why.
        reason: String,
    },
    /// Storage error; nothing was kept.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Resolving a conflict failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConflictError {
    /// No such conflict.
    #[error("no conflict with id {0}; see `tillmesh conflicts`")]
    Unknown(String),
    /// The choice is invalid.
    #[error("{0}")]
    Invalid(String),
    /// Storage error; nothing was changed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Errors reading a document that should be there.
pub(crate) fn damaged(doc: &DocId, reason: impl std::fmt::Display) -> StorageError {
    StorageError::Damaged {
        doc: doc.to_string(),
        reason: reason.to_string(),
    }
}
