//! Where a store's data rests outside its tills.
//!
//! Snapshots (every document) and bundles (the changes a sink lacks) are
//! zstd-compressed, encrypted with age to the store's current backup key and its
//! never-rotated recovery key ([`archive::recipients`]) and signed by the till
//! that made them ([`mod@format`]). They rest on [`sink`]s: folders, USB
//! sticks, SD cards, mounted shares. [`archive`] backs up, lists, verifies,
//! imports, carries changes by USB stick and restores to a point in time;
//! [`keys`] makes the store's backup keys and the passphrase-protected recovery
//! file, which holds the recovery key; [`retention`] plans which snapshots a
//! sink keeps and [`mod@prune`] applies the plan; [`schedule`] times the
//! daemon's backups and retries; [`device`] finds removable devices (USB sticks,
//! SD cards).
#![deny(missing_docs)]

pub mod archive;
pub mod device;
pub mod drive;
pub mod format;
pub mod fuzzing;
pub mod keys;
pub mod oauth;
pub mod prune;
pub mod remote;
pub mod retention;
pub mod schedule;
pub mod sink;

pub use archive::{
    BackupError, BackupReport, Import, Imported, Listed, Opener, Pick, RestoreReport, RestoreSpec,
    UsbReport, Verified, backup, import, list, restore, usb_sync, verify,
};
pub use format::{FormatError, Kind};
pub use prune::{PruneReport, prune, prune_with};
pub use sink::{FolderSink, Sink, SinkConfig, SinkError, SinkErrorKind};
