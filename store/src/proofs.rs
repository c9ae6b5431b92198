//! Who wrote a change: signed heads ([`Proof`]), checked at the one entry point
//! for foreign changes before anything is applied, and who may write what.
//!
//! Neither Automerge nor the transport proves authorship: an actor id is a name
//! any writer can choose, and a change may arrive through a third till, a bundle
//! or a stick. So at every commit the author till signs the heads of each
//! document it changed (store id, document, its HLC, the heads). Automerge change
//! hashes cover their dependencies, so one signature over the heads vouches for
//! every change beneath them: a catch-up of a day of 500 sales carries one proof,
//! not 500, and a backup carries one proof per document and author.
//!
//! A change is *proven* when a valid proof by the till its actor id names (or by
//! the store's admin key, the trust root) reaches it through the dependency graph
//! of the batch. A walk that reaches a hash this till does not hold yet records
//! it as proven in the `proven` table, so a change that arrives later (a
//! dependency a sync round skipped, a gossip message overtaken by the next one)
//! is proven by what came before. Proofs count only from members in good
//! standing, by the admin-signed certificates this till holds: a revoked till's
//! new changes are refused everywhere once its revocation has arrived.
//!
//! Then the rules (docs/SECURITY.md): `membership` only under the admin key
//! (each till may publish its own address), `config` by the admin key or a
//! back-office till, `catalog` by the admin key, back office or a manager, and a
//! till's own `sales`, `stock` and `audit` documents by that till alone.

use std::collections::{HashMap, HashSet};

use automerge::ChangeHash;
use serde::{Deserialize, Serialize};

use crate::error::ApplyError;
use crate::ids::{DocId, StoreId, TillId};
use crate::keys::{TillKey, verify};
use crate::model::Role;

/// A proof that says no more than its change does: one proof, by the till that
/// owns the document (its sales, stock or audit) and wrote the change, of that
/// change alone. Gossip sends only this, and the receiver rebuilds the whole
/// [`Proof`] from the change ([`OwnChange::expand`]): the signer is the
/// change's author, the head its hash, the document the author's.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct OwnChange {
    /// The document kind: `sales`, `stock` or `audit`.
    pub kind: String,
    /// Its day (`YYYY-MM-DD`) or month (`YYYY-MM`).
    pub period: String,
    /// The proof's HLC.
    pub hlc: u64,
    /// The proof's signature.
    pub sig: [u8; 64],
}

impl OwnChange {
    /// `proofs` of `change` to `doc` in this short form, when they are exactly
    /// one proof by the document's owner, who wrote the change, of the change
    /// alone.
    pub fn of(doc: &DocId, change: &[u8], proofs: &[Proof]) -> Option<OwnChange> {
        let [p] = proofs else { return None };
        let owner = doc.owner()?;
        let c = automerge::Change::from_bytes(change.to_vec()).ok()?;
        if p.signer != owner
            || crate::store::actor_till(c.actor_id()) != Some(owner)
            || p.heads != [c.hash()]
        {
            return None;
        }
        let text = doc.to_string();
        let period = text.rsplit('/').next()?.to_string();
        Some(OwnChange {
            kind: doc.kind().to_string(),
            period,
            hlc: p.hlc,
            sig: p.sig.0,
        })
    }

    /// The document and the whole proof this stands for, given the change.
    pub fn expand(&self, change: &[u8]) -> Option<(DocId, Proof)> {
        let c = automerge::Change::from_bytes(change.to_vec()).ok()?;
        let till = crate::store::actor_till(c.actor_id())?;
        let doc: DocId = format!("{}/{till}/{}", self.kind, self.period)
            .parse()
            .ok()?;
        if doc.owner() != Some(till) {
            return None;
        }
        Some((
            doc,
            Proof {
                signer: till,
                hlc: self.hlc,
                heads: vec![c.hash()],
                sig: Signature(self.sig),
            },
        ))
    }
}

/// The version of [`Proof`] lists this build writes.
pub const PROOF_VERSION: u8 = 1;

/// At most this many proofs in one list, and heads in one proof.
const MAX_PROOFS: usize = 4096;
const MAX_HEADS: usize = 256;

/// A signer's statement that it holds document `doc` at these heads, and so
/// vouches for every change beneath them.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Proof {
    /// The signer: a till's key or the store's admin key.
    pub signer: TillId,
    /// The signer's hybrid logical clock when it signed (orders its proofs).
    pub hlc: u64,
    /// The heads signed.
    pub heads: Vec<ChangeHash>,
    /// ed25519 signature by `signer` over the store id, document id, HLC and heads.
    pub sig: Signature,
}

/// A proof as encoded: fixed-size byte arrays, no hex.
#[derive(Serialize, Deserialize)]
struct WireProof {
    signer: [u8; 32],
    hlc: u64,
    heads: Vec<[u8; 32]>,
    sig: Signature,
}

/// A 64-byte ed25519 signature.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Signature(pub [u8; 64]);

impl Serialize for Signature {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}
impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v: Vec<u8> = serde_bytes_vec(d)?;
        v.try_into()
            .map(Signature)
            .map_err(|_| serde::de::Error::custom("a signature is 64 bytes"))
    }
}

fn serde_bytes_vec<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("bytes")
        }
        fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Vec<u8>, A::Error> {
            let mut out = Vec::new();
            while let Some(b) = a.next_element::<u8>()? {
                if out.len() >= 64 {
                    return Err(serde::de::Error::custom("a signature is 64 bytes"));
                }
                out.push(b);
            }
            Ok(out)
        }
    }
    d.deserialize_bytes(V)
}

/// A list of proofs that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("proofs of authorship cannot be read: {0}")]
pub struct BadProofs(String);

impl Proof {
    /// What the signature covers.
    fn message(
        store: &StoreId,
        doc: &DocId,
        signer: &TillId,
        hlc: u64,
        heads: &[ChangeHash],
    ) -> Vec<u8> {
        let mut sorted: Vec<&ChangeHash> = heads.iter().collect();
        sorted.sort();
        let doc = doc.to_string();
        let mut m = Vec::with_capacity(80 + doc.len() + 32 * heads.len());
        m.extend_from_slice(b"tillmesh proof v1\0");
        m.extend_from_slice(store.as_bytes());
        m.extend_from_slice(doc.as_bytes());
        m.push(0);
        m.extend_from_slice(signer.as_bytes());
        m.extend_from_slice(&hlc.to_le_bytes());
        for h in sorted {
            m.extend_from_slice(&h.0);
        }
        m
    }

    /// Sign `heads` of `doc` with `key`.
    pub fn sign(
        key: &TillKey,
        store: &StoreId,
        doc: &DocId,
        hlc: u64,
        heads: Vec<ChangeHash>,
    ) -> Proof {
        let signer = key.till_id();
        let sig = key.sign(&Self::message(store, doc, &signer, hlc, &heads));
        Proof {
            signer,
            hlc,
            heads,
            sig: Signature(sig),
        }
    }

    /// Whether the signature is the signer's, for `doc` of `store`.
    pub fn verify(&self, store: &StoreId, doc: &DocId) -> bool {
        self.heads.len() <= MAX_HEADS
            && verify(
                &self.signer,
                &Self::message(store, doc, &self.signer, self.hlc, &self.heads),
                &self.sig.0,
            )
    }

    /// Encode a list of proofs (versioned).
    pub fn encode_list(proofs: &[Proof]) -> Vec<u8> {
        let wire: Vec<WireProof> = proofs
            .iter()
            .map(|p| WireProof {
                signer: *p.signer.as_bytes(),
                hlc: p.hlc,
                heads: p.heads.iter().map(|h| h.0).collect(),
                sig: p.sig,
            })
            .collect();
        let mut out = vec![PROOF_VERSION];
        // Encoding plain structs of bytes and integers cannot fail.
        out.extend(postcard::to_stdvec(&wire).unwrap_or_default());
        out
    }

    /// Decode a list written by [`Proof::encode_list`]; lengths are capped
    /// before anything is allocated for them.
    pub fn decode_list(bytes: &[u8]) -> Result<Vec<Proof>, BadProofs> {
        let (&version, body) = bytes
            .split_first()
            .ok_or_else(|| BadProofs("empty".into()))?;
        if version != PROOF_VERSION {
            return Err(BadProofs(format!("unknown version {version}")));
        }
        // Each proof takes at least 100 bytes, so the count cannot exceed the input.
        let wire: Vec<WireProof> =
            postcard::from_bytes(body).map_err(|e| BadProofs(e.to_string()))?;
        if wire.len() > MAX_PROOFS || wire.iter().any(|p| p.heads.len() > MAX_HEADS) {
            return Err(BadProofs("too many proofs or heads".into()));
        }
        Ok(wire
            .into_iter()
            .map(|w| Proof {
                signer: TillId::from_bytes(w.signer),
                hlc: w.hlc,
                heads: w.heads.into_iter().map(ChangeHash).collect(),
                sig: w.sig,
            })
            .collect())
    }

    /// The key an admin-key proof is kept under: the latest one per document.
    pub(crate) fn admin_slot(doc: &DocId, admin: &TillId) -> String {
        format!("{doc}\0{admin}\0admin")
    }

    /// The key this proof is kept under: one per document, signer and the
    /// actor of its first head (a till restored from a backup writes under a
    /// new actor, and its older proofs still cover the changes of the old one).
    pub(crate) fn slot(&self, doc: &DocId, head_actor: &[u8]) -> String {
        format!("{doc}\0{}\0{}", self.signer, hex::encode(head_actor))
    }
}

/// Who may write a document, as a sentence for refusals.
pub fn writers_of(doc: &DocId) -> &'static str {
    match doc {
        DocId::Membership => "the store's admin key",
        DocId::Config => "the admin till or a back-office till",
        DocId::Catalog => "the admin till, a back-office or a manager till",
        _ => "the till it belongs to",
    }
}

/// Whether a till of `role` may write `doc` (without the admin key).
pub fn role_may_write(doc: &DocId, role: Role, till: &TillId) -> bool {
    match doc {
        DocId::Membership => false,
        DocId::Config => role == Role::BackOffice,
        DocId::Catalog => matches!(role, Role::BackOffice | Role::Manager),
        _ => doc.owner() == Some(*till),
    }
}

/// How each change of a batch was proven.
#[derive(Debug, Default)]
pub(crate) struct Marks {
    /// Proven written by the till its actor names (or accepted by the admin key).
    pub by_author: HashSet<ChangeHash>,
    /// Beneath heads the admin key signed.
    pub by_admin: HashSet<ChangeHash>,
    /// Hashes reached that this till does not hold, with who vouches for them.
    pub frontier: Vec<(ChangeHash, TillId)>,
}

/// A change of the batch being checked, as the walk sees it.
pub(crate) struct Node {
    /// Its dependencies.
    pub deps: Vec<ChangeHash>,
    /// The till its actor id names.
    pub till: Option<TillId>,
}

/// Where a hash the walk reaches stands.
pub(crate) enum Reached<'a> {
    /// In the batch.
    Batch(&'a Node),
    /// Held by this till already: everything beneath it is held too.
    Held,
    /// Neither.
    Unknown,
}

/// Walk the dependency graph from `roots` (hash, signer), marking what each
/// signer vouches for: a signer vouches for the changes it wrote itself, the
/// admin key for every change beneath its heads.
pub(crate) fn walk<'a>(
    roots: &[(ChangeHash, TillId)],
    admin: Option<&TillId>,
    reach: &mut dyn FnMut(&ChangeHash) -> Reached<'a>,
) -> Marks {
    let mut marks = Marks::default();
    let mut by_signer: HashMap<TillId, Vec<ChangeHash>> = HashMap::new();
    for (h, s) in roots {
        by_signer.entry(*s).or_default().push(*h);
    }
    for (signer, mut stack) in by_signer {
        let is_admin = admin == Some(&signer);
        let mut seen = HashSet::new();
        while let Some(h) = stack.pop() {
            if !seen.insert(h) {
                continue;
            }
            match reach(&h) {
                Reached::Batch(node) => {
                    if is_admin {
                        marks.by_admin.insert(h);
                        marks.by_author.insert(h);
                    } else if node.till == Some(signer) {
                        marks.by_author.insert(h);
                    }
                    stack.extend(node.deps.iter().copied());
                }
                Reached::Held => {}
                Reached::Unknown => marks.frontier.push((h, signer)),
            }
        }
    }
    marks
}

/// Refuse a batch for a change no valid proof reaches.
pub(crate) fn unproven(doc: &DocId, writer: Option<TillId>) -> ApplyError {
    ApplyError::Unproven {
        doc: doc.to_string(),
        writer: writer
            .map(|t| t.fmt_short())
            .unwrap_or_else(|| "an unknown writer".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_round_trip_and_verify_only_for_their_document() {
        let key = TillKey::generate();
        let store = StoreId::random();
        let doc = DocId::Catalog;
        let p = Proof::sign(&key, &store, &doc, 7, vec![ChangeHash([3; 32])]);
        assert!(p.verify(&store, &doc));
        assert!(!p.verify(&store, &DocId::Config));
        assert!(!p.verify(&StoreId::random(), &doc));
        let mut forged = p.clone();
        forged.hlc = 8;
        assert!(!forged.verify(&store, &doc));
        let bytes = Proof::encode_list(&[p.clone(), p.clone()]);
        assert_eq!(
            Proof::decode_list(&bytes).expect("decode"),
            vec![p.clone(), p]
        );
        assert!(Proof::decode_list(&bytes[..bytes.len() - 1]).is_err());
        assert!(Proof::decode_list(&[9]).is_err());
        assert!(Proof::decode_list(&[]).is_err());
    }
}
