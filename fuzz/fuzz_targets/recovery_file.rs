//! A recovery file.
//!
//! The body, `tillmesh_backup::fuzzing::recovery_file`, also runs on every committed
//! input as an ordinary test.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tillmesh_backup::fuzzing::recovery_file(data);
});
