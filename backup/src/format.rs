//! The snapshot and bundle file format, version 1 (docs/snapshot-format.md).
//!
//! A file is a plain header naming the store, the creating till, the time and
//! the key it is encrypted to; the age ciphertext of a zstd stream holding a
//! manifest and the records; and the creating till's ed25519 signature over
//! everything before it. Only ciphertext and these header fields reach a sink.
//!
//! The ciphertext is encrypted to the key the header names and, when the store
//! has one, to its recovery key as well ([`Recipients`]).
//!
//! Opening checks, in order: the header, the signature (a flipped byte anywhere
//! fails here), that the signer is a member, the key (the one the header names,
//! else any held key the file is also encrypted to), then every record's hash.

use std::io::{Read, Write};

use serde::{Deserialize, Serialize};
use tillmesh_store::{StoreId, StoreSecret, TillId, TillKey};

/// The first bytes of every Tillmesh backup file.
pub const MAGIC: &[u8; 8] = b"TMBACKUP";

/// The newest format version this build writes; it reads every version up to it.
pub const FORMAT_VERSION: u16 = 1;

/// Bytes before the ciphertext.
pub const HEADER_LEN: usize = 84;

/// Bytes of the signature at the end.
pub const SIGNATURE_LEN: usize = 64;

/// What the signature signs: this prefix, then every byte before the signature.
const SIGNING_DOMAIN: &[u8] = b"tillmesh backup v1\0";

/// Largest ciphertext a file may hold (1 GiB): a file announcing more is refused
/// by its header and size alone, before it is read, and a backup that would be
/// larger is not written (a till could not read it back).
pub const MAX_BODY: u64 = 1 << 30;

/// Largest file: [`MAX_BODY`] with its header and signature.
pub const MAX_FILE: u64 = HEADER_LEN as u64 + MAX_BODY + SIGNATURE_LEN as u64;

/// Decompressed payloads larger than this (4 GiB) are refused as they are
/// decompressed (a bomb, not a store); a backup that would be larger is not
/// written.
pub const MAX_PAYLOAD: u64 = 4 << 30;

/// What a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Every document, whole.
    Snapshot,
    /// The changes a sink lacked when it was written.
    Bundle,
    /// A till's record of what a sink holds (heads only).
    Index,
}

impl Kind {
    fn code(self) -> u8 {
        match self {
            Kind::Snapshot => 1,
            Kind::Bundle => 2,
            Kind::Index => 3,
        }
    }

    fn from_code(c: u8) -> Option<Kind> {
        match c {
            1 => Some(Kind::Snapshot),
            2 => Some(Kind::Bundle),
            3 => Some(Kind::Index),
            _ => None,
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::Snapshot => "snapshot",
            Kind::Bundle => "bundle",
            Kind::Index => "index",
        })
    }
}

/// The plain header of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Format version the file was written in.
    pub version: u16,
    /// What it holds.
    pub kind: Kind,
    /// The store it belongs to.
    pub store: StoreId,
    /// The till that made and signed it.
    pub creator: TillId,
    /// When it was made (Unix milliseconds).
    pub created_ms: u64,
    /// The id of the store key it is encrypted to (it may be encrypted to the
    /// store's recovery key as well, which the header does not name).
    pub key_id: [u8; 8],
    /// Length of the ciphertext.
    pub body_len: u64,
}

impl Header {
    pub(crate) fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0..8].copy_from_slice(MAGIC);
        h[8..10].copy_from_slice(&self.version.to_le_bytes());
        h[10] = self.kind.code();
        h[12..28].copy_from_slice(self.store.as_bytes());
        h[28..60].copy_from_slice(self.creator.as_bytes());
        h[60..68].copy_from_slice(&self.created_ms.to_le_bytes());
        h[68..76].copy_from_slice(&self.key_id);
        h[76..84].copy_from_slice(&self.body_len.to_le_bytes());
        h
    }

    /// Read the header at the start of `bytes` (the rest may be missing: `list`
    /// reads headers only).
    pub fn decode(bytes: &[u8]) -> Result<Header, FormatError> {
        if bytes.len() < 8 || &bytes[0..8] != MAGIC {
            return Err(FormatError::NotBackup);
        }
        if bytes.len() < HEADER_LEN {
            return Err(FormatError::Truncated {
                have: bytes.len() as u64,
                want: HEADER_LEN as u64,
            });
        }
        let u64_at = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[at..at + 8]);
            u64::from_le_bytes(b)
        };
        let version = u16::from_le_bytes([bytes[8], bytes[9]]);
        if version == 0 || version > FORMAT_VERSION {
            return Err(FormatError::NewerVersion(version));
        }
        let kind = Kind::from_code(bytes[10]).ok_or(FormatError::UnknownKind(bytes[10]))?;
        let mut store = [0u8; 16];
        store.copy_from_slice(&bytes[12..28]);
        let mut creator = [0u8; 32];
        creator.copy_from_slice(&bytes[28..60]);
        let mut key_id = [0u8; 8];
        key_id.copy_from_slice(&bytes[68..76]);
        Ok(Header {
            version,
            kind,
            store: StoreId::from_bytes(store),
            creator: TillId::from_bytes(creator),
            created_ms: u64_at(60),
            key_id,
            body_len: u64_at(76),
        })
    }

    /// The key id as shown to operators.
    pub fn key_id_hex(&self) -> String {
        hex::encode(self.key_id)
    }
}

/// One document in a file's manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The document id (`catalog`, `sales/<till>/<day>`, ...).
    pub doc: String,
    /// The document's heads once this record is applied (for an index: the heads
    /// the sink holds).
    pub heads: Vec<[u8; 32]>,
    /// How the record is encoded.
    pub form: Form,
    /// Length of the record.
    pub len: u64,
    /// BLAKE3 hash of the record.
    pub hash: [u8; 32],
}

/// How a record is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Form {
    /// An Automerge document saved whole.
    Saved,
    /// A postcard list of raw Automerge changes.
    Changes,
    /// No record (an index entry).
    Heads,
    /// The proofs of authorship of the document named, as
    /// `tillmesh_store::Proof::encode_list` writes them (manifest version 2;
    /// follows the document's own record).
    Proofs,
}

/// The manifest version this build writes: 2 adds [`Form::Proofs`] records.
/// Version 1 (files made before signed changes) is still read.
pub const MANIFEST_VERSION: u16 = 2;

/// The manifest: what is inside, and how to check it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Manifest version (1).
    pub version: u16,
    /// The store's display name (a restore on a new machine needs it).
    pub store_name: String,
    /// One entry per record, in record order.
    pub entries: Vec<Entry>,
}

impl Manifest {
    /// How many documents the file holds (the proofs records that follow
    /// documents are not counted).
    pub fn docs(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| e.form != Form::Proofs)
            .count()
    }
}

/// A file's contents before encoding, or after opening.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contents {
    /// The manifest.
    pub manifest: Manifest,
    /// The records, in manifest order.
    pub records: Vec<Vec<u8>>,
}

/// A file being made: add records, then [`Writer::finish`]. Until then nothing
/// exists anywhere; dropping the writer leaves nothing behind.
#[derive(Debug)]
pub struct Writer {
    kind: Kind,
    store: StoreId,
    manifest: Manifest,
    records: Vec<Vec<u8>>,
    level: i32,
}

/// The zstd level of a file unless told otherwise (the store's
/// `backup/zstd_level` default).
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;

impl Writer {
    /// Start a file of `kind` for `store`.
    pub fn new(kind: Kind, store: StoreId, store_name: &str) -> Writer {
        Writer {
            kind,
            store,
            manifest: Manifest {
                version: MANIFEST_VERSION,
                store_name: store_name.to_string(),
                entries: Vec::new(),
            },
            records: Vec::new(),
            level: DEFAULT_ZSTD_LEVEL,
        }
    }

    /// Compress at zstd `level` (1 fastest … 19 smallest; any level reads
    /// the same).
    pub fn with_level(mut self, level: i32) -> Writer {
        self.level = level.clamp(1, 19);
        self
    }

    /// Add document `doc` with its `heads` and `record` in `form`.
    pub fn add(&mut self, doc: &str, heads: Vec<[u8; 32]>, form: Form, record: Vec<u8>) {
        self.manifest.entries.push(Entry {
            doc: doc.to_string(),
            heads,
            form,
            len: record.len() as u64,
            hash: *blake3::hash(&record).as_bytes(),
        });
        self.records.push(record);
    }

    /// How many documents were added (their proofs are not counted).
    pub fn len(&self) -> usize {
        self.manifest.docs()
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Compress, encrypt to the store key `key` alone and sign with `till`: the
    /// complete file. Backups go through [`Writer::finish_for`] with every
    /// recipient the store names (`archive::recipients`).
    pub fn finish(
        self,
        till: &TillKey,
        key: &StoreSecret,
        created_ms: u64,
    ) -> Result<Vec<u8>, FormatError> {
        self.finish_for(till, &Recipients::new(key)?, created_ms)
    }

    /// Compress, encrypt to `recipient` alone (all a writer needs: the public
    /// half) and sign with `till`.
    pub fn finish_to(
        self,
        till: &TillKey,
        recipient: &age::x25519::Recipient,
        created_ms: u64,
    ) -> Result<Vec<u8>, FormatError> {
        self.finish_for(till, &Recipients::to(recipient.clone()), created_ms)
    }

    /// Compress, encrypt to every one of `recipients` and sign with `till`. The
    /// header names the first, the store key.
    pub fn finish_for(
        self,
        till: &TillKey,
        recipients: &Recipients,
        created_ms: u64,
    ) -> Result<Vec<u8>, FormatError> {
        let manifest =
            postcard::to_stdvec(&self.manifest).map_err(|e| FormatError::Encode(e.to_string()))?;
        let payload =
            4 + manifest.len() as u64 + self.records.iter().map(|r| r.len() as u64).sum::<u64>();
        if payload > MAX_PAYLOAD {
            return Err(FormatError::TooLarge {
                what: "payload",
                len: payload,
                max: MAX_PAYLOAD,
            });
        }
        let mut plain = Vec::new();
        plain.extend_from_slice(&(manifest.len() as u32).to_le_bytes());
        plain.extend_from_slice(&manifest);
        for r in &self.records {
            plain.extend_from_slice(r);
        }
        let compressed = zstd::encode_all(plain.as_slice(), self.level)
            .map_err(|e| FormatError::Encode(e.to_string()))?;
        drop(plain);
        let encryptor =
            age::Encryptor::with_recipients(recipients.all().map(|r| r as &dyn age::Recipient))
                .map_err(|e| FormatError::Encode(e.to_string()))?;
        let mut body = Vec::with_capacity(compressed.len() + 256);
        let mut w = encryptor
            .wrap_output(&mut body)
            .map_err(|e| FormatError::Encode(e.to_string()))?;
        w.write_all(&compressed)
            .map_err(|e| FormatError::Encode(e.to_string()))?;
        w.finish().map_err(|e| FormatError::Encode(e.to_string()))?;
        if body.len() as u64 > MAX_BODY {
            return Err(FormatError::TooLarge {
                what: "body",
                len: body.len() as u64,
                max: MAX_BODY,
            });
        }
        let header = Header {
            version: FORMAT_VERSION,
            kind: self.kind,
            store: self.store,
            creator: till.till_id(),
            created_ms,
            key_id: key_id_bytes(&crate::keys::key_id(&recipients.key))?,
            body_len: body.len() as u64,
        };
        let mut file = Vec::with_capacity(HEADER_LEN + body.len() + SIGNATURE_LEN);
        file.extend_from_slice(&header.encode());
        file.extend_from_slice(&body);
        let sig = till.sign(&signing_input(&file));
        file.extend_from_slice(&sig);
        Ok(file)
    }
}

/// Whom a file is encrypted to: the store key its header names, and any further
/// recipients (the store's recovery key). The holder of any one of their
/// identities can open the file; the header names only the store key, so adding
/// recipients changes neither the header nor the format version.
#[derive(Debug, Clone)]
pub struct Recipients {
    key: age::x25519::Recipient,
    also: Vec<age::x25519::Recipient>,
}

impl Recipients {
    /// The public half of the store key `key`, alone.
    pub fn new(key: &StoreSecret) -> Result<Recipients, FormatError> {
        let identity: age::x25519::Identity = key
            .identity
            .parse()
            .map_err(|_| FormatError::BadKey(key.key_id.clone()))?;
        Ok(Recipients::to(identity.to_public()))
    }

    /// The store key `key` (its public half), alone.
    pub fn to(key: age::x25519::Recipient) -> Recipients {
        Recipients {
            key,
            also: Vec::new(),
        }
    }

    /// Encrypt to `recipient` as well (once, however often it is added).
    pub fn and(mut self, recipient: age::x25519::Recipient) -> Recipients {
        if recipient != self.key && !self.also.contains(&recipient) {
            self.also.push(recipient);
        }
        self
    }

    /// The id of the store key, as the header names it.
    pub fn key_id(&self) -> String {
        crate::keys::key_id(&self.key)
    }

    /// How many recipients in all.
    pub fn len(&self) -> usize {
        1 + self.also.len()
    }

    /// Never true: there is always the store key.
    pub fn is_empty(&self) -> bool {
        false
    }

    fn all(&self) -> impl Iterator<Item = &age::x25519::Recipient> {
        std::iter::once(&self.key).chain(&self.also)
    }
}

pub(crate) fn signing_input(signed: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(SIGNING_DOMAIN.len() + signed.len());
    m.extend_from_slice(SIGNING_DOMAIN);
    m.extend_from_slice(signed);
    m
}

/// The 8 bytes of a key id written as 16 hex digits.
pub fn key_id_bytes(hex_id: &str) -> Result<[u8; 8], FormatError> {
    let v = hex::decode(hex_id).map_err(|_| FormatError::BadKey(hex_id.to_string()))?;
    v.try_into()
        .map_err(|_| FormatError::BadKey(hex_id.to_string()))
}

/// Check a file of `size` bytes against its `header` before reading it: the
/// body the header announces is within [`MAX_BODY`], and the file is exactly
/// header, body and signature long.
pub fn check_size(header: &Header, size: u64) -> Result<(), FormatError> {
    if header.body_len > MAX_BODY {
        return Err(FormatError::TooLarge {
            what: "body",
            len: header.body_len,
            max: MAX_BODY,
        });
    }
    let want = HEADER_LEN as u64 + header.body_len + SIGNATURE_LEN as u64;
    if size < want {
        return Err(FormatError::Truncated { have: size, want });
    }
    if size > want {
        return Err(FormatError::TrailingBytes);
    }
    Ok(())
}

/// Check a whole file's header, length and signature, without decrypting it.
/// `is_member` decides whether the signer may write for the store.
pub fn check(
    bytes: &[u8],
    store: StoreId,
    is_member: impl Fn(&TillId) -> bool,
) -> Result<Header, FormatError> {
    let header = Header::decode(bytes)?;
    if header.store != store {
        return Err(FormatError::OtherStore(header.store));
    }
    check_size(&header, bytes.len() as u64)?;
    let split = bytes.len() - SIGNATURE_LEN;
    let mut sig = [0u8; SIGNATURE_LEN];
    sig.copy_from_slice(&bytes[split..]);
    if !tillmesh_store::verify(&header.creator, &signing_input(&bytes[..split]), &sig) {
        return Err(FormatError::BadSignature);
    }
    if !is_member(&header.creator) {
        return Err(FormatError::NotMember(header.creator));
    }
    check_time(&header)?;
    Ok(header)
}

/// A file may be dated at most this far ahead of this till's clock (the
/// store's default clock bound): one dated later would sort after every honest
/// file and steer restore and retention.
pub const FUTURE_SLACK_MS: u64 = 5 * 60 * 1000;

/// Refuse a header dated more than [`FUTURE_SLACK_MS`] ahead of this till's
/// clock.
pub fn check_time(header: &Header) -> Result<(), FormatError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    if header.created_ms > now.saturating_add(FUTURE_SLACK_MS) {
        return Err(FormatError::FromTheFuture {
            created_ms: header.created_ms,
            now_ms: now,
        });
    }
    Ok(())
}

/// Open a whole file: [`check`] it, decrypt with the key of `keys` its header
/// names, decompress and check every record's hash. When the named key is not
/// among `keys`, every other one is tried: a file is also encrypted to the
/// store's recovery key, which opens files of every backup key. If none opens
/// it, [`FormatError::UnknownKey`] names the key the header names.
pub fn open(
    bytes: &[u8],
    store: StoreId,
    keys: &[StoreSecret],
    is_member: impl Fn(&TillId) -> bool,
) -> Result<(Header, Contents), FormatError> {
    let header = check(bytes, store, is_member)?;
    let named = keys
        .iter()
        .find(|k| key_id_bytes(&k.key_id).is_ok_and(|id| id == header.key_id));
    let identities: Vec<age::x25519::Identity> = match named {
        Some(key) => vec![
            key.identity
                .parse()
                .map_err(|_| FormatError::BadKey(key.key_id.clone()))?,
        ],
        // A malformed key cannot be the one that opens the file: pass it over.
        None => keys
            .iter()
            .filter_map(|k| k.identity.parse().ok())
            .collect(),
    };
    let unknown = || FormatError::UnknownKey(header.key_id_hex());
    if identities.is_empty() {
        return Err(unknown());
    }
    let body = &bytes[HEADER_LEN..bytes.len() - SIGNATURE_LEN];
    let decryptor =
        age::Decryptor::new_buffered(body).map_err(|e| FormatError::Decrypt(e.to_string()))?;
    let mut reader = decryptor
        .decrypt(identities.iter().map(|i| i as &dyn age::Identity))
        .map_err(|e| match e {
            age::DecryptError::NoMatchingKeys if named.is_none() => unknown(),
            other => FormatError::Decrypt(other.to_string()),
        })?;
    let mut compressed = Vec::new();
    reader
        .read_to_end(&mut compressed)
        .map_err(|e| FormatError::Decrypt(e.to_string()))?;
    let contents = decode_plain(&compressed)?;
    Ok((header, contents))
}

/// Decompress and split the plaintext: manifest, then records, each checked.
pub fn decode_plain(compressed: &[u8]) -> Result<Contents, FormatError> {
    let mut plain = Vec::new();
    zstd::Decoder::new(compressed)
        .map_err(|e| FormatError::Damaged(format!("compression: {e}")))?
        .take(MAX_PAYLOAD + 1)
        .read_to_end(&mut plain)
        .map_err(|e| FormatError::Damaged(format!("compression: {e}")))?;
    if plain.len() as u64 > MAX_PAYLOAD {
        return Err(FormatError::TooLarge {
            what: "payload",
            len: plain.len() as u64,
            max: MAX_PAYLOAD,
        });
    }
    if plain.len() < 4 {
        return Err(FormatError::Damaged("no manifest".into()));
    }
    let mlen = u32::from_le_bytes([plain[0], plain[1], plain[2], plain[3]]) as usize;
    let rest = &plain[4..];
    if mlen > rest.len() {
        return Err(FormatError::Damaged(
            "the manifest runs past the end".into(),
        ));
    }
    let manifest: Manifest = postcard::from_bytes(&rest[..mlen])
        .map_err(|e| FormatError::Damaged(format!("manifest: {e}")))?;
    if manifest.version == 0 || manifest.version > MANIFEST_VERSION {
        return Err(FormatError::NewerVersion(manifest.version));
    }
    let mut at = mlen;
    let mut records = Vec::with_capacity(manifest.entries.len());
    for e in &manifest.entries {
        let end = usize::try_from(e.len)
            .ok()
            .and_then(|l| at.checked_add(l))
            .filter(|end| *end <= rest.len())
            .ok_or_else(|| FormatError::Damaged(format!("record {} runs past the end", e.doc)))?;
        let record = &rest[at..end];
        if blake3::hash(record).as_bytes() != &e.hash {
            return Err(FormatError::HashMismatch(e.doc.clone()));
        }
        records.push(record.to_vec());
        at = end;
    }
    if at != rest.len() {
        return Err(FormatError::Damaged("bytes after the last record".into()));
    }
    Ok(Contents { manifest, records })
}

/// A file that cannot be made or opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// Not a Tillmesh backup file at all.
    #[error("not a Tillmesh backup file")]
    NotBackup,
    /// Shorter than its header says: cut off while copying or writing.
    #[error("the file is truncated: {have} bytes of {want}")]
    Truncated {
        /// Bytes present.
        have: u64,
        /// Bytes the header promises.
        want: u64,
    },
    /// Longer than its header says.
    #[error("the file has bytes after its signature")]
    TrailingBytes,
    /// Larger than a till reads (or writes).
    #[error("the file's {what} is {len} bytes, over the {max}-byte limit; refused")]
    TooLarge {
        /// What is too large: its `body` or decompressed `payload`.
        what: &'static str,
        /// Its length in bytes.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// Written by a newer Tillmesh.
    #[error("format version {0} is newer than this Tillmesh reads; upgrade Tillmesh")]
    NewerVersion(u16),
    /// A kind this build does not know.
    #[error("unknown file kind {0}")]
    UnknownKind(u8),
    /// Belongs to another store.
    #[error("the file belongs to another store ({0})")]
    OtherStore(StoreId),
    /// The signature does not match: altered or damaged.
    #[error("the signature does not match: the file was altered or damaged")]
    BadSignature,
    /// Signed by a till that is not a member of the store.
    #[error("the file is signed by {0}, which is not a member of this store; refused")]
    NotMember(TillId),
    /// Dated ahead of this till's clock by more than [`FUTURE_SLACK_MS`].
    #[error(
        "the file is dated {} s ahead of this till's clock; refused (a wrong clock on the till that wrote it, or a forged date)",
        created_ms.saturating_sub(*now_ms) / 1000
    )]
    FromTheFuture {
        /// The header's time (unix ms).
        created_ms: u64,
        /// This till's clock when it read it.
        now_ms: u64,
    },
    /// Encrypted to a key this till does not hold.
    #[error(
        "the file is encrypted to store key {0}, which this till does not hold (rotated away, or from before this till joined)"
    )]
    UnknownKey(String),
    /// A store key is malformed.
    #[error("store key {0} is malformed")]
    BadKey(String),
    /// Decryption failed.
    #[error("cannot decrypt: {0}")]
    Decrypt(String),
    /// The contents are damaged.
    #[error("the contents are damaged: {0}")]
    Damaged(String),
    /// A record does not match its hash.
    #[error("document {0} does not match its hash in the manifest")]
    HashMismatch(String),
    /// Encoding failed.
    #[error("cannot write the file: {0}")]
    Encode(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys;

    fn file(till: &TillKey, store: StoreId, to: &Recipients) -> Vec<u8> {
        let mut w = Writer::new(Kind::Snapshot, store, "Corner Shop");
        w.add("catalog", vec![[7; 32]], Form::Saved, b"tea".to_vec());
        w.finish_for(till, to, 1_700_000_000_000).expect("file")
    }

    fn recipient(s: &StoreSecret) -> age::x25519::Recipient {
        keys::parse_recipient(&keys::recipient_of(s).expect("recipient")).expect("parses")
    }

    #[test]
    fn the_recovery_key_alone_opens_a_file_of_a_rotated_key() {
        let (till, store) = (TillKey::generate(), StoreId::random());
        let (k1, recovery) = (keys::generate(1), keys::generate(2));
        let to = Recipients::new(&k1).expect("k1").and(recipient(&recovery));
        assert_eq!(to.len(), 2);
        let bytes = file(&till, store, &to);
        let header = Header::decode(&bytes).expect("header");
        assert_eq!(
            header.key_id_hex(),
            k1.key_id,
            "the header names the store key"
        );
        assert_eq!(header.version, FORMAT_VERSION);

        let (_, c) = open(&bytes, store, std::slice::from_ref(&recovery), |_| true)
            .expect("the recovery key opens it");
        assert_eq!(c.records, vec![b"tea".to_vec()]);
        open(&bytes, store, std::slice::from_ref(&k1), |_| true).expect("so does k1");
        // A later key and the recovery key, as a restored till holds them.
        let k2 = keys::generate(3);
        open(&bytes, store, &[k2, recovery], |_| true).expect("tried in turn");
    }

    #[test]
    fn a_file_without_the_recovery_key_names_the_key_it_lacks() {
        let (till, store) = (TillKey::generate(), StoreId::random());
        let (k1, recovery) = (keys::generate(1), keys::generate(2));
        let bytes = file(&till, store, &Recipients::new(&k1).expect("k1"));
        match open(&bytes, store, &[recovery, keys::generate(3)], |_| true) {
            Err(FormatError::UnknownKey(id)) => assert_eq!(id, k1.key_id),
            other => panic!("want UnknownKey, got {other:?}"),
        }
        match open(&bytes, store, &[], |_| true) {
            Err(FormatError::UnknownKey(id)) => assert_eq!(id, k1.key_id),
            other => panic!("want UnknownKey, got {other:?}"),
        }
    }

    #[test]
    fn a_recipient_is_added_once() {
        let (k1, r) = (keys::generate(1), keys::generate(2));
        let to = Recipients::new(&k1)
            .expect("k1")
            .and(recipient(&r))
            .and(recipient(&r))
            .and(recipient(&k1));
        assert_eq!(to.len(), 2);
        assert_eq!(to.key_id(), k1.key_id);
    }
}
