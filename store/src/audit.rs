//! The audit chain: each till appends hash-chained entries signed with its key to
//! its own `audit/<till>/<month>` documents, in the same transaction as the action
//! they record (price changes, voids, refunds, stock adjustments and counts,
//! conflict decisions). Any till can verify every chain it holds, because a till's
//! id is its public key.

use std::collections::{BTreeMap, BTreeSet};

use automerge::ReadDoc;
use serde::{Deserialize, Serialize};

use crate::error::StorageError;
use crate::hlc::Hlc;
use crate::ids::{Day, DocId, TillId};
use crate::keys;
use crate::model::ENTRY_VERSION;
use crate::store::Store;
use crate::views::read_entry;
use crate::writer::Writer;

/// One audit entry.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Entry format version.
    #[serde(rename = "v")]
    pub version: u32,
    /// Position in the till's chain, from 1.
    pub seq: u64,
    /// Hash of the previous entry (hex; zeros for the first).
    pub prev: String,
    /// When.
    pub hlc: Hlc,
    /// What happened: `price`, `void`, `refund`, `stock-adjust`, `stock-count`,
    /// `conflict`, `conflict-resolve`, `product-add`, `product-edit`, `init`.
    pub kind: String,
    /// What it happened to: a SKU, a receipt, a field key.
    pub subject: String,
    /// Details, by kind.
    pub detail: serde_json::Value,
    /// BLAKE3 hash of the fields above (hex).
    pub hash: String,
    /// The till's ed25519 signature of the hash (hex).
    pub sig: String,
}

#[derive(Serialize)]
struct Body<'a> {
    v: u32,
    seq: u64,
    prev: &'a str,
    hlc: Hlc,
    kind: &'a str,
    subject: &'a str,
    detail: &'a serde_json::Value,
}

fn body_hash(e: &AuditEntry) -> [u8; 32] {
    let body = Body {
        v: e.version,
        seq: e.seq,
        prev: &e.prev,
        hlc: e.hlc,
        kind: &e.kind,
        subject: &e.subject,
        detail: &e.detail,
    };
    // Serialising this fixed struct (serde_json maps are sorted) is canonical.
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    let mut h = blake3::Hasher::new_derive_key("tillmesh audit entry v1");
    h.update(&bytes);
    *h.finalize().as_bytes()
}

/// What `verify` found for one till's chain.
#[derive(Clone, PartialEq, Debug, Serialize)]
pub struct ChainReport {
    /// The till.
    #[serde(with = "crate::model::till_hex")]
    pub till: TillId,
    /// Entries held (each sequence number once, however many versions it has).
    pub entries: u64,
    /// What is wrong, in words, one line per problem (the same as `problems`).
    pub broken: Vec<String>,
    /// What is wrong, each naming the entry's sequence number.
    pub problems: Vec<AuditProblem>,
    /// Sequence numbers not (yet) held: entries that have not arrived.
    pub missing: Vec<u64>,
}

impl ChainReport {
    /// Whether every entry held is intact and none was removed or forked.
    pub fn intact(&self) -> bool {
        self.problems.is_empty()
    }
}

/// One entry of a chain that failed verification.
#[derive(Clone, PartialEq, Eq, Debug, Serialize)]
pub struct AuditProblem {
    /// The entry's sequence number in its till's chain.
    pub seq: u64,
    /// What is wrong with it.
    pub kind: AuditProblemKind,
    /// The same in words, for people.
    pub text: String,
}

/// What is wrong with an audit entry.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum AuditProblemKind {
    /// Its hash does not match its content.
    Altered,
    /// Its signature is not its till's.
    Unsigned,
    /// It does not link to the entry before it.
    Unlinked,
    /// It was held and then deleted, or is absent from between entries of the
    /// same document.
    Removed,
    /// The till's chain holds two different entries at this place.
    Forked,
    /// It was replaced after it was written.
    Rewritten,
    /// Its value does not read as an audit entry.
    Unreadable,
}

impl ChainReport {
    fn problem(&mut self, seq: u64, kind: AuditProblemKind, text: String) {
        self.broken.push(text.clone());
        self.problems.push(AuditProblem { seq, kind, text });
    }
}

/// What one till's audit documents hold, with what their history says.
#[derive(Default)]
struct Held {
    /// Every distinct entry at each sequence number: more than one is a fork.
    at: BTreeMap<u64, Vec<AuditEntry>>,
    /// Keys written and later deleted, now without a value.
    deleted: BTreeSet<u64>,
    /// Keys written again after they were written (one value now, more puts).
    rewritten: BTreeSet<u64>,
    /// Keys whose value does not read as an entry.
    unreadable: BTreeSet<u64>,
    /// Each document's lowest and highest sequence number held.
    spans: Vec<(u64, u64)>,
}

impl Held {
    /// Take in one audit document of the till.
    fn add_doc(&mut self, doc: &automerge::Automerge, id: &DocId) {
        use automerge::legacy::{Key, ObjectId, OpType};
        // What the history wrote at each key: the product puts each key once
        // and never deletes one.
        let mut puts: BTreeMap<String, usize> = BTreeMap::new();
        for change in doc.get_changes(&[]) {
            for op in change.decode().operations {
                if let (ObjectId::Root, Key::Map(k)) = (&op.obj, &op.key) {
                    let n = puts.entry(k.to_string()).or_default();
                    if !matches!(op.action, OpType::Delete) {
                        *n += 1;
                    }
                }
            }
        }
        let mut span: Option<(u64, u64)> = None;
        for (key, n_puts) in puts {
            let Ok(seq) = key.parse::<u64>() else {
                tracing::warn!(doc = %id, key, "audit document key is not a sequence number");
                continue;
            };
            let values = doc
                .get_all(automerge::ROOT, key.as_str())
                .unwrap_or_default();
            if values.is_empty() {
                self.deleted.insert(seq);
                continue;
            }
            if n_puts > values.len() {
                self.rewritten.insert(seq);
            }
            span = Some(span.map_or((seq, seq), |(lo, hi)| (lo.min(seq), hi.max(seq))));
            for (value, _) in values {
                match entry_of(&value) {
                    Some(Some(e)) => {
                        let list = self.at.entry(seq).or_default();
                        if !list.contains(&e) {
                            list.push(e);
                        }
                    }
                    // Written by a newer tillmesh: held, not judged.
                    Some(None) => {
                        self.at.entry(seq).or_default();
                    }
                    None => {
                        self.unreadable.insert(seq);
                    }
                }
            }
        }
        self.spans.extend(span);
    }

    /// Whether `seq`, absent, lies between entries of one document: a till's
    /// changes to a document arrive in the order it made them, so that gap is
    /// not one of arrival.
    fn inside_a_document(&self, seq: u64) -> bool {
        self.spans.iter().any(|(lo, hi)| *lo < seq && seq < *hi)
    }
}

/// An audit entry from a value: `None` when it does not read, `Some(None)` when
/// a newer tillmesh wrote it.
fn entry_of(value: &automerge::Value<'_>) -> Option<Option<AuditEntry>> {
    let automerge::Value::Scalar(s) = value else {
        return None;
    };
    let automerge::ScalarValue::Str(text) = s.as_ref() else {
        return None;
    };
    #[derive(Deserialize)]
    struct Version {
        #[serde(default)]
        v: u64,
    }
    let peek: Version = serde_json::from_str(text).ok()?;
    if peek.v > u64::from(ENTRY_VERSION) {
        return Some(None);
    }
    serde_json::from_str(text).ok().map(Some)
}

impl Writer<'_> {
    /// Append an entry to this till's audit chain, in this write.
    pub(crate) fn audit(
        &mut self,
        kind: &str,
        subject: &str,
        detail: serde_json::Value,
    ) -> Result<(), StorageError> {
        // The month comes from the wall clock, not the HLC (see sales).
        let now = self.s.opts.clock.now_ms();
        let hlc = self.s.hlc.tick(now);
        let mut e = AuditEntry {
            version: ENTRY_VERSION,
            seq: self.audit_head.seq + 1,
            prev: hex::encode(self.audit_head.hash),
            hlc,
            kind: kind.to_string(),
            subject: subject.to_string(),
            detail,
            hash: String::new(),
            sig: String::new(),
        };
        let hash = body_hash(&e);
        e.hash = hex::encode(hash);
        e.sig = hex::encode(self.s.key.sign(&hash));
        let doc = DocId::Audit(self.s.till, Day::from_unix_ms(now).month());
        self.put_entry(doc, &format!("{:012}", e.seq), &e, hlc)?;
        self.audit_head.seq = e.seq;
        self.audit_head.hash = hash;
        Ok(())
    }
}

impl Store {
    /// The audit entries this till holds, by till and sequence number.
    pub fn audit_entries(
        &mut self,
        till: Option<TillId>,
    ) -> Result<BTreeMap<TillId, Vec<AuditEntry>>, StorageError> {
        let mut ids: Vec<DocId> = self
            .doc_ids()?
            .into_iter()
            .filter(|d| matches!(d, DocId::Audit(t, _) if till.is_none_or(|x| x == *t)))
            .collect();
        ids.sort();
        let mut out: BTreeMap<TillId, Vec<AuditEntry>> = BTreeMap::new();
        for id in ids {
            let DocId::Audit(t, _) = id else { continue };
            let doc = self.load_doc(&id)?;
            let list = out.entry(t).or_default();
            for key in doc.keys(automerge::ROOT) {
                if let Some(e) = read_entry::<AuditEntry>(&doc, &id, &key) {
                    list.push(e);
                }
            }
        }
        for list in out.values_mut() {
            list.sort_by_key(|e| e.seq);
        }
        Ok(out)
    }

    /// Check every audit chain this till holds: hashes, signatures and links,
    /// entries removed or rewritten, and forks (two entries at one place of a
    /// chain). See docs/SECURITY.md for how a removed entry is told from one
    /// that has not arrived.
    pub fn verify_audit(&mut self) -> Result<Vec<ChainReport>, StorageError> {
        let mut ids: Vec<DocId> = self
            .doc_ids()?
            .into_iter()
            .filter(|d| matches!(d, DocId::Audit(..)))
            .collect();
        ids.sort();
        let mut held: BTreeMap<TillId, Held> = BTreeMap::new();
        for id in ids {
            let DocId::Audit(t, _) = id else { continue };
            let doc = self.load_doc(&id)?;
            held.entry(t).or_default().add_doc(&doc, &id);
        }
        Ok(held
            .into_iter()
            .map(|(till, h)| verify_chain(till, &h))
            .collect())
    }
}

fn verify_chain(till: TillId, held: &Held) -> ChainReport {
    use AuditProblemKind::*;
    let mut report = ChainReport {
        till,
        entries: held.at.len() as u64,
        broken: Vec::new(),
        problems: Vec::new(),
        missing: Vec::new(),
    };
    let mut expected_seq = 1u64;
    // The hashes the next entry may link to (several after a fork); none after
    // a gap, where the link cannot be checked.
    let mut prev: Vec<String> = vec![hex::encode([0u8; 32])];
    for (&seq, versions) in &held.at {
        for gap in expected_seq..seq {
            if held.deleted.contains(&gap) {
                report.problem(
                    gap,
                    Removed,
                    format!("entry {gap} was removed (deleted after it was written)"),
                );
            } else if held.inside_a_document(gap) {
                report.problem(gap, Removed, format!("entry {gap} was removed (absent between entries {} and {seq} of one document)", gap - 1));
            } else {
                report.missing.push(gap);
            }
        }
        if seq > expected_seq {
            prev.clear();
        }
        if held.unreadable.contains(&seq) {
            report.problem(
                seq,
                Unreadable,
                format!("entry {seq} does not read as an audit entry"),
            );
        }
        if held.rewritten.contains(&seq) {
            report.problem(
                seq,
                Rewritten,
                format!("entry {seq} was rewritten after it was written"),
            );
        }
        if versions.len() > 1 {
            let hashes: Vec<&str> = versions
                .iter()
                .map(|e| e.hash.get(..12).unwrap_or(&e.hash))
                .collect();
            report.problem(
                seq,
                Forked,
                format!(
                    "entry {seq} is forked: {} different entries at this place (hashes {})",
                    versions.len(),
                    hashes.join(", ")
                ),
            );
        }
        for e in versions {
            let hash = body_hash(e);
            if e.seq != seq {
                report.problem(
                    seq,
                    Altered,
                    format!("entry {seq} was altered (it names itself entry {})", e.seq),
                );
            } else if hex::encode(hash) != e.hash {
                report.problem(
                    seq,
                    Altered,
                    format!("entry {seq} was altered (hash mismatch)"),
                );
            } else {
                let mut sig = [0u8; 64];
                let sig_ok = hex::decode_to_slice(&e.sig, &mut sig).is_ok()
                    && keys::verify(&till, &hash, &sig);
                if !sig_ok {
                    report.problem(
                        seq,
                        Unsigned,
                        format!("entry {seq} is not signed by its till"),
                    );
                }
            }
            if !prev.is_empty() && !prev.contains(&e.prev) {
                report.problem(
                    seq,
                    Unlinked,
                    format!("entry {seq} does not follow entry {}", seq - 1),
                );
            }
        }
        prev = versions.iter().map(|e| e.hash.clone()).collect();
        expected_seq = seq + 1;
    }
    report
}
