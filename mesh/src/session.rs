//! One sync session between two tills over a bi-directional byte stream.
//!
//! Both sides run the same steps: `Hello` (store id, protocol version, clock),
//! `Buckets` (256 manifest digests), `Manifest` of the differing buckets only, then
//! rounds of Automerge sync messages for the documents whose heads differ, until a
//! round in which neither side has anything to send. Each round's messages are sent
//! while the peer's are read, so a large catch-up cannot deadlock on flow control,
//! and sync states are saved after every round, so a session cut short resumes.

use std::collections::{BTreeMap, BTreeSet};

use tillmesh_store::{ChangeHash, DocId, StoreId, SyncState, TillId};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::wire::{
    Frame, PROTOCOL_VERSION, Pieces, SYNC_PART, WireError, read_frame, write_frame, write_sync,
};
use tillmesh_store::{StoreClosed, StoreHandle};

/// How a session paces itself: the store's settings `sync/timeout_s` and
/// `sync/batch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A peer silent for this long has gone away.
    pub timeout: std::time::Duration,
    /// Received sync messages are applied once this many are waiting (or
    /// 256 KiB of them).
    pub batch: usize,
}

impl Default for Limits {
    /// 30 s, 100 messages: the product defaults.
    fn default() -> Self {
        Limits {
            timeout: std::time::Duration::from_secs(30),
            batch: 100,
        }
    }
}

/// Read a frame, giving up on a peer silent for `timeout`.
async fn read_timed<R: AsyncRead + Unpin>(
    r: &mut R,
    timeout: std::time::Duration,
) -> Result<(Frame, usize), SessionError> {
    tokio::time::timeout(timeout, read_frame(r))
        .await
        .map_err(|_| SessionError::Protocol("the peer went silent".into()))?
        .map_err(SessionError::from)
}

/// Rounds after which a session gives up: Automerge needs a handful.
const MAX_ROUNDS: usize = 64;
/// Received sync messages are applied once [`Limits::batch`] are waiting,
/// or this many bytes.
const APPLY_BYTES: usize = 256 * 1024;
/// The store is held this long at most (and one document at least) per call, so
/// a sale made during a large catch-up is not held up.
const STEP: std::time::Duration = std::time::Duration::from_millis(50);

/// What a session did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionReport {
    /// Documents that differed.
    pub docs: usize,
    /// Sync rounds.
    pub rounds: usize,
    /// Changes this till received that it did not have.
    pub changes_received: usize,
    /// Conflicts logged while merging.
    pub conflicts: usize,
    /// Bytes sent.
    pub bytes_sent: usize,
    /// Bytes received.
    pub bytes_received: usize,
    /// The peer's wall clock minus ours, in milliseconds (network delay included).
    pub clock_skew_ms: i64,
    /// Documents whose changes from the peer were refused (no valid proof of
    /// authorship, or a role that may not write them), with why. The session
    /// goes on with the other documents.
    pub refused: Vec<(String, String)>,
    /// Whether the membership document gained changes: who may connect and
    /// write may have moved.
    pub membership_changed: bool,
}

/// A session failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The connection failed, or the peer sent something unreadable.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The peer broke the protocol.
    #[error("protocol violation by peer: {0}")]
    Protocol(String),
    /// The peer belongs to another store.
    #[error("peer belongs to store {theirs}, not ours")]
    WrongStore {
        /// The peer's store.
        theirs: String,
    },
    /// The peer sent changes this till refuses.
    #[error("refused data from peer: {0}")]
    Refused(#[from] tillmesh_store::ApplyError),
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] tillmesh_store::StorageError),
    /// The store shut down.
    #[error(transparent)]
    Closed(#[from] StoreClosed),
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

async fn expect_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    report: &mut SessionReport,
    timeout: std::time::Duration,
) -> Result<Frame, SessionError> {
    let (f, n) = read_timed(r, timeout).await?;
    report.bytes_received += n;
    Ok(f)
}

/// Run a sync session with `peer` (already checked to be a member) over `recv`
/// and `send`, with the default [`Limits`].
pub async fn run_session<R, W>(
    store: &StoreHandle,
    store_id: StoreId,
    peer: TillId,
    recv: R,
    send: W,
) -> Result<SessionReport, SessionError>
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
{
    run_session_with(store, store_id, peer, recv, send, Limits::default()).await
}

/// Run a sync session with `peer` (already checked to be a member) over `recv`
/// and `send`, paced by `limits`.
pub async fn run_session_with<R, W>(
    store: &StoreHandle,
    store_id: StoreId,
    peer: TillId,
    mut recv: R,
    mut send: W,
    limits: Limits,
) -> Result<SessionReport, SessionError>
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
{
    let mut report = SessionReport::default();

    // Hello.
    let hello = Frame::Hello {
        version: PROTOCOL_VERSION,
        store: *store_id.as_bytes(),
        wall_ms: now_ms(),
    };
    report.bytes_sent += write_frame(&mut send, &hello).await?;
    match expect_frame(&mut recv, &mut report, limits.timeout).await? {
        Frame::Hello {
            version,
            store: theirs,
            wall_ms,
        } => {
            if version != PROTOCOL_VERSION {
                return Err(SessionError::Protocol(format!(
                    "protocol version {version}, this till speaks {PROTOCOL_VERSION}"
                )));
            }
            if theirs != *store_id.as_bytes() {
                return Err(SessionError::WrongStore {
                    theirs: StoreId::from_bytes(theirs).to_string(),
                });
            }
            report.clock_skew_ms = wall_ms as i64 - now_ms() as i64;
        }
        other => {
            return Err(SessionError::Protocol(format!(
                "expected Hello, got {other:?}"
            )));
        }
    }

    // Buckets, then the manifest of the buckets that differ.
    let (ours, own) = store.call(|s| s.manifest_buckets_and_own()).await??;
    report.bytes_sent += write_frame(&mut send, &Frame::Buckets(ours.clone())).await?;
    let theirs = match expect_frame(&mut recv, &mut report, limits.timeout).await? {
        Frame::Buckets(b) if b.len() == ours.len() => b,
        other => {
            return Err(SessionError::Protocol(format!(
                "expected Buckets, got {other:?}"
            )));
        }
    };
    let differing: BTreeSet<u8> = (0..ours.len())
        .filter(|i| ours[*i] != theirs[*i])
        .map(|i| i as u8)
        .collect();
    let mine = {
        let d = differing.clone();
        store.call(move |s| s.manifest(&d)).await??
    };
    let encoded: Vec<(String, Vec<[u8; 32]>)> = mine
        .iter()
        .map(|(d, h)| (d.to_string(), h.iter().map(|x| x.0).collect()))
        .collect();
    report.bytes_sent += write_frame(&mut send, &Frame::Manifest(encoded)).await?;
    let their_manifest = match expect_frame(&mut recv, &mut report, limits.timeout).await? {
        Frame::Manifest(m) => m,
        other => {
            return Err(SessionError::Protocol(format!(
                "expected Manifest, got {other:?}"
            )));
        }
    };
    // Each document's heads here and at the peer (None: not held).
    type BothHeads = (Option<Vec<ChangeHash>>, Option<Vec<ChangeHash>>);
    let mut heads: BTreeMap<DocId, BothHeads> = BTreeMap::new();
    for (d, h) in mine {
        heads.entry(d).or_default().0 = Some(h);
    }
    for (d, h) in their_manifest {
        let Ok(doc) = d.parse::<DocId>() else {
            tracing::warn!(peer = %peer.fmt_short(), doc = d, "ignoring an unknown document id");
            continue;
        };
        if !differing.contains(&tillmesh_store::bucket_of(&doc)) {
            return Err(SessionError::Protocol(format!(
                "manifest lists {doc} from a bucket that does not differ"
            )));
        }
        heads.entry(doc).or_default().1 = Some(h.into_iter().map(ChangeHash).collect());
    }
    let docs: Vec<DocId> = heads
        .into_iter()
        .filter(|(_, (a, b))| {
            let norm = |h: &Option<Vec<ChangeHash>>| {
                let mut v = h.clone().unwrap_or_default();
                v.sort();
                v
            };
            norm(a) != norm(b)
        })
        .map(|(d, _)| d)
        .collect();
    report.docs = docs.len();
    // This till's own documents that do not differ (in a bucket with the same
    // digest, or listed with the same heads): the peer holds them as they were
    // when the digests were read. So recorded, what only this till holds is
    // known without a sync round.
    let differs: BTreeSet<&DocId> = docs.iter().collect();
    let held: Vec<(DocId, Vec<ChangeHash>)> = own
        .into_iter()
        .filter(|(d, _)| !differs.contains(d))
        .collect();
    if !held.is_empty() {
        store
            .call(move |s| s.note_peer_holds(&peer, &held))
            .await??;
    }

    // Sync rounds.
    let mut states: Vec<SyncState> = {
        let d = docs.clone();
        store
            .call(move |s| {
                d.iter()
                    .map(|doc| s.sync_state(&peer, doc))
                    .collect::<Result<Vec<_>, _>>()
            })
            .await??
    };
    for round in 0.. {
        if round == MAX_ROUNDS {
            return Err(SessionError::Protocol(format!(
                "no agreement after {MAX_ROUNDS} rounds"
            )));
        }
        report.rounds = round + 1;
        // A document whose changes were refused is out of this session: it is
        // neither asked for again nor taken, so the rounds end.
        let refused: std::collections::HashSet<DocId> = report
            .refused
            .iter()
            .filter_map(|(d, _)| d.parse().ok())
            .collect();
        // Generate this round's messages.
        let work: Vec<(DocId, SyncState)> = docs.iter().copied().zip(states.drain(..)).collect();
        let generated = store
            .call_in_steps(work, STEP, |s, (doc, mut st)| {
                let msg = s.sync_generate(&doc, &mut st);
                (doc, st, msg)
            })
            .await?;
        let mut outgoing = Vec::new();
        for (doc, st, msg) in generated {
            states.push(st);
            if let Some(m) = msg?
                && !refused.contains(&doc)
            {
                outgoing.push((doc, m));
            }
        }
        let sent = outgoing.len() as u32;
        // Send ours while reading theirs.
        let sending = async {
            let mut bytes = 0;
            for (doc, msg) in outgoing {
                bytes += write_sync(&mut send, &doc.to_string(), msg, SYNC_PART).await?;
            }
            bytes += write_frame(&mut send, &Frame::RoundEnd { sent }).await?;
            send.flush().await.map_err(WireError::from)?;
            Ok::<usize, SessionError>(bytes)
        };
        let receiving = async {
            // Applied as they arrive, a batch at a time, each batch's sync states
            // saved with it: a catch-up cut short keeps what it got.
            let mut pending: Vec<(usize, Vec<u8>)> = Vec::new();
            let mut pieces = Pieces::default();
            let mut pending_bytes = 0;
            let mut received = 0;
            let mut bytes = 0;
            loop {
                let (f, n) = read_timed(&mut recv, limits.timeout).await?;
                bytes += n;
                match f {
                    Frame::SyncPart { doc, part } => pieces.part(doc, part)?,
                    Frame::Sync { doc, msg } => {
                        let msg = pieces.last(&doc, msg)?;
                        let doc: DocId = doc.parse().map_err(|_| {
                            SessionError::Protocol(format!(
                                "sync message for unknown document {doc:?}"
                            ))
                        })?;
                        // `docs` is sorted: it comes from a BTreeMap.
                        let Ok(i) = docs.binary_search(&doc) else {
                            return Err(SessionError::Protocol(format!(
                                "sync message for {doc}, which was not in the manifest"
                            )));
                        };
                        received += 1;
                        if refused.contains(&doc) {
                            continue;
                        }
                        pending_bytes += msg.len();
                        pending.push((i, msg));
                        if pending.len() >= limits.batch.max(1) || pending_bytes >= APPLY_BYTES {
                            apply_batch(store, peer, &docs, &mut states, &mut pending, &mut report)
                                .await?;
                            pending_bytes = 0;
                        }
                    }
                    Frame::RoundEnd { sent } => {
                        if pieces.pending() {
                            return Err(SessionError::Protocol(
                                "the round ended in the middle of a message".into(),
                            ));
                        }
                        if sent as usize != received {
                            return Err(SessionError::Protocol(format!(
                                "peer announced {sent} messages and sent {received}"
                            )));
                        }
                        apply_batch(store, peer, &docs, &mut states, &mut pending, &mut report)
                            .await?;
                        return Ok::<_, SessionError>((received, bytes));
                    }
                    other => {
                        return Err(SessionError::Protocol(format!(
                            "expected Sync or RoundEnd, got {other:?}"
                        )));
                    }
                }
            }
        };
        let (sent_bytes, (their_sent, recv_bytes)) = tokio::try_join!(sending, receiving)?;
        report.bytes_sent += sent_bytes;
        report.bytes_received += recv_bytes;
        {
            let d = docs.clone();
            let st = states.clone();
            store
                .call(move |s| {
                    let pairs: Vec<(DocId, &SyncState)> =
                        d.iter().copied().zip(st.iter()).collect();
                    s.save_sync_states(&peer, &pairs)
                })
                .await??;
        }
        if sent == 0 && their_sent == 0 {
            break;
        }
    }
    report.bytes_sent += write_frame(&mut send, &Frame::Bye).await?;
    send.flush().await.map_err(WireError::from)?;
    // The peer's Bye; a peer that hangs up right after its own Bye is fine too.
    match tokio::time::timeout(limits.timeout, read_frame(&mut recv)).await {
        Ok(Ok((Frame::Bye, n))) => report.bytes_received += n,
        Ok(Ok((other, _))) => {
            return Err(SessionError::Protocol(format!(
                "expected Bye, got {other:?}"
            )));
        }
        Ok(Err(WireError::Io(_))) | Err(_) => {}
        Ok(Err(e)) => return Err(e.into()),
    }
    Ok(report)
}

/// Apply the sync messages in `pending` (index into `docs`, message), holding
/// the store [`STEP`] at a time, move their sync states on, and save the states
/// of those applied.
async fn apply_batch(
    store: &StoreHandle,
    peer: TillId,
    docs: &[DocId],
    states: &mut [SyncState],
    pending: &mut Vec<(usize, Vec<u8>)>,
    report: &mut SessionReport,
) -> Result<(), SessionError> {
    if pending.is_empty() {
        return Ok(());
    }
    let items: Vec<(usize, DocId, SyncState, Vec<u8>)> = pending
        .drain(..)
        .map(|(i, m)| (i, docs[i], states[i].clone(), m))
        .collect();
    let started = std::time::Instant::now();
    let results = store
        .call_in_steps(items, STEP, |s, (i, doc, mut st, msg)| {
            let r = s.sync_receive(&doc, &mut st, &msg);
            (i, doc, st, r)
        })
        .await?;
    let applied: Vec<(DocId, SyncState)> = results
        .iter()
        .filter(|(.., r)| r.is_ok())
        .map(|(_, doc, st, _)| (*doc, st.clone()))
        .collect();
    let applying = started.elapsed();
    let saved = store
        .call(move |s| {
            let pairs: Vec<(DocId, &SyncState)> = applied.iter().map(|(d, st)| (*d, st)).collect();
            s.save_sync_states(&peer, &pairs)
        })
        .await?;
    let docs_applied = results.len();
    for (i, _, st, r) in results {
        let r = match r {
            Ok(r) => r,
            Err(e @ tillmesh_store::ApplyError::Storage(_)) => return Err(e.into()),
            Err(e) => {
                // Refused whole, nothing of it kept: the other documents go on,
                // and this one's sync state stays where it was.
                tracing::warn!(peer = %peer.fmt_short(), doc = %docs[i], error = %e, "refused changes from a peer");
                report.refused.push((docs[i].to_string(), e.to_string()));
                continue;
            }
        };
        tracing::trace!(doc = %docs[i], changes = r.new_changes, "applied");
        report.changes_received += r.new_changes;
        report.conflicts += r.conflicts;
        report.membership_changed |= docs[i] == DocId::Membership && r.new_changes > 0;
        states[i] = st;
    }
    saved?;
    tracing::debug!(
        peer = %peer.fmt_short(),
        docs = docs_applied,
        applying_ms = applying.as_millis() as u64,
        saving_ms = (started.elapsed() - applying).as_millis() as u64,
        "applied a batch of sync messages"
    );
    Ok(())
}
