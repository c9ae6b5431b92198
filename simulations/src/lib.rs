//! Many tills at once: workloads, fault schedules and reports.
//!
//! [`workload`] builds store-scale data quickly (a till's day of sales as the
//! Automerge changes that till would have made) so benchmarks can measure a
//! store holding months of sales from a hundred tills; [`report`] computes
//! what the store, mesh and catch-up simulations print; [`browser`] drives
//! a real headless chromium for the dashboard's test and benchmark.
#![deny(missing_docs)]

pub mod browser;
pub mod report;
pub mod workload;

use std::path::{Path, PathBuf};

/// The `tillmesh` binary a test drives: `$TILLMESH_BIN`, or the one cargo
/// built next to the running test executable (`target/<profile>/`; `cargo
/// test --workspace` builds it).
pub fn tillmesh_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("TILLMESH_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps");
    let bin = dir.join(format!("tillmesh{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is missing: build it (`cargo build -p tillmesh`, or test with `cargo test --workspace`) or set TILLMESH_BIN",
        bin.display()
    );
    bin
}
