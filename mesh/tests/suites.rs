//! The mesh's integration suites over real iroh endpoints, one module each,
//! in one test binary (each binary links the whole stack).

mod gossip_bootstrap;
mod join_refusals;
mod loopback;
mod partitions;
mod partitions_loopback;
mod relay_discovery;
mod relay_tls;
mod session;
