//! The till's metrics for Prometheus at `GET /metrics` on the local API
//! (OpenMetrics text, which Prometheus reads), from iroh-metrics, the
//! library iroh counts its own with, so that iroh's endpoint counters come in
//! the same page.
//!
//! Counters are counted as things happen (sales, sync sessions, files
//! imported from Drive or a stick); gauges are set from the status report at
//! each scrape, so they are never older than the scrape.

use std::sync::{Arc, OnceLock};

use iroh_metrics::{Counter, EncodeLabelSet, Family, Gauge, MetricsGroup, MetricsSource, Registry};

use crate::status::StatusReport;

/// A path changes came by: `direct`, `relay`, `gossip`, `drive` or `usb`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct PathLabel {
    pub path: String,
}

/// Sync session bytes: the path and the direction (`sent`, `received`).
#[derive(Debug, Clone, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct BytesLabel {
    pub path: String,
    pub direction: String,
}

/// A sync session's peer (short id), path and outcome (`ok`, `failed`).
#[derive(Debug, Clone, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct SessionLabel {
    pub peer: String,
    pub path: String,
    pub outcome: String,
}

/// Another till, by name.
#[derive(Debug, Clone, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct TillLabel {
    pub till: String,
}

/// A backup sink, by name.
#[derive(Debug, Clone, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct SinkLabel {
    pub sink: String,
}

/// An alert severity.
#[derive(Debug, Clone, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct SeverityLabel {
    pub severity: String,
}

/// Everything the till counts.
#[derive(Debug, Default, MetricsGroup)]
#[metrics(name = "tillmesh")]
pub struct Metrics {
    /// Sales, voids and refunds recorded on this till.
    pub sales_recorded: Counter,
    /// Sales, voids and refunds from other tills that reached this one.
    pub sales_arrived: Counter,
    /// Changes new to this till, by the path they came by.
    pub changes_received: Family<PathLabel, Counter>,
    /// Bytes of sync sessions, by path and direction.
    pub sync_bytes: Family<BytesLabel, Counter>,
    /// Sync sessions finished, by peer, path and outcome.
    pub sync_sessions: Family<SessionLabel, Counter>,
    /// Gossiped changes this till applied.
    pub gossip_deliveries: Counter,
    /// The till's neighbours in the store's gossip swarm now (0: changes
    /// reach it by sync sessions only, until it is taken in again).
    pub gossip_neighbours: Gauge,
    /// This till's changes no other till holds.
    pub unreplicated_changes: Gauge,
    /// The age of the oldest of them, in seconds (0 when none).
    pub unreplicated_oldest_seconds: Gauge,
    /// Those of them made after the newest backup: held only here and in
    /// no backup.
    pub unbacked_changes: Gauge,
    /// Tills of the store, this one included.
    pub tills: Gauge,
    /// Tills heard from lately, this one included.
    pub tills_online: Gauge,
    /// Whether another till was heard from lately (1) or not (0).
    pub till_online: Family<TillLabel, Gauge>,
    /// Seconds since another till's newest sync or heartbeat, or its last
    /// file (Drive, stick).
    pub till_seen_seconds: Family<TillLabel, Gauge>,
    /// Seconds since the last scheduled backup to a sink succeeded (-1: never).
    pub backup_age_seconds: Family<SinkLabel, Gauge>,
    /// Scheduled backups to a sink that failed in a row.
    pub backup_failures: Family<SinkLabel, Gauge>,
    /// Bytes used in a remote sink's account (Google Drive), as last read.
    pub sink_quota_used_bytes: Family<SinkLabel, Gauge>,
    /// The account's limit (absent when unlimited).
    pub sink_quota_limit_bytes: Family<SinkLabel, Gauge>,
    /// Active alerts, by severity.
    pub alerts_active: Family<SeverityLabel, Gauge>,
    /// The store file's size in bytes.
    pub store_bytes: Gauge,
}

/// The till's metrics (one set per process).
pub fn get() -> &'static Arc<Metrics> {
    static METRICS: OnceLock<Arc<Metrics>> = OnceLock::new();
    METRICS.get_or_init(Arc::default)
}

/// Count `n` changes new to this till that came by `path`.
pub fn changes_received(path: &str, n: u64) {
    if n > 0 {
        get()
            .changes_received
            .get_or_create(&PathLabel { path: path.into() })
            .inc_by(n);
    }
}

/// Count a finished sync session.
pub fn session(peer: &str, path: &str, ok: bool, changes: u64, sent: u64, received: u64) {
    let m = get();
    m.sync_sessions
        .get_or_create(&SessionLabel {
            peer: peer.into(),
            path: path.into(),
            outcome: if ok { "ok" } else { "failed" }.into(),
        })
        .inc();
    for (direction, n) in [("sent", sent), ("received", received)] {
        m.sync_bytes
            .get_or_create(&BytesLabel {
                path: path.into(),
                direction: direction.into(),
            })
            .inc_by(n);
    }
    changes_received(path, changes);
}

/// Set the gauges from `report` (taken at `now`, unix ms), with the store
/// file's size and the gossiped changes the node applied.
pub fn observe(report: &StatusReport, now: u64, store_bytes: Option<u64>, gossip: u64) {
    let m = get();
    let me = report.tills.iter().find(|t| t.membership == "self");
    let unreplicated = me.and_then(|t| t.unreplicated).unwrap_or(0);
    m.unreplicated_changes.set(unreplicated as i64);
    m.unbacked_changes.set(report.unbacked as i64);
    m.unreplicated_oldest_seconds.set(
        me.and_then(|t| t.unreplicated_oldest_s)
            .filter(|_| unreplicated > 0)
            .unwrap_or(0) as i64,
    );
    m.tills.set(report.tills.len() as i64);
    m.tills_online
        .set(report.tills.iter().filter(|t| t.online).count() as i64);
    for t in report.tills.iter().filter(|t| t.membership == "member") {
        let till = TillLabel {
            till: t.name.clone(),
        };
        m.till_online.get_or_create(&till).set(i64::from(t.online));
        let seen = t
            .path_at
            .map_or(-1, |at| (now.saturating_sub(at) / 1000) as i64);
        m.till_seen_seconds.get_or_create(&till).set(seen);
    }
    for s in &report.sinks {
        let sink = SinkLabel {
            sink: s.name.clone(),
        };
        let age = s
            .last_backup
            .map_or(-1, |at| (now.saturating_sub(at) / 1000) as i64);
        m.backup_age_seconds.get_or_create(&sink).set(age);
        m.backup_failures
            .get_or_create(&sink)
            .set(i64::from(s.failures));
        if let Some(used) = s.quota_used {
            m.sink_quota_used_bytes
                .get_or_create(&sink)
                .set(used as i64);
        }
        if let Some(limit) = s.quota_limit {
            m.sink_quota_limit_bytes
                .get_or_create(&sink)
                .set(limit as i64);
        }
    }
    for severity in ["critical", "warning"] {
        let n = report
            .alert_details
            .iter()
            .filter(|a| a.severity == severity)
            .count();
        m.alerts_active
            .get_or_create(&SeverityLabel {
                severity: severity.into(),
            })
            .set(n as i64);
    }
    if let Some(b) = store_bytes {
        m.store_bytes.set(b as i64);
    }
    m.gossip_deliveries.set(gossip);
    m.gossip_neighbours
        .set(report.me.gossip_neighbours.unwrap_or(0) as i64);
}

/// The page: this till's metrics and those of its iroh endpoint.
pub fn render(endpoint: &iroh::metrics::EndpointMetrics) -> String {
    let mut registry = Registry::default();
    registry.register(get().clone());
    registry
        .sub_registry_with_prefix("iroh")
        .register_all(endpoint);
    registry.encode_openmetrics_to_string().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "cannot encode the metrics");
        "# EOF\n".into()
    })
}
