//! The merge entry point: changes that arrive from other tills (the mesh) or from
//! backups and USB sticks, checked before any of them is kept.

use std::collections::{BTreeMap, HashMap, HashSet};

use automerge::{Change, ChangeHash};
use redb::{ReadableDatabase, ReadableMultimapTable, ReadableTable};

use crate::error::{ApplyError, StorageError};
use crate::ids::DocId;
use crate::proofs::{Node, Proof, Reached, walk};
use crate::store::Store;
use crate::sync::{check_owner, check_writers};
use crate::tables;

/// What merging a batch of changes did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Changes this till did not have before.
    pub new_changes: usize,
    /// Conflicts the merge logged.
    pub conflicts: usize,
}

impl Store {
    /// Merge changes to document `doc`, each the raw bytes of one Automerge
    /// change, proven by `proofs` (the author's signed heads, as
    /// [`Store::proofs`] gives them on the till they come from).
    ///
    /// The batch is checked whole before anything is kept: every change must
    /// decode and pass its checksum, be proven written by the till its actor
    /// names (or beneath heads the admin key signed), and be allowed by that
    /// till's certified role: a single-writer document (a till's sales, stock
    /// or audit) accepts only changes by its till. Changes already held are
    /// skipped, so delivering the same batch twice is harmless. Changes whose
    /// dependencies have not arrived are kept and take effect when they do.
    pub fn apply_changes(
        &mut self,
        doc: &DocId,
        changes: &[Vec<u8>],
        proofs: &[Proof],
    ) -> Result<ApplyReport, ApplyError> {
        let mut parsed = Vec::with_capacity(changes.len());
        for (index, bytes) in changes.iter().enumerate() {
            let change = Change::from_bytes(bytes.clone()).map_err(|e| ApplyError::Malformed {
                doc: doc.to_string(),
                index,
                reason: e.to_string(),
            })?;
            parsed.push(change);
        }
        check_owner(doc, &parsed)?;
        self.merge(doc, parsed, proofs)
    }

    /// Merge a whole saved document (as [`Store::save_doc`] gives it), checked
    /// like [`Store::apply_changes`]: a snapshot restores through the same path.
    pub fn apply_saved(
        &mut self,
        doc: &DocId,
        saved: &[u8],
        proofs: &[Proof],
    ) -> Result<ApplyReport, ApplyError> {
        self.apply_saved_many(&[(*doc, saved, proofs.to_vec())])
    }

    /// Merge whole saved documents in one durable write, each checked like
    /// [`Store::apply_changes`] and all checked before anything is kept. A
    /// document this till does not hold yet is kept in its saved form as it
    /// came (its views derived from all of it), without replaying its changes
    /// one by one: that is what makes restoring a snapshot fast.
    pub fn apply_saved_many(
        &mut self,
        docs: &[(DocId, &[u8], Vec<Proof>)],
    ) -> Result<ApplyReport, ApplyError> {
        // Membership first, in a write of its own: the other documents' proofs
        // count only from the members it certifies. It takes the path of a
        // membership batch, which merges the admin key's certificates before
        // the entries of the members they certify (each under its own proof).
        if docs.iter().any(|(id, ..)| *id == DocId::Membership) {
            let (first, rest): (Vec<_>, Vec<_>) = docs
                .iter()
                .cloned()
                .partition(|(id, ..)| *id == DocId::Membership);
            let mut a = ApplyReport::default();
            for (id, saved, proofs) in first {
                // Membership has many writers: no owner check; the merge
                // checks each change's proof and role.
                let doc = automerge::Automerge::load(saved).map_err(|e| ApplyError::Malformed {
                    doc: id.to_string(),
                    index: 0,
                    reason: e.to_string(),
                })?;
                let r = self.merge(&id, doc.get_changes(&[]), &proofs)?;
                a.new_changes += r.new_changes;
                a.conflicts += r.conflicts;
            }
            if rest.is_empty() {
                return Ok(a);
            }
            let b = self.apply_saved_many(&rest)?;
            a.new_changes += b.new_changes;
            a.conflicts += b.conflicts;
            return Ok(a);
        }
        // The signers of the proofs, judged once by this till's membership.
        let mut signers = HashSet::new();
        let store_id = self.store_id();
        for (id, _, proofs) in docs {
            for p in proofs {
                if !signers.contains(&p.signer)
                    && self.signer_ok(&p.signer)?
                    && p.verify(&store_id, id)
                {
                    signers.insert(p.signer);
                }
            }
        }
        let admin = self.admin;
        let signers = &signers;
        let legacy = self.legacy;
        // Decoding and checking is the costly part and needs no store: spread
        // it over the cores.
        let workers = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .clamp(1, 8);
        let chunk = docs.len().div_ceil(workers).max(1);
        let parts: Vec<Result<Vec<Loaded<'_>>, ApplyError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = docs
                .chunks(chunk)
                .map(|c| {
                    scope.spawn(move || {
                        c.iter()
                            .map(|d| load_checked(d, store_id, admin, signers, legacy))
                            .collect()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        });
        let mut loaded = Vec::with_capacity(docs.len());
        for part in parts {
            loaded.extend(part?);
        }
        let mut w = self.writer()?;
        let mut new_changes = 0;
        for ((id, doc, saved, count), (_, _, proofs)) in loaded.into_iter().zip(docs) {
            // The shared documents take the path of every batch: their role
            // rules look at each change.
            if id.owner().is_none() || w.s.holds_any(&id)? {
                let changes = doc.get_changes(&[]);
                new_changes += w.apply_remote(id, changes, proofs)?;
            } else if count > 0 {
                w.proofs_in.push((id, proofs.clone()));
                w.adopt(id, doc, saved.to_vec());
                new_changes += count;
            }
        }
        w.commit_new(new_changes)
    }

    /// Whether this till holds anything of document `id` (changes waiting for
    /// their dependencies included).
    fn holds_any(&self, id: &DocId) -> Result<bool, StorageError> {
        // The cache may hold an empty document for a mere lookup.
        if self.docs.get(id).is_some_and(|d| !d.get_heads().is_empty()) {
            return Ok(true);
        }
        let txn = self.db.begin_read()?;
        Ok(txn
            .open_table(tables::DOCS)?
            .get(id.to_string().as_str())?
            .is_some())
    }

    /// Merge changes through the write path, checked against `proofs`.
    pub(crate) fn merge(
        &mut self,
        doc: &DocId,
        changes: Vec<Change>,
        proofs: &[Proof],
    ) -> Result<ApplyReport, ApplyError> {
        let mut first = ApplyReport::default();
        if *doc == DocId::Membership {
            first = self.merge_certificates_first(&changes, proofs)?;
        }
        let mut w = self.writer()?;
        let new_changes = w.apply_remote(*doc, changes, proofs)?;
        let then = w.commit_new(new_changes)?;
        Ok(ApplyReport {
            new_changes: first.new_changes + then.new_changes,
            conflicts: first.conflicts + then.conflicts,
        })
    }

    /// A membership batch can hold a new member's certificate (under the admin
    /// key's proof) and that member's own entries (its address, under its own
    /// proof, which counts only once it is certified): the changes the admin
    /// key's proofs reach are merged first, on their own.
    fn merge_certificates_first(
        &mut self,
        changes: &[Change],
        proofs: &[Proof],
    ) -> Result<ApplyReport, ApplyError> {
        let Some(admin) = self.admin else {
            return Ok(ApplyReport::default());
        };
        let by_admin: Vec<Proof> = proofs
            .iter()
            .filter(|p| p.signer == admin)
            .cloned()
            .collect();
        if by_admin.is_empty() || by_admin.len() == proofs.len() {
            return Ok(ApplyReport::default());
        }
        let by_hash: HashMap<ChangeHash, &Change> = changes.iter().map(|c| (c.hash(), c)).collect();
        let mut reached: HashSet<ChangeHash> = HashSet::new();
        let mut stack: Vec<ChangeHash> = by_admin.iter().flat_map(|p| p.heads.clone()).collect();
        while let Some(h) = stack.pop() {
            if let Some(c) = by_hash.get(&h)
                && reached.insert(h)
            {
                stack.extend(c.deps().iter().copied());
            }
        }
        if reached.is_empty() || reached.len() == changes.len() {
            return Ok(ApplyReport::default());
        }
        let part: Vec<Change> = changes
            .iter()
            .filter(|c| reached.contains(&c.hash()))
            .cloned()
            .collect();
        let mut w = self.writer()?;
        let n = w.apply_remote(DocId::Membership, part, &by_admin)?;
        w.commit_new(n)
    }

    /// Drop every view and derive it again from the documents. The conflict log
    /// is kept: it records what this till saw, which documents alone cannot tell.
    pub fn rebuild_views(&mut self) -> Result<(), StorageError> {
        {
            let txn = self.begin_write()?;
            txn.delete_table(tables::V_PRODUCTS)?;
            txn.delete_multimap_table(tables::V_BARCODES)?;
            txn.delete_table(tables::V_STOCK)?;
            txn.delete_table(tables::V_MOVES)?;
            txn.delete_table(tables::V_TOTALS)?;
            txn.delete_table(tables::V_RECEIPTS)?;
            txn.delete_table(tables::V_TILLS)?;
            txn.delete_table(tables::V_CONFIG)?;
            txn.delete_table(tables::V_SALES)?;
            txn.delete_table(tables::V_REPORT)?;
            crate::store::create_tables(&txn)?;
            txn.commit()?;
        }
        let mut ids = self.doc_ids()?;
        // Configuration first: the other views read its policies and tax rates.
        ids.sort_by_key(|d| !matches!(d, DocId::Config));
        for id in ids {
            let doc = self.load_doc(&id)?;
            let mut w = self.writer()?;
            w.rederive(id, doc)?;
            w.commit()?;
        }
        Ok(())
    }

    /// Every view row, in a canonical text form: two tills with the same documents
    /// have the same dump. For tests and diagnostics.
    pub fn view_dump(&self) -> Result<BTreeMap<String, String>, StorageError> {
        let txn = self.db.begin_read()?;
        let mut out = BTreeMap::new();
        macro_rules! dump_str {
            ($name:literal, $t:expr) => {
                for row in txn.open_table($t)?.iter()? {
                    let (k, v) = row?;
                    out.insert(
                        format!("{}:{}", $name, k.value()),
                        String::from_utf8_lossy(v.value()).into_owned(),
                    );
                }
            };
        }
        dump_str!("products", tables::V_PRODUCTS);
        dump_str!("stock", tables::V_STOCK);
        dump_str!("receipts", tables::V_RECEIPTS);
        dump_str!("tills", tables::V_TILLS);
        dump_str!("config", tables::V_CONFIG);
        for row in txn.open_table(tables::V_TOTALS)?.iter()? {
            let (k, v) = row?;
            let (d, t) = k.value();
            out.insert(
                format!("totals:{d}/{t}"),
                String::from_utf8_lossy(v.value()).into_owned(),
            );
        }
        for row in txn.open_table(tables::V_MOVES)?.iter()? {
            let (k, v) = row?;
            out.insert(
                format!("moves:{}", hex::encode(k.value())),
                v.value().to_string(),
            );
        }
        for row in txn.open_multimap_table(tables::V_BARCODES)?.iter()? {
            let (k, vs) = row?;
            let mut skus = Vec::new();
            for v in vs {
                skus.push(v?.value().to_string());
            }
            out.insert(format!("barcodes:{}", k.value()), skus.join(","));
        }
        Ok(out)
    }
}

/// A saved document decoded and checked: its id, the document, its saved
/// bytes and how many changes it holds.
type Loaded<'a> = (DocId, automerge::Automerge, &'a [u8], usize);

/// Load a saved document new to this till and check it whole: its writers,
/// and that proofs by `signers` (members, checked beforehand) reach every
/// change written by the till it names.
fn load_checked<'a>(
    (id, saved, proofs): &(DocId, &'a [u8], Vec<Proof>),
    store: crate::ids::StoreId,
    admin: Option<crate::ids::TillId>,
    signers: &HashSet<crate::ids::TillId>,
    legacy: bool,
) -> Result<Loaded<'a>, ApplyError> {
    let doc = automerge::Automerge::load(saved).map_err(|e| ApplyError::Malformed {
        doc: id.to_string(),
        index: 0,
        reason: e.to_string(),
    })?;
    let meta = doc.get_changes_meta(&[]);
    check_writers(id, meta.iter().map(|m| m.actor.as_ref()))?;
    let count = meta.len();
    if id.owner().is_none() || legacy {
        drop(meta);
        return Ok((*id, doc, saved, count));
    }
    let valid: Vec<&Proof> = proofs
        .iter()
        .filter(|p| signers.contains(&p.signer) && p.verify(&store, id))
        .collect();
    // A single-writer document signed at its heads by its owner (or the admin
    // key) is proven whole: every change of a document lies beneath its heads.
    let heads = {
        let mut h = doc.get_heads();
        h.sort();
        h
    };
    let whole = valid.iter().any(|p| {
        let mut ph = p.heads.clone();
        ph.sort();
        ph == heads && (Some(p.signer) == id.owner() || Some(p.signer) == admin)
    });
    if !whole {
        let nodes: HashMap<ChangeHash, Node> = meta
            .iter()
            .map(|m| {
                (
                    m.hash,
                    Node {
                        deps: m.deps.clone(),
                        till: crate::store::actor_till(&m.actor),
                    },
                )
            })
            .collect();
        let roots: Vec<_> = valid
            .iter()
            .flat_map(|p| p.heads.iter().map(|h| (*h, p.signer)))
            .collect();
        let marks = walk(&roots, admin.as_ref(), &mut |h| match nodes.get(h) {
            Some(n) => Reached::Batch(n),
            None => Reached::Unknown,
        });
        if let Some(m) = meta.iter().find(|m| !marks.by_author.contains(&m.hash)) {
            return Err(crate::proofs::unproven(
                id,
                crate::store::actor_till(&m.actor),
            ));
        }
    }
    drop(meta);
    Ok((*id, doc, saved, count))
}

impl crate::writer::Writer<'_> {
    /// Commit a merge that brought `new_changes` changes; one that brought none
    /// writes nothing.
    fn commit_new(self, new_changes: usize) -> Result<ApplyReport, ApplyError> {
        if new_changes == 0 {
            return Ok(ApplyReport::default());
        }
        let conflicts = self.commit()?;
        Ok(ApplyReport {
            new_changes,
            conflicts,
        })
    }
}
