//! The store's side of proofs of authorship ([`crate::Proof`]): checking what
//! arrives before it is applied, signing what this till commits, keeping the
//! proofs that travel on with the changes, and the role rules for local writes.

use std::collections::HashMap;

use automerge::{Change, ChangeHash};
use redb::{ReadableDatabase, ReadableTable};

use crate::error::{ApplyError, StorageError};
use crate::ids::{DocId, TillId};
use crate::keys::TillKey;
use crate::membership::{MemberStatus, MembershipError};
use crate::model::Role;
use crate::proofs::{Node, Proof, Reached, role_may_write, unproven, walk, writers_of};
use crate::store::{Store, actor_till};
use crate::tables::{self, meta};
use crate::writer::Writer;

/// At most this many signers are remembered for one hash not held yet.
const MAX_PROVEN_SIGNERS: usize = 8;

impl Store {
    /// Hold the store's admin key (on an admin till): checked against the trust
    /// root, then it signs this till's changes to the shared documents too. The
    /// first time, it also signs the heads of the shared documents as they are,
    /// and on a store made before signed changes every document it holds, so
    /// that history is accepted as it stands.
    pub fn set_admin_signer(&mut self, key: TillKey) -> Result<(), MembershipError> {
        self.check_admin(&key)?;
        self.admin_signer = Some(key);
        self.attest_as_admin()?;
        Ok(())
    }

    /// Take up the store's admin key brought from another till (a second
    /// admin): checked like [`Store::set_admin_signer`], and this till's audit
    /// chain records it.
    pub fn import_admin_key(&mut self, key: TillKey) -> Result<(), MembershipError> {
        let id = key.till_id();
        self.set_admin_signer(key)?;
        let mut w = self.writer()?;
        w.audit("admin-key-import", &id.to_string(), serde_json::json!({}))?;
        w.commit()?;
        Ok(())
    }

    /// While `on`, accept changes without proofs of authorship: for restoring
    /// a backup made before signed changes, whose signer (a member) vouches for
    /// it, into a new till home. What is accepted so is marked as history for
    /// the admin key to sign the next time it is at hand; until then other
    /// tills accept it only where they hold proofs of their own.
    pub fn accept_legacy_history(&mut self, on: bool) -> Result<(), StorageError> {
        self.legacy = on;
        if on {
            let txn = self.db.begin_write()?;
            txn.open_table(tables::META)?
                .insert(meta::LEGACY_HISTORY, [1u8].as_slice())?;
            txn.commit()?;
        }
        Ok(())
    }

    /// Whether this till holds the store's admin key.
    pub fn holds_admin_key(&self) -> bool {
        self.admin_signer.is_some()
    }

    /// The role in `till`'s admin-signed certificate, if it is a member in good
    /// standing.
    pub fn certified_role(&self, till: &TillId) -> Result<Option<Role>, StorageError> {
        Ok(match self.member_status(till)? {
            MemberStatus::Member(info) => Some(info.role),
            _ => None,
        })
    }

    /// Refuse up front a write of `doc` that this till's certified role does
    /// not allow (peers would refuse it anyway).
    pub fn check_may_write(&self, doc: &DocId) -> Result<(), StorageError> {
        // A store whose trust root is not known yet is being founded.
        if self.admin_signer.is_some() || self.admin.is_none() {
            return Ok(());
        }
        let me = self.till_id();
        match self.certified_role(&me)? {
            Some(role) if role_may_write(doc, role, &me) => Ok(()),
            _ => Err(StorageError::Forbidden {
                doc: doc.kind().to_string(),
                needed: writers_of(doc),
            }),
        }
    }

    /// The proofs this till keeps for `doc`: they travel with its changes.
    pub fn proofs(&self, doc: &DocId) -> Result<Vec<Proof>, StorageError> {
        let txn = self.db.begin_read()?;
        read_proofs(&txn.open_table(tables::PROOFS)?, doc)
    }

    /// Sign, with the admin key, the heads of the shared documents where they
    /// moved since its last proof, and of every document once on a store made
    /// before signed changes.
    fn attest_as_admin(&mut self) -> Result<(), StorageError> {
        let Some(admin) = self.admin_signer.clone() else {
            return Ok(());
        };
        let legacy = {
            let txn = self.db.begin_read()?;
            txn.open_table(tables::META)?
                .get(meta::LEGACY_HISTORY)?
                .is_some()
        };
        let mut docs = vec![DocId::Catalog, DocId::Config, DocId::Membership];
        if legacy {
            docs = self.doc_ids()?;
        }
        let hlc = self.hlc().as_u64();
        let txn = self.begin_write()?;
        let admin_id = admin.till_id();
        let mut wrote = sign_stored_heads(
            &txn,
            &Signing {
                store: self.store_id(),
                key: &admin,
                hlc,
                keep_same: true,
            },
            docs,
            |doc, _| Proof::admin_slot(doc, &admin_id),
        )?;
        if legacy {
            txn.open_table(tables::META)?.remove(meta::LEGACY_HISTORY)?;
            wrote = true;
        }
        if wrote {
            txn.commit()?;
        }
        Ok(())
    }

    /// Sign with the admin key the heads of every document `till` owns, as
    /// this till holds them (at a revocation: the cut of what it wrote).
    pub(crate) fn attest_documents_of(
        &mut self,
        admin: &TillKey,
        till: &TillId,
    ) -> Result<(), StorageError> {
        let hlc = self.hlc().as_u64();
        let txn = self.db.begin_write()?;
        let docs: Vec<DocId> = self
            .doc_ids()?
            .into_iter()
            .filter(|d| d.owner() == Some(*till))
            .collect();
        let admin_id = admin.till_id();
        sign_stored_heads(
            &txn,
            &Signing {
                store: self.store_id(),
                key: admin,
                hlc,
                keep_same: false,
            },
            docs,
            |doc, _| Proof::admin_slot(doc, &admin_id),
        )?;
        txn.commit()?;
        Ok(())
    }

    /// Bring a store made before signed changes to the current format: this
    /// till signs the heads of its own documents and the shared ones (its own
    /// history is its own word), and the admin key signs everything it holds
    /// the next time it is at hand (`set_admin_signer`).
    pub(crate) fn migrate_to_proofs(&mut self) -> Result<(), StorageError> {
        let me = self.till_id();
        let hlc = self.hlc().as_u64();
        let txn = self.db.begin_write()?;
        crate::store::create_tables(&txn)?;
        {
            let docs: Vec<DocId> = txn
                .open_table(tables::DOC_HEADS)?
                .iter()?
                .filter_map(|row| row.ok().and_then(|(k, _)| k.value().parse().ok()))
                .filter(|d: &DocId| d.owner().is_none_or(|o| o == me))
                .collect();
            let actor = self.actor.to_bytes().to_vec();
            sign_stored_heads(
                &txn,
                &Signing {
                    store: self.store_id(),
                    key: &self.key,
                    hlc,
                    keep_same: false,
                },
                docs,
                |doc, p| p.slot(doc, &actor),
            )?;
            let mut m = txn.open_table(tables::META)?;
            m.insert(meta::LEGACY_HISTORY, [1u8].as_slice())?;
            m.insert(meta::FORMAT, tables::FORMAT_PROOFS.to_le_bytes().as_slice())?;
        }
        txn.commit()?;
        tracing::info!("store upgraded to signed changes; its history is accepted as it stands");
        Ok(())
    }

    /// Whether `signer` may vouch for changes: the admin key, or a member in
    /// good standing.
    pub(crate) fn signer_ok(&self, signer: &TillId) -> Result<bool, StorageError> {
        Ok(self.admin.as_ref() == Some(signer)
            || matches!(self.member_status(signer)?, MemberStatus::Member(_)))
    }
}

/// Who signs stored heads, and how ([`sign_stored_heads`]).
struct Signing<'a> {
    store: crate::ids::StoreId,
    key: &'a TillKey,
    hlc: u64,
    /// Leave a document whose slot already holds a proof of the same heads.
    keep_same: bool,
}

/// Sign the stored heads of each of `docs` that has any, in `txn`, under the
/// slot `slot` names for it; gives whether anything was written.
fn sign_stored_heads(
    txn: &redb::WriteTransaction,
    signing: &Signing<'_>,
    docs: impl IntoIterator<Item = DocId>,
    slot: impl Fn(&DocId, &Proof) -> String,
) -> Result<bool, StorageError> {
    let heads_t = txn.open_table(tables::DOC_HEADS)?;
    let mut proofs = txn.open_table(tables::PROOFS)?;
    let mut wrote = false;
    for doc in docs {
        let heads = stored_heads(&heads_t, &doc)?;
        if heads.is_empty() {
            continue;
        }
        let p = Proof::sign(signing.key, &signing.store, &doc, signing.hlc, heads);
        let at = slot(&doc, &p);
        if signing.keep_same
            && let Some(v) = proofs.get(at.as_str())?
            && Proof::decode_list(v.value())
                .unwrap_or_default()
                .pop()
                .is_some_and(|old| same_heads(&old.heads, &p.heads))
        {
            continue;
        }
        proofs.insert(at.as_str(), Proof::encode_list(&[p]).as_slice())?;
        wrote = true;
    }
    Ok(wrote)
}

/// The heads recorded for `doc` in the `doc_heads` table.
fn stored_heads(
    t: &impl ReadableTable<&'static str, &'static str>,
    doc: &DocId,
) -> Result<Vec<ChangeHash>, StorageError> {
    let Some(v) = t.get(doc.to_string().as_str())? else {
        return Ok(Vec::new());
    };
    Ok(v.value()
        .split(',')
        .filter(|s| !s.is_empty())
        .filter_map(|h| h.parse().ok())
        .collect())
}

fn same_heads(a: &[ChangeHash], b: &[ChangeHash]) -> bool {
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort();
    b.sort();
    a == b
}

pub(crate) fn read_proofs(
    t: &impl ReadableTable<&'static str, &'static [u8]>,
    doc: &DocId,
) -> Result<Vec<Proof>, StorageError> {
    let prefix = format!("{doc}\0");
    let end = format!("{doc}\u{1}");
    let mut out = Vec::new();
    for row in t.range(prefix.as_str()..end.as_str())? {
        let (_, v) = row?;
        out.extend(Proof::decode_list(v.value()).unwrap_or_default());
    }
    Ok(out)
}

fn proven_key(doc: &DocId, h: &ChangeHash) -> String {
    format!("{doc}\0{h}")
}

/// Whether every operation of a membership change puts its author's own
/// address, the one membership field a till writes for itself.
fn only_own_address(change: &Change, author: &TillId) -> bool {
    let own = format!("till/{author}/addr");
    change.decode().operations.iter().all(|op| {
        matches!((&op.obj, &op.key), (automerge::legacy::ObjectId::Root, automerge::legacy::Key::Map(k)) if k.as_str() == own)
    })
}

impl Writer<'_> {
    /// Check a batch of changes new to this till against the proofs that came
    /// with it (and what earlier proofs reached): every change must be proven
    /// written by the till it names, and that till's certified role must allow
    /// it. Nothing is applied here; the proofs and the hashes reached are
    /// written in this write's transaction.
    pub(crate) fn check_batch(
        &mut self,
        id: DocId,
        fresh: &[Change],
        proofs: &[Proof],
    ) -> Result<(), ApplyError> {
        if self.s.legacy {
            return Ok(());
        }
        let store_id = self.s.store_id();
        let admin = self.s.admin;
        let mut signers: HashMap<TillId, bool> = HashMap::new();
        let mut signer_ok = |s: &Store, t: &TillId| -> Result<bool, StorageError> {
            if let Some(ok) = signers.get(t) {
                return Ok(*ok);
            }
            let ok = s.signer_ok(t)?;
            signers.insert(*t, ok);
            Ok(ok)
        };
        let mut roots = Vec::new();
        let mut valid = Vec::new();
        for p in proofs {
            if signer_ok(self.s, &p.signer)? && p.verify(&store_id, &id) {
                roots.extend(p.heads.iter().map(|h| (*h, p.signer)));
                valid.push(p.clone());
            } else {
                tracing::debug!(doc = %id, signer = %p.signer.fmt_short(), "ignoring a proof that does not verify or whose signer is not a member");
            }
        }
        for (h, signer) in self.proven_before(&id, fresh)? {
            if signer_ok(self.s, &signer)? {
                roots.push((h, signer));
            }
        }
        let nodes: HashMap<ChangeHash, Node> = fresh
            .iter()
            .map(|c| {
                (
                    c.hash(),
                    Node {
                        deps: c.deps().to_vec(),
                        till: actor_till(c.actor_id()),
                    },
                )
            })
            .collect();
        let marks = {
            let doc = self.s.doc(&id)?;
            walk(&roots, admin.as_ref(), &mut |h| match nodes.get(h) {
                Some(n) => Reached::Batch(n),
                None if doc.get_change_meta_by_hash(h).is_some() => Reached::Held,
                None => Reached::Unknown,
            })
        };
        let mut roles: HashMap<TillId, Option<Role>> = HashMap::new();
        for c in fresh {
            let h = c.hash();
            let author = actor_till(c.actor_id());
            if !marks.by_author.contains(&h) {
                tracing::warn!(doc = %id, writer = ?author, "refused changes without a valid proof of authorship");
                return Err(unproven(&id, author));
            }
            if marks.by_admin.contains(&h) {
                continue;
            }
            let Some(author) = author else {
                return Err(unproven(&id, None));
            };
            let ok = match id {
                DocId::Membership => only_own_address(c, &author),
                DocId::Config | DocId::Catalog => {
                    let role = match roles.get(&author) {
                        Some(r) => *r,
                        None => {
                            let r = self.s.certified_role(&author)?;
                            roles.insert(author, r);
                            r
                        }
                    };
                    role.is_some_and(|r| role_may_write(&id, r, &author))
                }
                _ => id.owner() == Some(author),
            };
            if !ok {
                tracing::warn!(doc = %id, writer = %author.fmt_short(), "refused a change its writer's role does not allow");
                return Err(ApplyError::Forbidden {
                    doc: id.to_string(),
                    writer: author.fmt_short(),
                    needed: writers_of(&id),
                });
            }
        }
        self.record_proven(&id, fresh, &marks.frontier)?;
        self.proofs_in.push((id, valid));
        Ok(())
    }

    /// The signers earlier walks found vouching for changes of `fresh`.
    fn proven_before(
        &self,
        id: &DocId,
        fresh: &[Change],
    ) -> Result<Vec<(ChangeHash, TillId)>, StorageError> {
        let proven = self.txn().open_table(tables::PROVEN)?;
        let mut out = Vec::new();
        for c in fresh {
            if let Some(v) = proven.get(proven_key(id, &c.hash()).as_str())? {
                for s in v.value().chunks_exact(32) {
                    let mut b = [0u8; 32];
                    b.copy_from_slice(s);
                    out.push((c.hash(), TillId::from_bytes(b)));
                }
            }
        }
        Ok(out)
    }

    /// Forget what was recorded for the changes of `fresh` (they are held now)
    /// and record the hashes a walk reached that are not held yet.
    fn record_proven(
        &self,
        id: &DocId,
        fresh: &[Change],
        frontier: &[(ChangeHash, TillId)],
    ) -> Result<(), StorageError> {
        let mut proven = self.txn().open_table(tables::PROVEN)?;
        for c in fresh {
            proven.remove(proven_key(id, &c.hash()).as_str())?;
        }
        for (h, signer) in frontier {
            let key = proven_key(id, h);
            let mut v = proven
                .get(key.as_str())?
                .map(|v| v.value().to_vec())
                .unwrap_or_default();
            if v.chunks_exact(32).any(|s| s == signer.as_bytes())
                || v.len() >= 32 * MAX_PROVEN_SIGNERS
            {
                continue;
            }
            v.extend_from_slice(signer.as_bytes());
            proven.insert(key.as_str(), v.as_slice())?;
        }
        Ok(())
    }

    /// Keep the proofs that came in with this write's changes (those whose
    /// heads this till now holds, newer than the one kept for their slot), and
    /// sign this till's own new heads of `signed` documents.
    pub(crate) fn keep_proofs(
        &mut self,
        signed: &[DocId],
    ) -> Result<Vec<(DocId, Vec<Proof>)>, StorageError> {
        let hlc = self.s.hlc.last().as_u64();
        let store_id = self.s.store_id();
        let mut own = Vec::new();
        let mut keep: Vec<(String, Proof)> = Vec::new();
        for (id, proofs) in std::mem::take(&mut self.proofs_in) {
            let Some(doc) = self.s.docs.get(&id) else {
                continue;
            };
            for p in proofs {
                let Some(actor) = p
                    .heads
                    .first()
                    .and_then(|h| doc.get_change_meta_by_hash(h))
                    .map(|m| m.actor.to_bytes().to_vec())
                else {
                    continue;
                };
                if p.heads
                    .iter()
                    .all(|h| doc.get_change_meta_by_hash(h).is_some())
                {
                    let slot = if Some(p.signer) == self.s.admin {
                        Proof::admin_slot(&id, &p.signer)
                    } else {
                        p.slot(&id, &actor)
                    };
                    keep.push((slot, p));
                }
            }
        }
        for id in signed {
            let Some(doc) = self.s.docs.get(id) else {
                continue;
            };
            let heads = doc.get_heads();
            let mut mine = vec![Proof::sign(&self.s.key, &store_id, id, hlc, heads.clone())];
            keep.push((mine[0].slot(id, self.s.actor.to_bytes()), mine[0].clone()));
            if let (Some(admin), None) = (&self.s.admin_signer, id.owner()) {
                let p = Proof::sign(admin, &store_id, id, hlc, heads);
                keep.push((Proof::admin_slot(id, &admin.till_id()), p.clone()));
                mine.push(p);
            }
            own.push((*id, mine));
        }
        let mut t = self.txn().open_table(tables::PROOFS)?;
        for (slot, p) in keep {
            let newer = match t.get(slot.as_str())? {
                Some(v) => Proof::decode_list(v.value())
                    .ok()
                    .and_then(|mut l| l.pop())
                    .is_none_or(|old| old.hlc <= p.hlc),
                None => true,
            };
            if newer {
                t.insert(slot.as_str(), Proof::encode_list(&[p]).as_slice())?;
            }
        }
        Ok(own)
    }

    /// Refuse a local write of `id` this till's role does not allow.
    pub(crate) fn check_local_write(&self, id: &DocId, keys: &[&str]) -> Result<(), StorageError> {
        if *id == DocId::Membership {
            let own = format!("till/{}/addr", self.s.till_id());
            if self.s.admin_signer.is_some()
                || self.s.admin.is_none()
                || keys.iter().all(|k| *k == own)
            {
                return Ok(());
            }
            return Err(StorageError::Forbidden {
                doc: id.kind().to_string(),
                needed: writers_of(id),
            });
        }
        self.s.check_may_write(id)
    }
}
