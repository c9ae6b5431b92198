//! Applying a [retention policy](crate::retention) to a sink.
//!
//! [`prune`] deletes the snapshots the policy lets go, and the bundles older
//! than the oldest snapshot kept. It never deletes the only copy of any data:
//! a file is deleted only when the newest intact snapshot on the sink holds
//! every change the file holds (every head of every document in it is a
//! change of that document as the newest snapshot's records hold it, and an
//! Automerge document holding a change holds its whole history). Files it cannot open (damaged,
//! forged, encrypted to a key this till lacks) are left alone and reported.

use std::collections::{BTreeMap, BTreeSet};

use automerge::ReadDoc;
use serde::Serialize;
use tillmesh_store::{ChangeHash, Store};

use crate::archive::{BackupError, Opener, list};
use crate::format::{Contents, Form, Kind};
use crate::retention::{Item, Policy, plan};
use crate::sink::Sink;

/// What a prune did (or, on a dry run, would do).
#[derive(Debug, Clone, Default, Serialize)]
pub struct PruneReport {
    /// Files kept.
    pub kept: Vec<String>,
    /// Files deleted (on a dry run: that would be).
    pub deleted: Vec<String>,
    /// Files the policy let go but that hold data the newest snapshot lacks,
    /// so they were kept.
    pub only_copy: Vec<String>,
    /// Files that could not be opened, left alone, with why.
    pub unreadable: Vec<(String, String)>,
    /// Bytes freed (or that would be).
    pub freed_bytes: u64,
    /// Nothing was deleted because this was a dry run.
    pub dry_run: bool,
}

/// The newest intact snapshot: the documents its manifest lists, and its
/// records, loaded into Automerge when a file to delete names a change of them.
struct Newest {
    contents: Contents,
    docs: BTreeSet<String>,
    loaded: BTreeMap<String, Option<automerge::Automerge>>,
}

impl Newest {
    fn new(contents: Contents) -> Newest {
        let docs = contents
            .manifest
            .entries
            .iter()
            .map(|e| e.doc.clone())
            .collect();
        Newest {
            contents,
            docs,
            loaded: BTreeMap::new(),
        }
    }

    /// Whether the snapshot holds the change `head` of document `doc`: looked
    /// up in the document its records hold, never taken from its manifest's
    /// heads alone (a manifest could name heads its records lack).
    fn holds(&mut self, doc: &str, head: &[u8; 32]) -> bool {
        if !self.docs.contains(doc) {
            return false;
        }
        let contents = &self.contents;
        let loaded = self.loaded.entry(doc.to_string()).or_insert_with(|| {
            contents
                .manifest
                .entries
                .iter()
                .zip(&contents.records)
                .find(|(e, _)| e.doc == doc && e.form == Form::Saved)
                .and_then(|(_, r)| automerge::Automerge::load(r).ok())
        });
        loaded
            .as_ref()
            .is_some_and(|d| d.get_change_by_hash(&ChangeHash(*head)).is_some())
    }

    /// Whether the snapshot holds everything `other` holds.
    fn covers(&mut self, other: &Contents) -> bool {
        other
            .manifest
            .entries
            .iter()
            .all(|e| e.heads.iter().all(|h| self.holds(&e.doc, h)))
    }
}

/// Apply `policy` to the snapshots of `store` on `sink`, and delete the
/// bundles older than the oldest snapshot kept; with `dry_run`, only report.
pub fn prune(
    store: &Store,
    sink: &dyn Sink,
    policy: &Policy,
    dry_run: bool,
) -> Result<PruneReport, BackupError> {
    prune_with(&Opener::of(store, &[])?, sink, policy, dry_run)
}

/// [`prune`] without the store: files are opened with `opener`, which may hold
/// extra keys (the admin till's recovery key opens files of backup keys the
/// till does not hold, as a till restored from a recovery file lacks the lost
/// admin till's newest ones).
pub fn prune_with(
    opener: &Opener,
    sink: &dyn Sink,
    policy: &Policy,
    dry_run: bool,
) -> Result<PruneReport, BackupError> {
    let listed = list(sink, opener.store_id())?;
    let mut report = PruneReport {
        dry_run,
        ..PruneReport::default()
    };
    let open = |name: &str| -> Result<Result<Contents, String>, BackupError> {
        let bytes = sink.get(name)?;
        Ok(opener
            .open(&bytes)
            .map(|(_, c)| c)
            .map_err(|e| e.to_string()))
    };
    // Only intact snapshots count: the newest one that opens is the reference.
    let mut snapshots = Vec::new();
    for l in &listed {
        match (l.kind, &l.problem) {
            (Some(Kind::Snapshot), None) => snapshots.push(l),
            (_, Some(p)) => report.unreadable.push((l.name.clone(), p.clone())),
            _ => {}
        }
    }
    let mut newest = None;
    for l in snapshots.iter().rev() {
        match open(&l.name)? {
            Ok(c) => {
                newest = Some((l.name.clone(), Newest::new(c)));
                break;
            }
            Err(e) => report.unreadable.push((l.name.clone(), e)),
        }
    }
    let Some((newest_name, mut newest)) = newest else {
        // No intact snapshot: every file may be the only copy of something.
        report.kept = listed.iter().map(|l| l.name.clone()).collect();
        return Ok(report);
    };
    let usable: Vec<_> = snapshots
        .iter()
        .filter(|l| !report.unreadable.iter().any(|(n, _)| *n == l.name))
        .collect();
    let items: Vec<Item> = usable
        .iter()
        .map(|l| Item {
            name: l.name.clone(),
            created_ms: l.created_ms.unwrap_or(0),
            only_copy: l.name == newest_name,
        })
        .collect();
    let decided = plan(policy, &items);
    let oldest_kept = usable
        .iter()
        .filter(|l| decided.keep.contains(&l.name))
        .filter_map(|l| l.created_ms)
        .min()
        .unwrap_or(0);
    let mut candidates = Vec::new();
    for l in &listed {
        if report.unreadable.iter().any(|(n, _)| *n == l.name) {
            continue;
        }
        let let_go = match l.kind {
            Some(Kind::Snapshot) => decided.delete.contains(&l.name),
            Some(Kind::Bundle) => l.created_ms.is_some_and(|c| c < oldest_kept),
            _ => false,
        };
        if let_go {
            candidates.push(l);
        } else {
            report.kept.push(l.name.clone());
        }
    }
    for l in candidates {
        let contents = match open(&l.name)? {
            Ok(c) => c,
            Err(e) => {
                report.unreadable.push((l.name.clone(), e));
                continue;
            }
        };
        if !newest.covers(&contents) {
            report.only_copy.push(l.name.clone());
            report.kept.push(l.name.clone());
            continue;
        }
        if !dry_run {
            sink.delete(&l.name)?;
        }
        report.freed_bytes += l.bytes;
        report.deleted.push(l.name.clone());
    }
    Ok(report)
}
