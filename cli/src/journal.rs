//! The daemon's journal (`journal.jsonl` in the till home): what happened,
//! one JSON line each, taken from the event hub, for `tillmesh report`. Sync
//! sessions (peer, path, outcome, changes, bytes), sales that arrived from
//! other tills (how long after they were made), backups per sink, conflicts,
//! alerts raised and cleared. The file is appended to without fsync (it is a
//! record of what happened, not data); past 16 MiB it becomes
//! `journal.1.jsonl` and a new one starts, so at most about 32 MiB are kept.
//! Each line carries its format version (`v`); lines of an unknown version or
//! kind, or cut short by a crash, are skipped when read.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::events::{Event, Hub};
use crate::home::HomeFile;

/// The version of the lines this build writes.
pub const VERSION: u32 = 1;

/// A journal file this large is set aside and a new one started.
const ROTATE_AT: u64 = 16 << 20;

/// One line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The line's format version.
    pub v: u32,
    /// When it happened (unix ms).
    pub at_ms: u64,
    /// What happened.
    #[serde(flatten)]
    pub what: What,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum What {
    /// A sync session ended.
    Sync {
        peer: String,
        path: String,
        ok: bool,
        changes: u64,
        sent: u64,
        received: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A sale, void or refund made on another till arrived here.
    SaleArrived {
        /// The till that made it (its name).
        till: String,
        /// How long after it was made (by its till's clock).
        delay_ms: u64,
    },
    /// A backup to a sink finished or failed.
    Backup {
        sink: String,
        ok: bool,
        bytes: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A conflict was raised or resolved.
    Conflict { raised: bool, id: String },
    /// An alert was raised or cleared.
    Alert {
        raised: bool,
        alert: String,
        severity: String,
        message: String,
    },
}

/// The journal's lines for one hub event (none for most).
pub fn of_event(e: &Event) -> Vec<What> {
    let d = &e.data;
    let s = |k: &str| d[k].as_str().map(str::to_string);
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    match e.kind {
        "sync.finished" => vec![What::Sync {
            peer: s("peer").unwrap_or_default(),
            path: s("path").unwrap_or_default(),
            ok: d["error"].is_null(),
            changes: n(&d["changes"]),
            sent: n(&d["bytes_sent"]),
            received: n(&d["bytes_received"]),
            error: s("error"),
        }],
        "sale.arrived" => {
            let made = tillmesh_store::Hlc::from_u64(n(&d["hlc"])).ms();
            vec![What::SaleArrived {
                till: s("till").unwrap_or_default(),
                delay_ms: e.at_ms.saturating_sub(made),
            }]
        }
        "backup.finished" => d["made"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| What::Backup {
                sink: m["sink"].as_str().unwrap_or_default().to_string(),
                ok: true,
                bytes: n(&m["bytes"]),
                error: None,
            })
            .collect(),
        "backup.failed" => vec![What::Backup {
            sink: s("to").unwrap_or_else(|| "every sink".into()),
            ok: false,
            bytes: 0,
            error: s("error"),
        }],
        "conflict.raised" | "conflict.resolved" => vec![What::Conflict {
            raised: e.kind == "conflict.raised",
            id: d["id"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| d["id"].to_string()),
        }],
        "alert.raised" | "alert.cleared" => vec![What::Alert {
            raised: e.kind == "alert.raised",
            alert: s("kind").unwrap_or_default(),
            severity: s("severity").unwrap_or_default(),
            message: s("message").unwrap_or_default(),
        }],
        _ => Vec::new(),
    }
}

fn files(home: &Path) -> (PathBuf, PathBuf) {
    let now = crate::home::path(home, HomeFile::Journal);
    (now.with_file_name("journal.1.jsonl"), now)
}

/// Append `entries` to the journal in `home`, setting the file aside first
/// when it has grown past its size.
pub fn append(home: &Path, entries: &[Entry]) -> anyhow::Result<()> {
    let (old, now) = files(home);
    if std::fs::metadata(&now).is_ok_and(|m| m.len() >= ROTATE_AT) {
        crate::logging::set_aside(&now, &[old])?;
    }
    let mut f = {
        let mut o = std::fs::OpenOptions::new();
        o.create(true).append(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
        o.open(&now)?
    };
    let mut buf = Vec::new();
    for e in entries {
        serde_json::to_writer(&mut buf, e)?;
        buf.push(b'\n');
    }
    f.write_all(&buf)?;
    Ok(())
}

/// The journal's entries from `since_ms` on, oldest first, and how many lines
/// could not be read.
pub fn read(home: &Path, since_ms: u64) -> (Vec<Entry>, usize) {
    let (old, now) = files(home);
    let mut out = Vec::new();
    let mut unreadable = 0;
    for path in [old, now] {
        let Ok(f) = std::fs::File::open(&path) else {
            continue;
        };
        for line in std::io::BufReader::new(f).split(b'\n') {
            let Ok(line) = line else { break };
            if line.is_empty() {
                continue;
            }
            match serde_json::from_slice::<Entry>(&line) {
                Ok(e) if e.v <= VERSION => {
                    if e.at_ms >= since_ms {
                        out.push(e);
                    }
                }
                _ => unreadable += 1,
            }
        }
    }
    (out, unreadable)
}

/// Keep the hub's events in the journal until the hub closes.
pub async fn keep(hub: Hub, home: PathBuf) {
    let mut live = hub.follow(None).live;
    let closed = hub.closed();
    tokio::pin!(closed);
    loop {
        let event = tokio::select! {
            _ = &mut closed => return,
            e = live.recv() => e,
        };
        let event = match event {
            Ok(e) => e,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                tracing::debug!(missed = n, "the journal fell behind the events");
                continue;
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        };
        let entries: Vec<Entry> = of_event(&event)
            .into_iter()
            .map(|what| Entry {
                v: VERSION,
                at_ms: event.at_ms,
                what,
            })
            .collect();
        if entries.is_empty() {
            continue;
        }
        let h = home.clone();
        let wrote = tokio::task::spawn_blocking(move || append(&h, &entries)).await;
        if let Ok(Err(e)) = wrote {
            tracing::warn!(error = %format!("{e:#}"), "cannot write the journal");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_read_back_and_bad_ones_skipped() {
        let dir = tempfile::tempdir().expect("dir");
        let e = |at_ms, what| Entry {
            v: VERSION,
            at_ms,
            what,
        };
        append(
            dir.path(),
            &[
                e(
                    1_000,
                    What::Conflict {
                        raised: true,
                        id: "c1".into(),
                    },
                ),
                e(
                    2_000,
                    What::SaleArrived {
                        till: "T2".into(),
                        delay_ms: 40,
                    },
                ),
            ],
        )
        .expect("append");
        // A line cut short by a crash, one of a newer version, one of an
        // unknown kind.
        let path = crate::home::path(dir.path(), HomeFile::Journal);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("open");
        f.write_all(b"{\"v\":1,\"at_ms\":3000,\"kind\":\"sy\n{\"v\":9,\"at_ms\":3000,\"kind\":\"conflict\",\"raised\":true,\"id\":\"x\"}\n{\"v\":1,\"at_ms\":3000,\"kind\":\"comet\"}\n")
            .expect("write");
        let (all, bad) = read(dir.path(), 0);
        assert_eq!(all.len(), 2);
        assert_eq!(bad, 3);
        let (later, _) = read(dir.path(), 1_500);
        assert_eq!(later.len(), 1);
        assert!(matches!(
            later[0].what,
            What::SaleArrived { delay_ms: 40, .. }
        ));
    }
}
