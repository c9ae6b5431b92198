//! Fuzz target bodies for the files a till reads from sinks and sticks: backup
//! files whole ([`backup_file`]), the encrypted body of a file signed by a
//! member ([`backup_body`]: a member's key can sign anything, so everything
//! after the signature check is untrusted too), recovery files
//! ([`recovery_file`]) and what a recovery file holds once decrypted
//! ([`recovery_json`]). Each body is called by its cargo-fuzz target (`fuzz/`)
//! and, on every committed input, by an ordinary test; see
//! [`tillmesh_store::fuzzing`] and docs/fuzzing.md.

use std::io::Write;

use age::secrecy::SecretString;
use tillmesh_store::fuzzing::Target;
use tillmesh_store::{StoreId, StoreSecret, TillKey};

use crate::format::{self, Form, HEADER_LEN, Header, Kind, SIGNATURE_LEN, Writer};
use crate::keys::{self, Recovery};

/// This crate's targets.
pub const TARGETS: &[Target] = &[
    Target {
        name: "backup_file",
        run: backup_file,
        seeds: backup_file_seeds,
    },
    Target {
        name: "backup_body",
        run: backup_body,
        seeds: backup_body_seeds,
    },
    Target {
        name: "recovery_file",
        run: recovery_file,
        seeds: recovery_file_seeds,
    },
    Target {
        name: "recovery_json",
        run: recovery_json,
        seeds: recovery_json_seeds,
    },
];

/// The store every input is read for.
const STORE: StoreId = StoreId::from_bytes([7; 16]);

/// The store's backup key (fixed, so that committed files stay readable).
const IDENTITY: &str = "AGE-SECRET-KEY-1PYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSTFVYXW";

/// The passphrase of every recovery file of the corpus.
const PASSPHRASE: &str = "fuzzing passphrase";

fn secret() -> StoreSecret {
    let identity: age::x25519::Identity = IDENTITY.parse().expect("a valid identity");
    StoreSecret {
        key_id: keys::key_id(&identity.to_public()),
        created_ms: 1,
        identity: IDENTITY.into(),
    }
}

/// The till that signs the files made here.
fn till() -> TillKey {
    TillKey::from_seed([3; 32])
}

/// A whole backup file, read for `STORE` with its key, every signer a
/// member. A file that opens passed the checks before it.
pub fn backup_file(data: &[u8]) -> bool {
    let header = Header::decode(data);
    let checked = format::check(data, STORE, |_| true);
    if let Ok(h) = &checked {
        assert_eq!(header.as_ref().ok(), Some(h), "check reads the same header");
    }
    let _ = format::decode_plain(data);
    match format::open(data, STORE, &[secret()], |_| true) {
        Ok((h, contents)) => {
            assert!(checked.is_ok(), "a file that opens passes check");
            assert_eq!(header.ok(), Some(h));
            assert_eq!(contents.records.len(), contents.manifest.entries.len());
            true
        }
        Err(_) => false,
    }
}

/// `body` as the ciphertext of a snapshot of [`STORE`], encrypted (as its
/// header says) to the store's key and signed by [`till`].
fn signed_file(body: &[u8]) -> Vec<u8> {
    let header = Header {
        version: format::FORMAT_VERSION,
        kind: Kind::Snapshot,
        store: STORE,
        creator: till().till_id(),
        created_ms: 1_700_000_000_000,
        key_id: format::key_id_bytes(&secret().key_id).expect("key id"),
        body_len: body.len() as u64,
    };
    let mut file = header.encode().to_vec();
    file.extend_from_slice(body);
    let sig = till().sign(&format::signing_input(&file));
    file.extend_from_slice(&sig);
    file
}

/// The encrypted body of a file a member signed: decrypted, decompressed and
/// checked as [`format::open`] does after the signature.
pub fn backup_body(data: &[u8]) -> bool {
    let file = signed_file(data);
    format::check(&file, STORE, |_| true).expect("the signature of a file signed here holds");
    format::open(&file, STORE, &[secret()], |_| true).is_ok()
}

/// Encrypt `plain` with age to `recipient`.
fn encrypt(plain: &[u8], recipient: &dyn age::Recipient) -> Vec<u8> {
    let enc = age::Encryptor::with_recipients(std::iter::once(recipient)).expect("encryptor");
    let mut out = Vec::new();
    let mut w = enc.wrap_output(&mut out).expect("wrap");
    w.write_all(plain).expect("write");
    w.finish().expect("finish");
    out
}

/// Files a till would write: a snapshot and a bundle.
fn valid_files() -> Vec<(&'static str, Vec<u8>)> {
    let mut snapshot = Writer::new(Kind::Snapshot, STORE, "Fuzz Shop");
    snapshot.add(
        "catalog",
        vec![[1; 32]],
        Form::Saved,
        b"saved catalog".to_vec(),
    );
    snapshot.add(
        "config",
        vec![[2; 32]],
        Form::Saved,
        b"saved config".to_vec(),
    );
    let mut bundle = Writer::new(Kind::Bundle, STORE, "Fuzz Shop");
    let changes = postcard::to_stdvec(&vec![vec![1u8, 2, 3], vec![4, 5]]).expect("changes");
    bundle.add("catalog", vec![[3; 32]], Form::Changes, changes);
    [("snapshot", snapshot), ("bundle", bundle)]
        .into_iter()
        .map(|(name, w)| {
            let file = w
                .finish(&till(), &secret(), 1_700_000_000_000)
                .expect("file");
            (name, file)
        })
        .collect()
}

fn backup_file_seeds() -> Vec<(String, Vec<u8>)> {
    let mut seeds = Vec::new();
    for (name, file) in valid_files() {
        let mut flipped = file.clone();
        flipped[file.len() / 2] ^= 1;
        let mut other_store = file.clone();
        other_store[12] ^= 1;
        let mut newer = file.clone();
        newer[8] = 2;
        seeds.push((format!("valid-{name}"), file));
        seeds.push((format!("broken-{name}-flipped"), flipped));
        seeds.push((format!("broken-{name}-other-store"), other_store));
        seeds.push((format!("broken-{name}-newer-version"), newer));
    }
    seeds.push((
        "broken-not-backup".into(),
        b"PK\x03\x04 a zip file".to_vec(),
    ));
    seeds
}

fn backup_body_seeds() -> Vec<(String, Vec<u8>)> {
    let mut seeds: Vec<(String, Vec<u8>)> = valid_files()
        .into_iter()
        .map(|(name, file)| {
            let body = file[HEADER_LEN..file.len() - SIGNATURE_LEN].to_vec();
            (format!("valid-{name}"), body)
        })
        .collect();
    let ours: age::x25519::Identity = IDENTITY.parse().expect("identity");
    let not_zstd = encrypt(b"not compressed", &ours.to_public());
    let other = encrypt(b"x", &age::x25519::Identity::generate().to_public());
    let no_manifest = encrypt(
        &zstd::encode_all(&[1u8, 0][..], 3).expect("compress"),
        &ours.to_public(),
    );
    seeds.push(("broken-not-compressed".into(), not_zstd));
    seeds.push(("broken-another-key".into(), other));
    seeds.push(("broken-no-manifest".into(), no_manifest));
    seeds.push(("broken-not-age".into(), b"age-encryption.org/v2\n".to_vec()));
    seeds
}

/// A recovery file, opened with the corpus's passphrase.
pub fn recovery_file(data: &[u8]) -> bool {
    match keys::open_recovery(data, PASSPHRASE) {
        Ok(r) => {
            let _ = r.store();
            let _ = r.admin();
            true
        }
        Err(_) => false,
    }
}

/// `plain` sealed as a recovery file with `passphrase`, at the lowest work
/// factor (the fuzzer's time goes to the decoder, not to scrypt).
fn sealed(plain: &[u8], passphrase: &str) -> Vec<u8> {
    let mut recipient = age::scrypt::Recipient::new(SecretString::from(passphrase.to_string()));
    recipient.set_work_factor(1);
    let mut out = b"tillmesh-recovery v1\n".to_vec();
    out.extend_from_slice(&encrypt(plain, &recipient));
    out
}

/// What a recovery file holds once decrypted, as [`keys::open_recovery`] reads
/// it.
pub fn recovery_json(data: &[u8]) -> bool {
    recovery_file(&sealed(data, PASSPHRASE))
}

fn recoveries() -> Vec<(&'static str, Recovery)> {
    let v2 = Recovery {
        version: 2,
        store_id: STORE.to_string(),
        store_name: "Fuzz Shop".into(),
        admin_seed: hex::encode([4; 32]),
        secrets: vec![secret()],
        recovery: Some(secret()),
    };
    let v1 = Recovery {
        version: 1,
        recovery: None,
        ..v2.clone()
    };
    vec![("v2", v2), ("v1", v1)]
}

fn recovery_file_seeds() -> Vec<(String, Vec<u8>)> {
    let mut seeds = Vec::new();
    for (name, r) in recoveries() {
        let file = keys::seal_recovery(&r, PASSPHRASE, 1).expect("seal");
        seeds.push((format!("valid-{name}"), file));
    }
    let (_, r) = &recoveries()[0];
    let other = keys::seal_recovery(r, "another passphrase", 1).expect("seal");
    seeds.push(("broken-wrong-passphrase".into(), other));
    let newer = Recovery {
        version: 3,
        ..r.clone()
    };
    let newer = serde_json::to_vec(&newer).expect("json");
    seeds.push(("broken-newer-version".into(), sealed(&newer, PASSPHRASE)));
    seeds.push((
        "broken-not-recovery".into(),
        b"tillmesh-recovery v0\n".to_vec(),
    ));
    seeds
}

fn recovery_json_seeds() -> Vec<(String, Vec<u8>)> {
    let mut seeds: Vec<(String, Vec<u8>)> = recoveries()
        .into_iter()
        .map(|(name, r)| {
            (
                format!("valid-{name}"),
                serde_json::to_vec(&r).expect("json"),
            )
        })
        .collect();
    let (_, r) = &recoveries()[0];
    let mut no_seed = serde_json::to_value(r).expect("json");
    if let Some(o) = no_seed.as_object_mut() {
        o.remove("admin_seed");
    }
    seeds.push((
        "broken-missing-field".into(),
        serde_json::to_vec(&no_seed).expect("json"),
    ));
    seeds.push(("broken-version-0".into(), {
        let v0 = Recovery {
            version: 0,
            ..r.clone()
        };
        serde_json::to_vec(&v0).expect("json")
    }));
    seeds.push(("broken-not-json".into(), b"version: 2".to_vec()));
    seeds
}

#[cfg(test)]
mod tests {
    /// Every committed input of this crate's targets runs clean.
    #[test]
    fn the_corpus_runs_clean() {
        let fuzz = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
        tillmesh_store::fuzzing::check_corpus(&fuzz, super::TARGETS);
    }
}
