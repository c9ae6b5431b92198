//! Gossip: every local change is broadcast at once on the store's iroh-gossip topic
//! (one topic per store), so a sale reaches every till in milliseconds without a
//! sync session per peer. Receivers merge it through the store's checked entry
//! point; a change that cannot be applied yet (its dependencies have not arrived)
//! is kept, and anti-entropy repairs whatever gossip missed. Gossip connections
//! pass the same membership gate as every other protocol.

use serde::{Deserialize, Serialize};
use tillmesh_store::{DocId, StoreId};

/// Changes larger than this are left to anti-entropy.
pub const MAX_GOSSIP_CHANGE: usize = 32 * 1024;

/// One gossip message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GossipMsg {
    /// A change to a document (version 1 of the message format).
    Change {
        /// The document id.
        doc: String,
        /// The raw Automerge change.
        change: Vec<u8>,
    },
}

/// The gossip topic of a store.
pub fn topic(store: &StoreId) -> iroh_gossip::TopicId {
    let mut h = blake3::Hasher::new_derive_key("tillmesh gossip topic v1");
    h.update(store.as_bytes());
    iroh_gossip::TopicId::from_bytes(*h.finalize().as_bytes())
}

/// Encode a change for gossip, unless it is too large.
pub fn encode(doc: &DocId, change: Vec<u8>) -> Option<Vec<u8>> {
    if change.len() > MAX_GOSSIP_CHANGE {
        return None;
    }
    postcard::to_stdvec(&GossipMsg::Change {
        doc: doc.to_string(),
        change,
    })
    .ok()
}

/// Decode a gossip message.
pub fn decode(bytes: &[u8]) -> Option<(DocId, Vec<u8>)> {
    match postcard::from_bytes::<GossipMsg>(bytes).ok()? {
        GossipMsg::Change { doc, change } => Some((doc.parse().ok()?, change)),
    }
}
