//! The decoder against damaged input: the committed corpus (also the seed of
//! the cargo-fuzz target in fuzz/) is replayed, and random damage to a valid
//! file always gives an error, never a panic and never a wrong success.

use proptest::prelude::*;
use tillmesh_backup::format::{self, Form, Kind, Writer};
use tillmesh_backup::keys;
use tillmesh_store::{StoreId, TillKey};

fn sample() -> (Vec<u8>, StoreId, Vec<tillmesh_store::StoreSecret>) {
    let store = StoreId::from_bytes([7; 16]);
    let till = TillKey::from_seed([3; 32]);
    let key = keys::generate(1);
    let mut w = Writer::new(Kind::Bundle, store, "Corpus Shop");
    w.add("catalog", vec![[1; 32]], Form::Changes, vec![0, 1, 2, 3]);
    w.add(
        "config",
        vec![],
        Form::Saved,
        b"not really a document".to_vec(),
    );
    let file = w.finish(&till, &key, 1_700_000_000_000).expect("file");
    (file, store, vec![key])
}

#[test]
fn the_committed_corpus_never_panics() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("corpus") {
        let bytes = std::fs::read(entry.expect("entry").path()).expect("read");
        let _ = format::Header::decode(&bytes);
        let _ = format::check(&bytes, StoreId::from_bytes([7; 16]), |_| true);
        let _ = format::decode_plain(&bytes);
        n += 1;
    }
    assert!(n >= 5, "the corpus is there ({n} files)");
}

#[test]
fn a_valid_file_opens() {
    let (file, store, keys) = sample();
    let (h, c) = format::open(&file, store, &keys, |_| true).expect("open");
    assert_eq!(h.kind, Kind::Bundle);
    assert_eq!(c.records.len(), 2);
    assert_eq!(c.manifest.store_name, "Corpus Shop");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_damage_is_an_error(at in 0usize..100_000, bit in 0u8..8, cut in proptest::option::of(0usize..100_000)) {
        let (mut file, store, keys) = sample();
        let i = at % file.len();
        file[i] ^= 1 << bit;
        if let Some(c) = cut {
            file.truncate(c % file.len());
        }
        prop_assert!(format::open(&file, store, &keys, |_| true).is_err());
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = format::Header::decode(&bytes);
        let _ = format::check(&bytes, StoreId::from_bytes([7; 16]), |_| true);
        let _ = format::decode_plain(&bytes);
    }
}
