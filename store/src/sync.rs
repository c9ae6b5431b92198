//! What the mesh needs from a store to sync it with a peer: a manifest of every
//! document's heads, summarised as 256 bucket digests so two tills holding tens of
//! thousands of documents find the few that differ by exchanging a few kilobytes;
//! the Automerge sync protocol per document, with its state persisted per peer so
//! an interrupted catch-up resumes; and the outbox of local changes to gossip.
//!
//! A bucket's digest is the XOR of BLAKE3(document id, heads) over its documents,
//! so a commit updates it in O(1): XOR out the old value, XOR in the new.

use std::collections::BTreeSet;

use automerge::sync::{self, SyncDoc};
use automerge::{Automerge, Change, ChangeHash};
use redb::{ReadableDatabase, ReadableTable, WriteTransaction};

use crate::error::{ApplyError, StorageError, damaged};
use crate::ids::{DocId, TillId};
use crate::proofs::Proof;
use crate::store::{Store, actor_till};
use crate::tables;

/// First byte of a sync message that carries proofs of authorship: then a
/// 4-byte little-endian length, the encoded proofs, the Automerge sync message.
/// (An Automerge sync message itself starts with 0x42 or 0x43.)
pub const ENVELOPE: u8 = 0x50;

/// Number of manifest buckets.
pub const BUCKETS: usize = 256;

/// A document with its heads.
pub type DocHeads = (DocId, Vec<ChangeHash>);

/// The bucket digests of a store's manifest.
pub type BucketDigests = Vec<[u8; 32]>;

/// Which bucket a document falls in.
pub fn bucket_of(doc: &DocId) -> u8 {
    blake3::hash(doc.to_string().as_bytes()).as_bytes()[0]
}

fn doc_digest(doc: &DocId, heads: &[ChangeHash]) -> [u8; 32] {
    let mut sorted: Vec<&ChangeHash> = heads.iter().collect();
    sorted.sort();
    let mut h = blake3::Hasher::new_derive_key("tillmesh manifest entry v1");
    h.update(doc.to_string().as_bytes());
    for head in sorted {
        h.update(&head.0);
    }
    *h.finalize().as_bytes()
}

fn encode_heads(heads: &[ChangeHash]) -> String {
    heads
        .iter()
        .map(|h| h.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn decode_heads(doc: &DocId, s: &str) -> Result<Vec<ChangeHash>, StorageError> {
    if s.is_empty() {
        return Ok(Vec::new());
    }
    s.split(',')
        .map(|h| {
            h.parse()
                .map_err(|e| damaged(doc, format!("stored heads: {e}")))
        })
        .collect()
}

/// Record a document's new heads and move its bucket digest (in a write).
pub(crate) fn record_heads(
    txn: &WriteTransaction,
    doc: &DocId,
    heads: &[ChangeHash],
) -> Result<(), StorageError> {
    let key = doc.to_string();
    let mut table = txn.open_table(tables::DOC_HEADS)?;
    let old = match table.get(key.as_str())? {
        Some(v) => Some(decode_heads(doc, v.value())?),
        None => None,
    };
    table.insert(key.as_str(), encode_heads(heads).as_str())?;
    let b = bucket_of(doc);
    let mut buckets = txn.open_table(tables::BUCKETS)?;
    let mut digest = [0u8; 32];
    if let Some(v) = buckets.get(b)? {
        digest.copy_from_slice(v.value());
    }
    let xor = |d: &mut [u8; 32], x: [u8; 32]| d.iter_mut().zip(x).for_each(|(a, b)| *a ^= b);
    if let Some(old) = old {
        xor(&mut digest, doc_digest(doc, &old));
    }
    xor(&mut digest, doc_digest(doc, heads));
    buckets.insert(b, digest.as_slice())?;
    Ok(())
}

/// Automerge's storage chunk magic bytes.
const CHUNK_MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
/// Chunk type of a whole document.
const CHUNK_DOCUMENT: u8 = 0;

/// Split bytes holding one or more concatenated Automerge storage chunks (magic,
/// checksum, type, LEB128 length, body) into (type, chunk) pairs.
fn split_chunks(mut bytes: &[u8]) -> Result<Vec<(u8, &[u8])>, String> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        if bytes.len() < 9 || bytes[..4] != CHUNK_MAGIC {
            return Err("not an Automerge chunk".into());
        }
        let kind = bytes[8];
        let (mut len, mut shift, mut i) = (0u64, 0u32, 9usize);
        loop {
            let b = *bytes.get(i).ok_or("truncated chunk header")?;
            if shift > 56 {
                return Err("chunk length out of range".into());
            }
            len |= u64::from(b & 0x7f) << shift;
            shift += 7;
            i += 1;
            if b & 0x80 == 0 {
                break;
            }
        }
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| i.checked_add(l))
            .filter(|e| *e <= bytes.len())
            .ok_or("truncated chunk")?;
        out.push((kind, &bytes[..end]));
        bytes = &bytes[end..];
    }
    Ok(out)
}

/// Decode the chunks of a sync message into changes: each chunk holds one or more
/// changes, or a whole document the peer sends when this till has none of it.
fn message_changes(doc: &DocId, msg: &sync::Message) -> Result<Vec<Change>, ApplyError> {
    let mut out = Vec::new();
    for (index, chunk) in msg.changes.iter().enumerate() {
        let malformed = |reason: String| ApplyError::Malformed {
            doc: doc.to_string(),
            index,
            reason,
        };
        for (kind, part) in split_chunks(chunk).map_err(malformed)? {
            if kind == CHUNK_DOCUMENT {
                let whole =
                    Automerge::load(part).map_err(|e| malformed(format!("document: {e}")))?;
                out.extend(whole.get_changes(&[]));
            } else {
                out.push(Change::from_bytes(part.to_vec()).map_err(|e| malformed(e.to_string()))?);
            }
        }
    }
    Ok(out)
}

/// Refuse changes to a single-writer document that its owner did not write.
pub(crate) fn check_owner(doc: &DocId, changes: &[Change]) -> Result<(), ApplyError> {
    check_writers(doc, changes.iter().map(|c| c.actor_id()))
}

/// Like [`check_owner`], over the actors that wrote a document's changes.
pub(crate) fn check_writers<'a>(
    doc: &DocId,
    actors: impl IntoIterator<Item = &'a automerge::ActorId>,
) -> Result<(), ApplyError> {
    let Some(owner) = doc.owner() else {
        return Ok(());
    };
    for actor in actors {
        if actor_till(actor) != Some(owner) {
            let writer = actor_till(actor)
                .map(|t| t.fmt_short())
                .unwrap_or_else(|| "an unknown writer".into());
            tracing::warn!(doc = %doc, writer, "refused change to a document of another till");
            return Err(ApplyError::NotOwner {
                doc: doc.to_string(),
                writer,
            });
        }
    }
    Ok(())
}

impl Store {
    /// The 256 bucket digests of this till's manifest.
    pub fn manifest_buckets(&self) -> Result<BucketDigests, StorageError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(tables::BUCKETS)?;
        let mut out = vec![[0u8; 32]; BUCKETS];
        for row in t.iter()? {
            let (k, v) = row?;
            out[usize::from(k.value())].copy_from_slice(v.value());
        }
        Ok(out)
    }

    /// The 256 bucket digests together with the heads of this till's own
    /// documents (its sales, stock and audit), read at one instant: a peer whose
    /// digest for a bucket is the same holds exactly these heads of its documents.
    pub fn manifest_buckets_and_own(&self) -> Result<(BucketDigests, Vec<DocHeads>), StorageError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(tables::BUCKETS)?;
        let mut buckets = vec![[0u8; 32]; BUCKETS];
        for row in t.iter()? {
            let (k, v) = row?;
            buckets[usize::from(k.value())].copy_from_slice(v.value());
        }
        let heads = txn.open_table(tables::DOC_HEADS)?;
        let me = self.till_id();
        let mut own = Vec::new();
        for kind in ["audit", "sales", "stock"] {
            let (from, to) = (format!("{kind}/{me}/"), format!("{kind}/{me}0"));
            for row in heads.range(from.as_str()..to.as_str())? {
                let (k, v) = row?;
                if let Ok(doc) = k.value().parse::<DocId>() {
                    own.push((doc, decode_heads(&doc, v.value())?));
                }
            }
        }
        Ok((buckets, own))
    }

    /// Note that `peer` holds these heads of these documents (it showed the same
    /// heads in a session): what [`Store::unreplicated`] and
    /// [`Store::unsynced_sales`] count as held, written only where it moved.
    pub fn note_peer_holds(
        &mut self,
        peer: &TillId,
        docs: &[(DocId, Vec<ChangeHash>)],
    ) -> Result<(), StorageError> {
        let mut moved = Vec::new();
        for (doc, heads) in docs {
            let mut st = self.sync_state(peer, doc)?;
            let mut h = heads.clone();
            h.sort();
            let mut shared = st.shared_heads.clone();
            shared.sort();
            if h != shared {
                st.shared_heads = h;
                moved.push((*doc, st));
            }
        }
        if moved.is_empty() {
            return Ok(());
        }
        let refs: Vec<(DocId, &sync::State)> = moved.iter().map(|(d, s)| (*d, s)).collect();
        self.save_sync_states(peer, &refs)
    }

    /// The documents (with heads) of the given buckets.
    pub fn manifest(
        &self,
        buckets: &BTreeSet<u8>,
    ) -> Result<Vec<(DocId, Vec<ChangeHash>)>, StorageError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(tables::DOC_HEADS)?;
        let mut out = Vec::new();
        for row in t.iter()? {
            let (k, v) = row?;
            let Ok(doc) = k.value().parse::<DocId>() else {
                continue;
            };
            if buckets.contains(&bucket_of(&doc)) {
                out.push((doc, decode_heads(&doc, v.value())?));
            }
        }
        Ok(out)
    }

    /// The persisted sync state with `peer` for `doc` (fresh if none).
    pub fn sync_state(&self, peer: &TillId, doc: &DocId) -> Result<sync::State, StorageError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(tables::SYNC_STATES)?;
        Ok(match t.get(format!("{peer}\0{doc}").as_str())? {
            Some(v) => sync::State::decode(v.value()).unwrap_or_else(|e| {
                tracing::warn!(doc = %doc, peer = %peer.fmt_short(), error = %e, "sync state unreadable; starting afresh");
                sync::State::new()
            }),
            None => sync::State::new(),
        })
    }

    /// Persist sync states with `peer` so a later session resumes from them.
    pub fn save_sync_states(
        &mut self,
        peer: &TillId,
        states: &[(DocId, &sync::State)],
    ) -> Result<(), StorageError> {
        let txn = self.begin_write()?;
        {
            let mut t = txn.open_table(tables::SYNC_STATES)?;
            for (doc, state) in states {
                t.insert(format!("{peer}\0{doc}").as_str(), state.encode().as_slice())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// The next sync message for `doc` to a peer, if there is anything to say:
    /// an Automerge sync message, and when it carries changes, the proofs of
    /// authorship this till keeps for the document ([`ENVELOPE`]).
    pub fn sync_generate(
        &mut self,
        doc: &DocId,
        state: &mut sync::State,
    ) -> Result<Option<Vec<u8>>, StorageError> {
        let Some(msg) = self.doc(doc)?.generate_sync_message(state) else {
            return Ok(None);
        };
        let proofs = if msg.changes.is_empty() {
            Vec::new()
        } else {
            self.proofs(doc)?
        };
        let msg = msg.encode();
        let proofs = Proof::encode_list(&proofs);
        let mut out = Vec::with_capacity(5 + proofs.len() + msg.len());
        out.push(ENVELOPE);
        out.extend_from_slice(&(proofs.len() as u32).to_le_bytes());
        out.extend_from_slice(&proofs);
        out.extend_from_slice(&msg);
        Ok(Some(out))
    }

    /// Take in a peer's sync message for `doc`: its changes are checked and merged
    /// exactly like [`Store::apply_changes`], then the sync state moves on.
    pub fn sync_receive(
        &mut self,
        doc: &DocId,
        state: &mut sync::State,
        message: &[u8],
    ) -> Result<crate::ApplyReport, ApplyError> {
        let malformed = |reason: String| ApplyError::Malformed {
            doc: doc.to_string(),
            index: 0,
            reason,
        };
        let (proofs, message) = match message.split_first() {
            Some((&ENVELOPE, rest)) => {
                let len = rest
                    .get(..4)
                    .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
                    .filter(|l| *l <= rest.len() - 4)
                    .ok_or_else(|| malformed("truncated sync envelope".into()))?;
                let proofs =
                    Proof::decode_list(&rest[4..4 + len]).map_err(|e| malformed(e.to_string()))?;
                (proofs, &rest[4 + len..])
            }
            // A bare Automerge sync message: no proofs came with it.
            _ => (Vec::new(), message),
        };
        let msg =
            sync::Message::decode(message).map_err(|e| malformed(format!("sync message: {e}")))?;
        let changes = message_changes(doc, &msg)?;
        check_owner(doc, &changes)?;
        let report = if changes.is_empty() {
            crate::ApplyReport::default()
        } else {
            self.merge(doc, changes, &proofs)?
        };
        let bare = sync::Message {
            changes: sync::ChunkList::empty(),
            ..msg
        };
        self.doc(doc)?
            .receive_sync_message(state, bare)
            .map_err(|e| ApplyError::Refused {
                doc: doc.to_string(),
                reason: e.to_string(),
            })?;
        Ok(report)
    }

    /// Local changes committed since the last call, for gossip: (document, raw
    /// change, the proofs signed with it).
    pub fn take_outbox(&mut self) -> Vec<(DocId, Vec<u8>, Vec<Proof>)> {
        std::mem::take(&mut self.outbox)
    }
}

impl Store {
    /// Local changes that no peer in `peers` is known to hold (by the sync states
    /// of past sessions): the data a dead disk would lose now. Returns the count
    /// and the unix milliseconds of the oldest of them.
    pub fn unreplicated(&mut self, peers: &[TillId]) -> Result<(u64, Option<u64>), StorageError> {
        let u = self.unreplicated_since_backup(peers, None)?;
        Ok((u.count, u.oldest_ms))
    }

    /// [`Store::unreplicated`], and in the same pass how many of those
    /// changes were made after `backed_up_at` (unix ms; a backup taken then
    /// holds the ones before): what a lost disk would lose now.
    pub fn unreplicated_since_backup(
        &mut self,
        peers: &[TillId],
        backed_up_at: Option<u64>,
    ) -> Result<Unreplicated, StorageError> {
        let me = self.till_id();
        let own: Vec<DocId> = self
            .doc_ids()?
            .into_iter()
            .filter(|d| d.owner() == Some(me))
            .collect();
        let mut u = Unreplicated::default();
        for doc in own {
            let mut held: Vec<ChangeHash> = Vec::new();
            for p in peers {
                held.extend(self.sync_state(p, &doc)?.shared_heads);
            }
            let d = self.doc(&doc)?;
            for c in d.get_changes(&held) {
                if actor_till(c.actor_id()) != Some(me) {
                    continue;
                }
                let ms = (c.timestamp().max(0) as u64) * 1000;
                u.count += 1;
                u.oldest_ms = Some(u.oldest_ms.map_or(ms, |o| o.min(ms)));
                // Change times are whole seconds: one made in the second of
                // the backup may be after it.
                if backed_up_at.is_none_or(|at| ms + 1000 > at) {
                    u.unbacked += 1;
                }
            }
        }
        Ok(u)
    }
}

/// This till's own changes that no peer is known to hold
/// ([`Store::unreplicated_since_backup`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Unreplicated {
    /// How many.
    pub count: u64,
    /// When the oldest of them was made (unix ms).
    pub oldest_ms: Option<u64>,
    /// How many of them were made after the newest backup.
    pub unbacked: u64,
}
