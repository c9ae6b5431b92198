//! How tills talk to each other.
//!
//! This crate will own the till's iroh endpoint, enrolment and membership checks,
//! the `tillmesh/sync/1` protocol, gossip and anti-entropy, and peer status. It
//! builds on [`tillmesh_store::Store`]: every change it receives goes through the
//! store's merge entry point, [`tillmesh_store::Store::apply_changes`].
//!
//! Nothing is implemented here yet; see docs/ARCHITECTURE.md for the plan.
#![deny(missing_docs)]
