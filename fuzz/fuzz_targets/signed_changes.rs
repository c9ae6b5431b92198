//! Signed changes from another till: proofs decoded and checked, the batch merged.
//!
//! The body, `tillmesh_store::fuzzing::signed_changes`, also runs on every committed
//! input as an ordinary test.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tillmesh_store::fuzzing::signed_changes(data);
});
