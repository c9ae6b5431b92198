//! A keys request or reply, framed as on the wire.
//!
//! The body, `tillmesh_mesh::fuzzing::keys`, also runs on every committed
//! input as an ordinary test.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tillmesh_mesh::fuzzing::keys(data);
});
