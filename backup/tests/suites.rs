//! The backup crate's integration suites, one module each, in one test binary.

mod archive;
mod bounds;
mod decoder;
mod drive;
