//! A ticket line as pasted by an operator.
//!
//! The body, `tillmesh_mesh::fuzzing::ticket`, also runs on every committed
//! input as an ordinary test.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tillmesh_mesh::fuzzing::ticket(data);
});
