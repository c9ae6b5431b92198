//! The encrypted body of a backup file a member signed.
//!
//! The body, `tillmesh_backup::fuzzing::backup_body`, also runs on every committed
//! input as an ordinary test.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tillmesh_backup::fuzzing::backup_body(data);
});
