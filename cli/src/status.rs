//! `tillmesh status`: every till of the mesh at a glance, from this till's view.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use anyhow::Result;
use serde::{Deserialize, Serialize};
use tillmesh_mesh::{PeerLink, Revocation};
use tillmesh_store::{MemberStatus, Store, TillId};

use crate::backups::{Arrival, now_ms};
use crate::home::HomeFile;
use crate::output::{Table, Tone, paint, time, verdict_tone};

/// Free space on this till's disk below which `status` warns...
const DISK_LOW_BYTES: u64 = 1 << 30;
/// ...and below which the alert is critical.
const DISK_CRITICAL_BYTES: u64 = 256 << 20;

/// Something an operator should act on, raised and cleared by
/// [`collect`] (the one evaluator): `id` is stable while the condition lasts
/// (kind and subject), so the event stream raises it once and clears it once.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Alert {
    /// `KIND` or `KIND:SUBJECT`.
    pub id: String,
    /// What kind: `unreplicated`, `till_offline`, `clock_off`, `revoked`,
    /// `daemon_stopped`, `sink_failing`, `backup_overdue`, `sink_nearly_full`,
    /// `disk_nearly_full`, `recovery_key`, `recovery_file`, `clock_ahead`,
    /// `conflicts_pending`.
    pub kind: &'static str,
    /// `critical` (data at risk) or `warning`.
    pub severity: &'static str,
    /// What it is about (a till, a sink), if anything.
    pub subject: Option<String>,
    /// What to tell the operator.
    pub message: String,
}

impl Alert {
    /// An alert of `kind` about `subject` (none: this till).
    pub fn new(
        kind: &'static str,
        severity: &'static str,
        subject: Option<&str>,
        message: String,
    ) -> Self {
        Self {
            id: match subject {
                Some(s) => format!("{kind}:{s}"),
                None => kind.to_string(),
            },
            kind,
            severity,
            subject: subject.map(str::to_string),
            message,
        }
    }
}

/// One till's row.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TillRow {
    pub id: String,
    pub name: String,
    pub role: String,
    /// `self`, `member`, `revoked` or `uncertified`.
    pub membership: String,
    pub online: bool,
    /// The newest way its changes reached this till: `direct` or `relay`
    /// (the mesh), `drive` (the store's Google Drive folder) or `usb` (a
    /// stick); `self` for this till, `offline` when nothing came yet.
    pub path: String,
    /// When (unix ms) it was last heard from that way: the last sync or
    /// heartbeat over the mesh, the last file from it that brought changes.
    pub path_at: Option<u64>,
    pub rtt_ms: Option<f64>,
    /// Unix ms of the last completed sync with it.
    pub last_sync: Option<u64>,
    /// Changes it had that this till lacked, at the last sync.
    pub lag_changes: Option<u64>,
    /// Changes only this till holds (own row only).
    pub unreplicated: Option<u64>,
    pub unreplicated_oldest_s: Option<u64>,
    pub clock_skew_ms: Option<i64>,
    pub last_error: Option<String>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    pub store: String,
    pub store_name: String,
    /// One line: is every sale safe, and what needs doing first.
    pub verdict: String,
    /// This till's changes held only here and in no backup: on no other
    /// till, and made after the newest backup to any sink.
    pub unbacked: u64,
    /// With no daemon running: when (unix ms) the daemon last saw the other
    /// tills; their rows are as it saw them then (`online` false).
    pub stale_since: Option<u64>,
    #[serde(rename = "self")]
    pub me: SelfInfo,
    pub tills: Vec<TillRow>,
    pub sinks: Vec<SinkRow>,
    /// The largest clock skew of another till this till has seen beyond the
    /// store's bound (its timestamps did not move this till's clock).
    pub clock_skew: Option<SkewRow>,
    /// The alerts' messages (as `status` prints them).
    pub alerts: Vec<String>,
    /// The alerts as typed values.
    pub alert_details: Vec<Alert>,
}

/// Another till's clock, seen ahead of this till's by more than the bound.
#[derive(Debug, Clone, Serialize)]
pub struct SkewRow {
    pub till: String,
    pub name: String,
    /// How far ahead its timestamp was, in ms.
    pub ahead_ms: u64,
    /// Unix ms (this till's clock) when this till saw it.
    pub seen_at: u64,
}

/// One configured sink of this till, with its scheduled backups.
#[derive(Debug, Clone, Serialize)]
pub struct SinkRow {
    pub name: String,
    pub path: String,
    /// The folder is there (a USB stick plugged in, a share mounted).
    pub present: bool,
    pub free_bytes: Option<u64>,
    /// Unix ms of the last successful scheduled backup.
    pub last_backup: Option<u64>,
    pub last_bytes: Option<u64>,
    /// Failed scheduled backups in a row.
    pub failures: u32,
    pub last_error: Option<String>,
    /// Unix ms of the next attempt.
    pub next_backup: Option<u64>,
    /// A remote sink's account: bytes used and its limit, as last read
    /// (Google Drive, after each scheduled backup).
    pub quota_used: Option<u64>,
    pub quota_limit: Option<u64>,
}

/// This till.
#[derive(Debug, Clone, Serialize)]
pub struct SelfInfo {
    pub id: String,
    pub name: String,
    pub role: String,
    pub daemon: bool,
    pub version: String,
    pub relays: Vec<String>,
    /// The relay the daemon is connected to now (its home relay), if any.
    pub relay_connected: Option<String>,
    /// The daemon's neighbours in the store's gossip swarm now (none without
    /// a daemon).
    pub gossip_neighbours: Option<usize>,
    /// Set when this till's membership was revoked: how it learned it.
    pub revoked: Option<String>,
}

/// What the daemon knows that the store does not: its links to peers and
/// what peers said of this till's membership.
#[derive(Debug, Clone)]
pub struct Live {
    pub links: HashMap<TillId, PeerLink>,
    pub revocation: Option<Revocation>,
    /// A peer counts as online when heard from within this many ms.
    pub online_window_ms: u64,
    /// When the daemon started (unix ms): a till not heard from since counts
    /// as offline from then.
    pub started_ms: u64,
    /// The peers and changes the daemon refused lately, oldest first.
    pub refusals: Vec<tillmesh_mesh::Refusal>,
}

/// The newest way a peer's changes reached this till: its mesh `link` (the
/// last sync or heartbeat over it) or the last file from it that brought
/// changes (`arrival`), whichever is newer; `offline` when neither.
fn newest_path(link: Option<&PeerLink>, arrival: Option<&Arrival>) -> (String, Option<u64>) {
    let mesh = link
        .filter(|l| !l.path.is_empty())
        .map(|l| (l.path.clone(), l.last_sync.max(l.last_heartbeat)));
    match (mesh, arrival) {
        (Some((_, seen)), Some(a)) if seen.is_none_or(|s| a.at > s) => (a.via.clone(), Some(a.at)),
        (Some(mesh), _) => mesh,
        (None, Some(a)) => (a.via.clone(), Some(a.at)),
        (None, None) => ("offline".into(), None),
    }
}

/// Build the report. `live` is the daemon's view (None without one).
pub fn collect(store: &mut Store, home: &Path, live: Option<&Live>) -> Result<StatusReport> {
    let links = live.map(|l| &l.links);
    let online_window_ms = live.map_or(0, |l| l.online_window_ms);
    let me = store.till_id();
    let tills = store.tills()?;
    let peers: Vec<TillId> = tills.iter().map(|t| t.id).filter(|t| *t != me).collect();
    let schedule = crate::backups::load_schedule(home);
    let sink_specs = crate::backups::load_sinks(home)?;
    let last_backup = sink_specs
        .keys()
        .filter_map(|n| schedule.sinks.get(n)?.last_ok_ms)
        .max();
    // What a lost disk would lose now: this till's changes on no other
    // till, and those of them made after the newest backup.
    let held = store.unreplicated_since_backup(&peers, last_backup)?;
    let (unrepl, oldest) = (held.count, held.oldest_ms);
    let arrivals = crate::backups::file_arrivals(home);
    let offline_alert_ms = crate::alerts::threshold(store, "till_offline_min")? * 60_000;
    let unreplicated_alert_s = crate::alerts::threshold(store, "unreplicated_min")? * 60;
    let last = if live.is_none() {
        load_last(home)
    } else {
        None
    };
    let now = now_ms();
    let mut rows = Vec::new();
    let mut alerts = Vec::new();
    for t in &tills {
        let status = store.member_status(&t.id)?;
        let membership = if t.id == me {
            "self"
        } else {
            match status {
                MemberStatus::Member(_) => "member",
                MemberStatus::Revoked(_) => "revoked",
                _ => "uncertified",
            }
        };
        let link = links.and_then(|l| l.get(&t.id));
        let recent = |t: Option<u64>| t.is_some_and(|t| now.saturating_sub(t) < online_window_ms);
        let online = t.id == me
            || link.is_some_and(|l| {
                (l.path != "offline" && recent(l.last_sync)) || recent(l.last_heartbeat)
            });
        let (path, path_at) = if t.id == me {
            ("self".to_string(), None)
        } else {
            newest_path(link, arrivals.get(&t.id.fmt_short()))
        };
        let mut row = TillRow {
            id: t.id.to_string(),
            name: t.name.clone(),
            role: t.role.to_string(),
            membership: membership.into(),
            online,
            path,
            path_at,
            rtt_ms: link.and_then(|l| l.rtt_ms),
            last_sync: link.and_then(|l| l.last_sync),
            lag_changes: link.and_then(|l| l.last_received).map(|n| n as u64),
            // Other tills' figures come from their signed heartbeats.
            unreplicated: link.and_then(|l| l.unreplicated),
            unreplicated_oldest_s: link
                .and_then(|l| l.unreplicated_oldest_ms)
                .map(|o| now.saturating_sub(o) / 1000),
            clock_skew_ms: link.and_then(|l| l.clock_skew_ms),
            last_error: link.and_then(|l| l.last_error.clone()),
        };
        if let Some(old) = last
            .as_ref()
            .and_then(|l| l.tills.iter().find(|r| r.id == row.id && t.id != me))
        {
            if row.path == "offline" || old.path_at > row.path_at {
                (row.path, row.path_at) = (old.path.clone(), old.path_at);
            }
            row.rtt_ms = old.rtt_ms;
            row.last_sync = old.last_sync;
            row.lag_changes = old.lag_changes;
            row.unreplicated = old.unreplicated;
            row.unreplicated_oldest_s = old.unreplicated_oldest_s;
            row.clock_skew_ms = old.clock_skew_ms;
            row.last_error = old.last_error.clone();
        }
        if t.id == me {
            row.unreplicated = Some(unrepl);
            row.unreplicated_oldest_s = oldest.map(|o| now.saturating_sub(o) / 1000);
            if let Some(age) = row.unreplicated_oldest_s
                && unrepl > 0
                && age > unreplicated_alert_s
            {
                alerts.push(Alert::new(
                    "unreplicated",
                    "critical",
                    None,
                    format!(
                        "{unrepl} changes exist only on this till, the oldest {} min old: a dead disk would lose them",
                        age / 60
                    ),
                ));
            }
        } else if membership == "member"
            && !row.online
            && let Some(l) = live
        {
            let heard = link.and_then(|k| k.last_sync.max(k.last_heartbeat));
            let since = heard.max(row.path_at).unwrap_or(0).max(l.started_ms);
            let gone = now.saturating_sub(since);
            if gone >= offline_alert_ms {
                alerts.push(Alert::new(
                    "till_offline",
                    "warning",
                    Some(&t.name),
                    format!(
                        "till {} is offline: not heard from for {}",
                        t.name,
                        span(gone)
                    ),
                ));
            }
        }
        if let Some(skew) = row.clock_skew_ms
            && skew.abs() > 60_000
        {
            alerts.push(Alert::new(
                "clock_off",
                "warning",
                Some(&t.name),
                format!("till {}'s clock is {} s off", t.name, skew / 1000),
            ));
        }
        rows.push(row);
    }
    let revoked = revoked_because(store, live, &tills)?;
    if let Some(why) = &revoked {
        let stopped = live
            .and_then(|l| l.revocation.as_ref())
            .is_none_or(|r| r.stopped);
        alerts.push(Alert::new(
            "revoked",
            "critical",
            None,
            format!(
                "this till's membership was revoked ({why}): {}; it keeps selling locally, and \
                 `tillmesh export-unsynced FILE` writes the sales only it holds for the back office",
                if stopped {
                    "it syncs with nobody"
                } else {
                    "it stops syncing once the signed revocation arrives or more members refuse it"
                }
            ),
        ));
    } else if links.is_none() {
        alerts.push(Alert::new(
            "daemon_stopped",
            "warning",
            None,
            "the daemon is not running: this till is not syncing (start it with `tillmesh run`)"
                .into(),
        ));
    }
    if let Some(l) = live {
        let window = crate::alerts::threshold(store, "refusals_min")? * 60_000;
        let name = |id: &TillId| crate::commands::till_name(&tills, id);
        alerts.extend(crate::alerts::refusal_alerts(
            &l.refusals,
            name,
            window,
            now,
        ));
    }
    let mut sinks = Vec::new();
    let alert_after = crate::config::alert_after(store)?;
    let backup_every_s = store.backup_schedule()?.0;
    let overdue_ms = (crate::alerts::threshold(store, "backup_overdue_min")? * 60_000)
        .max(2 * backup_every_s * 1000);
    for (name, spec) in sink_specs {
        // A remote sink is not asked anything here (status runs often): it
        // is there when the store has its login.
        let remote = matches!(spec.config, tillmesh_backup::sink::SinkConfig::Drive(_));
        let sink = if remote {
            None
        } else {
            crate::backups::open_sink(home, &spec.config).ok()
        };
        let present =
            sink.is_some() || (remote && crate::drive::load(home).is_ok_and(|l| l.is_some()));
        let st = schedule.sinks.get(&name).cloned().unwrap_or_default();
        // Overdue: the last backup there is older than the threshold and
        // than two scheduled intervals (a failing sink is alerted as such).
        // A sink never backed up is overdue once the daemon has run that long.
        let since = st.last_ok_ms.or_else(|| live.map(|l| l.started_ms));
        if let Some(t) = since
            && now.saturating_sub(t) > overdue_ms
            && !st.alert(alert_after)
        {
            alerts.push(Alert::new(
                "backup_overdue",
                "warning",
                Some(&name),
                match st.last_ok_ms {
                    Some(_) => format!(
                        "the last backup to sink {name} was {} ago (one is due every {}): is the daemon running, the sink there?",
                        span(now.saturating_sub(t)),
                        span(backup_every_s * 1000)
                    ),
                    None => format!(
                        "no backup to sink {name} yet, {} after the daemon started",
                        span(now.saturating_sub(t))
                    ),
                },
            ));
        }
        if st.alert(alert_after) {
            alerts.push(Alert::new(
                "sink_failing",
                "critical",
                Some(&name),
                format!(
                    "backups to sink {name} failed {} times in a row: {}",
                    st.failures,
                    st.last_error.as_deref().unwrap_or("unknown error")
                ),
            ));
        }
        if let Some(q) = st.quota().filter(|q| q.nearly_full()) {
            alerts.push(Alert::new(
                "sink_nearly_full",
                "warning",
                Some(&name),
                format!(
                    "sink {name}'s account is {:.0} % full ({} of {} bytes): free space there or buy more, before backups stop",
                    q.percent(),
                    q.usage,
                    q.limit.unwrap_or(0)
                ),
            ));
        }
        sinks.push(SinkRow {
            name,
            path: spec.config.location(),
            present,
            free_bytes: sink.and_then(|s| s.free_space()),
            last_backup: st.last_ok_ms,
            last_bytes: st.last_bytes,
            failures: st.failures,
            last_error: st.last_error,
            next_backup: (st.next_ms > 0).then_some(st.next_ms),
            quota_used: st.quota_used,
            quota_limit: st.quota_limit,
        });
    }
    if let Some((free, _)) = tillmesh_backup::device::space(home)
        && free < DISK_LOW_BYTES
    {
        let critical = free < DISK_CRITICAL_BYTES;
        alerts.push(Alert::new(
            "disk_nearly_full",
            if critical { "critical" } else { "warning" },
            None,
            format!(
                "this till's disk has {} MiB free{}: free space on it",
                free >> 20,
                if critical {
                    "; once it is full, sales are refused"
                } else {
                    ""
                }
            ),
        ));
    }
    if let Err(e) = crate::backups::load_recovery_key(home) {
        alerts.push(Alert::new(
            "recovery_key",
            "critical",
            None,
            format!("{e:#}"),
        ));
    }
    if let Some(a) = crate::backups::stale_recovery(store, home)? {
        alerts.push(Alert::new("recovery_file", "warning", None, a));
    }
    let clock_skew = store.clock_skew()?.map(|k| SkewRow {
        till: k.till.to_string(),
        name: crate::commands::till_name(&tills, &k.till),
        ahead_ms: k.ahead_ms,
        seen_at: k.seen_at_ms,
    });
    if let Some(k) = &clock_skew {
        alerts.push(Alert::new(
            "clock_ahead",
            "warning",
            Some(&k.name),
            format!(
                "till {}'s clock was {} ahead of this till's (seen {}): its timestamps did not move this till's clock; set its clock right",
                k.name,
                span(k.ahead_ms),
                time(k.seen_at)
            ),
        ));
    }
    let pending = store.pending_conflicts()?.len();
    if pending > 0 {
        alerts.push(Alert::new(
            "conflicts_pending",
            "warning",
            None,
            format!("{pending} conflicts wait for review (`tillmesh conflicts`)"),
        ));
    }
    let verdict = verdict(&rows, &sinks, &alerts, now);
    Ok(StatusReport {
        store: store.store_id().to_string(),
        store_name: store.store_name().to_string(),
        verdict,
        unbacked: held.unbacked,
        stale_since: last.map(|l| l.at_ms),
        me: SelfInfo {
            id: me.to_string(),
            name: store.till_name().to_string(),
            role: store.role().to_string(),
            daemon: links.is_some(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            relays: store.relays()?,
            relay_connected: None,
            gossip_neighbours: None,
            revoked,
        },
        tills: rows,
        sinks,
        clock_skew,
        alerts: alerts.iter().map(|a| a.message.clone()).collect(),
        alert_details: alerts,
    })
}

/// What the daemon last saw of the other tills (`last-status.json`), for
/// `status` while it is stopped.
#[derive(Debug, Serialize, Deserialize)]
struct LastSeen {
    version: u32,
    at_ms: u64,
    tills: Vec<TillRow>,
}

/// Keep what `report` (taken at `at`) says of the other tills in `home`.
pub fn save_last(home: &Path, report: &StatusReport, at: u64) -> Result<()> {
    let last = LastSeen {
        version: HomeFile::LastStatus.version().unwrap_or(1),
        at_ms: at,
        tills: report
            .tills
            .iter()
            .filter(|t| t.membership != "self")
            .cloned()
            .collect(),
    };
    crate::home::write_private(
        &crate::home::path(home, HomeFile::LastStatus),
        &serde_json::to_vec(&last)?,
    )
}

fn load_last(home: &Path) -> Option<LastSeen> {
    let bytes = std::fs::read(crate::home::path(home, HomeFile::LastStatus)).ok()?;
    serde_json::from_slice(&bytes)
        .map_err(|e| tracing::warn!(error = %e, "last-status.json is unreadable; not shown"))
        .ok()
}

/// The verdict line: the first critical alert when there is one; else
/// whether this till's sales are on another till yet, and how long ago a
/// backup last landed; and how many warnings wait.
fn verdict(tills: &[TillRow], sinks: &[SinkRow], alerts: &[Alert], now: u64) -> String {
    let warnings = alerts.iter().filter(|a| a.severity != "critical").count();
    let and_warnings = match warnings {
        0 => String::new(),
        1 => "; 1 warning".into(),
        n => format!("; {n} warnings"),
    };
    if let Some(a) = alerts.iter().find(|a| a.severity == "critical") {
        return format!("ACTION NEEDED: {}{and_warnings}", a.message);
    }
    let me = tills.iter().find(|t| t.membership == "self");
    let copies = match me.and_then(|t| t.unreplicated) {
        _ if tills.len() <= 1 => "a store of one till: every sale is on this till only".into(),
        Some(0) | None => "all sales on at least 2 tills".to_string(),
        Some(1) => "1 change on this till only, so far".into(),
        Some(n) => format!("{n} changes on this till only, so far"),
    };
    let backed_up = match sinks.iter().filter_map(|s| s.last_backup).max() {
        Some(at) if now.saturating_sub(at) < 60_000 => "backed up just now".into(),
        Some(at) => format!("backed up {} ago", span(now.saturating_sub(at))),
        None if sinks.is_empty() => "no backup sink".into(),
        None => "no scheduled backup yet".into(),
    };
    let head = if warnings == 0 { "OK" } else { "CHECK" };
    format!("{head}: {copies}, {backed_up}{and_warnings}")
}

/// How this till learned that its membership was revoked, if it was.
fn revoked_because(
    store: &Store,
    live: Option<&Live>,
    tills: &[tillmesh_store::TillInfo],
) -> Result<Option<String>> {
    if matches!(
        store.member_status(&store.till_id())?,
        MemberStatus::Revoked(_)
    ) {
        return Ok(Some("the admin's signed revocation reached it".into()));
    }
    let Some(r) = live.and_then(|l| l.revocation.as_ref()) else {
        return Ok(None);
    };
    if r.refused_by.is_empty() {
        return Ok(None);
    }
    let names: Vec<String> = r
        .refused_by
        .iter()
        .map(|id| crate::commands::till_name(tills, id))
        .collect();
    Ok(Some(format!(
        "{} refused it as revoked{}",
        names.join(", "),
        if r.signed {
            ""
        } else {
            ", not yet confirmed by a signed revocation"
        }
    )))
}

/// A duration for people: `3650 days`, `5 h 12 min`, `7 min`, `40 s`.
fn span(ms: u64) -> String {
    let min = ms / 60_000;
    match min {
        0 => format!("{} s", ms / 1000),
        m if m >= 2 * 1440 => format!("{} days", m / 1440),
        m if m >= 60 => format!("{} h {} min", m / 60, m % 60),
        m => format!("{m} min"),
    }
}

/// Print the report.
/// `colour`: the verdict and the alerts in colour (a terminal).
pub fn render(r: &StatusReport, json: bool, colour: bool, out: &mut dyn Write) -> Result<()> {
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(r)?)?;
        return Ok(());
    }
    if let Some(why) = &r.me.revoked {
        writeln!(out, "THIS TILL WAS REVOKED: {why}")?;
    }
    writeln!(
        out,
        "Store {} ({})   this till: {}   daemon: {}{}",
        r.store_name,
        &r.store[..8],
        r.me.name,
        if r.me.daemon { "running" } else { "stopped" },
        match &r.me.relay_connected {
            Some(url) => format!("   relay: {url}"),
            None if r.me.daemon && !r.me.relays.is_empty() => "   relay: not connected".into(),
            None => String::new(),
        }
    )?;
    writeln!(
        out,
        "{}",
        paint(&r.verdict, verdict_tone(&r.verdict), colour)
    )?;
    match r.unbacked {
        _ if r.tills.len() <= 1 => {}
        0 => {}
        1 => writeln!(out, "1 change is held only here and in no backup")?,
        n => writeln!(out, "{n} changes are held only here and in no backup")?,
    }
    if let Some(at) = r.stale_since {
        writeln!(
            out,
            "The other tills as the daemon last saw them, {} ago ({}):",
            span(now_ms().saturating_sub(at)),
            time(at)
        )?;
    }
    let mut t = Table::new(&[
        "TILL",
        "ID",
        "ROLE",
        "STATE",
        "PATH",
        ">RTT",
        "LAST SYNC",
        ">LAG",
        ">UNREPLICATED",
        ">SKEW",
    ]);
    for row in &r.tills {
        let state = match (row.membership.as_str(), row.online) {
            ("self", _) => "self".to_string(),
            ("member", true) => "online".into(),
            ("member", false) => "offline".into(),
            (m, _) => m.to_string(),
        };
        t.row(vec![
            row.name.clone(),
            row.id[..10].to_string(),
            row.role.clone(),
            state,
            match row.path_at {
                // The mesh's time is under LAST SYNC.
                Some(at) if matches!(row.path.as_str(), "drive" | "usb") => {
                    format!("{} {}", row.path, time(at))
                }
                _ => row.path.clone(),
            },
            row.rtt_ms
                .map(|r| format!("{r:.1}ms"))
                .unwrap_or_else(|| "-".into()),
            row.last_sync.map(time).unwrap_or_else(|| "-".into()),
            row.lag_changes
                .map(|n| n.to_string())
                .unwrap_or_else(|| "-".into()),
            match (row.unreplicated, row.unreplicated_oldest_s) {
                (Some(0), _) => "0".into(),
                (Some(n), Some(age)) => format!("{n} ({age}s)"),
                (Some(n), None) => n.to_string(),
                (None, _) => "-".into(),
            },
            row.clock_skew_ms
                .map(|s| format!("{s}ms"))
                .unwrap_or_else(|| "-".into()),
        ]);
    }
    write!(out, "{}", t.render())?;
    if !r.sinks.is_empty() {
        let mut t = Table::new(&[
            "SINK",
            "PATH",
            "STATE",
            "LAST BACKUP",
            ">SIZE",
            "NEXT",
            "ERROR",
        ]);
        for s in &r.sinks {
            t.row(vec![
                s.name.clone(),
                s.path.clone(),
                match (s.present, s.failures) {
                    (false, _) => "missing".into(),
                    (true, 0) => "ok".into(),
                    (true, n) => format!("failing ({n})"),
                },
                s.last_backup.map(time).unwrap_or_else(|| "-".into()),
                s.last_bytes
                    .map(|b| b.to_string())
                    .unwrap_or_else(|| "-".into()),
                s.next_backup.map(time).unwrap_or_else(|| "-".into()),
                s.last_error.clone().unwrap_or_default(),
            ]);
        }
        writeln!(out)?;
        write!(out, "{}", t.render())?;
    }
    for a in &r.alert_details {
        let tone = if a.severity == "critical" {
            Tone::Bad
        } else {
            Tone::Warn
        };
        writeln!(out, "{}", paint(&format!("! {}", a.message), tone, colour))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(path: &str, last_sync: Option<u64>, last_heartbeat: Option<u64>) -> PeerLink {
        PeerLink {
            path: path.into(),
            last_sync,
            last_heartbeat,
            ..PeerLink::default()
        }
    }

    fn arrival(via: &str, at: u64) -> Arrival {
        Arrival {
            via: via.into(),
            at,
        }
    }

    fn row(name: &str, membership: &str, unreplicated: Option<u64>) -> TillRow {
        TillRow {
            id: name.into(),
            name: name.into(),
            role: "till".into(),
            membership: membership.into(),
            online: true,
            path: "direct".into(),
            path_at: None,
            rtt_ms: None,
            last_sync: None,
            lag_changes: None,
            unreplicated,
            unreplicated_oldest_s: None,
            clock_skew_ms: None,
            last_error: None,
        }
    }

    fn sink(last_backup: Option<u64>) -> SinkRow {
        SinkRow {
            name: "usb".into(),
            path: "/media/usb".into(),
            present: true,
            free_bytes: None,
            last_backup,
            last_bytes: None,
            failures: 0,
            last_error: None,
            next_backup: None,
            quota_used: None,
            quota_limit: None,
        }
    }

    #[test]
    fn the_verdict_puts_what_matters_first() {
        let now = 10 * 60_000;
        let two = [row("A", "self", Some(0)), row("B", "member", None)];
        assert_eq!(
            verdict(&two, &[sink(Some(6 * 60_000))], &[], now),
            "OK: all sales on at least 2 tills, backed up 4 min ago"
        );
        let behind = [row("A", "self", Some(3)), row("B", "member", None)];
        let offline = Alert::new(
            "till_offline",
            "warning",
            Some("B"),
            "till B is offline".into(),
        );
        assert_eq!(
            verdict(&behind, &[], std::slice::from_ref(&offline), now),
            "CHECK: 3 changes on this till only, so far, no backup sink; 1 warning"
        );
        let failing = Alert::new(
            "sink_failing",
            "critical",
            Some("usb"),
            "backups fail".into(),
        );
        assert_eq!(
            verdict(&two, &[sink(None)], &[offline, failing], now),
            "ACTION NEEDED: backups fail; 1 warning"
        );
        let alone = [row("A", "self", Some(7))];
        assert_eq!(
            verdict(&alone, &[sink(Some(now - 1000))], &[], now),
            "OK: a store of one till: every sale is on this till only, backed up just now"
        );
    }

    #[test]
    fn a_peer_is_shown_on_the_newest_way_its_changes_came() {
        assert_eq!(newest_path(None, None), ("offline".into(), None));
        // Only a file from it: the way the file came.
        assert_eq!(
            newest_path(None, Some(&arrival("drive", 50))),
            ("drive".into(), Some(50))
        );
        // The mesh went quiet, then a file came through Drive.
        let quiet = link("offline", Some(10), Some(20));
        assert_eq!(
            newest_path(Some(&quiet), Some(&arrival("drive", 30))),
            ("drive".into(), Some(30))
        );
        // The mesh came back after that file: its path again.
        let back = link("relay", Some(40), Some(45));
        assert_eq!(
            newest_path(Some(&back), Some(&arrival("drive", 30))),
            ("relay".into(), Some(45))
        );
        // A stick older than the last mesh contact changes nothing.
        let direct = link("direct", Some(60), None);
        assert_eq!(
            newest_path(Some(&direct), Some(&arrival("usb", 55))),
            ("direct".into(), Some(60))
        );
        // A link the node knows but never used: a file is newer.
        assert_eq!(
            newest_path(Some(&link("direct", None, None)), Some(&arrival("usb", 5))),
            ("usb".into(), Some(5))
        );
    }
}
