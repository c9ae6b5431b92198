//! A batch of changes (or a saved document) from another till.
//!
//! The body, `tillmesh_store::fuzzing::store_changes`, also runs on every committed
//! input as an ordinary test.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tillmesh_store::fuzzing::store_changes(data);
});
