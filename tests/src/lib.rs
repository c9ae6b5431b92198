//! End-to-end tests of the `tillmesh` binary live in `tests/tests/`; this library
//! is empty on purpose.
#![deny(missing_docs)]
