//! Exit codes (0 is success, 2 a usage error from the argument parser): stable, documented in docs/OPERATIONS.md, so scripts can tell a
//! rejected sale from a broken store.

use tillmesh_backup::{BackupError, SinkError};
use tillmesh_store::{
    ConflictError, ImportError, OpenStoreError, ProductError, SaleError, StockError, StorageError,
};

/// Something unexpected failed.
pub const FAILURE: i32 = 1;
/// Input was rejected (invalid value, rule broken); nothing was changed.
pub const REJECTED: i32 = 3;
/// A store, product, receipt or conflict does not exist.
pub const NOT_FOUND: i32 = 4;
/// The store is in use by another process.
pub const BUSY: i32 = 5;
/// Stored data is damaged or was tampered with.
pub const DAMAGED: i32 = 6;
/// The disk is full.
pub const DISK_FULL: i32 = 7;

/// An operator mistake found by the command line itself.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Rejected(pub String);

/// A failure whose exit code is already known (the daemon's problem reply).
#[derive(Debug, thiserror::Error)]
#[error("{1}")]
pub struct Coded(pub i32, pub String);

/// A check found damage or tampering.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Damaged(pub String);

fn storage(e: &StorageError) -> i32 {
    match e {
        StorageError::DiskFull => DISK_FULL,
        StorageError::Damaged { .. } => DAMAGED,
        StorageError::Forbidden { .. } => REJECTED,
        _ => FAILURE,
    }
}

fn sink(e: &SinkError) -> i32 {
    match e {
        SinkError::Full { .. } => DISK_FULL,
        SinkError::Missing(_) | SinkError::NotFound(_) => NOT_FOUND,
        SinkError::VerifyFailed(_) => DAMAGED,
        SinkError::BadName(_) => REJECTED,
        _ => FAILURE,
    }
}

/// The exit code for an error.
pub fn code(err: &anyhow::Error) -> i32 {
    for cause in err.chain() {
        if let Some(s) = storage_of(cause) {
            return storage(s);
        }
        if let Some(e) = cause.downcast_ref::<SinkError>() {
            return sink(e);
        }
        if let Some(e) = cause.downcast_ref::<BackupError>() {
            return match e {
                BackupError::Sink(s) => sink(s),
                BackupError::NoSnapshot { skipped, .. } if skipped.is_empty() => NOT_FOUND,
                BackupError::Format(_)
                | BackupError::Damaged { .. }
                | BackupError::NoSnapshot { .. } => DAMAGED,
                BackupError::HomeInUse(_) | BackupError::NoKey => REJECTED,
                BackupError::NoSuchBackup(_) => NOT_FOUND,
                _ => FAILURE,
            };
        }
        if let Some(Coded(code, _)) = cause.downcast_ref::<Coded>() {
            return *code;
        }
        if cause.is::<Rejected>() {
            return REJECTED;
        }
        if cause.is::<Damaged>() {
            return DAMAGED;
        }
        if let Some(e) = cause.downcast_ref::<OpenStoreError>() {
            return match e {
                OpenStoreError::NotFound(_) => NOT_FOUND,
                OpenStoreError::InUse(_) => BUSY,
                OpenStoreError::Corrupt { .. }
                | OpenStoreError::TooNew { .. }
                | OpenStoreError::WrongKey(_) => DAMAGED,
                OpenStoreError::AlreadyExists(_) | OpenStoreError::Invalid(_) => REJECTED,
                _ => FAILURE,
            };
        }
        if let Some(e) = cause.downcast_ref::<ProductError>() {
            return match e {
                ProductError::Unknown(_) => NOT_FOUND,
                _ => REJECTED,
            };
        }
        if cause.is::<ImportError>() {
            return REJECTED;
        }
        if let Some(e) = cause.downcast_ref::<SaleError>() {
            return match e {
                SaleError::UnknownProduct(_) | SaleError::UnknownReceipt(_) => NOT_FOUND,
                _ => REJECTED,
            };
        }
        if let Some(e) = cause.downcast_ref::<StockError>() {
            return match e {
                StockError::UnknownProduct(_) => NOT_FOUND,
                _ => REJECTED,
            };
        }
        if let Some(e) = cause.downcast_ref::<ConflictError>() {
            return match e {
                ConflictError::Unknown(_) => NOT_FOUND,
                _ => REJECTED,
            };
        }
        if let Some(e) = cause.downcast_ref::<tillmesh_store::ParseIdError>() {
            let _ = e;
            return REJECTED;
        }
    }
    FAILURE
}

/// The storage error an error is, or wraps: the store's errors wrap it
/// transparently, so it is not among their sources.
pub fn storage_of<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a StorageError> {
    if let Some(s) = e.downcast_ref::<StorageError>() {
        return Some(s);
    }
    // Each of these errors is the storage error when it is its `Storage` arm.
    macro_rules! storage_arm {
        ($($kind:ident),+) => {$(
            if let Some(k) = e.downcast_ref::<$kind>() {
                return match k {
                    $kind::Storage(s) => Some(s),
                    _ => None,
                };
            }
        )+};
    }
    storage_arm!(
        ProductError,
        SaleError,
        StockError,
        ConflictError,
        ImportError,
        OpenStoreError,
        BackupError
    );
    None
}
