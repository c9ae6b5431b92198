//! The audit chain: each till appends hash-chained entries signed with its key to
//! its own `audit/<till>/<month>` documents, in the same transaction as the action
//! they record (price changes, voids, refunds, stock adjustments and counts,
//! conflict decisions). Any till can verify every chain it holds, because a till's
//! id is its public key.

use std::collections::BTreeMap;

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
    /// Entries held.
    pub entries: u64,
    /// Entries whose hash, signature or link is wrong: tampering or damage.
    pub broken: Vec<String>,
    /// Sequence numbers not (yet) held: entries that have not arrived.
    pub missing: Vec<u64>,
}

impl ChainReport {
    /// Whether every entry held is intact.
    pub fn intact(&self) -> bool {
        self.broken.is_empty()
    }
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

    /// Check every audit chain this till holds: hashes, signatures and links.
    pub fn verify_audit(&mut self) -> Result<Vec<ChainReport>, StorageError> {
        let chains = self.audit_entries(None)?;
        Ok(chains
            .into_iter()
            .map(|(till, entries)| verify_chain(till, &entries))
            .collect())
    }
}

fn verify_chain(till: TillId, entries: &[AuditEntry]) -> ChainReport {
    let mut report = ChainReport {
        till,
        entries: entries.len() as u64,
        broken: Vec::new(),
        missing: Vec::new(),
    };
    let mut expected_seq = 1u64;
    let mut prev_hash: Option<String> = Some(hex::encode([0u8; 32]));
    for e in entries {
        if e.seq > expected_seq {
            report.missing.extend(expected_seq..e.seq);
            prev_hash = None;
        }
        let hash = body_hash(e);
        if hex::encode(hash) != e.hash {
            report
                .broken
                .push(format!("entry {} was altered (hash mismatch)", e.seq));
        } else {
            let mut sig = [0u8; 64];
            let sig_ok =
                hex::decode_to_slice(&e.sig, &mut sig).is_ok() && keys::verify(&till, &hash, &sig);
            if !sig_ok {
                report
                    .broken
                    .push(format!("entry {} is not signed by its till", e.seq));
            }
        }
        if let Some(p) = &prev_hash
            && *p != e.prev
        {
            report.broken.push(format!(
                "entry {} does not follow entry {}",
                e.seq,
                e.seq - 1
            ));
        }
        prev_hash = Some(e.hash.clone());
        expected_seq = e.seq + 1;
    }
    report
}
