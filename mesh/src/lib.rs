//! How tills talk to each other.
//!
//! A till's daemon holds its [`tillmesh_store::Store`] on a thread of its own
//! behind a [`StoreHandle`]. Sync sessions ([`run_session`]) speak the
//! `tillmesh/sync/1` protocol ([`wire`]) over any byte stream: in the daemon, a
//! QUIC stream of an iroh connection whose peer has passed the membership check.
//! Everything a peer sends reaches the store through its merge entry points, which
//! check it before anything is kept.
#![deny(missing_docs)]

pub mod fuzzing;
pub mod gossip;
pub mod join;
pub mod keys;
pub mod node;
pub mod relay;
pub mod session;
pub mod wire;

pub use join::{JOIN_ALPN, JoinReply, Ticket, request_join};
pub use node::{
    BUSY, MAX_SESSIONS_PER_PEER, Node, NodeConfig, NodeError, OutboxReceiver, PeerAddr, PeerLink,
    Refusal, Revocation, SESSION_EVENTS_KEPT, SessionEvent, endpoint,
};
pub use session::{Limits, SessionError, SessionReport, run_session, run_session_with};
pub use tillmesh_store::{Events, Outbox, StoreClosed, StoreHandle};
