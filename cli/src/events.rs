//! The daemon's event hub: what happened on this till (sales recorded here or
//! arrived from a till, sync sessions, backups and USB syncs, conflicts,
//! membership, alerts), each with an id, kept in a bounded buffer so that a
//! client reconnecting with the last id it saw gets what it missed, and sent
//! live to every follower of `GET /v1/events`.
//!
//! Ids grow across daemon restarts: each run starts from its start time in
//! ms times 65,536, so a client holding an id from an earlier run is told to
//! re-read (a `reset` event) rather than handed a later run's events as if
//! nothing was lost.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tillmesh_mesh::{Node, SessionEvent};
use tillmesh_store::StoreEvent;

use tillmesh_backup::schedule::Backoff;

use crate::alerts::Webhook;
use crate::status::StatusReport;
use tokio::sync::broadcast;

/// How many events the hub keeps for clients that reconnect.
pub const KEPT: usize = 4096;

/// One event.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Its id (the SSE `id`).
    pub id: u64,
    /// Its type (the SSE `event`), such as `sale.recorded`.
    pub kind: &'static str,
    /// When (unix ms).
    pub at_ms: u64,
    /// What happened (the SSE `data`, JSON).
    pub data: serde_json::Value,
}

/// Every event type the hub sends, with what it means (also in the OpenAPI
/// document).
pub const KINDS: &[(&str, &str)] = &[
    (
        "sale.recorded",
        "a sale, void or refund was recorded on this till",
    ),
    (
        "sale.arrived",
        "a sale, void or refund made on another till arrived",
    ),
    ("sync.started", "a sync session with a till started"),
    ("sync.finished", "a sync session with a till finished"),
    ("backup.started", "a backup to a sink started"),
    (
        "backup.progress",
        "a backup went on: its step, documents done of total (at most once a second)",
    ),
    ("backup.finished", "a backup to a sink finished"),
    ("backup.failed", "a backup to a sink failed"),
    ("usb.started", "a USB or folder sync started"),
    (
        "usb.progress",
        "a USB, folder or Drive sync went on: its step, files done of total",
    ),
    ("usb.finished", "a USB or folder sync finished"),
    ("usb.failed", "a USB or folder sync failed"),
    ("verify.started", "a verification of backups started"),
    (
        "verify.progress",
        "a verification went on: files checked of total",
    ),
    (
        "verify.finished",
        "a verification ended: how many files were checked and damaged",
    ),
    (
        "verify.failed",
        "a verification could not be done (a sink missing)",
    ),
    ("conflict.raised", "two tills wrote the same field at once"),
    ("conflict.resolved", "a conflict was settled"),
    (
        "membership.changed",
        "a till joined, changed role or was revoked",
    ),
    (
        "alert.raised",
        "an alert `tillmesh status` shows was raised",
    ),
    ("alert.cleared", "an alert was cleared"),
    (
        "reset",
        "events were missed (the buffer moved on): re-read what you show",
    ),
];

#[derive(Debug)]
struct Ring {
    next: u64,
    kept: VecDeque<Arc<Event>>,
}

/// The hub: cheap to share.
#[derive(Debug, Clone)]
pub struct Hub {
    ring: Arc<Mutex<Ring>>,
    live: broadcast::Sender<Arc<Event>>,
    /// The first id of this run.
    first: u64,
    /// Set when the daemon stops: every stream ends.
    closing: Arc<tokio::sync::watch::Sender<bool>>,
}

/// What a follower gets on connecting: what it missed, whether it missed
/// more than the buffer holds, and the live feed from there on.
#[derive(Debug)]
pub struct Follow {
    pub missed: Vec<Arc<Event>>,
    pub reset: bool,
    pub live: broadcast::Receiver<Arc<Event>>,
}

impl Hub {
    /// A hub whose ids start from `start_ms` (the daemon's start).
    pub fn new(start_ms: u64) -> Self {
        let first = start_ms.saturating_mul(65_536).max(1);
        let (live, _) = broadcast::channel(KEPT);
        Self {
            ring: Arc::new(Mutex::new(Ring {
                next: first,
                kept: VecDeque::new(),
            })),
            live,
            first,
            closing: Arc::new(tokio::sync::watch::channel(false).0),
        }
    }

    /// End every stream (the daemon is stopping).
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Resolves once [`Hub::close`] was called.
    pub fn closed(&self) -> impl Future<Output = ()> + Send + use<> {
        let mut rx = self.closing.subscribe();
        async move {
            let _ = rx.wait_for(|closed| *closed).await;
        }
    }

    /// Record and send an event.
    pub fn publish(&self, kind: &'static str, data: serde_json::Value) {
        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        let event = Arc::new(Event {
            id: ring.next,
            kind,
            at_ms: crate::backups::now_ms(),
            data,
        });
        ring.next += 1;
        ring.kept.push_back(event.clone());
        if ring.kept.len() > KEPT {
            ring.kept.pop_front();
        }
        // Sent under the lock, so a follower never sees an id out of order.
        let _ = self.live.send(event);
    }

    /// Follow from after `last` (the `Last-Event-ID` a client sent, if any).
    pub fn follow(&self, last: Option<u64>) -> Follow {
        let ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        let live = self.live.subscribe();
        let Some(last) = last else {
            return Follow {
                missed: Vec::new(),
                reset: false,
                live,
            };
        };
        let oldest = ring.kept.front().map_or(ring.next, |e| e.id);
        // Events after `last` that are no longer kept, or ids of another run.
        let reset = last.saturating_add(1) < oldest.max(self.first) || last >= ring.next;
        let missed = ring.kept.iter().filter(|e| e.id > last).cloned().collect();
        Follow {
            missed: if reset { Vec::new() } else { missed },
            reset,
            live,
        }
    }

    /// The events of what the store did.
    pub fn store_event(&self, e: StoreEvent) {
        match e {
            StoreEvent::Sale { record, local } => {
                let m = crate::metrics::get();
                if local {
                    m.sales_recorded.inc();
                } else {
                    m.sales_arrived.inc();
                }
                self.publish(
                    if local {
                        "sale.recorded"
                    } else {
                        "sale.arrived"
                    },
                    serde_json::to_value(crate::api::SaleOut::from(&record)).unwrap_or_default(),
                )
            }
            StoreEvent::ConflictRaised { id, doc, key } => self.publish(
                "conflict.raised",
                serde_json::json!({"id": id, "doc": doc, "key": key}),
            ),
            StoreEvent::ConflictResolved { id, how } => self.publish(
                "conflict.resolved",
                serde_json::json!({"id": id, "how": how}),
            ),
            StoreEvent::MembershipChanged => {
                self.publish("membership.changed", serde_json::json!({}))
            }
        }
    }
}

/// How often the alerts are evaluated (a status report: one store call).
const ALERTS_EVERY: Duration = Duration::from_secs(5);

/// How often the daemon keeps its view of the other tills for `status`
/// without it (`last-status.json`).
const LAST_STATUS_EVERY_MS: u64 = 30_000;

/// Sync sessions as events, as the node tells them: `sync.started` (peer,
/// path, who dialled) and `sync.finished` (peer, path, changes received, bytes
/// each way, or the error).
pub async fn watch_sessions(node: Arc<Node>, hub: Hub) {
    let mut events = node.session_events();
    loop {
        let e = match events.recv().await {
            Ok(e) => e,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::debug!(missed = n, "sync events came faster than the hub took them");
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        match e {
            SessionEvent::Started {
                peer,
                path,
                dialled,
            } => hub.publish(
                "sync.started",
                serde_json::json!({"peer": peer.to_string(), "path": path, "dialled": dialled}),
            ),
            SessionEvent::Finished {
                peer,
                path,
                changes,
                bytes_sent,
                bytes_received,
                error,
            } => {
                crate::metrics::session(
                    &peer.fmt_short(),
                    &path,
                    error.is_none(),
                    changes as u64,
                    bytes_sent as u64,
                    bytes_received as u64,
                );
                hub.publish(
                    "sync.finished",
                    serde_json::json!({
                        "peer": peer.to_string(),
                        "path": path,
                        "changes": changes,
                        "bytes_sent": bytes_sent,
                        "bytes_received": bytes_received,
                        "error": error,
                    }),
                )
            }
        }
    }
}

/// Alerts as events and pushes: the status report's alerts (the one
/// evaluator) compared by id with the active ones in the book
/// (`alerts.json` in `home`, so a restart neither raises an alert again nor
/// forgets a push): an alert is raised once, with the time it was first seen
/// (`since`), and cleared once; each raise and clear this till pushes goes to
/// the store's webhooks until they take it (see [`crate::alerts`]). `look`
/// gives the report, the webhooks and the store's retry pace.
pub async fn watch_alerts(
    look: impl Fn() -> std::pin::Pin<
        Box<dyn Future<Output = Option<(StatusReport, Vec<Webhook>, Backoff)>> + Send>,
    >,
    hub: Hub,
    home: std::path::PathBuf,
) {
    let mut book = crate::alerts::load(&home);
    let (mut kept_at, mut kept_shape) = (0, Vec::new());
    loop {
        if let Some((report, hooks, backoff)) = look().await {
            let at = crate::backups::now_ms();
            // What `status` shows of the other tills while the daemon is
            // stopped: kept every 30 s, and at once when a till comes, goes
            // or changes path.
            let shape: Vec<(String, bool, String)> = report
                .tills
                .iter()
                .map(|t| (t.id.clone(), t.online, t.path.clone()))
                .collect();
            if at.saturating_sub(kept_at) >= LAST_STATUS_EVERY_MS || shape != kept_shape {
                (kept_at, kept_shape) = (at, shape);
                let (h, r) = (home.clone(), report.clone());
                let kept =
                    tokio::task::spawn_blocking(move || crate::status::save_last(&h, &r, at)).await;
                if let Ok(Err(e)) = kept {
                    tracing::warn!(error = %format!("{e:#}"), "cannot keep the last status");
                }
            }
            let lead = crate::alerts::leads(&report);
            let (raised, cleared) = book.observe(&report.alert_details, at, &hooks, lead);
            for r in &raised {
                hub.publish("alert.raised", record_json(r));
            }
            for r in &cleared {
                hub.publish("alert.cleared", record_json(r));
            }
            let delivered = crate::alerts::deliver(&mut book, &report, &hooks, &backoff, at).await;
            if !raised.is_empty() || !cleared.is_empty() || delivered {
                let (h, b) = (home.clone(), book.clone());
                let saved = tokio::task::spawn_blocking(move || crate::alerts::save(&h, &b)).await;
                if let Ok(Err(e)) = saved {
                    tracing::warn!(error = %format!("{e:#}"), "cannot keep the alerts");
                }
            }
        }
        tokio::time::sleep(ALERTS_EVERY).await;
    }
}

/// An alert event's data: the alert as `status` gives it, and `since`
/// (when it was raised).
fn record_json(r: &crate::alerts::Record) -> serde_json::Value {
    serde_json::json!({
        "id": r.id,
        "kind": r.kind,
        "severity": r.severity,
        "subject": r.subject,
        "message": r.message,
        "since": r.raised_ms,
    })
}
