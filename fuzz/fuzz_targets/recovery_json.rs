//! What a recovery file holds once decrypted.
//!
//! The body, `tillmesh_backup::fuzzing::recovery_json`, also runs on every committed
//! input as an ordinary test.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tillmesh_backup::fuzzing::recovery_json(data);
});
