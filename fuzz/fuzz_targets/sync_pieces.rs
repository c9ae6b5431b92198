//! A round of sync messages, sent in pieces, put back together.
//!
//! The body, `tillmesh_mesh::fuzzing::sync_pieces`, also runs on every committed
//! input as an ordinary test.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tillmesh_mesh::fuzzing::sync_pieces(data);
});
