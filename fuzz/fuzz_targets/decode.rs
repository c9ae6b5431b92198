//! The snapshot and bundle decoder must turn any bytes into a clear error, never
//! a panic or a runaway allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tillmesh_backup::format;
use tillmesh_store::StoreId;

fuzz_target!(|data: &[u8]| {
    let _ = format::Header::decode(data);
    let _ = format::check(data, StoreId::from_bytes([0; 16]), |_| true);
    let _ = format::decode_plain(data);
});
