//! A gossip message: a change, or a signed heartbeat.
//!
//! The body, `tillmesh_mesh::fuzzing::gossip`, also runs on every committed
//! input as an ordinary test.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tillmesh_mesh::fuzzing::gossip(data);
});
