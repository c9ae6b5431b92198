//! [`Writer`]: the one write path of a store.
//!
//! Local edits and changes from other tills both go through a `Writer`: it edits
//! the in-memory documents, derives the views from what changed (an Automerge diff
//! of the heads before and after), appends the new changes to `doc_changes`, and
//! commits all of it in one redb transaction with fsync. If anything fails before
//! the commit, the documents it touched are dropped from the cache, so memory never
//! runs ahead of the disk.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use automerge::transaction::{CommitOptions, Transactable, Transaction};
use automerge::{AutomergeError, Change, ChangeHash, ROOT, ReadDoc};
use redb::{ReadableTable, WriteTransaction};

use crate::error::{ApplyError, StorageError, damaged};
use crate::hlc::{ClockSkew, Hlc};
use crate::ids::{DocId, TillId};
use crate::model::{ENTRY_VERSION, FieldValue};
use crate::store::{AuditHead, Store};
use crate::tables::{self, DocState, meta};
use crate::views::StockState;

/// Local changes kept for gossip before the oldest are dropped.
const OUTBOX_LIMIT: usize = 10_000;

/// A set of changes that commit together.
pub(crate) struct Writer<'s> {
    pub(crate) s: &'s mut Store,
    pub(crate) txn: Option<WriteTransaction>,
    touched: Vec<DocId>,
    pub(crate) before: HashMap<DocId, Vec<ChangeHash>>,
    incoming: HashMap<DocId, Vec<Change>>,
    /// Documents whose views are re-derived from scratch; nothing of them is stored.
    rederived: HashSet<DocId>,
    /// Documents new to this till, kept in the saved form they came in.
    adopted: HashMap<DocId, Vec<u8>>,
    pub(crate) next_receipt: u64,
    pub(crate) audit_head: AuditHead,
    /// Timestamps seen in this write and whose they are, observed by the clock
    /// at commit.
    pub(crate) seen: Vec<(TillId, Hlc)>,
    /// Proofs that came with remote changes, kept at commit.
    pub(crate) proofs_in: Vec<(DocId, Vec<crate::proofs::Proof>)>,
    /// Conflicts logged by this write.
    pub(crate) conflicts_logged: usize,
    /// Stock states moved by this write, written to their view at commit.
    pub(crate) stock: BTreeMap<String, StockState>,
    /// Events this write raises, handed to the store at commit (when watched).
    pub(crate) events: Vec<crate::StoreEvent>,
    committed: bool,
}

impl Drop for Writer<'_> {
    fn drop(&mut self) {
        if !self.committed {
            // The transaction aborts when dropped; forget the edited documents so the
            // next use reloads them from disk. Documents left as they were stay.
            for id in &self.touched {
                let unchanged = self
                    .s
                    .docs
                    .get(id)
                    .is_some_and(|d| d.get_heads() == self.before[id]);
                if !unchanged || self.rederived.contains(id) {
                    self.s.docs.remove(id);
                }
            }
        }
    }
}

impl<'s> Writer<'s> {
    pub(crate) fn begin(s: &'s mut Store) -> Result<Self, StorageError> {
        let txn = s.begin_write()?;
        Ok(Self {
            next_receipt: s.next_receipt,
            audit_head: s.audit_head,
            s,
            txn: Some(txn),
            touched: Vec::new(),
            before: HashMap::new(),
            incoming: HashMap::new(),
            rederived: HashSet::new(),
            adopted: HashMap::new(),
            seen: Vec::new(),
            proofs_in: Vec::new(),
            conflicts_logged: 0,
            stock: BTreeMap::new(),
            events: Vec::new(),
            committed: false,
        })
    }

    pub(crate) fn txn(&self) -> &WriteTransaction {
        // Present from begin until commit consumes the writer.
        self.txn.as_ref().expect("transaction present until commit")
    }

    /// Load `id` for editing and remember its heads before this write.
    pub(crate) fn touch(&mut self, id: DocId) -> Result<&mut automerge::Automerge, StorageError> {
        if !self.before.contains_key(&id) {
            let heads = self.s.doc(&id)?.get_heads();
            self.before.insert(id, heads);
            self.touched.push(id);
        }
        self.s.doc(&id)
    }

    /// Make one local change to `id`.
    pub(crate) fn edit(
        &mut self,
        id: DocId,
        hlc: Hlc,
        f: impl FnOnce(&mut Transaction<'_>) -> Result<(), AutomergeError>,
    ) -> Result<(), StorageError> {
        let doc = self.touch(id)?;
        doc.transact_with(
            |_| CommitOptions::default().with_time((hlc.ms() / 1000) as i64),
            f,
        )
        .map_err(|fail| damaged(&id, fail.error))?;
        Ok(())
    }

    /// Write a single-writer entry (sale, stock movement, audit entry) as JSON.
    pub(crate) fn put_entry(
        &mut self,
        id: DocId,
        key: &str,
        entry: &impl serde::Serialize,
        hlc: Hlc,
    ) -> Result<(), StorageError> {
        let json = serde_json::to_string(entry).map_err(|e| damaged(&id, e))?;
        self.edit(id, hlc, |tx| tx.put(ROOT, key, json))
    }

    /// Write fields of a multi-writer document, each stamped with who and when.
    pub(crate) fn put_fields(
        &mut self,
        id: DocId,
        hlc: Hlc,
        fields: &[(String, serde_json::Value)],
    ) -> Result<(), StorageError> {
        let keys: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
        self.check_local_write(&id, &keys)?;
        let mut encoded = Vec::with_capacity(fields.len());
        for (key, value) in fields {
            let fv = FieldValue {
                version: ENTRY_VERSION,
                value: value.clone(),
                hlc,
                till: self.s.till,
                role: self.s.role,
            };
            encoded.push((
                key.clone(),
                serde_json::to_string(&fv).map_err(|e| damaged(&id, e))?,
            ));
        }
        self.edit(id, hlc, |tx| {
            for (k, v) in encoded {
                tx.put(ROOT, k, v)?;
            }
            Ok(())
        })
    }

    /// Apply changes from elsewhere, each proven by `proofs` or by what earlier
    /// proofs reached (checked before anything is applied); returns how many
    /// were new.
    pub(crate) fn apply_remote(
        &mut self,
        id: DocId,
        changes: Vec<Change>,
        proofs: &[crate::proofs::Proof],
    ) -> Result<usize, ApplyError> {
        let doc = self.touch(id)?;
        let mut seen = BTreeSet::new();
        let fresh: Vec<Change> = changes
            .into_iter()
            .filter(|c| doc.get_change_meta_by_hash(&c.hash()).is_none() && seen.insert(c.hash()))
            .collect();
        let n = fresh.len();
        if n == 0 {
            return Ok(0);
        }
        self.check_batch(id, &fresh, proofs)?;
        let doc = self.touch(id)?;
        doc.apply_changes(fresh.clone())
            .map_err(|e| ApplyError::Refused {
                doc: id.to_string(),
                reason: e.to_string(),
            })?;
        self.incoming.entry(id).or_default().extend(fresh);
        Ok(n)
    }

    /// Derive the views of `doc` from all of it, as if every entry were new.
    pub(crate) fn rederive(
        &mut self,
        id: DocId,
        doc: automerge::Automerge,
    ) -> Result<(), StorageError> {
        self.s.docs.insert(id, doc);
        self.before.insert(id, Vec::new());
        self.touched.push(id);
        self.rederived.insert(id);
        Ok(())
    }

    /// Take in a whole document this till does not hold yet, as `saved`
    /// (its [`automerge::Automerge::save`] form, already checked); its views
    /// are derived from all of it at commit.
    pub(crate) fn adopt(&mut self, id: DocId, mut doc: automerge::Automerge, saved: Vec<u8>) {
        // This till's own edits to it carry this till's actor, as after a load.
        doc.set_actor(self.s.actor.clone());
        self.s.docs.insert(id, doc);
        self.before.insert(id, Vec::new());
        self.touched.push(id);
        self.adopted.insert(id, saved);
    }

    /// Derive the views from everything touched, persist the changes, commit.
    /// Returns how many conflicts the write logged.
    pub(crate) fn commit(mut self) -> Result<usize, StorageError> {
        // Views first: they may append audit entries, touching more documents.
        let mut i = 0;
        while i < self.touched.len() {
            let id = self.touched[i];
            self.update_views(id)?;
            i += 1;
        }
        self.flush_stock()?;
        let mut compact = Vec::new();
        let mut outbox: Vec<(DocId, Vec<u8>)> = Vec::new();
        let mut signed: Vec<DocId> = Vec::new();
        {
            let txn = self.txn.as_ref().expect("transaction present until commit");
            let mut docs = txn.open_table(tables::DOCS)?;
            let mut rows = txn.open_table(tables::DOC_CHANGES)?;
            let mut saved_docs = txn.open_table(tables::DOC_SAVED)?;
            for id in &self.touched {
                if self.rederived.contains(id) {
                    continue;
                }
                if let Some(saved) = self.adopted.get(id) {
                    let doc = self
                        .s
                        .docs
                        .get(id)
                        .ok_or_else(|| damaged(id, "document vanished from the cache"))?;
                    let key = id.to_string();
                    saved_docs.insert(key.as_str(), saved.as_slice())?;
                    let state =
                        serde_json::to_vec(&DocState::default()).map_err(|e| damaged(id, e))?;
                    docs.insert(key.as_str(), state.as_slice())?;
                    crate::sync::record_heads(txn, id, &doc.get_heads())?;
                    continue;
                }
                let doc = self
                    .s
                    .docs
                    .get(id)
                    .ok_or_else(|| damaged(id, "document vanished from the cache"))?;
                let mut to_store: Vec<Vec<u8>> = self
                    .incoming
                    .get(id)
                    .map(|cs| cs.iter().map(|c| c.raw_bytes().to_vec()).collect())
                    .unwrap_or_default();
                for c in doc.get_changes(&self.before[id]) {
                    if c.actor_id() == &self.s.actor {
                        to_store.push(c.raw_bytes().to_vec());
                        outbox.push((*id, c.raw_bytes().to_vec()));
                    }
                }
                if outbox.last().is_some_and(|(d, _)| d == id) {
                    signed.push(*id);
                }
                if to_store.is_empty() {
                    continue;
                }
                crate::sync::record_heads(txn, id, &doc.get_heads())?;
                let key = id.to_string();
                let mut state: DocState = match docs.get(key.as_str())? {
                    Some(v) => serde_json::from_slice(v.value()).map_err(|e| damaged(id, e))?,
                    None => DocState::default(),
                };
                for bytes in &to_store {
                    rows.insert((key.as_str(), state.next_seq), bytes.as_slice())?;
                    state.next_seq += 1;
                    state.pending += 1;
                }
                if state.pending >= self.s.opts.compact_after {
                    compact.push(*id);
                }
                let bytes = serde_json::to_vec(&state).map_err(|e| damaged(id, e))?;
                docs.insert(key.as_str(), bytes.as_slice())?;
            }
        }
        let skew = self.observe_seen()?;
        let own_proofs = self.keep_proofs(&signed)?;
        {
            let txn = self.txn.as_ref().expect("transaction present until commit");
            let mut m = txn.open_table(tables::META)?;
            m.insert(
                meta::HLC,
                self.s.hlc.last().as_u64().to_le_bytes().as_slice(),
            )?;
            m.insert(
                meta::NEXT_RECEIPT,
                self.next_receipt.to_le_bytes().as_slice(),
            )?;
            let head = serde_json::to_vec(&self.audit_head)
                .map_err(|e| StorageError::Database(e.to_string()))?;
            m.insert(meta::AUDIT_HEAD, head.as_slice())?;
            if let Some(skew) = skew {
                let bytes =
                    serde_json::to_vec(&skew).map_err(|e| StorageError::Database(e.to_string()))?;
                m.insert(meta::CLOCK_SKEW, bytes.as_slice())?;
            }
        }
        let txn = self.txn.take().expect("transaction present until commit");
        txn.commit()?;
        self.committed = true;
        self.s.next_receipt = self.next_receipt;
        self.s.audit_head = self.audit_head;
        if self.s.watching {
            self.s.events.append(&mut self.events);
            let excess = self
                .s
                .events
                .len()
                .saturating_sub(crate::listing::EVENTS_LIMIT);
            self.s.events.drain(..excess);
        }
        self.s
            .outbox
            .extend(outbox.into_iter().map(|(doc, change)| {
                let proofs = own_proofs
                    .iter()
                    .find(|(d, _)| *d == doc)
                    .map(|(_, p)| p.clone())
                    .unwrap_or_default();
                (doc, change, proofs)
            }));
        // Nobody drains the outbox when no daemon runs; peers catch up by
        // anti-entropy, so old entries can go.
        let excess = self.s.outbox.len().saturating_sub(OUTBOX_LIMIT);
        self.s.outbox.drain(..excess);
        for id in compact {
            // The commit above is durable; a failed compaction only delays the next.
            if let Err(e) = self.s.compact(&id) {
                tracing::warn!(doc = %id, error = %e, "compaction failed; will retry");
            }
        }
        Ok(self.conflicts_logged)
    }

    /// Move the clock by the timestamps seen in this write, except those too far
    /// ahead of the wall clock; gives the skew to record when one of those is the
    /// largest seen so far.
    fn observe_seen(&mut self) -> Result<Option<ClockSkew>, StorageError> {
        let seen = std::mem::take(&mut self.seen);
        let now = self.s.opts.clock.now_ms();
        let Some(latest) = seen.iter().map(|(_, h)| h.ms()).max() else {
            return Ok(None);
        };
        // Only a timestamp ahead of the wall clock needs the configured bound.
        let bound = if latest > now {
            let config = self.txn().open_table(tables::V_CONFIG)?;
            crate::catalog::max_clock_skew_in(&config)?.saturating_mul(1000)
        } else {
            u64::MAX
        };
        let mut worst: Option<ClockSkew> = None;
        for (till, hlc) in seen {
            if let Some(ahead_ms) = self.s.hlc.observe(hlc, now, bound)
                && till != self.s.till
                && worst.is_none_or(|w| ahead_ms > w.ahead_ms)
            {
                tracing::warn!(%till, ahead_ms, "a till's clock is far ahead; its timestamp does not move this till's clock");
                worst = Some(ClockSkew {
                    version: ClockSkew::VERSION,
                    till,
                    ahead_ms,
                    hlc,
                    seen_at_ms: now,
                });
            }
        }
        let Some(worst) = worst else { return Ok(None) };
        let recorded = self.s.clock_skew()?;
        Ok(recorded
            .is_none_or(|r| worst.ahead_ms > r.ahead_ms)
            .then_some(worst))
    }

    /// The keys of `id` written since this write began, and whether each is new.
    pub(crate) fn changed_keys(&self, id: &DocId) -> Result<Vec<(String, bool)>, StorageError> {
        let doc = self
            .s
            .docs
            .get(id)
            .ok_or_else(|| damaged(id, "document vanished from the cache"))?;
        let before = &self.before[id];
        let after = doc.get_heads();
        if before == &after {
            return Ok(Vec::new());
        }
        let mut keys = BTreeSet::new();
        for patch in doc.diff(before, &after) {
            if patch.obj != ROOT {
                continue;
            }
            match patch.action {
                automerge::PatchAction::PutMap { key, .. } => {
                    keys.insert(key);
                }
                automerge::PatchAction::Conflict {
                    prop: automerge::Prop::Map(key),
                } => {
                    keys.insert(key);
                }
                _ => {}
            }
        }
        // The diff names a key only when its visible value changes. When a new
        // change supersedes one of several concurrent values but not the one
        // Automerge shows, the set of values changes silently; the views (which
        // rank values by policy, not as Automerge does) and the conflict log must
        // still see that key, so take the keys the new changes wrote as well.
        if id.owner().is_none() && !before.is_empty() {
            for change in doc.get_changes(before) {
                for op in change.decode().operations {
                    if let (automerge::legacy::ObjectId::Root, automerge::legacy::Key::Map(k)) =
                        (&op.obj, &op.key)
                    {
                        keys.insert(k.to_string());
                    }
                }
            }
        }
        Ok(keys
            .into_iter()
            .map(|k| {
                let existed = !before.is_empty()
                    && doc
                        .get_at(ROOT, k.as_str(), before)
                        .ok()
                        .flatten()
                        .is_some();
                (k, !existed)
            })
            .collect())
    }
}
