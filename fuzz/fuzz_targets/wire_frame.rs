//! One sync frame as read from a peer.
//!
//! The body, `tillmesh_mesh::fuzzing::wire_frame`, also runs on every committed
//! input as an ordinary test.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tillmesh_mesh::fuzzing::wire_frame(data);
});
