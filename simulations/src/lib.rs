//! Many tills at once: workloads, fault schedules and reports.
//!
//! [`workload`] builds store-scale data quickly (a till's day of sales as the
//! Automerge changes that till would have made) so benchmarks can measure a
//! store holding months of sales from a hundred tills; [`report`] computes
//! what the store, mesh and catch-up simulations print.
#![deny(missing_docs)]

pub mod report;
pub mod workload;
