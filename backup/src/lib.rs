//! Where a store's data rests outside its tills.
//!
//! This crate will own the snapshot and bundle format (age-encrypted,
//! zstd-compressed, signed by the creating till), the sinks that hold them
//! (folders, USB sticks, Google Drive), retention, verify and restore. It reads
//! and writes documents through [`tillmesh_store::Store`].
//!
//! Nothing is implemented here yet; see docs/ARCHITECTURE.md for the plan.
#![deny(missing_docs)]
