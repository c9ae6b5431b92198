//! `tillmesh report [--since 24h] [--json]`: how the store fared over a
//! period, from the daemon's journal ([`crate::journal`]) and the store: sync
//! sessions per peer and path (succeeded, failed, changes, bytes), bytes per
//! path, how long other tills' sales took to arrive here (p50, p99, the
//! slowest), backups per sink, conflicts and alerts raised and cleared, with a
//! one-line verdict first.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use anyhow::Result;
use serde::Serialize;
use tillmesh_store::Store;

use crate::args::ReportArgs;
use crate::journal::What;
use crate::output::{Table, paint, time, verdict_tone};

/// Sync sessions with one peer over one path.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct PeerSync {
    /// The peer's name (its id's short form when it is not a member).
    pub peer: String,
    pub path: String,
    pub ok: u64,
    pub failed: u64,
    /// Changes received.
    pub changes: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// The last error, if any session failed.
    pub last_error: Option<String>,
}

/// Bytes over one path.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct PathBytes {
    pub sent: u64,
    pub received: u64,
}

/// How long sales made on other tills took to arrive here.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Arrivals {
    pub sales: u64,
    pub p50_ms: Option<u64>,
    pub p99_ms: Option<u64>,
    pub max_ms: Option<u64>,
}

/// Backups to one sink.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct SinkBackups {
    pub sink: String,
    pub ok: u64,
    pub failed: u64,
    pub bytes: u64,
    pub last_ok_ms: Option<u64>,
    pub last_error: Option<String>,
}

/// One alert raised or cleared.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AlertLine {
    pub at_ms: u64,
    pub raised: bool,
    pub kind: String,
    pub severity: String,
    pub message: String,
}

/// The report.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    /// One line: how it went, and what needs looking at first.
    pub verdict: String,
    pub since_ms: u64,
    pub until_ms: u64,
    pub sync: Vec<PeerSync>,
    pub bytes_by_path: BTreeMap<String, PathBytes>,
    pub arrivals: Arrivals,
    pub backups: Vec<SinkBackups>,
    pub conflicts_raised: u64,
    pub conflicts_resolved: u64,
    /// Conflicts waiting for review now.
    pub conflicts_pending: u64,
    pub alerts: Vec<AlertLine>,
    /// Journal lines that could not be read (cut short by a crash, or from a
    /// newer version).
    pub unreadable_lines: usize,
}

/// The `q` quantile (0..=1) of sorted `v`.
fn quantile(v: &[u64], q: f64) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    let i = ((v.len() - 1) as f64 * q).round() as usize;
    v.get(i).copied()
}

/// Build the report from the journal's `entries` (oldest first), with the
/// tills' names (`id` to name) and the conflicts pending now.
pub fn build(
    entries: &[crate::journal::Entry],
    names: &BTreeMap<String, String>,
    pending: u64,
    since_ms: u64,
    until_ms: u64,
    unreadable_lines: usize,
) -> Report {
    let mut sync: BTreeMap<(String, String), PeerSync> = BTreeMap::new();
    let mut bytes: BTreeMap<String, PathBytes> = BTreeMap::new();
    let mut delays = Vec::new();
    let mut backups: BTreeMap<String, SinkBackups> = BTreeMap::new();
    let (mut raised, mut resolved) = (0, 0);
    let mut alerts = Vec::new();
    for e in entries {
        match &e.what {
            What::Sync {
                peer,
                path,
                ok,
                changes,
                sent,
                received,
                error,
            } => {
                let name = names
                    .get(peer)
                    .cloned()
                    .unwrap_or_else(|| peer.chars().take(10).collect());
                let s = sync.entry((name.clone(), path.clone())).or_default();
                s.peer = name;
                s.path = path.clone();
                if *ok {
                    s.ok += 1;
                } else {
                    s.failed += 1;
                    s.last_error = error.clone();
                }
                s.changes += changes;
                s.bytes_sent += sent;
                s.bytes_received += received;
                let b = bytes.entry(path.clone()).or_default();
                b.sent += sent;
                b.received += received;
            }
            What::SaleArrived { delay_ms, .. } => delays.push(*delay_ms),
            What::Backup {
                sink,
                ok,
                bytes: n,
                error,
            } => {
                let b = backups.entry(sink.clone()).or_default();
                b.sink = sink.clone();
                if *ok {
                    b.ok += 1;
                    b.bytes += n;
                    b.last_ok_ms = Some(e.at_ms);
                } else {
                    b.failed += 1;
                    b.last_error = error.clone();
                }
            }
            What::Conflict { raised: r, .. } => {
                if *r {
                    raised += 1;
                } else {
                    resolved += 1;
                }
            }
            What::Alert {
                raised: r,
                alert,
                severity,
                message,
            } => alerts.push(AlertLine {
                at_ms: e.at_ms,
                raised: *r,
                kind: alert.clone(),
                severity: severity.clone(),
                message: message.clone(),
            }),
        }
    }
    delays.sort_unstable();
    let arrivals = Arrivals {
        sales: delays.len() as u64,
        p50_ms: quantile(&delays, 0.5),
        p99_ms: quantile(&delays, 0.99),
        max_ms: delays.last().copied(),
    };
    let mut r = Report {
        verdict: String::new(),
        since_ms,
        until_ms,
        sync: sync.into_values().collect(),
        bytes_by_path: bytes,
        arrivals,
        backups: backups.into_values().collect(),
        conflicts_raised: raised,
        conflicts_resolved: resolved,
        conflicts_pending: pending,
        alerts,
        unreadable_lines,
    };
    r.verdict = verdict(&r);
    r
}

/// `1 backup`, `3 backups`.
fn count(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

fn secs(ms: u64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}

/// `OK` when nothing failed and nothing waits; `CHECK` and what to look at
/// first otherwise.
fn verdict(r: &Report) -> String {
    let sessions: u64 = r.sync.iter().map(|s| s.ok + s.failed).sum();
    let failed: u64 = r.sync.iter().map(|s| s.failed).sum();
    let backups: u64 = r.backups.iter().map(|b| b.ok + b.failed).sum();
    let backups_failed: u64 = r.backups.iter().map(|b| b.failed).sum();
    let raised = r.alerts.iter().filter(|a| a.raised).count();
    let mut problems = Vec::new();
    if failed > 0 {
        problems.push(format!(
            "{failed} of {} failed",
            count(sessions, "sync session")
        ));
    }
    if backups_failed > 0 {
        problems.push(format!(
            "{backups_failed} of {} failed",
            count(backups, "backup")
        ));
    }
    if r.conflicts_pending > 0 {
        problems.push(format!(
            "{} waiting for review",
            count(r.conflicts_pending, "conflict")
        ));
    }
    if raised > 0 {
        problems.push(format!("{} raised", count(raised as u64, "alert")));
    }
    let arrivals = match (r.arrivals.p50_ms, r.arrivals.p99_ms) {
        (Some(p50), Some(p99)) => format!(
            "other tills' sales here in {} (p50), {} (p99)",
            secs(p50),
            secs(p99)
        ),
        _ => "no sales from other tills".into(),
    };
    if problems.is_empty() {
        format!(
            "OK: {}, none failed; {arrivals}; {}, none failed",
            count(sessions, "sync session"),
            count(backups, "backup")
        )
    } else {
        format!("CHECK: {}; {arrivals}", problems.join("; "))
    }
}

/// `tillmesh report`.
pub fn run(store: &mut Store, home: &Path, a: &ReportArgs, out: &mut dyn Write) -> Result<()> {
    let span_s = crate::backups::parse_duration(&a.since)?;
    let until_ms = crate::backups::now_ms();
    let since_ms = until_ms.saturating_sub(span_s * 1000);
    let (entries, unreadable) = crate::journal::read(home, since_ms);
    let names = store
        .tills()?
        .into_iter()
        .map(|t| (t.id.to_string(), t.name))
        .collect();
    let pending = store.pending_conflicts()?.len() as u64;
    let r = build(&entries, &names, pending, since_ms, until_ms, unreadable);
    if a.json {
        return crate::commands::print_json(out, &r);
    }
    let colour = crate::core::caller_env(crate::output::COLOUR_KEY).is_some_and(|v| v == "1");
    render(&r, colour, out)
}

fn render(r: &Report, colour: bool, out: &mut dyn Write) -> Result<()> {
    writeln!(
        out,
        "{}",
        paint(&r.verdict, verdict_tone(&r.verdict), colour)
    )?;
    writeln!(out, "From {} to {}", time(r.since_ms), time(r.until_ms))?;
    writeln!(out, "\nSync sessions")?;
    let mut t = Table::new(&[
        "PEER",
        "PATH",
        "OK",
        "FAILED",
        "CHANGES",
        "SENT",
        "RECEIVED",
        "LAST ERROR",
    ]);
    for s in &r.sync {
        t.row(vec![
            s.peer.clone(),
            s.path.clone(),
            s.ok.to_string(),
            s.failed.to_string(),
            s.changes.to_string(),
            s.bytes_sent.to_string(),
            s.bytes_received.to_string(),
            s.last_error.clone().unwrap_or_default(),
        ]);
    }
    if t.is_empty() {
        writeln!(out, "  none")?;
    } else {
        write!(out, "{}", t.render())?;
    }
    for (path, b) in &r.bytes_by_path {
        writeln!(
            out,
            "  {path}: {} bytes sent, {} received",
            b.sent, b.received
        )?;
    }
    writeln!(out, "\nSales from other tills")?;
    match (r.arrivals.p50_ms, r.arrivals.p99_ms, r.arrivals.max_ms) {
        (Some(p50), Some(p99), Some(max)) => writeln!(
            out,
            "  {} arrived; made to here in {} (p50), {} (p99), {} at most",
            r.arrivals.sales,
            secs(p50),
            secs(p99),
            secs(max)
        )?,
        _ => writeln!(out, "  none arrived")?,
    }
    writeln!(out, "\nBackups")?;
    let mut t = Table::new(&["SINK", "OK", "FAILED", "BYTES", "LAST OK", "LAST ERROR"]);
    for b in &r.backups {
        t.row(vec![
            b.sink.clone(),
            b.ok.to_string(),
            b.failed.to_string(),
            b.bytes.to_string(),
            b.last_ok_ms.map(time).unwrap_or_default(),
            b.last_error.clone().unwrap_or_default(),
        ]);
    }
    if t.is_empty() {
        writeln!(out, "  none")?;
    } else {
        write!(out, "{}", t.render())?;
    }
    writeln!(
        out,
        "\nConflicts: {} raised, {} resolved, {} waiting for review",
        r.conflicts_raised, r.conflicts_resolved, r.conflicts_pending
    )?;
    writeln!(out, "\nAlerts")?;
    if r.alerts.is_empty() {
        writeln!(out, "  none")?;
    }
    for a in &r.alerts {
        writeln!(
            out,
            "  {}  {} {} ({}): {}",
            time(a.at_ms),
            if a.raised { "raised " } else { "cleared" },
            a.kind,
            a.severity,
            a.message
        )?;
    }
    if r.unreadable_lines > 0 {
        writeln!(
            out,
            "\n{} lines of the journal could not be read and were left out",
            r.unreadable_lines
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{Entry, VERSION};

    fn e(at_ms: u64, what: What) -> Entry {
        Entry {
            v: VERSION,
            at_ms,
            what,
        }
    }

    #[test]
    fn sessions_arrivals_and_backups_add_up() {
        let sync = |ok: bool| What::Sync {
            peer: "ab".repeat(32),
            path: "direct".into(),
            ok,
            changes: 3,
            sent: 100,
            received: 200,
            error: (!ok).then(|| "timed out".into()),
        };
        let entries: Vec<Entry> = vec![
            e(1, sync(true)),
            e(2, sync(true)),
            e(3, sync(false)),
            e(
                4,
                What::Backup {
                    sink: "nas".into(),
                    ok: true,
                    bytes: 10,
                    error: None,
                },
            ),
        ]
        .into_iter()
        .chain((1..=100).map(|i| {
            e(
                5,
                What::SaleArrived {
                    till: "T2".into(),
                    delay_ms: i * 10,
                },
            )
        }))
        .collect();
        let names = BTreeMap::from([("ab".repeat(32), "T2".to_string())]);
        let r = build(&entries, &names, 0, 0, 10, 0);
        assert_eq!(r.sync.len(), 1);
        let s = &r.sync[0];
        assert_eq!(
            (s.peer.as_str(), s.ok, s.failed, s.changes),
            ("T2", 2, 1, 9)
        );
        assert_eq!(s.last_error.as_deref(), Some("timed out"));
        assert_eq!(
            r.bytes_by_path["direct"],
            PathBytes {
                sent: 300,
                received: 600
            }
        );
        assert_eq!(r.arrivals.sales, 100);
        assert_eq!(r.arrivals.p50_ms, Some(510));
        assert_eq!(r.arrivals.p99_ms, Some(990));
        assert_eq!(r.arrivals.max_ms, Some(1000));
        assert_eq!(r.backups[0].ok, 1);
        assert!(
            r.verdict.starts_with("CHECK: 1 of 3 sync sessions failed"),
            "{}",
            r.verdict
        );
        let calm = build(&entries[..2], &names, 0, 0, 10, 0);
        assert!(
            calm.verdict.starts_with("OK: 2 sync sessions, none failed"),
            "{}",
            calm.verdict
        );
    }
}
