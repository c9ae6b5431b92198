//! The till's application core: what a till does, as a library the `tillmesh`
//! binary calls.
//!
//! The layers (docs/ARCHITECTURE.md): the store (`tillmesh-store`), the mesh
//! (`tillmesh-mesh`) and backups (`tillmesh-backup`) below; here the core
//! ([`core`]: one request type and one dispatch for every command, run by the
//! daemon for a client or in-process with no daemon), the daemon ([`daemon`]:
//! the store thread, the mesh node, the backup scheduler, the key keeper, the
//! relay watch and the local API as one supervised whole), the typed local API
//! ([`api`], [`events`]) and the command line's arguments and rendering
//! ([`args`], [`output`]). The binary's `main.rs` only parses the arguments and
//! calls [`core::run`].

pub mod admin;
pub mod alerts;
pub mod api;
pub mod args;
pub mod backups;
pub mod client;
pub mod commands;
pub mod config;
pub mod core;
pub mod daemon;
pub mod dashboard;
pub mod demo;
pub mod drive;
pub mod enrol;
pub mod events;
pub mod exit;
pub mod export;
pub mod home;
pub mod jobs;
pub mod journal;
pub mod logging;
pub mod metrics;
pub mod output;
pub mod progress;
pub mod report;
pub mod runconfig;
pub mod status;
pub mod supervisor;
