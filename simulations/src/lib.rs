//! Many tills at once: workloads, fault schedules and reports.
//!
//! Simulations drive many [`tillmesh_store::Store`]s in one process to measure
//! convergence and cost at store scale. The mesh simulations arrive with the mesh.
#![deny(missing_docs)]
