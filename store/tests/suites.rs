//! The store's integration suites, one module each, in one test binary.

mod audit_chain;
mod authorship;
mod bad_input;
mod clock;
mod convergence;
mod crash;
mod import;
mod listing;
mod policies;
mod saved_docs;
mod sync;
