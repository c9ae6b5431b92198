//! A whole backup file (snapshot, bundle or index).
//!
//! The body, `tillmesh_backup::fuzzing::backup_file`, also runs on every committed
//! input as an ordinary test.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tillmesh_backup::fuzzing::backup_file(data);
});
