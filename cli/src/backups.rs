//! `backup`, `restore`, `sink`, `usb` and `recovery`: the command line over
//! `tillmesh-backup`. Here: backups (made in steps, by hand or by the daemon's
//! scheduler), list, verify, prune and the schedule; in `backups/`: the store's
//! keys in the till home (`keyring`), named sinks (`sinks`), USB sticks
//! (`usb`), recovery files (`recovery`) and restores (`restore`).
//!
//! The till home holds `store.keys` (mode 0600): the store id, the admin
//! public key and the store's backup keys, so a restore can run while the
//! daemon holds the store file. The admin till's home also holds
//! `recovery.key` (mode 0600), the store's recovery key, which is never rotated
//! and which every backup is also encrypted to. Named sinks live in `sinks.json`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use tillmesh_backup::archive::{self, Pick, RestoreSpec};
use tillmesh_backup::retention::Policy;
use tillmesh_backup::schedule::SinkSchedule;
use tillmesh_backup::{
    BackupError, BackupReport, FolderSink, Import, Kind, Opener, Sink, SinkConfig, SinkError,
    device, keys,
};
use tillmesh_mesh::StoreHandle;
use tillmesh_store::{Day, Store, StoreId, StoreSecret, TillId, TillKey};

use crate::args::{BackupArgs, BackupCmd, KeysCmd, RecoveryCmd, RestoreArgs, SinkCmd, UsbCmd};
use crate::commands::{ADMIN_KEY_FILE, RECOVERY_KEY_FILE, print_json, rejected};
use crate::exit::{Damaged, Rejected};
use crate::home::{HomeFile, write_private};
use crate::jobs::{JobKind, Jobs, Progress, StartedBy};
use crate::output::{Table, time};

mod keyring;
mod recovery;
mod restore;
mod sinks;
mod usb;

pub use self::{keyring::*, recovery::*, restore::*, sinks::*, usb::*};

fn sinks_path(home: &Path) -> PathBuf {
    crate::home::path(home, HomeFile::Sinks)
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A configured sink: what it is (`kind` and where), and its retention.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SinkSpec {
    /// The sink (`kind`, and a folder's `path`).
    #[serde(flatten)]
    pub config: SinkConfig,
    /// Its retention policy, compact form.
    pub keep: String,
}

impl SinkSpec {
    fn folder(path: PathBuf) -> SinkSpec {
        SinkSpec {
            config: SinkConfig::Folder { path },
            keep: Policy::default().to_string(),
        }
    }

    /// The retention policy (the default when the stored one is unreadable).
    pub fn policy(&self) -> Policy {
        self.keep.parse().unwrap_or_default()
    }
}

/// `sinks.json`, version 2. Version 1 was a bare map of name to folder.
#[derive(Serialize, Deserialize)]
struct SinksFile {
    version: u16,
    sinks: BTreeMap<String, SinkSpec>,
}

/// The configured sinks, by name.
pub fn load_sinks(home: &Path) -> Result<BTreeMap<String, SinkSpec>> {
    let path = sinks_path(home);
    let Ok(bytes) = std::fs::read(&path) else {
        return Ok(BTreeMap::new());
    };
    let damaged = |e: serde_json::Error| Damaged(format!("{} is damaged: {e}", path.display()));
    if let Ok(v1) = serde_json::from_slice::<BTreeMap<String, PathBuf>>(&bytes) {
        return Ok(v1
            .into_iter()
            .map(|(n, p)| (n, SinkSpec::folder(p)))
            .collect());
    }
    let file: SinksFile = serde_json::from_slice(&bytes).map_err(damaged)?;
    if file.version != 2 {
        return Err(Damaged(format!(
            "{} is version {}; this tillmesh reads versions 1 and 2",
            path.display(),
            file.version
        ))
        .into());
    }
    Ok(file.sinks)
}

fn save_sinks(home: &Path, sinks: BTreeMap<String, SinkSpec>) -> Result<()> {
    let file = SinksFile { version: 2, sinks };
    write_private(&sinks_path(home), &serde_json::to_vec_pretty(&file)?)
}

/// A sink, ready to use, and shared with the threads that write it.
pub type OpenSink = std::sync::Arc<dyn Sink>;

/// Open the sink `config` describes: a Drive sink with the store's Google login.
pub fn open_sink(home: &Path, config: &SinkConfig) -> Result<OpenSink, SinkError> {
    let drive = match config {
        SinkConfig::Drive(d) => {
            Some(
                crate::drive::access_tokens(home).map_err(|e| SinkError::Auth {
                    sink: format!("Google Drive folder {}", d.folder),
                    reason: format!("{e:#}"),
                })?,
            )
        }
        _ => None,
    };
    config.open(drive)
}

/// The sink a `SINK|DIR` argument names (a configured sink, else a folder),
/// with its retention policy.
fn resolve(home: &Path, dest: &str) -> Result<(String, OpenSink, Policy)> {
    let sinks = load_sinks(home)?;
    let spec = sinks
        .get(dest)
        .cloned()
        .unwrap_or_else(|| SinkSpec::folder(PathBuf::from(dest)));
    Ok((
        dest.to_string(),
        open_sink(home, &spec.config)?,
        spec.policy(),
    ))
}

fn default_sinks(home: &Path, dest: Option<&str>) -> Result<Vec<(String, OpenSink, Policy)>> {
    if let Some(d) = dest {
        return Ok(vec![resolve(home, d)?]);
    }
    let sinks = load_sinks(home)?;
    if sinks.is_empty() {
        return Err(rejected(
            "no sink configured; pass --to DIR, or add one with `tillmesh sink add NAME folder PATH`",
        ));
    }
    sinks
        .into_iter()
        .map(|(n, s)| Ok((n, open_sink(home, &s.config)?, s.policy())))
        .collect()
}

/// `tillmesh backup schedule …`: the store's backup schedule (the other
/// `backup` commands run in [`crate::core::execute`]).
pub fn backup_schedule(store: &mut Store, a: &BackupArgs, out: &mut dyn Write) -> Result<()> {
    match &a.cmd {
        Some(BackupCmd::Schedule {
            every,
            snapshot_every,
            json,
        }) => schedule(
            store,
            every.as_deref(),
            snapshot_every.as_deref(),
            *json,
            out,
        ),
        _ => Err(anyhow::anyhow!("not a command on the store's schedule")),
    }
}

/// Whether `backup <c>` works on a sink's files alone (list, prune): it
/// needs of the store only an [`Opener`], so it runs off the store's thread
/// ([`sink_cmd`]). `backup verify` does too, as a job of its own
/// ([`verify_sink`]).
pub fn on_sink(c: &BackupCmd) -> bool {
    matches!(c, BackupCmd::List { .. } | BackupCmd::Prune { .. })
}

/// `backup list|prune`, opening files with `opener`.
fn files_cmd(opener: &Opener, home: &Path, c: &BackupCmd, out: &mut dyn Write) -> Result<()> {
    match c {
        BackupCmd::List { from, json } => list(opener, home, from.as_deref(), *json, out),
        BackupCmd::Prune {
            from,
            keep,
            dry_run,
            json,
        } => prune(
            opener,
            home,
            from.as_deref(),
            keep.as_deref(),
            *dry_run,
            *json,
            out,
        ),
        BackupCmd::Verify { .. } | BackupCmd::Schedule { .. } => {
            Err(anyhow::anyhow!("not a command run by sink_cmd"))
        }
    }
}

/// `backup list|prune`: the store is asked only for an [`Opener`];
/// reading, decrypting and deleting files happen beside it, so the till keeps
/// selling while a sink is verified or pruned.
pub async fn sink_cmd(store: &StoreHandle, home: &Path, c: BackupCmd) -> Result<Vec<u8>> {
    beside(store, home, move |opener, home| {
        let mut out = Vec::new();
        files_cmd(opener, home, &c, &mut out).map(|_| out)
    })
    .await
}

/// Run `f` on a sink's files beside the store: the store is asked only for an
/// [`Opener`], then `f` runs on a blocking thread.
async fn beside<T: Send + 'static>(
    store: &StoreHandle,
    home: &Path,
    f: impl FnOnce(&Opener, &Path) -> Result<T> + Send + 'static,
) -> Result<T> {
    let h = home.to_path_buf();
    let opener = store
        .call(move |s| Opener::of(s, &recovery_keys(&h)))
        .await??;
    let home = home.to_path_buf();
    tokio::task::spawn_blocking(move || f(&opener, &home)).await?
}

/// Every backup on a sink (`from`: a sink's name or a folder; the first sink
/// by default) opened and checked whole, or only those whose names end with
/// `name`, telling `progress` after each file; the verdicts, damaged ones
/// with why.
pub async fn verify_sink(
    store: &StoreHandle,
    home: &Path,
    from: Option<String>,
    name: Option<String>,
    progress: &Progress,
) -> Result<Vec<archive::Verified>> {
    let progress = progress.clone();
    beside(store, home, move |opener, home| {
        let sink = first_sink(home, from.as_deref())?;
        let step = format!("checking {}", sink.describe());
        Ok(archive::verify_each(
            opener,
            &*sink,
            name.as_deref(),
            &mut |done, total| progress.step(&step, done, total),
        )?)
    })
    .await
}

/// A backup made, as `backup --json` and the API show it.
fn made_json(sink: &str, r: &BackupReport) -> serde_json::Value {
    serde_json::json!({ "sink": sink, "name": r.name, "kind": r.kind, "bytes": r.bytes, "docs": r.docs, "changes": r.changes })
}

/// What `tillmesh backup` made on each sink, and the first failure.
#[derive(Default)]
struct Made {
    reports: Vec<(String, BackupReport)>,
    failed: Option<anyhow::Error>,
}

impl Made {
    /// The kind of backup `a` asks for.
    fn kind(a: &BackupArgs) -> Kind {
        if a.bundle {
            Kind::Bundle
        } else {
            Kind::Snapshot
        }
    }

    /// Take the outcome of the backup to `sink`, the sink named `name`.
    fn add(&mut self, name: String, sink: &dyn Sink, r: Result<BackupReport, BackupError>) {
        match r {
            Ok(r) => self.reports.push((name, r)),
            Err(e) => {
                self.failed.get_or_insert_with(|| {
                    anyhow::Error::new(e).context(format!("backup to {} failed", sink.describe()))
                });
            }
        }
    }

    /// What was made, one object per sink.
    fn json(&self) -> serde_json::Value {
        self.reports.iter().map(|(n, r)| made_json(n, r)).collect()
    }

    /// Keep the backups made to configured sinks in the schedule's record,
    /// as the daemon's own are, so `status` counts them.
    fn note_in_schedule(&self, home: &Path) {
        let Ok(sinks) = load_sinks(home) else { return };
        let mut state = load_schedule(home);
        let now = now_ms();
        let mut noted = false;
        for (n, r) in self
            .reports
            .iter()
            .filter(|(n, r)| r.name.is_some() && sinks.contains_key(n))
        {
            let st = state.sinks.entry(n.clone()).or_default();
            st.last_ok_ms = Some(now);
            if r.kind == Kind::Snapshot {
                st.last_snapshot_ms = Some(now);
            }
            st.last_bytes = Some(r.bytes);
            noted = true;
        }
        if noted && let Err(e) = save_schedule(home, &state) {
            tracing::warn!(error = %format!("{e:#}"), "cannot record the backup for status");
        }
    }

    /// Note each backup in the audit trail.
    fn record(&self, store: &mut Store) {
        for (n, r) in &self.reports {
            record_backup(store, n, r);
        }
    }

    /// What `backup` made, for the operator.
    fn print(&self, json: bool, out: &mut dyn Write) -> Result<()> {
        let reports = &self.reports;
        if json {
            print_json(out, &self.json())?;
        } else {
            for (n, r) in reports {
                match &r.name {
                    Some(name) => writeln!(
                        out,
                        "Wrote {} {} to {n}: {} bytes, {} documents{}",
                        r.kind,
                        name.rsplit('/').next().unwrap_or(name),
                        r.bytes,
                        r.docs,
                        if r.kind == Kind::Bundle {
                            format!(", {} changes", r.changes)
                        } else {
                            String::new()
                        }
                    )?,
                    None => writeln!(out, "Nothing new for {n}: it already holds every change")?,
                }
            }
        }
        Ok(())
    }

    /// The first failure, if any sink failed.
    fn result(self) -> Result<()> {
        match self.failed {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// `tillmesh backup [--to SINK|DIR] [--bundle]`: the documents are taken from
/// the store 50 ms at a time and the file is written off the store's thread, as
/// scheduled backups are, so the till keeps selling while an operator backs it
/// up.
/// Gives what it printed and what it made, as JSON (one object per sink, as
/// `--json` prints them).
pub async fn backup(
    store: &StoreHandle,
    home: &Path,
    a: &BackupArgs,
    progress: &Progress,
) -> Result<(Vec<u8>, serde_json::Value)> {
    let h = home.to_path_buf();
    store.call(move |s| ensure_keys(s, &h)).await??;
    let kind = Made::kind(a);
    let mut made = Made::default();
    for (name, sink, policy) in default_sinks(home, a.to.as_deref())? {
        let done = backup_making_room(store, home, &name, &sink, kind, policy, progress).await?;
        made.add(name, &*sink, done);
    }
    let mut out = Vec::new();
    made.print(a.json, &mut out)?;
    made.note_in_schedule(home);
    let result = made.json();
    store
        .call(move |s| {
            made.record(s);
            made.result()
        })
        .await??;
    Ok((out, result))
}

fn first_sink(home: &Path, from: Option<&str>) -> Result<OpenSink> {
    default_sinks(home, from)?
        .into_iter()
        .next()
        .map(|(_, s, _)| s)
        .ok_or_else(|| rejected("no sink"))
}

fn list(
    opener: &Opener,
    home: &Path,
    from: Option<&str>,
    json: bool,
    out: &mut dyn Write,
) -> Result<()> {
    let sink = first_sink(home, from)?;
    let listed = archive::list(&*sink, opener.store_id())?;
    if json {
        return print_json(out, &listed);
    }
    let mut t = Table::new(&["NAME", "KIND", "TILL", "CREATED", "KEY", "BYTES", "PROBLEM"]);
    for l in &listed {
        t.row(vec![
            l.name.rsplit('/').next().unwrap_or(&l.name).to_string(),
            l.kind.map(|k| k.to_string()).unwrap_or_else(|| "?".into()),
            l.creator.clone().unwrap_or_default(),
            l.created_ms.map(time).unwrap_or_default(),
            l.key_id.clone().unwrap_or_default(),
            l.bytes.to_string(),
            l.problem.clone().unwrap_or_default(),
        ]);
    }
    if t.is_empty() {
        writeln!(out, "No backups of this store on {}", sink.describe())?;
    } else {
        write!(out, "{}", t.render())?;
    }
    Ok(())
}

/// What a verification found, as its job's result: files checked, damaged.
pub fn verify_summary(verdicts: &[archive::Verified]) -> serde_json::Value {
    let damaged = verdicts.iter().filter(|v| v.error.is_some()).count();
    serde_json::json!({ "checked": verdicts.len(), "damaged": damaged })
}

/// Print `verdicts` (each file, damaged ones with why), then fail as damaged
/// if any is.
pub fn verdicts_shown(
    verdicts: &[archive::Verified],
    json: bool,
    out: &mut dyn Write,
) -> Result<()> {
    let bad = verdicts.iter().filter(|v| v.error.is_some()).count();
    if json {
        print_json(out, &verdicts)?;
    } else {
        for v in verdicts {
            let short = v.name.rsplit('/').next().unwrap_or(&v.name);
            match &v.error {
                None => writeln!(out, "ok       {short} ({} documents)", v.docs)?,
                Some(e) => writeln!(out, "DAMAGED  {short}: {e}")?,
            }
        }
    }
    if bad > 0 {
        return Err(Damaged(format!(
            "{bad} of {} backups failed verification",
            verdicts.len()
        ))
        .into());
    }
    Ok(())
}

/// Audit a backup that wrote a file.
fn record_backup(store: &mut Store, sink: &str, r: &BackupReport) {
    if let Some(name) = &r.name {
        let _ = store.record_backup_event(
            "backup",
            sink,
            serde_json::json!({ "file": name, "bytes": r.bytes, "kind": r.kind }),
        );
    }
}

fn prune(
    opener: &Opener,
    home: &Path,
    from: Option<&str>,
    keep: Option<&str>,
    dry_run: bool,
    json: bool,
    out: &mut dyn Write,
) -> Result<()> {
    let given: Option<Policy> = keep
        .map(|k| k.parse().map_err(|e| rejected(format!("{e}"))))
        .transpose()?;
    let mut reports = Vec::new();
    for (name, sink, policy) in default_sinks(home, from)? {
        let policy = given.unwrap_or(policy);
        let r = tillmesh_backup::prune_with(opener, &*sink, &policy, dry_run)
            .with_context(|| format!("pruning {} failed", sink.describe()))?;
        reports.push((name, policy, r));
    }
    if json {
        let v: Vec<_> = reports
            .iter()
            .map(|(n, p, r)| serde_json::json!({ "sink": n, "keep": p.to_string(), "report": r }))
            .collect();
        return print_json(out, &v);
    }
    let short = |n: &str| n.rsplit('/').next().unwrap_or(n).to_string();
    for (n, p, r) in &reports {
        writeln!(
            out,
            "{n} ({p}): {} {} files ({} bytes), kept {}",
            if dry_run { "would delete" } else { "deleted" },
            r.deleted.len(),
            r.freed_bytes,
            r.kept.len()
        )?;
        for d in &r.deleted {
            writeln!(out, "  delete  {}", short(d))?;
        }
        for d in &r.only_copy {
            writeln!(
                out,
                "  kept    {}: holds data no newer snapshot has",
                short(d)
            )?;
        }
        for (d, why) in &r.unreadable {
            writeln!(out, "  left    {}: {why}", short(d))?;
        }
    }
    Ok(())
}

/// Read a duration: `90s`, `15m`, `1h`, `2d`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<u64> {
    let t = s.trim();
    let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let mult = match unit.trim() {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => 0,
    };
    match num.parse::<u64>() {
        Ok(n) if n > 0 && mult > 0 => Ok(n * mult),
        _ => Err(rejected(format!(
            "cannot read the duration {s:?}; write e.g. 90s, 15m, 1h or 1d"
        ))),
    }
}

fn schedule(
    store: &mut Store,
    every: Option<&str>,
    snapshot_every: Option<&str>,
    json: bool,
    out: &mut dyn Write,
) -> Result<()> {
    for (key, value) in [
        (tillmesh_store::BACKUP_INTERVAL, every),
        (tillmesh_store::SNAPSHOT_INTERVAL, snapshot_every),
    ] {
        if let Some(v) = value {
            store
                .set_setting(key, v)
                .map_err(crate::config::setting_error)?;
        }
    }
    let (every, snap) = store.backup_schedule()?;
    if json {
        return print_json(
            out,
            &serde_json::json!({ "interval_s": every, "snapshot_interval_s": snap }),
        );
    }
    writeln!(
        out,
        "While the daemon runs, every till backs up to each of its sinks every {every} s: a snapshot every {snap} s, bundles in between"
    )?;
    Ok(())
}

/// The daemon's record of its scheduled backups, in `backup-state.json`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ScheduleState {
    /// Format version (1).
    pub version: u16,
    /// Per sink name.
    pub sinks: BTreeMap<String, SinkSchedule>,
}

fn state_path(home: &Path) -> PathBuf {
    crate::home::path(home, HomeFile::BackupState)
}

/// The last saved schedule state (empty when there is none or it is unreadable:
/// every sink is then due at once, which is safe).
pub fn load_schedule(home: &Path) -> ScheduleState {
    std::fs::read(state_path(home))
        .ok()
        .and_then(|b| serde_json::from_slice::<ScheduleState>(&b).ok())
        .filter(|s| s.version == 1)
        .unwrap_or_else(|| ScheduleState {
            version: 1,
            ..ScheduleState::default()
        })
}

fn save_schedule(home: &Path, state: &ScheduleState) -> Result<()> {
    write_private(&state_path(home), &serde_json::to_vec_pretty(state)?)
}

/// One pass of the daemon's scheduler over the configured sinks: back up to
/// each sink that is due (snapshot or bundle, then retention), and record the
/// outcome. Gives when the next attempt is due (unix ms). The documents are taken
/// from the store 50 ms at a time ([`archive::Pending`]) and the file is
/// compressed, encrypted and written off the store's thread, so sales go on while
/// a backup is made. An error means the store has closed.
pub async fn scheduled_round(
    store: &StoreHandle,
    home: &Path,
    state: &mut ScheduleState,
    jobs: Option<&Jobs>,
) -> Result<u64> {
    let sinks = load_sinks(home)?;
    state.sinks.retain(|n, _| sinks.contains_key(n));
    // Backups an operator made since the last round (`tillmesh backup`).
    for (n, saved) in load_schedule(home).sinks {
        if let Some(st) = state.sinks.get_mut(&n)
            && saved.last_ok_ms > st.last_ok_ms
        {
            st.last_ok_ms = saved.last_ok_ms;
            st.last_snapshot_ms = st.last_snapshot_ms.max(saved.last_snapshot_ms);
            st.last_bytes = saved.last_bytes;
        }
    }
    let ((every, snap), backoff, alert_after) = store
        .call(|s| {
            anyhow::Ok((
                s.backup_schedule()?,
                crate::config::backoff(s)?,
                crate::config::alert_after(s)?,
            ))
        })
        .await??;
    let (every, snap) = (Duration::from_secs(every), Duration::from_secs(snap));
    let mut keys_checked = false;
    for (name, spec) in &sinks {
        let st = state.sinks.entry(name.clone()).or_default();
        let now = now_ms();
        if !st.due(now) {
            continue;
        }
        if !keys_checked {
            let h = home.to_path_buf();
            store.call(move |s| ensure_keys(s, &h)).await??;
            keys_checked = true;
        }
        let kind = st.kind(now, snap);
        let attempt = match open_sink(home, &spec.config) {
            Ok(sink) => {
                let subject = serde_json::json!({"to": name, "bundle": kind == Kind::Bundle});
                let progress = match jobs {
                    Some(j) => j.start(JobKind::Backup, StartedBy::Schedule, subject),
                    None => Progress::none(),
                };
                let attempt = scheduled_backup(
                    store,
                    home,
                    name,
                    sink.clone(),
                    kind,
                    spec.policy(),
                    &progress,
                )
                .await?;
                match &attempt {
                    Ok(r) => progress.end(Ok(&serde_json::json!([made_json(name, r)]))),
                    Err(e) => progress.end(Err(&anyhow::anyhow!("{e}"))),
                }
                // A remote account's use, for the alert before it is full.
                if let Some((used, limit)) =
                    tokio::task::spawn_blocking(move || sink.quota()).await?
                {
                    st.quota_used = Some(used);
                    st.quota_limit = limit;
                }
                attempt
            }
            Err(e) => Err(BackupError::from(e)),
        };
        match attempt {
            Ok(r) => {
                tracing::info!(sink = name, kind = %kind, bytes = r.bytes, "scheduled backup done");
                st.succeeded(kind, r.bytes, now_ms(), every);
            }
            Err(e) => {
                let msg = format!("{} ({})", e, spec.config.location());
                let at_least = e.retry_after().unwrap_or_default();
                let wait = st.failed(msg.clone(), now_ms(), &backoff, rand::random(), at_least);
                st.last_error_kind = e.sink_kind();
                if st.alert(alert_after) {
                    tracing::error!(
                        sink = name,
                        failures = st.failures,
                        error = msg,
                        "scheduled backups keep failing; retry in {wait:?}"
                    );
                } else {
                    tracing::warn!(
                        sink = name,
                        kind = ?e.sink_kind(),
                        error = msg,
                        "scheduled backup failed; retry in {wait:?}"
                    );
                }
            }
        }
    }
    save_schedule(home, state)?;
    Ok(state
        .sinks
        .values()
        .map(|s| s.next_ms)
        .min()
        .unwrap_or(now_ms() + every.as_millis() as u64))
}

/// One scheduled backup to `sink`, then retention after a snapshot. The outer
/// error means the store has closed; the inner one is the backup's.
async fn scheduled_backup(
    store: &StoreHandle,
    home: &Path,
    name: &str,
    sink: OpenSink,
    kind: Kind,
    policy: Policy,
    progress: &Progress,
) -> Result<Result<BackupReport, BackupError>> {
    let recovery = recovery_keys(home);
    let report = match backup_making_room(store, home, name, &sink, kind, policy, progress).await? {
        Ok(r) => r,
        Err(e) => return Ok(Err(e)),
    };
    let (n, r) = (name.to_string(), report.clone());
    let opener = store
        .call(move |s| {
            record_backup(s, &n, &r);
            (kind == Kind::Snapshot).then(|| Opener::of(s, &recovery))
        })
        .await?;
    // Retention reads and deletes files beside the store, not on its thread.
    if let Some(opener) = opener {
        let pruned = match opener {
            Ok(o) => {
                tokio::task::spawn_blocking(move || {
                    tillmesh_backup::prune_with(&o, &*sink, &policy, false)
                })
                .await?
            }
            Err(e) => Err(e),
        };
        if let Err(e) = pruned {
            tracing::warn!(sink = name, error = %e, "retention failed");
        }
    }
    Ok(Ok(report))
}

/// A backup of `kind` to `sink`; when a remote sink is full (a Drive account
/// over its quota), room is made and the backup tried once more: first by the
/// sink's retention policy, then, if that lets nothing go, by keeping only the
/// newest intact snapshot and what holds data it lacks (never the only copy of
/// a sale). The outer error means the store has closed.
async fn backup_making_room(
    store: &StoreHandle,
    home: &Path,
    name: &str,
    sink: &OpenSink,
    kind: Kind,
    policy: Policy,
    progress: &Progress,
) -> Result<Result<BackupReport, BackupError>> {
    let full = |r: &Result<BackupReport, BackupError>| matches!(r, Err(e) if e.sink_kind() == Some(tillmesh_backup::SinkErrorKind::Quota));
    let mut outcome = stepped_backup(store, sink, kind, progress).await?;
    // A full device (a stick, a disk) is the operator's to manage.
    if !full(&outcome) || !sink.is_remote() {
        return Ok(outcome);
    }
    let recovery = recovery_keys(home);
    let Ok(opener) = store.call(move |s| Opener::of(s, &recovery)).await? else {
        return Ok(outcome);
    };
    let opener = std::sync::Arc::new(opener);
    let last_only: Policy = "last=1,daily=0,weekly=0,monthly=0"
        .parse()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    for p in [policy, last_only] {
        let (o, s2) = (opener.clone(), sink.clone());
        let pruned =
            tokio::task::spawn_blocking(move || tillmesh_backup::prune_with(&o, &*s2, &p, false))
                .await?;
        match pruned {
            Ok(r) if !r.deleted.is_empty() => {
                tracing::warn!(
                    sink = name,
                    deleted = r.deleted.len(),
                    freed = r.freed_bytes,
                    keep = %p,
                    "the sink was full: older backups were deleted to make room; trying again"
                );
                outcome = stepped_backup(store, sink, kind, progress).await?;
                if !full(&outcome) {
                    return Ok(outcome);
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(sink = name, error = %e, "the sink is full and retention failed");
                return Ok(outcome);
            }
        }
    }
    tracing::error!(
        sink = name,
        "the sink is full and nothing more can be deleted from it"
    );
    Ok(outcome)
}

/// A backup of `kind` to `sink`, its documents taken from the store
/// [`archive::STEP_TIME`] at a time, the file compressed, encrypted and written
/// off the store's thread. The outer error means the store has closed; the inner
/// one is the backup's.
async fn stepped_backup(
    store: &StoreHandle,
    sink: &OpenSink,
    kind: Kind,
    progress: &Progress,
) -> Result<Result<BackupReport, BackupError>> {
    // What the sink holds is read from its index files beside the store.
    let since = if kind == Kind::Snapshot {
        archive::Heads::new()
    } else {
        let opener = match store.call(|s| Opener::of(s, &[])).await? {
            Ok(o) => o,
            Err(e) => return Ok(Err(e)),
        };
        let s2 = sink.clone();
        match tokio::task::spawn_blocking(move || archive::sink_heads(&opener, &*s2)).await? {
            Ok(h) => h,
            Err(e) => return Ok(Err(e)),
        }
    };
    let mut pending = match store
        .call(move |s| archive::Pending::start_from(s, kind, since))
        .await?
    {
        Ok(p) => p,
        Err(e) => return Ok(Err(e)),
    };
    loop {
        let (p, done) = store
            .call(move |s| {
                let done = pending.step(s, archive::STEP_TIME);
                (pending, done)
            })
            .await?;
        pending = p;
        let (taken, total) = pending.progress();
        progress.step(
            &format!("{kind}: reading documents for {}", sink.describe()),
            taken,
            total,
        );
        match done {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => return Ok(Err(e)),
        }
    }
    let s2 = sink.clone();
    Ok(tokio::task::spawn_blocking(move || pending.write(&*s2)).await?)
}

#[cfg(test)]
mod tests {
    use tillmesh_store::{NewStore, Role, StoreOptions};

    use super::*;

    #[test]
    fn sinks_json_of_every_version_reads_and_version_2_is_written_back_the_same() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(
            sinks_path(dir.path()),
            include_str!("../../tests/testdata/sinks-v1.json"),
        )
        .expect("v1");
        let v1 = load_sinks(dir.path()).expect("v1 reads");
        assert_eq!(
            v1["usb"].config,
            SinkConfig::Folder {
                path: "/media/till/SHOP-STICK".into()
            }
        );
        assert_eq!(v1["usb"].keep, Policy::default().to_string());

        let v2_text = include_str!("../../tests/testdata/sinks-v2.json");
        std::fs::write(sinks_path(dir.path()), v2_text).expect("v2");
        let v2 = load_sinks(dir.path()).expect("v2 reads");
        assert_eq!(v2["nas"].config.location(), "/mnt/nas/tillmesh");
        assert_eq!(v2["nas"].keep, "last=7,daily=14,weekly=8,monthly=24");
        save_sinks(dir.path(), v2).expect("save");
        let written: serde_json::Value =
            serde_json::from_slice(&std::fs::read(sinks_path(dir.path())).expect("read"))
                .expect("json");
        let fixture: serde_json::Value = serde_json::from_str(v2_text).expect("json");
        assert_eq!(written, fixture, "the same file as before the sink seam");
    }

    fn store(dir: &Path) -> Store {
        Store::create(
            &dir.join(HomeFile::Store.name()),
            TillKey::generate(),
            NewStore {
                store_id: StoreId::random(),
                store_name: "Keys".into(),
                till_name: "T1".parse().expect("name"),
                role: Role::Till,
                founder: false,
            },
            StoreOptions::default(),
        )
        .expect("store")
    }

    #[test]
    fn only_the_admin_till_makes_the_first_backup_key() {
        let dir = tempfile::tempdir().expect("dir");
        let mut s = store(dir.path());
        let e = ensure_keys(&mut s, dir.path()).expect_err("not the admin till");
        assert!(e.is::<Rejected>(), "{e:#}");
        assert!(s.store_secrets().expect("secrets").is_empty());
        assert!(!keys_path(dir.path()).exists());

        // A key in admin.key that the store's trust root does not name gives
        // no admin rights.
        TillKey::generate()
            .save(&dir.path().join(ADMIN_KEY_FILE))
            .expect("a key");
        let admin = TillKey::generate();
        s.set_admin_key(admin.till_id()).expect("trust root");
        crate::commands::adopt_admin_key(&mut s, dir.path());
        assert!(
            ensure_keys(&mut s, dir.path()).is_err(),
            "not the admin's key"
        );
        std::fs::remove_file(dir.path().join(ADMIN_KEY_FILE)).expect("remove");
        admin
            .save(&dir.path().join(ADMIN_KEY_FILE))
            .expect("admin key");
        crate::commands::adopt_admin_key(&mut s, dir.path());
        ensure_keys(&mut s, dir.path()).expect("the admin till makes one");
        let made = s.store_secrets().expect("secrets");
        assert_eq!(made.len(), 1);
        ensure_keys(&mut s, dir.path()).expect("again");
        assert_eq!(s.store_secrets().expect("secrets"), made, "made once");
        assert!(keys_path(dir.path()).exists());
    }

    #[test]
    fn the_admin_till_rotates_a_key_older_than_the_setting_and_announces_it() {
        let dir = tempfile::tempdir().expect("dir");
        let mut s = store(dir.path());
        let old = keys::generate(now_ms() - 10 * 86_400_000);
        s.add_store_secret(old.clone()).expect("old key");
        assert!(
            rotate_if_due(&mut s, dir.path())
                .expect("not admin")
                .is_none()
        );
        let admin = TillKey::generate();
        admin
            .save(&dir.path().join(ADMIN_KEY_FILE))
            .expect("admin key");
        s.set_admin_key(admin.till_id()).expect("trust root");
        crate::commands::adopt_admin_key(&mut s, dir.path());
        assert!(
            rotate_if_due(&mut s, dir.path())
                .expect("ten days old")
                .is_none(),
            "a key serves 30 days by default"
        );
        s.set_setting(tillmesh_store::settings::KEY_ROTATION, "7")
            .expect("a week");
        let new = rotate_if_due(&mut s, dir.path())
            .expect("rotate")
            .expect("due");
        assert_ne!(new.key_id, old.key_id);
        assert_eq!(
            s.announced_backup_key().expect("announced"),
            Some((new.key_id.clone(), s.till_id()))
        );
        assert_eq!(keys::current(&s.store_secrets().expect("keys")), Some(&new));
        assert!(rotate_if_due(&mut s, dir.path()).expect("fresh").is_none());
    }

    /// What a recovery file written now on `home`'s till holds (`with_recovery`:
    /// version 2, with the recovery key; else as version 1 files were).
    fn written(s: &Store, home: &Path, with_recovery: bool) -> keys::Recovery {
        keys::Recovery {
            version: if with_recovery { 2 } else { 1 },
            store_id: s.store_id().to_string(),
            store_name: s.store_name().to_string(),
            admin_seed: hex::encode([0u8; 32]),
            secrets: s.store_secrets().expect("keys"),
            recovery: if with_recovery {
                load_recovery_key(home).expect("read")
            } else {
                None
            },
        }
    }

    fn admin_till(dir: &Path) -> Store {
        let mut s = store(dir);
        let admin = TillKey::generate();
        admin.save(&dir.join(ADMIN_KEY_FILE)).expect("admin key");
        s.set_admin_key(admin.till_id()).expect("admin");
        crate::commands::adopt_admin_key(&mut s, dir);
        ensure_keys(&mut s, dir).expect("first key");
        s
    }

    #[test]
    fn the_admin_till_makes_and_publishes_one_recovery_key() {
        let dir = tempfile::tempdir().expect("dir");
        let mut s = admin_till(dir.path());
        let held = load_recovery_key(dir.path())
            .expect("read")
            .expect("made with the first backup key");
        let published = s.recovery_recipient().expect("read").expect("published");
        assert_eq!(published.id, held.key_id);
        assert_eq!(keys::recipient_of(&held), Some(published.clone()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(RECOVERY_KEY_FILE))
                .expect("file")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        rotate_keys(&mut s, dir.path()).expect("rotate");
        ensure_keys(&mut s, dir.path()).expect("again");
        assert_eq!(
            load_recovery_key(dir.path()).expect("read"),
            Some(held),
            "never rotated"
        );
        assert_eq!(s.recovery_recipient().expect("read"), Some(published));
        assert!(
            !s.store_secrets()
                .expect("keys")
                .iter()
                .any(|k| Some(&k.key_id)
                    == s.recovery_recipient().expect("r").map(|r| r.id).as_ref()),
            "the recovery key is not among the keys handed to tills"
        );
    }

    #[test]
    fn a_damaged_recovery_key_stops_only_the_recovery_file() {
        let dir = tempfile::tempdir().expect("dir");
        let mut s = admin_till(dir.path());
        std::fs::write(dir.path().join(RECOVERY_KEY_FILE), b"{").expect("damage");
        ensure_keys(&mut s, dir.path()).expect("backups go on");
        rotate_keys(&mut s, dir.path()).expect("so does a rotation");
        assert!(archive::recipients(&s).expect("recipients").len() == 2);
        let e = ensure_recovery_key(&mut s, dir.path()).expect_err("named");
        assert!(e.is::<Damaged>(), "{e:#}");
        assert!(format!("{e:#}").contains(RECOVERY_KEY_FILE), "{e:#}");
    }

    #[test]
    fn other_tills_never_make_a_recovery_key() {
        let dir = tempfile::tempdir().expect("dir");
        let mut s = store(dir.path());
        s.add_store_secret(keys::generate(1)).expect("key");
        ensure_keys(&mut s, dir.path()).expect("keys");
        assert_eq!(ensure_recovery_key(&mut s, dir.path()).expect("none"), None);
        assert!(!dir.path().join(RECOVERY_KEY_FILE).exists());
        assert_eq!(s.recovery_recipient().expect("read"), None);
    }

    #[test]
    fn a_recovery_file_without_the_recovery_key_goes_stale_at_a_rotation() {
        let dir = tempfile::tempdir().expect("dir");
        let mut s = admin_till(dir.path());
        assert_eq!(stale_recovery(&s, dir.path()).expect("none made"), None);
        let file = Path::new("/safe/recovery.age");
        record_recovery(dir.path(), file, &written(&s, dir.path(), false)).expect("record");
        assert_eq!(stale_recovery(&s, dir.path()).expect("fresh"), None);
        let new = rotate_keys(&mut s, dir.path()).expect("rotate");
        let alert = stale_recovery(&s, dir.path())
            .expect("read")
            .expect("stale after a rotation");
        assert!(
            alert.contains(&new.key_id) && alert.contains("/safe/recovery.age"),
            "{alert}"
        );
        assert!(
            recovery_note(&s, dir.path())
                .expect("note")
                .contains("make a new one")
        );
        record_recovery(dir.path(), file, &written(&s, dir.path(), true)).expect("again");
        assert_eq!(stale_recovery(&s, dir.path()).expect("fresh again"), None);
    }

    #[test]
    fn a_recovery_file_with_the_recovery_key_never_goes_stale() {
        let dir = tempfile::tempdir().expect("dir");
        let mut s = admin_till(dir.path());
        let file = Path::new("/safe/recovery.age");
        record_recovery(dir.path(), file, &written(&s, dir.path(), true)).expect("record");
        for _ in 0..2 {
            rotate_keys(&mut s, dir.path()).expect("rotate");
            assert_eq!(stale_recovery(&s, dir.path()).expect("read"), None);
        }
        assert!(
            recovery_note(&s, dir.path())
                .expect("note")
                .contains("reads these backups too")
        );

        // The store's recovery key replaced (its file lost on the admin till):
        // the recovery file holds one the store no longer encrypts to.
        std::fs::remove_file(dir.path().join(RECOVERY_KEY_FILE)).expect("lose it");
        let new = rotate_keys(&mut s, dir.path()).expect("rotate");
        let alert = stale_recovery(&s, dir.path())
            .expect("read")
            .expect("stale: another recovery key");
        assert!(alert.contains(&new.key_id), "{alert}");
    }

    #[test]
    fn a_malformed_published_recovery_key_is_passed_over() {
        let dir = tempfile::tempdir().expect("dir");
        let mut s = store(dir.path());
        let admin = TillKey::generate();
        s.set_admin_key(admin.till_id()).expect("admin");
        s.add_store_secret(keys::generate(1)).expect("key");
        s.publish_recovery_recipient(
            &admin,
            &tillmesh_store::RecoveryRecipient {
                recipient: "age1garbage".into(),
                id: "0011223344556677".into(),
            },
        )
        .expect("publish");
        let to = archive::recipients(&s).expect("backups still go to the store key");
        assert_eq!(to.len(), 1);
    }

    /// Any member can write the configuration, but backups are encrypted only
    /// to a recovery key the admin key signed; the admin till puts its own back
    /// at its next backup.
    #[test]
    fn a_recovery_key_not_signed_by_the_admin_is_passed_over() {
        let dir = tempfile::tempdir().expect("dir");
        let mut s = admin_till(dir.path());
        let held = s.recovery_recipient().expect("read").expect("published");
        assert_eq!(archive::recipients(&s).expect("to").len(), 2);
        let planted = keys::recipient_of(&keys::generate(7)).expect("recipient");
        for sig in [None, Some("00".repeat(64))] {
            let mut v = serde_json::json!({ "recipient": planted.recipient, "id": planted.id });
            if let Some(sig) = &sig {
                v["sig"] = serde_json::json!(sig);
            }
            s.set_config_value("backup/recovery", v).expect("write");
            assert_eq!(s.recovery_recipient().expect("read"), None, "{sig:?}");
            assert_eq!(
                archive::recipients(&s).expect("to").len(),
                1,
                "only the store key: {sig:?}"
            );
        }
        // A member's own key, even well signed by that member, does not count.
        let member = TillKey::generate();
        assert!(matches!(
            s.publish_recovery_recipient(&member, &planted),
            Err(tillmesh_store::MembershipError::NotAdmin)
        ));
        ensure_keys(&mut s, dir.path()).expect("again");
        assert_eq!(s.recovery_recipient().expect("read"), Some(held));
    }
}
