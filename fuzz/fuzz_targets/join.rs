//! A join request or reply, framed as on the wire.
//!
//! The body, `tillmesh_mesh::fuzzing::join`, also runs on every committed
//! input as an ordinary test.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tillmesh_mesh::fuzzing::join(data);
});
