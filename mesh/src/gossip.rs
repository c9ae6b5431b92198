//! Gossip: every local change is broadcast at once on the store's iroh-gossip topic
//! (one topic per store), so a sale reaches every till in milliseconds without a
//! sync session per peer. Receivers merge it through the store's checked entry
//! point; a change that cannot be applied yet (its dependencies have not arrived)
//! is kept, and anti-entropy repairs whatever gossip missed. Gossip connections
//! pass the same membership gate as every other protocol.

use serde::{Deserialize, Serialize};
use tillmesh_store::{ChangeHash, DocId, OwnChange, Proof, StoreId, TillId, TillKey};

/// Changes larger than this are left to anti-entropy.
pub const MAX_GOSSIP_CHANGE: usize = 32 * 1024;

/// One gossip message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GossipMsg {
    /// A change to a document without proofs (version 1 of the message
    /// format): still read, and refused unless earlier proofs reached it.
    Change {
        /// The document id.
        doc: String,
        /// The raw Automerge change.
        change: Vec<u8>,
    },
    /// A till's periodic status, signed by the till: others may relay it.
    Heartbeat {
        /// The encoded [`Heartbeat`].
        body: Vec<u8>,
        /// The till's ed25519 signature of `body`.
        sig: Vec<u8>,
    },
    /// A change to a document with the proofs of authorship its writer signed
    /// with it (version 2).
    Proven {
        /// The document id.
        doc: String,
        /// The raw Automerge change.
        change: Vec<u8>,
        /// The proofs, as `Proof::encode_list` writes them.
        proofs: Vec<u8>,
    },
    /// A change to one of its writer's own documents with its writer's proof
    /// of that change alone (version 3; see [`OwnChange`]): the document's
    /// till, the signer and the signed head are the change's own, so only the
    /// document's kind and period, the proof's clock and its signature travel.
    Own {
        /// `sales`, `stock` or `audit`.
        kind: String,
        /// The document's day or month.
        period: String,
        /// The raw Automerge change.
        change: Vec<u8>,
        /// The proof's HLC.
        hlc: u64,
        /// The proof's signature (64 bytes).
        sig: Vec<u8>,
    },
    /// What the sender holds of its gossip neighbours' own documents
    /// (version 4): sent to direct neighbours only, never forwarded, so the
    /// connection it came over names the holder. A till learns from it that
    /// its changes are on another till without waiting for a sync session.
    Holds {
        /// The documents and their heads.
        docs: Vec<Held>,
    },
}

/// One document in a [`GossipMsg::Holds`]: a till's own document and the
/// heads of it the sender holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    /// The document's owner.
    pub owner: [u8; 32],
    /// `sales`, `stock` or `audit`.
    pub kind: String,
    /// The document's day or month.
    pub period: String,
    /// The heads held.
    pub heads: Vec<[u8; 32]>,
}

/// At most this many documents in one [`GossipMsg::Holds`], and heads per document.
const MAX_HELD: usize = 256;
const MAX_HELD_HEADS: usize = 64;

/// What a till says of itself every few seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The till.
    pub till: [u8; 32],
    /// Its wall clock, unix ms.
    pub wall_ms: u64,
    /// Its changes no other till is known to hold.
    pub unreplicated: u64,
    /// When the oldest of them was made, unix ms.
    pub unreplicated_oldest_ms: Option<u64>,
    /// Its tillmesh version.
    pub version: String,
}

/// Encode and sign a heartbeat.
pub fn encode_heartbeat(key: &TillKey, hb: &Heartbeat) -> Option<Vec<u8>> {
    let body = postcard::to_stdvec(hb).ok()?;
    let sig = key.sign(&body).to_vec();
    postcard::to_stdvec(&GossipMsg::Heartbeat { body, sig }).ok()
}

/// A gossip message, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A change to merge, with the proofs that came with it.
    Change(DocId, Vec<u8>, Vec<Proof>),
    /// A heartbeat whose signature verified.
    Heartbeat(Heartbeat),
    /// Documents and heads the sender holds (believe it only from a direct
    /// neighbour: see [`GossipMsg::Holds`]).
    Holds(Vec<(DocId, Vec<ChangeHash>)>),
}

/// Decode a gossip message; heartbeats must carry their till's valid signature.
pub fn decode_checked(bytes: &[u8]) -> Option<Incoming> {
    match postcard::from_bytes::<GossipMsg>(bytes).ok()? {
        GossipMsg::Change { doc, change } => {
            Some(Incoming::Change(doc.parse().ok()?, change, Vec::new()))
        }
        GossipMsg::Proven {
            doc,
            change,
            proofs,
        } => Some(Incoming::Change(
            doc.parse().ok()?,
            change,
            Proof::decode_list(&proofs).ok()?,
        )),
        GossipMsg::Own {
            kind,
            period,
            change,
            hlc,
            sig,
        } => {
            let own = OwnChange {
                kind,
                period,
                hlc,
                sig: sig.try_into().ok()?,
            };
            let (doc, proof) = own.expand(&change)?;
            Some(Incoming::Change(doc, change, vec![proof]))
        }
        GossipMsg::Holds { docs } => {
            if docs.len() > MAX_HELD {
                return None;
            }
            let docs = docs
                .into_iter()
                .map(|h| {
                    let owner = TillId::from_bytes(h.owner);
                    let doc: DocId = format!("{}/{owner}/{}", h.kind, h.period).parse().ok()?;
                    (doc.owner() == Some(owner) && h.heads.len() <= MAX_HELD_HEADS)
                        .then(|| (doc, h.heads.into_iter().map(ChangeHash).collect()))
                })
                .collect::<Option<Vec<_>>>()?;
            Some(Incoming::Holds(docs))
        }
        GossipMsg::Heartbeat { body, sig } => {
            let hb: Heartbeat = postcard::from_bytes(&body).ok()?;
            let sig: [u8; 64] = sig.try_into().ok()?;
            tillmesh_store::verify(&TillId::from_bytes(hb.till), &body, &sig)
                .then_some(Incoming::Heartbeat(hb))
        }
    }
}

/// Encode what this till holds of other tills' own documents, for its
/// gossip neighbours (documents without a single owner are left out).
pub fn encode_holds(docs: &[(DocId, Vec<ChangeHash>)]) -> Option<Vec<u8>> {
    let docs: Vec<Held> = docs
        .iter()
        .take(MAX_HELD)
        .filter_map(|(doc, heads)| {
            let owner = doc.owner()?;
            let text = doc.to_string();
            Some(Held {
                owner: *owner.as_bytes(),
                kind: doc.kind().to_string(),
                period: text.rsplit('/').next()?.to_string(),
                heads: heads.iter().take(MAX_HELD_HEADS).map(|h| h.0).collect(),
            })
        })
        .collect();
    if docs.is_empty() {
        return None;
    }
    postcard::to_stdvec(&GossipMsg::Holds { docs }).ok()
}

/// The gossip topic of a store.
pub fn topic(store: &StoreId) -> iroh_gossip::TopicId {
    let mut h = blake3::Hasher::new_derive_key("tillmesh gossip topic v1");
    h.update(store.as_bytes());
    iroh_gossip::TopicId::from_bytes(*h.finalize().as_bytes())
}

/// Encode a change and its proofs for gossip, unless it is too large.
pub fn encode(doc: &DocId, change: Vec<u8>, proofs: &[Proof]) -> Option<Vec<u8>> {
    if change.len() > MAX_GOSSIP_CHANGE {
        return None;
    }
    if let Some(own) = OwnChange::of(doc, &change, proofs) {
        return postcard::to_stdvec(&GossipMsg::Own {
            kind: own.kind,
            period: own.period,
            change,
            hlc: own.hlc,
            sig: own.sig.to_vec(),
        })
        .ok();
    }
    postcard::to_stdvec(&GossipMsg::Proven {
        doc: doc.to_string(),
        change,
        proofs: Proof::encode_list(proofs),
    })
    .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tills_own_change_travels_with_its_proof_in_short_and_comes_back_whole() {
        use tillmesh_store::test_utils::{certified_in_memory, sale};
        let mut tills = certified_in_memory("Shop", &["A".into(), "B".into()], |a| {
            a.add_product(tillmesh_store::test_utils::product("TEA", 200))
                .expect("product");
        });
        let (mut b, _) = tills.remove(1);
        let _ = b.take_outbox();
        b.record_sale(sale("TEA", 1, tillmesh_store::Tender::Cash))
            .expect("sale");
        let out = b.take_outbox();
        let (doc, change, proofs) = out
            .iter()
            .find(|(d, ..)| d.kind() == "sales")
            .cloned()
            .expect("the sale's change");
        let short = encode(&doc, change.clone(), &proofs).expect("encode");
        let long = postcard::to_stdvec(&GossipMsg::Proven {
            doc: doc.to_string(),
            change: change.clone(),
            proofs: Proof::encode_list(&proofs),
        })
        .expect("long form");
        assert!(
            short.len() + 100 < long.len(),
            "{} vs {}",
            short.len(),
            long.len()
        );
        assert_eq!(
            decode_checked(&short),
            Some(Incoming::Change(doc, change.clone(), proofs.clone()))
        );
        // Claimed for another till's document: the actor decides, and a
        // signature over another document does not verify.
        let mut msg: GossipMsg = postcard::from_bytes(&short).expect("decode");
        if let GossipMsg::Own { kind, .. } = &mut msg {
            *kind = "stock".into();
        }
        let Some(Incoming::Change(other, _, p)) =
            decode_checked(&postcard::to_stdvec(&msg).expect("encode"))
        else {
            panic!("still decodes");
        };
        assert!(!p[0].verify(&b.store_id(), &other));
    }

    #[test]
    fn heartbeats_must_be_signed_by_their_till() {
        let key = TillKey::generate();
        let hb = Heartbeat {
            till: *key.till_id().as_bytes(),
            wall_ms: 1,
            unreplicated: 3,
            unreplicated_oldest_ms: Some(1),
            version: "x".into(),
        };
        let bytes = encode_heartbeat(&key, &hb).expect("encode");
        assert_eq!(
            decode_checked(&bytes),
            Some(Incoming::Heartbeat(hb.clone()))
        );
        // Signed by someone else in the name of `key`'s till: dropped.
        let forged = encode_heartbeat(&TillKey::generate(), &hb).expect("encode");
        assert_eq!(decode_checked(&forged), None);
        assert_eq!(decode_checked(b"garbage"), None);
    }
}
