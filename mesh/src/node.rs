//! [`Node`]: a till on the mesh.
//!
//! The node owns the till's iroh endpoint (its key is the till key; no n0 relays,
//! DNS or pkarr: relays come from the store's configuration, peer addresses from
//! the membership document and tickets). Every incoming connection passes
//! the gate right after the TLS handshake: a peer that is not a certified,
//! unrevoked member is refused before any data moves, and the refusal is audited.
//! Only the join protocol is open to strangers, and it admits nobody without a
//! valid one-time invitation.
//!
//! Anti-entropy runs a sync session with a few random members every interval, and
//! with every member at start and whenever asked ([`Node::sync_now`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use iroh::address_lookup::memory::MemoryLookup;
use iroh::endpoint::{
    AfterHandshakeOutcome, Connection, ConnectionError, EndpointHooks, PortmapperConfig, Side,
    VarInt, WeakConnectionHandle, presets,
};
use iroh::protocol::{AcceptError, ProtocolHandler, Router};
use iroh::{
    Endpoint, EndpointAddr, EndpointId, NetReportConfig, RelayConfig, RelayMap, RelayMode,
    RelayUrl, SecretKey,
};
use iroh_relay::RelayQuicConfig;
use rand::seq::{IndexedRandom, SliceRandom};
use serde::{Deserialize, Serialize};
use tillmesh_store::{ChangeHash, DocId, MemberStatus, StoreId, TillId, TillKey};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

use crate::join::{JOIN_ALPN, JoinProto};
use crate::relay::Pins;
use crate::session::{SessionReport, run_session_with};
use crate::wire::SYNC_ALPN;
use tillmesh_store::StoreHandle;

/// How long to try reaching a peer before giving up until the next round.
const DIAL_TIMEOUT: Duration = Duration::from_secs(5);

/// A whole session, however large the catch-up, ends within this.
const SESSION_TIMEOUT: Duration = Duration::from_secs(600);

/// How many random members a till asks to take it into the gossip swarm.
const GOSSIP_BOOTSTRAP: usize = 3;

/// Below this many gossip neighbours a till asks again at each anti-entropy round.
const GOSSIP_MIN_NEIGHBOURS: usize = 2;

/// How long changes gather before this till tells its neighbours, in one
/// message, which of their changes it now holds.
const HOLDS_BATCH: Duration = Duration::from_millis(250);

/// QUIC close code for a till whose membership the admin revoked: it learns
/// it from the refusal.
pub const REVOKED: u32 = 410;

/// What a revoked till is told when it is refused.
pub const REVOKED_REASON: &[u8] = b"this till's membership was revoked by the store's admin";

/// QUIC close code for a refused peer.
pub const NOT_A_MEMBER: u32 = 403;

/// At most this many sync sessions run with one peer at once (both sides may
/// dial at the same moment): a peer that opens more connections is refused with
/// [`BUSY`], so one peer cannot multiply what its sessions hold in memory (each
/// reassembles a sync message of up to [`crate::wire::MAX_SYNC_MESSAGE`] bytes).
pub const MAX_SESSIONS_PER_PEER: u32 = 2;

/// QUIC close code for a sync connection over [`MAX_SESSIONS_PER_PEER`].
pub const BUSY: u32 = 429;

/// A till stops syncing on its peers' word that it was revoked once this many
/// different members refused it so (or every member it synced with since it
/// started, when fewer): one rogue member alone cannot silence an honest till
/// that syncs with several.
const REFUSALS_TO_STOP: usize = 3;

/// A peer, or changes from it, this till refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// When (unix ms).
    pub at_ms: u64,
    /// The peer.
    pub peer: TillId,
    /// Whether the peer is a till the store revoked.
    pub revoked: bool,
    /// Why, in words.
    pub cause: String,
}

/// How a refusal of a revoked till begins.
const REFUSED_REVOKED: &str = "revoked till";

/// The refusals kept for [`Node::refusals`] (the newest).
const REFUSALS_KEPT: usize = 1024;

/// How this till learned that its own membership is over.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Revocation {
    /// The membership this till holds carries the admin's signed revocation.
    pub signed: bool,
    /// Members that refused this till as revoked (QUIC close code [`REVOKED`]).
    pub refused_by: Vec<TillId>,
    /// It stopped syncing (see [`Node::is_revoked`]).
    pub stopped: bool,
}

/// Whether `e` (or an error beneath it) is a connection the peer closed with
/// code [`REVOKED`].
fn refused_as_revoked(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(ConnectionError::ApplicationClosed(c)) = err.downcast_ref::<ConnectionError>() {
            return c.error_code == VarInt::from_u32(REVOKED);
        }
        // A stream's error reaches a session as an `io::Error` wrapping it,
        // whose `source()` would skip the stream error itself.
        cur = match err.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    false
}

/// QUIC close code for a peer cut off by [`Node::cut_off`].
const CUT_OFF: u32 = 503;

/// How a node runs.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Local UDP address for direct paths; `None` leaves the relays as the only path.
    pub bind: Option<SocketAddr>,
    /// Relay URLs (the store's own relay, say `http://10.0.0.2:3340`).
    pub relays: Vec<String>,
    /// Certificate fingerprints of relays that serve QUIC address discovery, by
    /// URL (see [`crate::relay`]): with one, the till learns its public address
    /// from that relay and can go direct from behind a NAT.
    pub relay_certs: BTreeMap<String, String>,
    /// Time between anti-entropy rounds.
    pub sync_interval: Duration,
    /// How each sync session paces itself.
    pub limits: crate::session::Limits,
    /// Peers per anti-entropy round.
    pub fanout: usize,
    /// The store's admin key, on the admin till: it answers join requests.
    pub admin: Option<TillKey>,
    /// Find the store's other tills on the local network by mDNS (and announce
    /// this one), where the network allows multicast.
    pub mdns: bool,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            bind: Some(SocketAddr::from(([0, 0, 0, 0], 0))),
            relays: Vec::new(),
            relay_certs: BTreeMap::new(),
            sync_interval: Duration::from_secs(300),
            limits: crate::session::Limits::default(),
            fanout: 3,
            admin: None,
            mdns: false,
        }
    }
}

/// The mDNS service name of `store`'s tills: short (DNS-SD names have at most 15
/// characters) and different for each store, so tills see only their own store.
pub fn mdns_service(store: StoreId) -> String {
    format!("tm-{}", &store.to_string()[..12])
}

/// The relays a node uses now, with the certificate fingerprints pinned for
/// them (for listed relays only): shared by the node's tasks, changed by
/// [`Node::set_relays`].
#[derive(Debug, Clone, Default)]
pub(crate) struct Relays(Arc<RwLock<RelayList>>);

/// Relay URLs, and the certificate fingerprints pinned for them by URL.
type RelayList = (Vec<String>, BTreeMap<String, String>);

impl Relays {
    fn new(urls: Vec<String>, certs: BTreeMap<String, String>) -> Relays {
        Relays(Arc::new(RwLock::new((urls, certs))))
    }

    /// The relay URLs.
    pub(crate) fn urls(&self) -> Vec<String> {
        self.0.read().map(|r| r.0.clone()).unwrap_or_default()
    }

    fn get(&self) -> (Vec<String>, BTreeMap<String, String>) {
        self.0.read().map(|r| r.clone()).unwrap_or_default()
    }

    fn set(&self, urls: Vec<String>, certs: BTreeMap<String, String>) {
        if let Ok(mut r) = self.0.write() {
            *r = (urls, certs);
        }
    }
}

/// How a till can be reached, as published in the membership document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerAddr {
    /// Direct socket addresses.
    #[serde(default)]
    pub ip: Vec<SocketAddr>,
    /// Relay URLs it is reachable through.
    #[serde(default)]
    pub relay: Vec<String>,
}

impl PeerAddr {
    /// The iroh address of till `id` at these addresses.
    pub fn endpoint_addr(&self, id: &TillId) -> Option<EndpointAddr> {
        let eid = EndpointId::from_bytes(id.as_bytes()).ok()?;
        let mut addr = EndpointAddr::new(eid);
        for ip in &self.ip {
            addr = addr.with_ip_addr(*ip);
        }
        for r in &self.relay {
            if let Ok(url) = r.parse::<RelayUrl>() {
                addr = addr.with_relay_url(url);
            }
        }
        Some(addr)
    }
}

/// What this till knows of a peer's connection.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PeerLink {
    /// `direct`, `relay`, or `offline`.
    pub path: String,
    /// Round-trip time of the selected path.
    pub rtt_ms: Option<f64>,
    /// When the last sync session with it completed (unix ms).
    pub last_sync: Option<u64>,
    /// Changes it sent in the last session: how far behind this till was.
    pub last_received: Option<usize>,
    /// Its clock minus ours (ms), from the last session.
    pub clock_skew_ms: Option<i64>,
    /// Why the last attempt failed, if it did.
    pub last_error: Option<String>,
    /// When its last heartbeat arrived (unix ms).
    pub last_heartbeat: Option<u64>,
    /// Its changes no other till holds, by its last heartbeat.
    pub unreplicated: Option<u64>,
    /// When the oldest of them was made (unix ms), by its last heartbeat.
    pub unreplicated_oldest_ms: Option<u64>,
    /// Sync sessions with it under way now (either side may have dialled).
    pub sessions: u32,
}

/// Counts a sync session with a peer in its [`PeerLink`] while it runs, so
/// anti-entropy does not start a second one beside it.
struct SessionMark {
    links: Links,
    peer: TillId,
}

impl SessionMark {
    fn new(links: &Links, peer: TillId) -> SessionMark {
        if let Ok(mut l) = links.lock() {
            l.entry(peer).or_default().sessions += 1;
        }
        SessionMark {
            links: links.clone(),
            peer,
        }
    }

    /// A mark for a session `peer` asked for, unless [`MAX_SESSIONS_PER_PEER`]
    /// already run with it.
    fn within_limit(links: &Links, peer: TillId) -> Option<SessionMark> {
        let mut l = links.lock().ok()?;
        let link = l.entry(peer).or_default();
        if link.sessions >= MAX_SESSIONS_PER_PEER {
            return None;
        }
        link.sessions += 1;
        Some(SessionMark {
            links: links.clone(),
            peer,
        })
    }
}

impl Drop for SessionMark {
    fn drop(&mut self) {
        if let Ok(mut l) = self.links.lock()
            && let Some(link) = l.get_mut(&self.peer)
        {
            link.sessions = link.sessions.saturating_sub(1);
        }
    }
}

/// Local changes leaving the store thread, for gossip.
pub type OutboxReceiver = mpsc::UnboundedReceiver<(DocId, Vec<u8>, Vec<tillmesh_store::Proof>)>;

/// Links by till.
pub type Links = Arc<Mutex<HashMap<TillId, PeerLink>>>;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Refuses every incoming connection from a non-member, except for joining.
/// Members are cached; a miss asks the store, which knows the latest certificates.
#[derive(Debug, Clone)]
struct Gate {
    members: Arc<RwLock<HashSet<EndpointId>>>,
    /// Peers this till behaves as if cut off from ([`Node::cut_off`]).
    cut: Arc<RwLock<HashSet<EndpointId>>>,
    store: StoreHandle,
    refused: mpsc::UnboundedSender<(EndpointId, String)>,
    conns: Conns,
}

/// Every open connection per peer, so a revocation can cut them all.
type Conns = Arc<Mutex<HashMap<EndpointId, Vec<WeakConnectionHandle>>>>;

/// Whether `till` is a certified, unrevoked member, by the store.
async fn is_member(store: &StoreHandle, till: TillId) -> bool {
    matches!(
        store.call(move |s| s.member_status(&till)).await,
        Ok(Ok(MemberStatus::Member(_)))
    )
}

impl EndpointHooks for Gate {
    async fn after_handshake<'a>(&'a self, conn: &'a Connection) -> AfterHandshakeOutcome {
        if self.cut.read().is_ok_and(|c| c.contains(&conn.remote_id())) {
            return AfterHandshakeOutcome::Reject {
                error_code: VarInt::from_u32(CUT_OFF),
                reason: b"cut off".to_vec(),
            };
        }
        if conn.alpn() == JOIN_ALPN {
            return AfterHandshakeOutcome::Accept;
        }
        let remote = conn.remote_id();
        let accept = || {
            if let Ok(mut c) = self.conns.lock() {
                let list = c.entry(remote).or_default();
                list.retain(|w| w.upgrade().is_some());
                list.push(conn.weak_handle());
            }
            AfterHandshakeOutcome::Accept
        };
        // A till dials sync sessions to peers it chose, unless they are revoked (a
        // joining till dials its admin till before it knows the membership);
        // gossip it dials only to members.
        if conn.side() != Side::Server && conn.alpn() != iroh_gossip::ALPN {
            let till = TillId::from_bytes(*remote.as_bytes());
            let revoked = matches!(
                self.store.call(move |s| s.member_status(&till)).await,
                Ok(Ok(MemberStatus::Revoked(_)))
            );
            if !revoked {
                return accept();
            }
        }
        let cached = self
            .members
            .read()
            .map(|m| m.contains(&remote))
            .unwrap_or(false);
        if cached || is_member(&self.store, TillId::from_bytes(*remote.as_bytes())).await {
            if let Ok(mut m) = self.members.write() {
                m.insert(remote);
            }
            return accept();
        }
        let alpn = String::from_utf8_lossy(conn.alpn()).into_owned();
        let till = TillId::from_bytes(*remote.as_bytes());
        if matches!(
            self.store.call(move |s| s.member_status(&till)).await,
            Ok(Ok(MemberStatus::Revoked(_)))
        ) {
            let _ = self
                .refused
                .send((remote, format!("{REFUSED_REVOKED} ({alpn})")));
            return AfterHandshakeOutcome::Reject {
                error_code: VarInt::from_u32(REVOKED),
                reason: REVOKED_REASON.to_vec(),
            };
        }
        let _ = self
            .refused
            .send((remote, format!("not a member ({alpn})")));
        AfterHandshakeOutcome::Reject {
            error_code: VarInt::from_u32(NOT_A_MEMBER),
            reason: b"not a member of this store".to_vec(),
        }
    }
}

/// Milliseconds, to the microsecond.
fn ms(d: Duration) -> f64 {
    d.as_micros() as f64 / 1000.0
}

/// The path a connection uses now: (`direct`|`relay`, rtt).
pub fn path_of(conn: &Connection) -> (String, Option<f64>) {
    match conn.paths().iter().find(|p| p.is_selected()) {
        Some(p) if p.is_relay() => ("relay".into(), Some(ms(p.rtt()))),
        Some(p) => ("direct".into(), Some(ms(p.rtt()))),
        None => ("offline".into(), None),
    }
}

#[derive(Debug, Clone)]
struct SyncProto {
    store: StoreHandle,
    store_id: StoreId,
    links: Links,
    members: Arc<RwLock<HashSet<EndpointId>>>,
    after: AfterSession,
    tuning: Tuning,
}

/// The store's sync settings as the node uses them: the interval between
/// anti-entropy rounds and each session's [`crate::session::Limits`],
/// changed while the node runs ([`Node::set_tuning`]).
#[derive(Debug, Clone)]
struct Tuning(Arc<Mutex<(Duration, crate::session::Limits)>>);

impl Tuning {
    fn new(interval: Duration, limits: crate::session::Limits) -> Self {
        Tuning(Arc::new(Mutex::new((interval, limits))))
    }

    fn get(&self) -> (Duration, crate::session::Limits) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Use these from now on; gives whether anything changed.
    fn set(&self, interval: Duration, limits: crate::session::Limits) -> bool {
        let mut t = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let changed = *t != (interval, limits);
        *t = (interval, limits);
        changed
    }
}

/// What the node does after a sync session or a gossiped change: audit the
/// refusals (once per peer and cause), and act on a membership change at once
/// (a revoked till loses its connections as soon as its revocation arrives).
#[derive(Debug, Clone)]
struct AfterSession {
    refused: mpsc::UnboundedSender<(EndpointId, String)>,
    membership: Arc<Notify>,
    events: tokio::sync::broadcast::Sender<SessionEvent>,
}

/// A sync session with a peer, as [`Node::session_events`] tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// A session began.
    Started {
        /// The peer.
        peer: TillId,
        /// `direct` or `relay`.
        path: String,
        /// Whether this till dialled (else the peer did).
        dialled: bool,
    },
    /// A session ended.
    Finished {
        /// The peer.
        peer: TillId,
        /// `direct` or `relay`.
        path: String,
        /// Changes this till received that it did not have.
        changes: usize,
        /// Bytes this till sent.
        bytes_sent: usize,
        /// Bytes this till received.
        bytes_received: usize,
        /// Why it failed, if it did.
        error: Option<String>,
    },
}

impl AfterSession {
    /// A session with `peer` over `conn` begins.
    fn started(&self, peer: TillId, conn: &Connection, dialled: bool) {
        let (path, _) = path_of(conn);
        let _ = self.events.send(SessionEvent::Started {
            peer,
            path,
            dialled,
        });
    }

    fn session(
        &self,
        peer: TillId,
        conn: &Connection,
        result: &Result<SessionReport, crate::SessionError>,
    ) {
        let (path, _) = path_of(conn);
        let _ = self.events.send(match result {
            Ok(r) => SessionEvent::Finished {
                peer,
                path,
                changes: r.changes_received,
                bytes_sent: r.bytes_sent,
                bytes_received: r.bytes_received,
                error: None,
            },
            Err(e) => SessionEvent::Finished {
                peer,
                path,
                changes: 0,
                bytes_sent: 0,
                bytes_received: 0,
                error: Some(e.to_string()),
            },
        });
        let Ok(r) = result else {
            return;
        };
        if let Ok(eid) = EndpointId::from_bytes(peer.as_bytes()) {
            for (doc, why) in &r.refused {
                let _ = self.refused.send((eid, refusal_cause(doc, why)));
            }
        }
        if r.membership_changed {
            self.membership.notify_one();
        }
    }
}

/// The cause a refusal of changes is audited under: the kind of document and
/// the kind of refusal, so one rogue peer makes one entry, not one per attempt.
fn refusal_cause(doc: &str, why: &str) -> String {
    let kind = doc.split('/').next().unwrap_or(doc);
    let what = if why.contains("proof") {
        "changes without a valid proof of authorship"
    } else if why.contains("may write") {
        "changes its writer's role does not allow"
    } else {
        "changes that could not be applied"
    };
    format!("{what} ({kind})")
}

impl ProtocolHandler for SyncProto {
    async fn accept(&self, conn: Connection) -> Result<(), AcceptError> {
        let peer = TillId::from_bytes(*conn.remote_id().as_bytes());
        // The gate checked at handshake; the store has the last word (a revocation
        // may have arrived since).
        if !is_member(&self.store, peer).await {
            if let Ok(mut m) = self.members.write() {
                m.remove(&conn.remote_id());
            }
            conn.close(
                VarInt::from_u32(NOT_A_MEMBER),
                b"not a member of this store",
            );
            return Ok(());
        }
        let Some(_mark) = SessionMark::within_limit(&self.links, peer) else {
            tracing::warn!(peer = %peer.fmt_short(), "refused a sync session: too many at once with this peer");
            conn.close(
                VarInt::from_u32(BUSY),
                b"too many sync sessions at once with this till",
            );
            return Ok(());
        };
        let (send, recv) = conn.accept_bi().await?;
        self.after.started(peer, &conn, false);
        let limits = self.tuning.get().1;
        let result = run_session_with(&self.store, self.store_id, peer, recv, send, limits).await;
        record(&self.links, peer, &conn, &result);
        self.after.session(peer, &conn, &result);
        if let Err(e) = &result {
            tracing::warn!(peer = %peer.fmt_short(), error = %e, "incoming sync failed");
        }
        // The dialer closes once it has read our Bye.
        let _ = tokio::time::timeout(Duration::from_secs(5), conn.closed()).await;
        Ok(())
    }
}

fn record(
    links: &Links,
    peer: TillId,
    conn: &Connection,
    result: &Result<SessionReport, crate::SessionError>,
) {
    let (path, rtt) = path_of(conn);
    if let Ok(mut l) = links.lock() {
        let link = l.entry(peer).or_default();
        link.path = path;
        link.rtt_ms = rtt;
        match result {
            Ok(r) => {
                if r.changes_received > 0 {
                    tracing::info!(
                        peer = %peer.fmt_short(),
                        docs = r.docs,
                        received = r.changes_received,
                        bytes = r.bytes_received,
                        "synced"
                    );
                }
                link.last_sync = Some(now_ms());
                link.last_received = Some(r.changes_received);
                link.clock_skew_ms = Some(r.clock_skew_ms);
                link.last_error = None;
            }
            Err(e) => link.last_error = Some(e.to_string()),
        }
    }
}

/// Session events kept for a slow receiver of [`Node::session_events`].
pub const SESSION_EVENTS_KEPT: usize = 1024;

/// Sync sessions an anti-entropy round runs at the same time.
const MAX_CONCURRENT_SESSIONS: usize = 8;

/// Time between checks of the gossip neighbours while a till has enough of them.
const GOSSIP_CHECK: Duration = Duration::from_secs(2);

/// Longest wait between attempts of a till that reaches no member.
const GOSSIP_MAX_BACKOFF: Duration = Duration::from_secs(16);

/// Dial `peers` on the gossip ALPN (concurrently, each within [`DIAL_TIMEOUT`]), hand
/// each connection to gossip, then ask the peers that answered to take this till into
/// the swarm. Returns how many answered.
///
/// iroh-gossip 0.101 dials by itself when asked to join a peer, but once such a dial
/// fails (no address yet, the peer offline or refusing us) it keeps the peer as
/// "pending" with a queued message and never dials it again, and a peer whose
/// connection closed before it became a neighbour keeps a dead sender: every later
/// message to it is dropped. A till that tried its bootstrap peers before it knew
/// their addresses was cut off for good. A connection handed over through
/// `handle_connection` replaces either state, so the node dials itself.
async fn gossip_join(
    endpoint: &Endpoint,
    gossip: &iroh_gossip::Gossip,
    sender: &iroh_gossip::api::GossipSender,
    peers: Vec<EndpointId>,
) -> usize {
    let mut dials = tokio::task::JoinSet::new();
    for peer in peers {
        let endpoint = endpoint.clone();
        dials.spawn(async move {
            match tokio::time::timeout(DIAL_TIMEOUT, endpoint.connect(peer, iroh_gossip::ALPN))
                .await
            {
                Ok(Ok(conn)) => Some(conn),
                Ok(Err(e)) => {
                    tracing::debug!(peer = %peer.fmt_short(), error = %e, "gossip dial failed");
                    None
                }
                Err(_) => {
                    tracing::debug!(peer = %peer.fmt_short(), "gossip dial timed out");
                    None
                }
            }
        });
    }
    let mut reached = Vec::new();
    while let Some(done) = dials.join_next().await {
        if let Ok(Some(conn)) = done {
            let peer = conn.remote_id();
            if gossip.handle_connection(conn).await.is_ok() {
                reached.push(peer);
            }
        }
    }
    let n = reached.len();
    if n > 0 {
        let _ = sender.join_peers(reached).await;
    }
    n
}

/// Keeps this till in its store's gossip swarm: while it has fewer than
/// [`GOSSIP_MIN_NEIGHBOURS`] neighbours (at start, after a network cut, when peers
/// restarted) it asks [`GOSSIP_BOOTSTRAP`] random members to take it in, backing off
/// while none answers; newly certified members are asked at once.
///
/// A swarm split by a network partition stays split once the network heals (every
/// till still has neighbours on its own side), so a till that has not heard a
/// member's heartbeat for three heartbeat periods asks that member directly, one
/// member per three periods: the join links the two sides again.
async fn keep_in_swarm(
    ctx: SyncContext,
    gossip: iroh_gossip::Gossip,
    sender: iroh_gossip::api::GossipSender,
    neighbours: Arc<Mutex<Vec<EndpointId>>>,
    wake: Arc<Notify>,
    mut joined: mpsc::UnboundedReceiver<Vec<EndpointId>>,
    heartbeat_every: Duration,
) {
    let mut backoff = Duration::from_secs(1);
    let mut new_members: Vec<EndpointId> = Vec::new();
    let silence = heartbeat_every * 3;
    let started = now_ms();
    let mut last_bridge = std::time::Instant::now();
    loop {
        let current: HashSet<EndpointId> = neighbours
            .lock()
            .map(|n| n.iter().copied().collect())
            .unwrap_or_default();
        let known = ctx.members.read().map(|m| m.len()).unwrap_or(0);
        let lacking = current.len() < GOSSIP_MIN_NEIGHBOURS.min(known);
        let mut ask: Vec<EndpointId> = new_members
            .drain(..)
            .filter(|p| !current.contains(p))
            .collect();
        if lacking {
            let mut except = current.clone();
            except.extend(ask.iter().copied());
            ask.extend(ctx.random_members(GOSSIP_BOOTSTRAP, &except));
        } else if last_bridge.elapsed() >= silence {
            last_bridge = std::time::Instant::now();
            let silent = ctx.silent_members(&current, started, silence);
            if let Some(peer) = silent.choose(&mut rand::rng()) {
                tracing::debug!(peer = %peer.fmt_short(), silent = silent.len(), "no heartbeat from a member: asking it to join");
                ask.push(*peer);
            }
        }
        let mut wait = GOSSIP_CHECK;
        if !ask.is_empty() {
            let asked = ask.len();
            let reached = gossip_join(&ctx.endpoint, &gossip, &sender, ask).await;
            tracing::debug!(
                neighbours = current.len(),
                asked,
                reached,
                "asked members to take this till into the gossip swarm"
            );
            if lacking {
                if reached == 0 {
                    wait = backoff;
                    backoff = (backoff * 2).min(GOSSIP_MAX_BACKOFF);
                } else {
                    // Give the answers a moment to arrive before looking again.
                    wait = Duration::from_secs(1);
                    backoff = Duration::from_secs(1);
                }
            }
        } else if !lacking {
            backoff = Duration::from_secs(1);
        }
        tokio::select! {
            added = joined.recv() => match added {
                Some(added) => new_members.extend(added),
                None => break,
            },
            _ = wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Build an endpoint for `key` with no n0 services: relays and direct binding
/// exactly as configured. A relay with a certificate fingerprint in `relay_certs`
/// is also asked for this till's public address (QUIC address discovery, on the
/// relay's port number over UDP), trusting that certificate only.
pub async fn endpoint(
    key: &TillKey,
    bind: Option<SocketAddr>,
    relays: &[String],
    relay_certs: &BTreeMap<String, String>,
    hooks: Option<impl EndpointHooks + 'static>,
) -> Result<Endpoint, NodeError> {
    endpoint_with_pins(key, bind, relays, relay_certs, hooks, &Pins::default()).await
}

/// [`endpoint`], its pinned relay certificates in `pins`, which the caller may
/// change later (with [`Endpoint::insert_relay`] for new relays).
pub async fn endpoint_with_pins(
    key: &TillKey,
    bind: Option<SocketAddr>,
    relays: &[String],
    relay_certs: &BTreeMap<String, String>,
    hooks: Option<impl EndpointHooks + 'static>,
    pins: &Pins,
) -> Result<Endpoint, NodeError> {
    let mut builder = Endpoint::builder(presets::Minimal)
        .secret_key(SecretKey::from_bytes(&key.seed()))
        .clear_address_lookup()
        .clear_ip_transports()
        .portmapper_config(PortmapperConfig::Disabled);
    if let Some(addr) = bind {
        builder = builder
            .bind_addr(addr)
            .map_err(|e| NodeError::Bind(e.to_string()))?;
    }
    let certs = listed(relays, relay_certs.clone());
    let configs = relay_configs(relays, &certs)?;
    pins.set(certs.into_values());
    builder = builder.ca_tls_config(crate::relay::pinned_trust(pins.clone()));
    // The captive-portal probe would go to port 80 of the relay host.
    let mut net = NetReportConfig::default();
    net.captive_portal_check = false;
    builder = builder
        .relay_mode(RelayMode::Custom(RelayMap::from_iter(configs)))
        .net_report_config(net);
    if let Some(h) = hooks {
        builder = builder.hooks(h);
    }
    builder
        .bind()
        .await
        .map_err(|e| NodeError::Bind(e.to_string()))
}

/// The certificate fingerprints of `certs` that are pinned for relays in
/// `relays`; the rest are ignored.
fn listed(relays: &[String], certs: BTreeMap<String, String>) -> BTreeMap<String, String> {
    certs
        .into_iter()
        .filter(|(url, _)| relays.contains(url))
        .collect()
}

/// Each relay's configuration, in order: with address discovery (on the relay's
/// port number over UDP) when its certificate is pinned in `certs`.
fn relay_configs(
    relays: &[String],
    certs: &BTreeMap<String, String>,
) -> Result<Vec<RelayConfig>, NodeError> {
    relays
        .iter()
        .map(|url| {
            let parsed: RelayUrl = url
                .parse()
                .map_err(|e| NodeError::Config(format!("relay URL {url:?}: {e}")))?;
            let qad = certs.contains_key(url).then(|| {
                RelayQuicConfig::new(
                    parsed
                        .port_or_known_default()
                        .unwrap_or(crate::relay::DEFAULT_PORT),
                )
            });
            Ok(RelayConfig::new(parsed, qad))
        })
        .collect()
}

/// Starting or running the node failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The endpoint could not bind.
    #[error("cannot start the mesh endpoint: {0}")]
    Bind(String),
    /// Configuration is invalid.
    #[error("{0}")]
    Config(String),
    /// A peer could not be reached.
    #[error("cannot reach till {peer}: {reason}")]
    Unreachable {
        /// The peer.
        peer: String,
        /// Why.
        reason: String,
    },
    /// The sync session failed.
    #[error(transparent)]
    Session(#[from] crate::SessionError),
    /// The store shut down.
    #[error(transparent)]
    Closed(#[from] crate::StoreClosed),
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] tillmesh_store::StorageError),
}

/// A till on the mesh.
#[derive(Debug)]
pub struct Node {
    ctx: SyncContext,
    /// Gossiped changes applied to the store.
    gossip_applied: Arc<AtomicU64>,
    /// The newest refusals, for alerts.
    refusals: Arc<Mutex<std::collections::VecDeque<Refusal>>>,
    neighbours: Arc<AtomicUsize>,
    neighbour_ids: Arc<Mutex<Vec<EndpointId>>>,
    gossip_wake: Arc<Notify>,
    cut: Arc<RwLock<HashSet<EndpointId>>>,
    router: Router,
    wake: Arc<Notify>,
    stop: Arc<Notify>,
    tasks: Vec<JoinHandle<()>>,
}

impl Node {
    /// Start the node for `store` with the till's `key`.
    pub async fn spawn(
        store: StoreHandle,
        key: &TillKey,
        config: NodeConfig,
        outbox: Option<OutboxReceiver>,
    ) -> Result<Node, NodeError> {
        let store_id = store.call(|s| s.store_id()).await?;
        let till = key.till_id();
        let members: Arc<RwLock<HashSet<EndpointId>>> = Arc::default();
        let (refused_tx, mut refused_rx) = mpsc::unbounded_channel();
        let after = AfterSession {
            refused: refused_tx.clone(),
            membership: Arc::new(Notify::new()),
            events: tokio::sync::broadcast::channel(SESSION_EVENTS_KEPT).0,
        };
        let conns: Conns = Arc::default();
        let cut: Arc<RwLock<HashSet<EndpointId>>> = Arc::default();
        let gate = Gate {
            members: members.clone(),
            cut: cut.clone(),
            store: store.clone(),
            refused: refused_tx,
            conns: conns.clone(),
        };
        let pins = Pins::default();
        let endpoint = endpoint_with_pins(
            key,
            config.bind,
            &config.relays,
            &config.relay_certs,
            Some(gate),
            &pins,
        )
        .await?;
        let relays = Relays::new(
            config.relays.clone(),
            listed(&config.relays, config.relay_certs.clone()),
        );
        let lookup = MemoryLookup::new();
        let lookups = endpoint
            .address_lookup()
            .map_err(|e| NodeError::Bind(e.to_string()))?;
        lookups.add(lookup.clone());
        if config.mdns {
            match iroh_mdns_address_lookup::MdnsAddressLookup::builder()
                .service_name(mdns_service(store_id))
                .build(endpoint.id())
            {
                Ok(mdns) => lookups.add(mdns),
                Err(e) => tracing::warn!(
                    error = %e,
                    "mDNS is not available here; tills find each other through the relays and the addresses they publish"
                ),
            }
        }
        let links: Links = Arc::default();
        let wake = Arc::new(Notify::new());
        let tuning = Tuning::new(config.sync_interval, config.limits);
        let mut router = Router::builder(endpoint.clone()).accept(
            SYNC_ALPN,
            SyncProto {
                store: store.clone(),
                store_id,
                links: links.clone(),
                members: members.clone(),
                after: after.clone(),
                tuning: tuning.clone(),
            },
        );
        if let Some(admin) = &config.admin {
            router = router.accept(
                JOIN_ALPN,
                JoinProto {
                    store: store.clone(),
                    admin: admin.clone(),
                    relays: relays.clone(),
                    wake: wake.clone(),
                    refusals: Default::default(),
                },
            );
        }
        if config.admin.is_some() {
            // The admin till holds the backup keys and hands them to members.
            router = router.accept(
                crate::keys::KEYS_ALPN,
                crate::keys::KeysProto {
                    store: store.clone(),
                },
            );
        }
        let gossip = iroh_gossip::Gossip::builder()
            .max_message_size(crate::gossip::MAX_GOSSIP_CHANGE + 1024)
            .spawn(endpoint.clone());
        let router = router.accept(iroh_gossip::ALPN, gossip.clone()).spawn();
        let stop = Arc::new(Notify::new());
        let (joined, mut joined_rx) = mpsc::unbounded_channel();
        let mut node = Node {
            gossip_applied: Arc::default(),
            refusals: Arc::default(),
            neighbours: Arc::default(),
            neighbour_ids: Arc::default(),
            gossip_wake: Arc::default(),
            cut,
            ctx: SyncContext {
                endpoint,
                store,
                store_id,
                till,
                lookup,
                members,
                links,
                relays,
                pins,
                joined,
                conns,
                after: after.clone(),
                revoked: Arc::default(),
                tuning,
            },
            router,
            wake,
            stop,
            tasks: Vec::new(),
        };
        node.refresh().await?;
        node.publish_address().await?;

        // Audit refusals, once per peer and cause per hour; keep the newest
        // for alerts.
        let store = node.ctx.store.clone();
        let kept = node.refusals.clone();
        node.tasks.push(tokio::spawn(async move {
            let mut seen: HashMap<(EndpointId, String), u64> = HashMap::new();
            while let Some((peer, cause)) = refused_rx.recv().await {
                tracing::warn!(peer = %peer.fmt_short(), cause, "refused a peer or its changes");
                let now = now_ms();
                if let Ok(mut k) = kept.lock() {
                    if k.len() >= REFUSALS_KEPT {
                        k.pop_front();
                    }
                    k.push_back(Refusal {
                        at_ms: now,
                        peer: TillId::from_bytes(*peer.as_bytes()),
                        revoked: cause.starts_with(REFUSED_REVOKED),
                        cause: cause.clone(),
                    });
                }
                let key = (peer, cause.clone());
                if seen.get(&key).is_some_and(|t| now - t < 3_600_000) {
                    continue;
                }
                seen.insert(key, now);
                let who = peer.to_string();
                let _ = store.call(move |s| s.record_refused(&who, &cause)).await;
            }
        }));

        // Gossip: local changes out, peers' changes in. The topic is joined with no
        // bootstrap: the keeper below brings this till into the swarm, dialling the
        // gossip connections itself (see `gossip_join`).
        while joined_rx.try_recv().is_ok() {}
        let (sender, mut receiver) = gossip
            .subscribe(crate::gossip::topic(&store_id), Vec::new())
            .await
            .map_err(|e| NodeError::Bind(format!("gossip: {e}")))?
            .split();
        let gossip_wake = node.gossip_wake.clone();
        let heartbeat_every = config
            .sync_interval
            .clamp(Duration::from_secs(1), Duration::from_secs(30));
        {
            let ctx = node.sync_context();
            let (gossip, sender) = (gossip.clone(), sender.clone());
            let (ids, wake) = (node.neighbour_ids.clone(), gossip_wake.clone());
            node.tasks.push(tokio::spawn(async move {
                keep_in_swarm(ctx, gossip, sender, ids, wake, joined_rx, heartbeat_every).await;
            }));
        }
        {
            // A membership change acts at once: members reloaded, the
            // connections of a revoked till closed.
            let ctx = node.sync_context();
            node.tasks.push(tokio::spawn(async move {
                loop {
                    ctx.after.membership.notified().await;
                    if let Err(e) = ctx.refresh().await {
                        tracing::warn!(error = %e, "cannot reload the members");
                    }
                }
            }));
        }
        let neighbours = node.neighbours.clone();
        let store = node.ctx.store.clone();
        let links = node.ctx.links.clone();
        let after = node.ctx.after.clone();
        let hb_members = node.ctx.members.clone();
        let mut hb_last: HashMap<TillId, u64> = HashMap::new();
        let seen = neighbours.clone();
        let seen_ids = node.neighbour_ids.clone();
        let lag_wake = node.wake.clone();
        let keeper_wake = gossip_wake.clone();
        let revoked_ctx = node.sync_context();
        let applied = node.gossip_applied.clone();
        // What this till now holds of its neighbours' own documents, told to
        // them in batches by the task below.
        let holds = Arc::new(Mutex::new(HashMap::<DocId, Vec<ChangeHash>>::new()));
        let holds_wake = Arc::new(Notify::new());
        {
            let (holds, wake, sender) = (holds.clone(), holds_wake.clone(), sender.clone());
            node.tasks.push(tokio::spawn(async move {
                loop {
                    wake.notified().await;
                    // Changes come in bursts: one message for the burst.
                    tokio::time::sleep(HOLDS_BATCH).await;
                    let docs: Vec<_> = match holds.lock() {
                        Ok(mut h) => h.drain().collect(),
                        Err(_) => break,
                    };
                    if let Some(bytes) = crate::gossip::encode_holds(&docs)
                        && let Err(e) = sender.broadcast_neighbors(bytes.into()).await
                    {
                        tracing::debug!(error = %e, "cannot tell the neighbours what this till holds");
                    }
                }
            }));
        }
        let me = till;
        // The heads of this till's documents a neighbour already said it
        // holds: the ledger is written once per new head, not per neighbour.
        let mut told: HashMap<DocId, Vec<ChangeHash>> = HashMap::new();
        node.tasks.push(tokio::spawn(async move {
            use n0_future::StreamExt;
            while let Some(event) = receiver.next().await {
                let msg = match event {
                    Ok(iroh_gossip::api::Event::Received(msg)) => msg,
                    Ok(
                        ref e @ (iroh_gossip::api::Event::NeighborUp(n)
                        | iroh_gossip::api::Event::NeighborDown(n)),
                    ) => {
                        let up = matches!(e, iroh_gossip::api::Event::NeighborUp(_));
                        let ids: Vec<EndpointId> = receiver.neighbors().collect();
                        tracing::debug!(peer = %n.fmt_short(), up, neighbours = ids.len(), "gossip neighbour changed");
                        // One neighbour short: the keeper finds another at once.
                        if !up && ids.len() < GOSSIP_MIN_NEIGHBOURS {
                            keeper_wake.notify_one();
                        }
                        seen.store(ids.len(), Ordering::Relaxed);
                        if let Ok(mut s) = seen_ids.lock() {
                            *s = ids;
                        }
                        continue;
                    }
                    // This till read too slowly and missed messages: anti-entropy
                    // brings them.
                    Ok(iroh_gossip::api::Event::Lagged) => {
                        tracing::warn!("gossip lagged; a sync round fetches what was missed");
                        lag_wake.notify_one();
                        continue;
                    }
                    // A hiccup of one neighbour is not the end of gossip.
                    Err(e) => {
                        tracing::warn!(error = %e, "gossip receive error");
                        continue;
                    }
                };
                let from = msg.delivered_from.fmt_short().to_string();
                // A revoked till takes nothing more from the store's tills.
                if revoked_ctx.is_revoked() {
                    continue;
                }
                let (doc, change, proofs) = match crate::gossip::decode_checked(&msg.content) {
                    Some(crate::gossip::Incoming::Change(doc, change, proofs)) => (doc, change, proofs),
                    Some(crate::gossip::Incoming::Heartbeat(hb)) => {
                        let till = TillId::from_bytes(hb.till);
                        // Only members' heartbeats count, and only a newer one
                        // than the last (by the till's own signed clock): a
                        // replayed heartbeat cannot keep a dead till online.
                        let member = EndpointId::from_bytes(&hb.till)
                            .is_ok_and(|e| hb_members.read().is_ok_and(|m| m.contains(&e)));
                        if !member || hb_last.get(&till).is_some_and(|t| *t >= hb.wall_ms) {
                            continue;
                        }
                        hb_last.insert(till, hb.wall_ms);
                        if let Ok(mut l) = links.lock() {
                            let link = l.entry(till).or_default();
                            let now = now_ms();
                            link.last_heartbeat = Some(now);
                            link.unreplicated = Some(hb.unreplicated);
                            link.unreplicated_oldest_ms = hb.unreplicated_oldest_ms;
                            link.clock_skew_ms = Some(hb.wall_ms as i64 - now as i64);
                        }
                        continue;
                    }
                    Some(crate::gossip::Incoming::Holds(docs)) => {
                        // Believed only from the neighbour that sent it, and
                        // only of this till's own documents.
                        let holder = TillId::from_bytes(*msg.delivered_from.as_bytes());
                        let member = hb_members.read().is_ok_and(|m| m.contains(&msg.delivered_from));
                        if msg.scope != iroh_gossip::proto::DeliveryScope::Neighbors || !member {
                            continue;
                        }
                        let mine: Vec<_> = docs
                            .into_iter()
                            .filter(|(d, heads)| {
                                d.owner() == Some(me) && told.get(d) != Some(heads)
                            })
                            .collect();
                        if mine.is_empty() {
                            continue;
                        }
                        for (d, heads) in &mine {
                            told.insert(*d, heads.clone());
                        }
                        let noted = store
                            .call(move |s| {
                                let mut held = Vec::new();
                                for (d, heads) in mine {
                                    if s.holds(&d, &heads)? {
                                        held.push((d, heads));
                                    }
                                }
                                s.note_peer_holds(&holder, &held)
                            })
                            .await;
                        match noted {
                            Ok(Ok(())) => {}
                            Ok(Err(e)) => tracing::warn!(error = %e, "cannot note what a neighbour holds"),
                            Err(_) => break,
                        }
                        continue;
                    }
                    None => {
                        tracing::warn!(from = %from, "ignoring an unreadable or unsigned gossip message");
                        continue;
                    }
                };
                let kind = doc.to_string();
                // A change to a neighbour's own document: the neighbour is
                // told this till holds it.
                let tell = doc.owner().is_some_and(|o| {
                    seen_ids
                        .lock()
                        .is_ok_and(|n| n.iter().any(|e| e.as_bytes() == o.as_bytes()))
                });
                let applied_here = store
                    .call(move |s| {
                        let r = s.apply_changes(&doc, &[change], &proofs)?;
                        let heads = (tell && r.new_changes > 0)
                            .then(|| s.heads(&doc).ok())
                            .flatten()
                            .map(|h| (doc, h));
                        Ok::<_, tillmesh_store::ApplyError>((r, heads))
                    })
                    .await;
                match applied_here {
                    Ok(Ok((r, heads))) => {
                        if let Some((doc, heads)) = heads
                            && let Ok(mut h) = holds.lock()
                        {
                            h.insert(doc, heads);
                            holds_wake.notify_one();
                        }
                        applied.fetch_add(r.new_changes as u64, Ordering::Relaxed);
                        if kind == "membership" && r.new_changes > 0 {
                            after.membership.notify_one();
                        }
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(from = %from, error = %e, "refused a gossiped change");
                        let _ = after
                            .refused
                            .send((msg.delivered_from, refusal_cause(&kind, &e.to_string())));
                    }
                    Err(_) => break,
                }
            }
        }));
        if let Some(mut outbox) = outbox {
            let sender = sender.clone();
            let (neighbours, wake) = (neighbours.clone(), node.wake.clone());
            let members = node.ctx.members.clone();
            let after = node.ctx.after.clone();
            node.tasks.push(tokio::spawn(async move {
                while let Some((doc, change, proofs)) = outbox.recv().await {
                    // A membership change made here (a revocation) acts at once.
                    if doc == DocId::Membership {
                        after.membership.notify_one();
                    }
                    // With no gossip neighbour the change would go nowhere: a sync
                    // round carries it instead.
                    if neighbours.load(Ordering::Relaxed) == 0
                        && members.read().is_ok_and(|m| !m.is_empty())
                    {
                        wake.notify_one();
                    }
                    if let Some(bytes) = crate::gossip::encode(&doc, change, &proofs)
                        && let Err(e) = sender.broadcast(bytes.into()).await
                    {
                        tracing::debug!(error = %e, "gossip broadcast failed; anti-entropy will carry it");
                    }
                }
            }));
        }

        // Heartbeats: this till's own figures, signed, every few seconds.
        let hb_ctx = node.sync_context();
        let hb_sender = sender.clone();
        let hb_key = key.clone();
        let every = heartbeat_every;
        node.tasks.push(tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let peers: Vec<TillId> = hb_ctx
                    .members
                    .read()
                    .map(|m| {
                        m.iter()
                            .map(|e| TillId::from_bytes(*e.as_bytes()))
                            .collect()
                    })
                    .unwrap_or_default();
                let Ok(Ok((unreplicated, oldest))) =
                    hb_ctx.store.call(move |s| s.unreplicated(&peers)).await
                else {
                    continue;
                };
                let hb = crate::gossip::Heartbeat {
                    till: *hb_ctx.till.as_bytes(),
                    wall_ms: now_ms(),
                    unreplicated,
                    unreplicated_oldest_ms: oldest,
                    version: env!("CARGO_PKG_VERSION").to_string(),
                };
                if let Some(bytes) = crate::gossip::encode_heartbeat(&hb_key, &hb) {
                    let _ = hb_sender.broadcast(bytes.into()).await;
                }
            }
        }));

        // Anti-entropy.
        let ctx = node.sync_context();
        let fanout = config.fanout;
        let (wake, stop) = (node.wake.clone(), node.stop.clone());
        node.tasks.push(tokio::spawn(async move {
            let mut first = true;
            loop {
                let all = first;
                first = false;
                if let Err(e) = ctx.round(if all { usize::MAX } else { fanout }).await {
                    tracing::warn!(error = %e, "anti-entropy round failed");
                }
                // Members and addresses may be new: a till short of gossip
                // neighbours tries again at once.
                let known = ctx.members.read().map(|m| m.len()).unwrap_or(0);
                if neighbours.load(Ordering::Relaxed) < GOSSIP_MIN_NEIGHBOURS.min(known) {
                    gossip_wake.notify_one();
                }
                tokio::select! {
                    _ = stop.notified() => break,
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(ctx.tuning.get().0) => {}
                }
            }
        }));
        Ok(node)
    }

    fn sync_context(&self) -> SyncContext {
        self.ctx.clone()
    }

    /// Use `interval` between anti-entropy rounds and `limits` for each new
    /// sync session from now on, as the store's settings say after
    /// `tillmesh config set`; gives whether anything changed.
    pub fn set_tuning(&self, interval: Duration, limits: crate::session::Limits) -> bool {
        let changed = self.ctx.tuning.set(interval, limits);
        if changed {
            // The round waiting out the old interval starts the new one.
            self.wake.notify_one();
        }
        changed
    }

    /// The interval between anti-entropy rounds and the session limits in use.
    pub fn tuning(&self) -> (Duration, crate::session::Limits) {
        self.ctx.tuning.get()
    }

    /// Reload members and their addresses from the membership document.
    pub async fn refresh(&self) -> Result<(), NodeError> {
        self.sync_context().refresh().await
    }

    /// Publish this till's current addresses in the membership document.
    pub async fn publish_address(&self) -> Result<(), NodeError> {
        self.sync_context().publish_address().await
    }

    /// Use `relays` (pinning `relay_certs` for them) from now on, as the store's
    /// configuration says after `tillmesh relays add` or `remove`: relays no
    /// longer listed are dropped, new ones (and ones whose certificate changed)
    /// connected, and the till's published addresses follow. Gives whether
    /// anything changed.
    pub async fn set_relays(
        &self,
        relays: Vec<String>,
        relay_certs: BTreeMap<String, String>,
    ) -> Result<bool, NodeError> {
        let ctx = &self.ctx;
        let (old, old_certs) = ctx.relays.get();
        let certs = listed(&relays, relay_certs);
        if old == relays && old_certs == certs {
            return Ok(false);
        }
        let configs = relay_configs(&relays, &certs)?;
        // New pins first, so a relay added with its certificate is trusted at once.
        ctx.pins.set(certs.values().cloned());
        for r in old.iter().filter(|r| !relays.contains(r)) {
            if let Ok(url) = r.parse::<RelayUrl>() {
                ctx.endpoint.remove_relay(&url).await;
            }
        }
        for (r, config) in relays.iter().zip(configs) {
            if !old.contains(r) || old_certs.get(r) != certs.get(r) {
                ctx.endpoint
                    .insert_relay(config.url.clone(), Arc::new(config))
                    .await;
            }
        }
        tracing::info!(relays = ?relays, "the store's relays changed");
        ctx.relays.set(relays, certs);
        ctx.publish_address().await?;
        Ok(true)
    }

    /// This till's current addresses.
    pub fn addr(&self) -> PeerAddr {
        self.sync_context().addr()
    }

    /// Tell the node how to reach `till` (from a ticket, say) until the membership
    /// document says more.
    pub fn add_addr(&self, till: &TillId, addr: &PeerAddr) {
        if let Some(a) = addr.endpoint_addr(till) {
            self.ctx.lookup.add_endpoint_info(a);
        }
    }

    /// The endpoint (for tests and diagnostics).
    pub fn endpoint(&self) -> &Endpoint {
        &self.ctx.endpoint
    }

    /// How many gossip neighbours this till has now.
    pub fn gossip_neighbours(&self) -> usize {
        self.neighbours.load(Ordering::Relaxed)
    }

    /// Behave as if the network between this till and `peers` were cut, for tests
    /// and simulations of partitions: their connections are closed, and refused
    /// after the handshake both ways until the next call (an empty list heals).
    #[doc(hidden)]
    pub fn cut_off(&self, peers: &[TillId]) {
        let set: HashSet<EndpointId> = peers
            .iter()
            .filter_map(|t| EndpointId::from_bytes(t.as_bytes()).ok())
            .collect();
        if let Ok(mut c) = self.cut.write() {
            c.clone_from(&set);
        }
        for peer in set {
            let open = self
                .ctx
                .conns
                .lock()
                .map(|mut c| c.remove(&peer).unwrap_or_default())
                .unwrap_or_default();
            for conn in open.iter().filter_map(|w| w.upgrade()) {
                conn.close(VarInt::from_u32(CUT_OFF), b"cut off");
            }
        }
    }

    /// Whether this till learned that its own membership was revoked (from
    /// its membership document, or from enough members that refused it as
    /// revoked): it then syncs with nobody and keeps selling locally.
    pub fn is_revoked(&self) -> bool {
        self.ctx.is_revoked()
    }

    /// The peers and changes this till refused since `since_ms` (the newest
    /// 1,024 at most), oldest first.
    pub fn refusals(&self, since_ms: u64) -> Vec<Refusal> {
        self.refusals
            .lock()
            .map(|k| k.iter().filter(|r| r.at_ms >= since_ms).cloned().collect())
            .unwrap_or_default()
    }

    /// What this till knows of its own revocation, if anything: the signed
    /// revocation it holds, and the members that refused it as revoked.
    pub fn revocation(&self) -> Option<Revocation> {
        let mut r = self
            .ctx
            .revoked
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default();
        r.stopped = self.ctx.is_revoked();
        (r.signed || !r.refused_by.is_empty()).then_some(r)
    }

    /// This till's gossip neighbours now.
    pub fn gossip_neighbour_ids(&self) -> Vec<TillId> {
        self.neighbour_ids
            .lock()
            .map(|s| {
                s.iter()
                    .map(|e| TillId::from_bytes(*e.as_bytes()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every sync session from now on, as it starts and ends, with what it
    /// moved (a receiver that falls more than [`SESSION_EVENTS_KEPT`] behind
    /// misses the oldest).
    pub fn session_events(&self) -> tokio::sync::broadcast::Receiver<SessionEvent> {
        self.ctx.after.events.subscribe()
    }

    /// Changes that arrived by gossip and were new to the store, since the
    /// node started.
    pub fn gossip_applied(&self) -> u64 {
        self.gossip_applied.load(Ordering::Relaxed)
    }

    /// This till.
    pub fn till_id(&self) -> TillId {
        self.ctx.till
    }

    /// The store's other member tills, as the node last loaded them from the
    /// membership (reloaded as it changes).
    pub fn members(&self) -> Vec<TillId> {
        self.ctx
            .members
            .read()
            .map(|m| {
                m.iter()
                    .map(|e| TillId::from_bytes(*e.as_bytes()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// What this till knows of its peers' connections.
    pub fn links(&self) -> HashMap<TillId, PeerLink> {
        self.ctx.links.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Sync with `peer` now.
    pub async fn sync_with(&self, peer: TillId) -> Result<SessionReport, NodeError> {
        self.sync_context().sync_with(peer).await
    }

    /// Fetch the store's backup keys from `holder` (the till the admin-signed
    /// announcement names) and keep those this till lacks and `check` accepts
    /// (its id matches the key); gives how many were new.
    pub async fn fetch_keys(
        &self,
        holder: TillId,
        check: fn(&tillmesh_store::StoreSecret) -> bool,
    ) -> Result<usize, NodeError> {
        let mut keys = crate::keys::fetch(&self.ctx.endpoint, holder).await?;
        keys.retain(|k| {
            let ok = check(k);
            if !ok {
                tracing::warn!(key = k.key_id, from = %holder.fmt_short(), "refused a backup key whose id does not match it");
            }
            ok
        });
        let added = self
            .ctx
            .store
            .call(move |s| -> Result<usize, tillmesh_store::StorageError> {
                let have = s.store_secrets()?;
                let mut added = 0;
                for k in keys {
                    if !have.iter().any(|h| h.key_id == k.key_id) {
                        s.add_store_secret(k)?;
                        added += 1;
                    }
                }
                Ok(added)
            })
            .await??;
        Ok(added)
    }

    /// Run an anti-entropy round with every member now, in the background.
    pub fn sync_now(&self) {
        self.wake.notify_one();
    }

    /// Stop background work and close the endpoint.
    pub async fn shutdown(self) {
        self.stop.notify_waiters();
        for t in &self.tasks {
            t.abort();
        }
        if let Err(e) = self.router.shutdown().await {
            tracing::warn!(error = %e, "router shutdown");
        }
        self.ctx.endpoint.close().await;
    }
}

/// What a sync needs, cheap to clone into tasks.
#[derive(Debug, Clone)]
struct SyncContext {
    endpoint: Endpoint,
    store: StoreHandle,
    store_id: StoreId,
    till: TillId,
    lookup: MemoryLookup,
    members: Arc<RwLock<HashSet<EndpointId>>>,
    links: Links,
    relays: Relays,
    pins: Pins,
    /// Members certified since the last refresh, for gossip to join.
    joined: mpsc::UnboundedSender<Vec<EndpointId>>,
    conns: Conns,
    after: AfterSession,
    /// What this till learned of its own revocation (from its membership
    /// document, or peers' refusals): see [`SyncContext::is_revoked`].
    revoked: Arc<Mutex<Revocation>>,
    tuning: Tuning,
}

impl SyncContext {
    /// Revoked by the membership it holds, or refused as revoked by
    /// [`REFUSALS_TO_STOP`] members (or by every member it completed a sync
    /// session with since it started, when fewer: one it never reached cannot
    /// refuse it).
    fn is_revoked(&self) -> bool {
        let reached = self
            .links
            .lock()
            .map(|l| l.values().filter(|l| l.last_sync.is_some()).count())
            .unwrap_or(0);
        self.revoked
            .lock()
            .is_ok_and(|r| r.signed || r.refused_by.len() >= REFUSALS_TO_STOP.min(reached.max(1)))
    }

    /// Up to `n` members not in `except`, chosen at random.
    fn random_members(&self, n: usize, except: &HashSet<EndpointId>) -> Vec<EndpointId> {
        let mut all: Vec<EndpointId> = self
            .members
            .read()
            .map(|m| m.difference(except).copied().collect())
            .unwrap_or_default();
        all.shuffle(&mut rand::rng());
        self.reachable_first(&mut all);
        all.truncate(n);
        all
    }

    /// Put the members this till knows an address of (published in the
    /// membership, or from its ticket) before the others, keeping their
    /// order. A till that joined before the others started knows none of
    /// their addresses until it syncs with one that does: each dial of an
    /// unaddressed member waits out its timeout, and a first catch-up tried
    /// in a random order spent most of a minute on them.
    fn reachable_first(&self, peers: &mut [EndpointId]) {
        peers.sort_by_cached_key(|p| self.lookup.get_endpoint_info(*p).is_none());
    }

    /// Members, other than `except`, whose last heartbeat (or, for those never
    /// heard, this node's start at `since` unix ms) is older than `silence`.
    fn silent_members(
        &self,
        except: &HashSet<EndpointId>,
        since: u64,
        silence: Duration,
    ) -> Vec<EndpointId> {
        let now = now_ms();
        let limit = silence.as_millis() as u64;
        let links = self.links.lock().map(|l| l.clone()).unwrap_or_default();
        self.members
            .read()
            .map(|m| {
                m.iter()
                    .filter(|e| !except.contains(*e))
                    .filter(|e| {
                        let heard = links
                            .get(&TillId::from_bytes(*e.as_bytes()))
                            .and_then(|l| l.last_heartbeat)
                            .unwrap_or(since)
                            .max(since);
                        now.saturating_sub(heard) > limit
                    })
                    .copied()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// This till's addresses: its direct sockets, and its relays (the configured
    /// ones too, so peers can use them before this till's relay link is up).
    fn addr(&self) -> PeerAddr {
        let a = self.endpoint.addr();
        let mut relay: Vec<String> = a.relay_urls().map(|u| u.to_string()).collect();
        for r in self.relays.urls() {
            if !relay.iter().any(|u| crate::relay::same_url(u, &r)) {
                relay.push(r);
            }
        }
        PeerAddr {
            ip: a.ip_addrs().copied().collect(),
            relay,
        }
    }

    /// Publish the addresses when they changed.
    async fn publish_address(&self) -> Result<(), NodeError> {
        let value =
            serde_json::to_value(self.addr()).map_err(|e| NodeError::Config(e.to_string()))?;
        self.store.call(move |s| s.publish_address(value)).await??;
        Ok(())
    }

    async fn refresh(&self) -> Result<(), NodeError> {
        let me = self.till;
        let (tills, me_revoked) = self
            .store
            .call(move |s| {
                let tills = s.tills()?;
                let mut out = Vec::new();
                for t in tills {
                    let status = s.member_status(&t.id)?;
                    out.push((t, matches!(status, MemberStatus::Member(_))));
                }
                let me_revoked = matches!(s.member_status(&me)?, MemberStatus::Revoked(_));
                Ok::<_, tillmesh_store::StorageError>((out, me_revoked))
            })
            .await??;
        // This till's own revocation, arrived by any path, stops it at once
        // (gossip included), not at its next round.
        if me_revoked && let Ok(mut r) = self.revoked.lock() {
            r.signed = true;
        }
        let mut set = HashSet::new();
        for (t, member) in tills {
            let Ok(eid) = EndpointId::from_bytes(t.id.as_bytes()) else {
                continue;
            };
            if member && t.id != self.till {
                set.insert(eid);
                if let Some(addr) = t
                    .addr
                    .and_then(|a| serde_json::from_value::<PeerAddr>(a).ok())
                    .and_then(|a| a.endpoint_addr(&t.id))
                {
                    self.lookup.set_endpoint_info(addr);
                }
            } else {
                self.lookup.remove_endpoint_info(eid);
            }
        }
        let (added, removed): (Vec<EndpointId>, Vec<EndpointId>) = match self.members.write() {
            Ok(mut m) => {
                let added = set.difference(&m).copied().collect();
                let removed = m.difference(&set).copied().collect();
                *m = set;
                (added, removed)
            }
            Err(_) => (Vec::new(), Vec::new()),
        };
        if !added.is_empty() {
            let _ = self.joined.send(added);
        }
        // A revoked till loses every connection it has, gossip included: the
        // gate refuses it when it dials again.
        for peer in removed {
            let cut = self
                .conns
                .lock()
                .map(|mut c| c.remove(&peer).unwrap_or_default())
                .unwrap_or_default();
            for conn in cut.iter().filter_map(|w| w.upgrade()) {
                conn.close(
                    VarInt::from_u32(NOT_A_MEMBER),
                    b"not a member of this store",
                );
            }
            if !cut.is_empty() {
                tracing::info!(peer = %peer.fmt_short(), "closed the connections of a till that is no longer a member");
            }
        }
        Ok(())
    }

    async fn round(&self, fanout: usize) -> Result<(), NodeError> {
        let me = self.till;
        if matches!(
            self.store.call(move |s| s.member_status(&me)).await?,
            Ok(MemberStatus::Revoked(_))
        ) && let Ok(mut r) = self.revoked.lock()
        {
            r.signed = true;
        }
        if self.is_revoked() {
            // A revoked till keeps selling locally and syncs with nobody.
            return Ok(());
        }
        self.publish_address().await?;
        self.refresh().await?;
        let mut peers: Vec<EndpointId> = self
            .members
            .read()
            .map(|m| m.iter().copied().collect())
            .unwrap_or_default();
        // A peer already in a session with this till (it dialled, or a slow
        // catch-up is under way) is left to that session.
        if let Ok(l) = self.links.lock() {
            peers.retain(|p| {
                l.get(&TillId::from_bytes(*p.as_bytes()))
                    .is_none_or(|link| link.sessions == 0)
            });
        }
        peers.shuffle(&mut rand::rng());
        self.reachable_first(&mut peers);
        peers.truncate(fanout);
        let mut changed = false;
        if fanout == usize::MAX {
            // The round after a start, with every member: catch up from one
            // peer first (trying them in turn until one answers, those with a
            // known address first), so what the till missed arrives once, not
            // once from every peer at the same time.
            peers.reverse();
            while let Some(peer) = peers.pop() {
                let till = TillId::from_bytes(*peer.as_bytes());
                match self.sync_with(till).await {
                    Ok(r) => {
                        changed |= r.changes_received > 0;
                        break;
                    }
                    Err(e) => tracing::info!(peer = %till.fmt_short(), error = %e, "sync failed"),
                }
            }
        }
        // Peers are synced concurrently, so one that is down holds up nobody, but
        // a few at a time: the first round after a start goes to every member,
        // and a till of a 100-till store must not open 99 sessions at once.
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_SESSIONS));
        let mut sessions = tokio::task::JoinSet::new();
        for peer in peers {
            let ctx = self.clone();
            let slots = slots.clone();
            sessions.spawn(async move {
                let till = TillId::from_bytes(*peer.as_bytes());
                let _slot = slots.acquire_owned().await;
                (till, ctx.sync_with(till).await)
            });
        }
        while let Some(done) = sessions.join_next().await {
            let Ok((till, result)) = done else { continue };
            match result {
                Ok(r) => {
                    changed |= r.changes_received > 0;
                    tracing::debug!(peer = %till.fmt_short(), docs = r.docs, received = r.changes_received, "anti-entropy session done");
                }
                Err(e) => tracing::info!(peer = %till.fmt_short(), error = %e, "sync failed"),
            }
        }
        if changed {
            // New members or addresses may have arrived.
            self.refresh().await?;
        }
        Ok(())
    }

    async fn sync_with(&self, peer: TillId) -> Result<SessionReport, NodeError> {
        let unreachable = |reason: String| NodeError::Unreachable {
            peer: peer.fmt_short(),
            reason,
        };
        let eid =
            EndpointId::from_bytes(peer.as_bytes()).map_err(|e| unreachable(e.to_string()))?;
        let conn =
            match tokio::time::timeout(DIAL_TIMEOUT, self.endpoint.connect(eid, SYNC_ALPN)).await {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => {
                    self.note_refusal(peer, &e);
                    self.mark_offline(peer, &e.to_string());
                    return Err(unreachable(e.to_string()));
                }
                Err(_) => {
                    self.mark_offline(peer, "timed out");
                    return Err(unreachable("timed out".into()));
                }
            };
        let (send, recv) = match conn.open_bi().await {
            Ok(s) => s,
            Err(e) => {
                self.note_refusal(peer, &e);
                self.mark_offline(peer, &e.to_string());
                return Err(unreachable(e.to_string()));
            }
        };
        let _mark = SessionMark::new(&self.links, peer);
        self.after.started(peer, &conn, true);
        let result = match tokio::time::timeout(
            SESSION_TIMEOUT,
            run_session_with(
                &self.store,
                self.store_id,
                peer,
                recv,
                send,
                self.tuning.get().1,
            ),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(crate::SessionError::Protocol(
                "the session took too long".into(),
            )),
        };
        record(&self.links, peer, &conn, &result);
        self.after.session(peer, &conn, &result);
        if let Err(e) = &result {
            self.note_refusal(peer, e);
        }
        conn.close(VarInt::from_u32(0), b"done");
        Ok(result?)
    }

    /// A peer that closed the connection with [`REVOKED`] says this till's
    /// membership is over: noted, and once enough members said so (see
    /// [`SyncContext::is_revoked`]) the till stops syncing.
    fn note_refusal(&self, peer: TillId, e: &(dyn std::error::Error + 'static)) {
        if !refused_as_revoked(e) {
            return;
        }
        if let Ok(mut r) = self.revoked.lock()
            && !r.refused_by.contains(&peer)
        {
            r.refused_by.push(peer);
            tracing::warn!(peer = %peer.fmt_short(), "a peer refused this till as revoked");
        }
        if self.is_revoked() {
            tracing::warn!(
                "this till's membership was revoked: it stops syncing and keeps selling locally"
            );
        }
    }

    fn mark_offline(&self, peer: TillId, why: &str) {
        if let Ok(mut l) = self.links.lock() {
            let link = l.entry(peer).or_default();
            link.path = "offline".into();
            link.rtt_ms = None;
            link.last_error = Some(why.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revoked_close_is_recognised_through_a_sessions_stream_error() {
        let closed = |code: u32| {
            ConnectionError::ApplicationClosed(iroh::endpoint::ApplicationClose {
                error_code: VarInt::from_u32(code),
                reason: REVOKED_REASON.to_vec().into(),
            })
        };
        for (code, revoked) in [(REVOKED, true), (NOT_A_MEMBER, false)] {
            let write = iroh::endpoint::WriteError::ConnectionLost(closed(code));
            let session =
                crate::SessionError::Wire(crate::wire::WireError::Io(std::io::Error::from(write)));
            assert_eq!(refused_as_revoked(&session), revoked, "{code}");
            assert_eq!(refused_as_revoked(&closed(code)), revoked, "{code}");
        }
        let other = crate::SessionError::Protocol("membership was revoked".into());
        assert!(!refused_as_revoked(&other), "words alone prove nothing");
    }

    #[test]
    fn each_store_has_its_own_short_mdns_service() {
        let (a, b) = (StoreId::random(), StoreId::random());
        assert!(mdns_service(a).len() <= 15);
        assert_ne!(mdns_service(a), mdns_service(b));
        assert_eq!(mdns_service(a), mdns_service(a));
    }
}
