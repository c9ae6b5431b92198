//! `backup`, `restore`, `sink`, `usb` and `recovery`: the command line over
//! `tillmesh-backup`.
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
use tillmesh_backup::schedule::{Backoff, SinkSchedule};
use tillmesh_backup::{
    BackupError, BackupReport, FolderSink, Import, Kind, Opener, Sink, device, keys,
};
use tillmesh_mesh::StoreHandle;
use tillmesh_store::{Day, Store, StoreId, StoreSecret, TillId, TillKey};

use crate::args::{BackupArgs, BackupCmd, KeysCmd, RecoveryCmd, RestoreArgs, SinkCmd, UsbCmd};
use crate::commands::{ADMIN_KEY_FILE, RECOVERY_KEY_FILE, print_json, rejected};
use crate::exit::{Damaged, Rejected};
use crate::home::{HomeFile, write_private};
use crate::jobs::{JobKind, Jobs, Progress, StartedBy};
use crate::output::{Table, time};

/// The keys file of a till home.
pub fn keys_path(home: &Path) -> PathBuf {
    crate::home::path(home, HomeFile::StoreKeys)
}

fn sinks_path(home: &Path) -> PathBuf {
    crate::home::path(home, HomeFile::Sinks)
}

/// What `store.keys` holds.
#[derive(Serialize, Deserialize)]
struct KeysFile {
    version: u16,
    store_id: String,
    admin: String,
    secrets: Vec<StoreSecret>,
}

/// Whether a backup key's id is the id of its public half (a fetched key is
/// kept only then).
pub fn key_matches_id(k: &StoreSecret) -> bool {
    keys::recipient_of(k).is_some_and(|r| r.id == k.key_id)
}

/// Whether this till holds the admin key its store's trust root names (set by
/// `Ctx::open` from `admin.key`); a file's presence alone proves nothing.
fn is_admin_till(store: &Store) -> bool {
    store.holds_admin_key()
}

/// On the admin till, make the store's first backup key if it has none, and its
/// recovery key (see [`ensure_recovery_key`]); then write `store.keys`. Any
/// other till without a key is refused: a key it made up would encrypt backups
/// that no other till and no recovery file could read.
pub fn ensure_keys(store: &mut Store, home: &Path) -> Result<()> {
    if store.store_secrets()?.is_empty() {
        if !is_admin_till(store) {
            return Err(rejected(
                "this till holds none of the store's backup keys, so nothing it wrote could be read back elsewhere; \
                 back up from the admin till, or run `tillmesh keys rotate` there: this till's daemon then fetches the store's keys from it",
            ));
        }
        store.add_store_secret(keys::generate(now_ms()))?;
    }
    // A damaged recovery.key never stops backups; `recovery create` reports it.
    if let Err(e) = ensure_recovery_key(store, home) {
        tracing::warn!(error = %format!("{e:#}"), "the store's recovery key");
    }
    write_keys_file(store, home)
}

/// The recovery key to open files with besides the store's keys: on the admin
/// till, the one in `recovery.key`; elsewhere (or when it is unreadable) none.
fn recovery_keys(home: &Path) -> Vec<StoreSecret> {
    match load_recovery_key(home) {
        Ok(k) => k.into_iter().collect(),
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "the store's recovery key");
            Vec::new()
        }
    }
}

/// The store's recovery key as this till holds it in `recovery.key` (the admin
/// till only).
pub(crate) fn load_recovery_key(home: &Path) -> Result<Option<StoreSecret>> {
    let path = home.join(RECOVERY_KEY_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let key: StoreSecret = serde_json::from_slice(&bytes).map_err(|e| {
        Damaged(format!(
            "{} is damaged ({e}); restore it from a recovery file, or make a new recovery key with `tillmesh recovery create FILE --new-key`",
            path.display()
        ))
    })?;
    Ok(Some(key))
}

/// On the admin till, the store's recovery key: an age identity that is never
/// rotated and that every backup is also encrypted to, so that a recovery file
/// reads backups made after any later rotation. Made once (at `init`, or the
/// first time a store made before recovery keys needs one), kept in
/// `recovery.key` and published (its public half only) in the store's
/// configuration; the other tills never hold it, so a revoked till still cannot
/// read what is backed up after the next rotation. Elsewhere nothing.
pub fn ensure_recovery_key(store: &mut Store, home: &Path) -> Result<Option<StoreSecret>> {
    if !is_admin_till(store) {
        return Ok(None);
    }
    let key = match load_recovery_key(home)? {
        Some(k) => k,
        None => {
            let k = keys::generate(now_ms());
            // Held before it is published: every recipient the tills encrypt
            // to has its identity on this till.
            write_private(
                &home.join(RECOVERY_KEY_FILE),
                &serde_json::to_vec_pretty(&k)?,
            )?;
            tracing::info!(key = k.key_id, "new recovery key");
            k
        }
    };
    let public = keys::recipient_of(&key).ok_or_else(|| {
        Damaged(format!(
            "{} holds a malformed key",
            home.join(RECOVERY_KEY_FILE).display()
        ))
    })?;
    let published = store.recovery_recipient()?;
    if published.as_ref() != Some(&public) {
        if let Some(p) = &published {
            tracing::warn!(
                published = p.id,
                held = public.id,
                "the store's published recovery key is not the one this admin till holds; publishing the held one"
            );
        }
        let admin = TillKey::load(&home.join(ADMIN_KEY_FILE))
            .with_context(|| format!("cannot read {}", home.join(ADMIN_KEY_FILE).display()))?;
        store.publish_recovery_recipient(&admin, &public)?;
    }
    Ok(Some(key))
}

/// How old the newest backup key may get before the admin till's daemon makes a
/// new one.
pub const KEY_MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);

/// Make a new backup key on the admin till, announce it to the tills (they fetch
/// it from this till) and write `store.keys`. The recovery key stays (and is
/// made, for a store that has none yet).
pub fn rotate_keys(store: &mut Store, home: &Path) -> Result<StoreSecret> {
    if !is_admin_till(store) {
        return Err(rejected(
            "only the admin till (the one that ran `tillmesh init`) makes backup keys",
        ));
    }
    // The rotation (after a revocation, above all) goes ahead without it.
    if let Err(e) = ensure_recovery_key(store, home) {
        tracing::warn!(error = %format!("{e:#}"), "the store's recovery key");
    }
    let key = keys::generate(now_ms());
    store.add_store_secret(key.clone())?;
    store.announce_backup_key(&key.key_id, store.till_id())?;
    write_keys_file(store, home)?;
    tracing::info!(key = key.key_id, "new backup key");
    Ok(key)
}

/// On the admin till, a new backup key when the newest is older than
/// [`KEY_MAX_AGE`]; elsewhere nothing.
pub fn rotate_if_due(store: &mut Store, home: &Path) -> Result<Option<StoreSecret>> {
    if !is_admin_till(store) {
        return Ok(None);
    }
    let newest = store.store_secrets()?.iter().map(|k| k.created_ms).max();
    match newest {
        Some(t) if now_ms().saturating_sub(t) < KEY_MAX_AGE.as_millis() as u64 => Ok(None),
        _ => rotate_keys(store, home).map(Some),
    }
}

/// `tillmesh keys …`.
pub fn keys_cmd(store: &mut Store, home: &Path, c: &KeysCmd, out: &mut dyn Write) -> Result<()> {
    match c {
        KeysCmd::Rotate => {
            let key = rotate_keys(store, home)?;
            writeln!(
                out,
                "New backup key {}: backups from now on are encrypted to it; the other tills fetch it from this one (their daemons, within a minute of hearing of it). Older keys are kept to read older backups. {}",
                key.key_id,
                recovery_note(store, home)?
            )?;
        }
        KeysCmd::List(f) => {
            let held = store.store_secrets()?;
            let current = archive::current_key(store, &held)?.map(|k| k.key_id.clone());
            let announced = store.announced_backup_key()?.map(|(id, _)| id);
            let recovery = store.recovery_recipient()?.map(|r| r.id);
            let rows: Vec<_> = held
                .iter()
                .map(|k| {
                    serde_json::json!({
                        "key_id": k.key_id,
                        "created_ms": k.created_ms,
                        "current": Some(&k.key_id) == current.as_ref(),
                    })
                })
                .collect();
            if f.json {
                return print_json(
                    out,
                    &serde_json::json!({ "keys": rows, "announced": announced, "recovery": recovery }),
                );
            }
            let mut t = Table::new(&["KEY", "MADE", "CURRENT"]);
            for k in &held {
                t.row(vec![
                    k.key_id.clone(),
                    time(k.created_ms),
                    if Some(&k.key_id) == current.as_ref() {
                        "yes"
                    } else {
                        ""
                    }
                    .to_string(),
                ]);
            }
            write!(out, "{}", t.render())?;
            if let Some(a) = announced.filter(|a| !held.iter().any(|k| &k.key_id == a)) {
                writeln!(
                    out,
                    "The store's current key {a} is not on this till yet; the daemon fetches it from the admin till."
                )?;
            }
            if let Some(r) = recovery {
                writeln!(
                    out,
                    "Every backup is also encrypted to the store's recovery key {r}, which is never rotated; only the admin till and recovery files hold it."
                )?;
            }
        }
    }
    Ok(())
}

/// Write `store.keys` from the store (mode 0600).
pub fn write_keys_file(store: &Store, home: &Path) -> Result<()> {
    let admin = store
        .admin_key()?
        .map(|a| a.to_string())
        .unwrap_or_default();
    let file = KeysFile {
        version: 1,
        store_id: store.store_id().to_string(),
        admin,
        secrets: store.store_secrets()?,
    };
    write_private(&keys_path(home), &serde_json::to_vec_pretty(&file)?)
}

fn read_keys_file(home: &Path) -> Result<KeysFile> {
    let p = keys_path(home);
    let bytes = std::fs::read(&p).map_err(|_| {
        Rejected(format!(
            "{} has no store keys ({}); run the command on a till of the store, or use `tillmesh recovery restore`",
            home.display(),
            p.display()
        ))
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Damaged(format!("{} is damaged: {e}", p.display())).into())
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A configured sink.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SinkSpec {
    /// `folder`.
    pub kind: String,
    /// The folder.
    pub path: PathBuf,
    /// Its retention policy, compact form.
    pub keep: String,
}

impl SinkSpec {
    fn folder(path: PathBuf) -> SinkSpec {
        SinkSpec {
            kind: "folder".into(),
            path,
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

/// The folder a `SINK|DIR` argument names, with its retention policy.
fn resolve(home: &Path, dest: &str) -> Result<(String, FolderSink, Policy)> {
    let sinks = load_sinks(home)?;
    let spec = sinks
        .get(dest)
        .cloned()
        .unwrap_or_else(|| SinkSpec::folder(PathBuf::from(dest)));
    Ok((
        dest.to_string(),
        FolderSink::new(&spec.path)?,
        spec.policy(),
    ))
}

fn default_sinks(home: &Path, dest: Option<&str>) -> Result<Vec<(String, FolderSink, Policy)>> {
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
        .map(|(n, s)| Ok((n, FolderSink::new(&s.path)?, s.policy())))
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

/// Whether `backup <c>` works on a sink's files alone (list, verify, prune):
/// it needs of the store only an [`Opener`], so it runs off the store's
/// thread ([`sink_cmd`]).
pub fn on_sink(c: &BackupCmd) -> bool {
    matches!(
        c,
        BackupCmd::List { .. } | BackupCmd::Verify { .. } | BackupCmd::Prune { .. }
    )
}

/// `backup list|verify|prune`, opening files with `opener`.
fn files_cmd(opener: &Opener, home: &Path, c: &BackupCmd, out: &mut dyn Write) -> Result<()> {
    match c {
        BackupCmd::List { from, json } => list(opener, home, from.as_deref(), *json, out),
        BackupCmd::Verify { from, name, json } => {
            verify(opener, home, from.as_deref(), name.as_deref(), *json, out)
        }
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
        BackupCmd::Schedule { .. } => Err(anyhow::anyhow!("not a command on a sink's files")),
    }
}

/// `backup list|verify|prune`: the store is asked only for an [`Opener`];
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
/// `name`; the verdicts, damaged ones with why.
pub async fn verify_sink(
    store: &StoreHandle,
    home: &Path,
    from: Option<String>,
    name: Option<String>,
) -> Result<Vec<archive::Verified>> {
    beside(store, home, move |opener, home| {
        let sink = first_sink(home, from.as_deref())?;
        Ok(archive::verify_with(opener, &sink, name.as_deref())?)
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
    fn add(&mut self, name: String, sink: &FolderSink, r: Result<BackupReport, BackupError>) {
        match r {
            Ok(r) => self.reports.push((name, r)),
            Err(e) => {
                self.failed.get_or_insert_with(|| {
                    anyhow::Error::new(e).context(format!("backup to {} failed", sink.describe()))
                });
            }
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
            let v: Vec<_> = reports.iter().map(|(n, r)| made_json(n, r)).collect();
            print_json(out, &v)?;
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
pub async fn backup(
    store: &StoreHandle,
    home: &Path,
    a: &BackupArgs,
    progress: &Progress,
) -> Result<Vec<u8>> {
    let h = home.to_path_buf();
    store.call(move |s| ensure_keys(s, &h)).await??;
    let kind = Made::kind(a);
    let mut made = Made::default();
    for (name, sink, _) in default_sinks(home, a.to.as_deref())? {
        made.add(
            name,
            &sink,
            stepped_backup(store, &sink, kind, progress).await?,
        );
    }
    let mut out = Vec::new();
    made.print(a.json, &mut out)?;
    store
        .call(move |s| {
            made.record(s);
            made.result()
        })
        .await??;
    Ok(out)
}

fn first_sink(home: &Path, from: Option<&str>) -> Result<FolderSink> {
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
    let listed = archive::list(&sink, opener.store_id())?;
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

fn verify(
    opener: &Opener,
    home: &Path,
    from: Option<&str>,
    name: Option<&str>,
    json: bool,
    out: &mut dyn Write,
) -> Result<()> {
    let sink = first_sink(home, from)?;
    let verdicts = archive::verify_with(opener, &sink, name)?;
    let bad = verdicts.iter().filter(|v| v.error.is_some()).count();
    if json {
        print_json(out, &verdicts)?;
    } else {
        for v in &verdicts {
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
        let r = tillmesh_backup::prune_with(opener, &sink, &policy, dry_run)
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
    if let Some(e) = every {
        store.set_config_value(tillmesh_store::BACKUP_INTERVAL, parse_duration(e)?.into())?;
    }
    if let Some(e) = snapshot_every {
        store.set_config_value(tillmesh_store::SNAPSHOT_INTERVAL, parse_duration(e)?.into())?;
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
    let (every, snap) = store.call(|s| s.backup_schedule()).await??;
    let (every, snap) = (Duration::from_secs(every), Duration::from_secs(snap));
    let backoff = Backoff::default();
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
        let attempt = match FolderSink::new(&spec.path) {
            Ok(sink) => {
                let recovery = recovery_keys(home);
                let subject = serde_json::json!({"to": name, "bundle": kind == Kind::Bundle});
                let progress = match jobs {
                    Some(j) => j.start(JobKind::Backup, StartedBy::Schedule, subject),
                    None => Progress::none(),
                };
                let attempt =
                    scheduled_backup(store, name, sink, kind, spec.policy(), recovery, &progress)
                        .await?;
                match &attempt {
                    Ok(r) => progress.end(Ok(&serde_json::json!([made_json(name, r)]))),
                    Err(e) => progress.end(Err(&anyhow::anyhow!("{e}"))),
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
                let msg = format!("{} ({})", e, spec.path.display());
                let wait = st.failed(msg.clone(), now_ms(), &backoff, rand::random());
                if st.alert() {
                    tracing::error!(
                        sink = name,
                        failures = st.failures,
                        error = msg,
                        "scheduled backups keep failing; retry in {wait:?}"
                    );
                } else {
                    tracing::warn!(
                        sink = name,
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
    name: &str,
    sink: FolderSink,
    kind: Kind,
    policy: Policy,
    recovery: Vec<StoreSecret>,
    progress: &Progress,
) -> Result<Result<BackupReport, BackupError>> {
    let report = match stepped_backup(store, &sink, kind, progress).await? {
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
                    tillmesh_backup::prune_with(&o, &sink, &policy, false)
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

/// A backup of `kind` to `sink`, its documents taken from the store
/// [`archive::STEP_TIME`] at a time, the file compressed, encrypted and written
/// off the store's thread. The outer error means the store has closed; the inner
/// one is the backup's.
async fn stepped_backup(
    store: &StoreHandle,
    sink: &FolderSink,
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
        match tokio::task::spawn_blocking(move || archive::sink_heads(&opener, &s2)).await? {
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
    Ok(tokio::task::spawn_blocking(move || pending.write(&s2)).await?)
}

/// A configured sink as `sink list --json` and `GET /v1/sinks` show it.
#[derive(Debug, Clone, Serialize)]
pub struct SinkView {
    /// Its name.
    pub name: String,
    /// `folder`.
    pub kind: String,
    /// The folder.
    pub path: PathBuf,
    /// Its retention policy.
    pub keep: String,
    /// Whether the folder is there now (a stick may be out).
    pub present: bool,
    /// Free space there, if known.
    pub free_bytes: Option<u64>,
}

/// Every configured sink, looked at now.
pub fn sink_list(home: &Path) -> Result<Vec<SinkView>> {
    Ok(load_sinks(home)?
        .into_iter()
        .map(|(name, spec)| {
            let s = FolderSink::new(&spec.path).ok();
            SinkView {
                name,
                kind: spec.kind,
                path: spec.path,
                keep: spec.keep,
                present: s.is_some(),
                free_bytes: s.and_then(|s| s.free_space()),
            }
        })
        .collect())
}

/// Add (or replace) the sink `name`: a folder (which must be there and
/// writable) kept by the retention policy `keep`.
pub fn sink_add(home: &Path, name: &str, kind: &str, path: &Path, keep: &str) -> Result<SinkView> {
    if kind != "folder" {
        return Err(rejected(format!(
            "unknown sink kind {kind:?}; this version supports: folder"
        )));
    }
    check_sink_name(name)?;
    let policy: Policy = keep.parse().map_err(|e| rejected(format!("{e}")))?;
    FolderSink::new(path)?;
    let mut sinks = load_sinks(home)?;
    sinks.insert(
        name.to_string(),
        SinkSpec {
            kind: kind.to_string(),
            path: path.to_path_buf(),
            keep: policy.to_string(),
        },
    );
    save_sinks(home, sinks)?;
    sink_list(home)?
        .into_iter()
        .find(|s| s.name == name)
        .ok_or_else(|| anyhow::anyhow!("the sink {name} was not kept"))
}

/// A sink's name: what `--to NAME` and the API take (letters, digits, `-`,
/// `_`, `.`; not a path).
fn check_sink_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(rejected(format!(
            "{name:?} is not a sink name: 1 to 64 letters, digits, '-', '_' or '.', not starting with '.'"
        )))
    }
}

/// Remove the sink `name` from the list; its backups stay where they are.
pub fn sink_remove(home: &Path, name: &str) -> Result<()> {
    let mut sinks = load_sinks(home)?;
    if sinks.remove(name).is_none() {
        return Err(anyhow::Error::new(
            tillmesh_store::OpenStoreError::NotFound(format!("no sink named {name}")),
        ));
    }
    save_sinks(home, sinks)
}

/// `tillmesh sink …`.
pub fn sink(home: &Path, c: &SinkCmd, out: &mut dyn Write) -> Result<()> {
    match c {
        SinkCmd::Add {
            name,
            kind,
            path,
            keep,
        } => {
            let added = sink_add(home, name, kind, path, keep)?;
            writeln!(
                out,
                "Added sink {name}: folder {} (keeps {})",
                path.display(),
                added.keep
            )?;
        }
        SinkCmd::Remove { name } => {
            sink_remove(home, name)?;
            writeln!(out, "Removed sink {name}; its backups stay where they are")?;
        }
        SinkCmd::List(f) => {
            let sinks = sink_list(home)?;
            if f.json {
                return print_json(out, &sinks);
            }
            let mut t = Table::new(&["NAME", "KIND", "PATH", "STATE", "FREE", "KEEP"]);
            for s in sinks {
                t.row(vec![
                    s.name,
                    s.kind,
                    s.path.display().to_string(),
                    if s.present { "present" } else { "missing" }.into(),
                    s.free_bytes
                        .map(|f| format!("{} MB", f / 1_000_000))
                        .unwrap_or_default(),
                    s.keep,
                ]);
            }
            if t.is_empty() {
                writeln!(
                    out,
                    "No sinks; add one with `tillmesh sink add NAME folder PATH`"
                )?;
            } else {
                write!(out, "{}", t.render())?;
            }
        }
    }
    Ok(())
}

/// `tillmesh usb detect` (`usb sync` is [`usb_sync`]).
pub fn usb(c: &UsbCmd, out: &mut dyn Write) -> Result<()> {
    match c {
        UsbCmd::Detect(f) => {
            let devices = device::removable_devices()?;
            if f.json {
                return print_json(out, &devices);
            }
            let mut t = Table::new(&["MOUNT", "LABEL", "DEVICE", "FS", "SIZE", "MODE"]);
            for d in &devices {
                t.row(vec![
                    d.mount_point.display().to_string(),
                    d.label.clone().unwrap_or_default(),
                    d.device.clone(),
                    d.filesystem.clone(),
                    d.size_bytes
                        .map(|s| format!("{} MB", s / 1_000_000))
                        .unwrap_or_default(),
                    if d.read_only {
                        "read-only"
                    } else {
                        "read-write"
                    }
                    .into(),
                ]);
            }
            if t.is_empty() {
                writeln!(out, "No removable devices found")?;
            } else {
                write!(out, "{}", t.render())?;
            }
            Ok(())
        }
        UsbCmd::Sync { .. } => Err(anyhow::anyhow!("usb sync runs in steps (usb_sync)")),
    }
}

/// `tillmesh usb sync DIR`: files are read, decrypted and checked beside the
/// store, their documents merged [`archive::STEP_TIME`] at a time, and the
/// bundle for the stick made like a scheduled one, so the till keeps selling
/// while a stick is synced.
pub async fn usb_sync(
    store: &StoreHandle,
    home: &Path,
    dir: &Path,
    json: bool,
    progress: &Progress,
) -> Result<Vec<u8>> {
    let (h, h2) = (home.to_path_buf(), home.to_path_buf());
    let extra = recovery_keys(home);
    let ex = extra.clone();
    let (mut opener, me) = store
        .call(move |s| -> Result<_> {
            ensure_keys(s, &h)?;
            Ok((Opener::of(s, &ex)?, s.till_id()))
        })
        .await??;
    let sink = FolderSink::new(dir)?;
    let (s2, id) = (sink.clone(), opener.store_id());
    let (mut known, listed) = tokio::task::spawn_blocking(move || {
        let known = load_usb_known(&h2);
        let listed = archive::usb_files(&s2, id, &me, &known.files);
        (known, listed)
    })
    .await?;
    let (files, files_known) = listed?;
    let mut r = archive::UsbReport {
        files_known,
        ..archive::UsbReport::default()
    };
    let count = files.len();
    for (i, l) in files.into_iter().enumerate() {
        let step = format!("merging file {} of {count}: {}", i + 1, l.name);
        let (s2, o2, l2) = (sink.clone(), opener.clone(), l.clone());
        // A stick that cannot be read stops the sync (as without the daemon);
        // a file that is too large, does not open or decode is refused.
        let opened = tokio::task::spawn_blocking(move || -> Result<_, BackupError> {
            Ok(archive::open_listed(&s2, &o2, &l2)?
                .map_err(BackupError::from)
                .and_then(|(_, c)| Import::new(&c)))
        })
        .await??;
        let result = match opened {
            Ok(mut import) => loop {
                let (back, done) = store
                    .call(move |s| {
                        let done = import.step(s, archive::STEP_TIME);
                        (import, done)
                    })
                    .await?;
                import = back;
                let (merged, total) = import.progress();
                progress.step(&step, merged, total);
                match done {
                    Ok(true) => break Ok(import.imported()),
                    Ok(false) => {}
                    Err(e) => break Err(e),
                }
            },
            Err(e) => Err(e),
        };
        if r.add(l.name, result) {
            let ex = extra.clone();
            opener = store.call(move |s| Opener::of(s, &ex)).await??;
        }
    }
    r.exported(stepped_backup(store, &sink, Kind::Bundle, progress).await??);
    remember_usb(home, &mut known, &r);
    let (d, r2) = (dir.to_path_buf(), r.clone());
    store.call(move |s| record_usb(s, &d, &r2)).await?;
    let mut out = Vec::new();
    print_usb(&r, json, &mut out)?;
    Ok(out)
}

/// Files on USB sticks this till has imported whole, so `usb sync` need not
/// read them again (object names are unique: creation time, till, nonce).
fn usb_known_path(home: &Path) -> PathBuf {
    crate::home::path(home, HomeFile::UsbImported)
}

/// Names kept in [`usb_known_path`]; the oldest are forgotten beyond it (and
/// only read again, harmlessly, if still on a stick).
const USB_KNOWN_LIMIT: usize = 50_000;

/// The content of [`usb_known_path`].
#[derive(Serialize, Deserialize)]
struct UsbKnown {
    version: u32,
    files: BTreeSet<String>,
}

fn load_usb_known(home: &Path) -> UsbKnown {
    let path = usb_known_path(home);
    let read = std::fs::read(&path).ok().map(|bytes| {
        serde_json::from_slice::<UsbKnown>(&bytes).map_err(|e| {
            // Only a cost: every file on the stick is read again.
            tracing::warn!(file = %path.display(), error = %e, "unreadable; reading every file on the stick");
        })
    });
    match read {
        Some(Ok(k)) => k,
        _ => UsbKnown {
            version: 1,
            files: BTreeSet::new(),
        },
    }
}

fn remember_usb(home: &Path, known: &mut UsbKnown, r: &archive::UsbReport) {
    if r.imported_files.is_empty() {
        return;
    }
    let files = &mut known.files;
    files.extend(r.imported_files.iter().cloned());
    if files.len() > USB_KNOWN_LIMIT {
        // A file's own name starts with its creation time: keep the newest.
        let mut by_age: Vec<String> = std::mem::take(files).into_iter().collect();
        by_age.sort_by(|a, b| a.rsplit('/').next().cmp(&b.rsplit('/').next()));
        let excess = by_age.len() - USB_KNOWN_LIMIT;
        files.extend(by_age.drain(excess..));
    }
    known.version = 1;
    let result = serde_json::to_vec(&*known)
        .map_err(anyhow::Error::from)
        .and_then(|b| write_private(&usb_known_path(home), &b));
    if let Err(e) = result {
        tracing::warn!(error = %e, "cannot remember the files imported from the stick");
    }
}

/// Audit a `usb sync` that moved something.
fn record_usb(store: &mut Store, dir: &Path, r: &archive::UsbReport) {
    if r.imported_changes > 0 || r.exported.is_some() {
        let _ = store.record_backup_event(
            "usb-sync",
            &dir.display().to_string(),
            serde_json::json!({ "imported": r.imported_changes, "exported": r.exported_changes, "refused": r.refused.len() }),
        );
    }
}

fn print_usb(r: &archive::UsbReport, json: bool, out: &mut dyn Write) -> Result<()> {
    if json {
        return print_json(out, r);
    }
    write!(
        out,
        "Imported {} changes from {} files on the stick",
        r.imported_changes, r.files_read
    )?;
    if r.files_known > 0 {
        write!(out, " ({} imported before, not read again)", r.files_known)?;
    }
    writeln!(out)?;
    match &r.exported {
        Some(n) => writeln!(
            out,
            "Exported {} changes to the stick ({})",
            r.exported_changes,
            n.rsplit('/').next().unwrap_or(n)
        )?,
        None => writeln!(
            out,
            "Exported nothing: the stick already holds every change"
        )?,
    }
    for (n, why) in &r.refused {
        writeln!(out, "REFUSED  {}: {why}", n.rsplit('/').next().unwrap_or(n))?;
    }
    Ok(())
}

/// `tillmesh recovery create` (runs on the store).
pub fn recovery_create(
    store: &mut Store,
    home: &Path,
    file: &Path,
    new_key: bool,
    out: &mut dyn Write,
) -> Result<()> {
    let admin = TillKey::load(&home.join(ADMIN_KEY_FILE)).map_err(|_| {
        rejected(
            "only the admin till (the one that ran `tillmesh init`) can write the recovery file",
        )
    })?;
    if new_key {
        passphrase()?;
        let held = home.join(RECOVERY_KEY_FILE);
        if held.exists() {
            // Kept aside, not deleted: it still opens what was backed up to it.
            let aside = home.join(format!("{RECOVERY_KEY_FILE}.replaced-{}", now_ms()));
            std::fs::rename(&held, &aside)
                .with_context(|| format!("cannot move {} aside", held.display()))?;
            writeln!(
                out,
                "Replaced the store's recovery key (the old one is kept as {}); backups from now on are encrypted to the new one",
                aside.display()
            )?;
        }
    }
    ensure_keys(store, home)?;
    ensure_recovery_key(store, home)?;
    write_recovery(store, home, &admin, file)?;
    writeln!(
        out,
        "Wrote the recovery file {}; keep it and its passphrase away from the tills",
        file.display()
    )?;
    Ok(())
}

/// Write the recovery file, the passphrase from `$TILLMESH_RECOVERY_PASSPHRASE`.
/// The passphrase for a recovery file, from `$TILLMESH_RECOVERY_PASSPHRASE`.
fn passphrase() -> Result<String> {
    crate::core::caller_env("TILLMESH_RECOVERY_PASSPHRASE").ok_or_else(|| {
        rejected("set TILLMESH_RECOVERY_PASSPHRASE to the passphrase for the recovery file")
    })
}

pub fn write_recovery(store: &Store, home: &Path, admin: &TillKey, file: &Path) -> Result<()> {
    let pass = passphrase()?;
    let r = keys::Recovery {
        version: keys::RECOVERY_VERSION,
        store_id: store.store_id().to_string(),
        store_name: store.store_name().to_string(),
        admin_seed: hex::encode(admin.seed()),
        secrets: store.store_secrets()?,
        recovery: load_recovery_key(home)?,
    };
    let sealed =
        keys::seal_recovery(&r, &pass, work_factor()).map_err(|e| rejected(e.to_string()))?;
    write_private(file, &sealed)?;
    record_recovery(home, file, &r)
}

/// What the admin till remembers of the last recovery file it wrote (or was
/// restored from), in `recovery-state.json`: which keys it holds (ids only).
#[derive(Debug, Serialize, Deserialize)]
struct RecoveryState {
    /// Format version: 2; version 1 has no `recovery_key`.
    version: u16,
    /// When it was written (unix ms).
    made_ms: u64,
    /// Where it was written.
    file: String,
    /// The ids of the backup keys in it.
    key_ids: Vec<String>,
    /// The id of the recovery key in it, if any.
    #[serde(default)]
    recovery_key: Option<String>,
}

fn recovery_state_path(home: &Path) -> PathBuf {
    crate::home::path(home, HomeFile::RecoveryState)
}

fn record_recovery(home: &Path, file: &Path, r: &keys::Recovery) -> Result<()> {
    let st = RecoveryState {
        version: 2,
        made_ms: now_ms(),
        file: file.display().to_string(),
        key_ids: r.secrets.iter().map(|k| k.key_id.clone()).collect(),
        recovery_key: r.recovery.as_ref().map(|k| k.key_id.clone()),
    };
    write_private(&recovery_state_path(home), &serde_json::to_vec_pretty(&st)?)
}

fn recovery_state(home: &Path) -> Option<RecoveryState> {
    let bytes = std::fs::read(recovery_state_path(home)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Whether the last recovery file holds the store's recovery key: then it reads
/// every backup, whatever key rotations came after it.
fn holds_recovery_key(store: &Store, st: &RecoveryState) -> Result<bool> {
    Ok(match (&st.recovery_key, store.recovery_recipient()?) {
        (Some(held), Some(published)) => {
            *held == published.id && keys::parse_recipient(&published).is_some()
        }
        _ => false,
    })
}

/// An alert when the last recovery file this till wrote cannot read the newest
/// backups: it holds neither the store's recovery key (a file from before
/// recovery keys, or of a recovery key since replaced) nor its current backup
/// key (it was made before a rotation).
pub fn stale_recovery(store: &Store, home: &Path) -> Result<Option<String>> {
    let Some(st) = recovery_state(home) else {
        return Ok(None);
    };
    if holds_recovery_key(store, &st)? {
        return Ok(None);
    }
    let held = store.store_secrets()?;
    Ok(keys::current(&held)
        .filter(|k| !st.key_ids.contains(&k.key_id))
        .map(|k| {
            format!(
                "the recovery file {} predates backup key {} and lacks the store's recovery key: it cannot read backups made since; write a new one (tillmesh recovery create FILE)",
                st.file, k.key_id
            )
        }))
}

/// What a new backup key means for the recovery file, for the operator.
pub fn recovery_note(store: &Store, home: &Path) -> Result<String> {
    let Some(st) = recovery_state(home) else {
        return Ok(
            "No recovery file was written on this till yet: write one (tillmesh recovery create FILE); it holds the store's recovery key, which every backup is also encrypted to, so it reads backups of later keys too."
                .into(),
        );
    };
    Ok(if holds_recovery_key(store, &st)? {
        format!(
            "The recovery file {} reads these backups too: it holds the store's recovery key, which every backup is also encrypted to.",
            st.file
        )
    } else {
        format!(
            "The recovery file {} cannot read backups encrypted to this key (it lacks the store's recovery key): make a new one (tillmesh recovery create FILE).",
            st.file
        )
    })
}

/// age's scrypt work factor (2^N); tests may lower it.
fn work_factor() -> u8 {
    crate::core::caller_env("TILLMESH_SCRYPT_WORK_FACTOR")
        .and_then(|v| v.parse().ok())
        .unwrap_or(18)
}

/// Parse `--at`: Unix milliseconds, or UTC `YYYY-MM-DDTHH:MM[:SS]`.
pub fn parse_time(s: &str) -> Result<u64> {
    if let Ok(ms) = s.parse::<u64>() {
        return Ok(ms);
    }
    let bad = || {
        rejected(format!(
            "cannot read the time {s:?}; use YYYY-MM-DDTHH:MM[:SS] (UTC) or Unix milliseconds"
        ))
    };
    let s = s.trim_end_matches('Z');
    let (date, clock) = s.split_once(['T', ' ']).unwrap_or((s, "00:00"));
    let day: Day = date.parse().map_err(|_| bad())?;
    let c: Vec<u32> = clock
        .split(':')
        .map(|p| p.parse().map_err(|_| bad()))
        .collect::<Result<_>>()?;
    let (h, m, sec) = match c[..] {
        [h, m] => (h, m, 0),
        [h, m, sec] => (h, m, sec),
        _ => return Err(bad()),
    };
    if h > 23 || m > 59 || sec > 59 {
        return Err(bad());
    }
    let secs = day.days_since_epoch() * 86_400 + i64::from(h * 3600 + m * 60 + sec);
    u64::try_from(secs * 1000).map_err(|_| bad())
}

fn print_restore(
    r: &archive::RestoreReport,
    home: &Path,
    json: bool,
    out: &mut dyn Write,
) -> Result<()> {
    if json {
        return print_json(out, r);
    }
    writeln!(
        out,
        "Restored {} documents from {} and {} bundles into {}",
        r.docs,
        r.snapshot.rsplit('/').next().unwrap_or(&r.snapshot),
        r.bundles.len(),
        home.display()
    )?;
    for (n, why) in &r.skipped {
        writeln!(out, "skipped  {}: {why}", n.rsplit('/').next().unwrap_or(n))?;
    }
    Ok(())
}

fn new_home(home: &Path) -> Result<()> {
    if home.join(HomeFile::Store.name()).exists() || home.join(HomeFile::TillKey.name()).exists() {
        return Err(rejected(format!(
            "{} already holds a till; restore into a new, empty folder",
            home.display()
        )));
    }
    crate::commands::create_home(home)
}

/// `tillmesh restore --from DIR --home NEWDIR`.
pub fn restore(home: &Path, a: &RestoreArgs, out: &mut dyn Write) -> Result<()> {
    let source = a
        .keys
        .clone()
        .or_else(|| std::env::var_os("TILLMESH_HOME").map(PathBuf::from))
        .filter(|k| k != home)
        .ok_or_else(|| {
            rejected("restore needs the store keys of a till: run it with TILLMESH_HOME set to a till of the store, or pass --keys DIR")
        })?;
    let kf = read_keys_file(&source)?;
    let store_id: StoreId = kf
        .store_id
        .parse()
        .map_err(|_| Damaged("store.keys: bad store id".into()))?;
    let admin: TillId = kf
        .admin
        .parse()
        .map_err(|_| Damaged("store.keys: bad admin key".into()))?;
    let certify = TillKey::load(&source.join("admin.key")).ok();
    let pick = match (&a.snapshot, &a.at) {
        (Some(s), _) => Pick::Named(s.clone()),
        (None, Some(t)) => Pick::At(parse_time(t)?),
        (None, None) => Pick::Newest,
    };
    let source = Source {
        store_id,
        admin,
        secrets: &kf.secrets,
        recovery: None,
        certify_with: certify.as_ref(),
    };
    let report = restore_home(home, &a.from, &a.till, &source, pick)?;
    print_restore(&report, home, a.json, out)
}

/// What a restore trusts and decrypts with: from a till's `store.keys`, or from
/// the recovery file.
struct Source<'a> {
    store_id: StoreId,
    admin: TillId,
    secrets: &'a [StoreSecret],
    /// The store's recovery key (from a recovery file): decrypts, is never
    /// put into the new till's store.
    recovery: Option<&'a StoreSecret>,
    certify_with: Option<&'a TillKey>,
}

/// Restore from the folder `from` into the new till home `home` (a fresh till
/// key, and `store.keys`).
fn restore_home(
    home: &Path,
    from: &Path,
    till: &str,
    source: &Source<'_>,
    pick: Pick,
) -> Result<archive::RestoreReport> {
    let till_name = till.parse().map_err(|e| rejected(format!("{e}")))?;
    let existed = home.exists();
    new_home(home)?;
    let result = restore_new_home(home, from, till_name, source, pick);
    if result.is_err() && !existed {
        // Leave nothing behind that looks like a till home.
        let _ = std::fs::remove_dir_all(home);
    }
    result
}

fn restore_new_home(
    home: &Path,
    from: &Path,
    till_name: tillmesh_store::TillName,
    source: &Source<'_>,
    pick: Pick,
) -> Result<archive::RestoreReport> {
    let key = TillKey::generate();
    let sink = FolderSink::new(from)?;
    let report = archive::restore(
        &sink,
        RestoreSpec {
            store_id: source.store_id,
            admin: source.admin,
            secrets: source.secrets,
            recovery: source.recovery,
            home,
            key: key.clone(),
            till_name,
            certify_with: source.certify_with,
            pick,
        },
    )
    .map_err(restore_error)?;
    key.save(&home.join(HomeFile::TillKey.name()))?;
    let file = KeysFile {
        version: 1,
        store_id: source.store_id.to_string(),
        admin: source.admin.to_string(),
        secrets: source.secrets.to_vec(),
    };
    write_private(&keys_path(home), &serde_json::to_vec_pretty(&file)?)?;
    Ok(report)
}

fn restore_error(e: BackupError) -> anyhow::Error {
    match e {
        BackupError::NoSnapshot { ref skipped, .. } if skipped.is_empty() => e.into(),
        BackupError::Damaged { .. } | BackupError::NoSnapshot { .. } => {
            Damaged(e.to_string()).into()
        }
        BackupError::HomeInUse(_) => rejected(e.to_string()),
        other => other.into(),
    }
}

/// A recovery file opened with the passphrase in `$TILLMESH_RECOVERY_PASSPHRASE`.
pub(crate) struct OpenedRecovery {
    pub(crate) r: keys::Recovery,
    pub(crate) store_id: StoreId,
    pub(crate) admin_key: TillKey,
}

impl OpenedRecovery {
    pub(crate) fn read(file: &Path) -> Result<Self> {
        let bytes =
            std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
        let pass = crate::core::caller_env("TILLMESH_RECOVERY_PASSPHRASE").ok_or_else(|| {
            rejected("set TILLMESH_RECOVERY_PASSPHRASE to the recovery file's passphrase")
        })?;
        let r = keys::open_recovery(&bytes, &pass).map_err(|e| match e {
            keys::RecoveryError::WrongPassphrase => rejected(e.to_string()),
            other => Damaged(other.to_string()).into(),
        })?;
        let store_id = r.store().map_err(|e| Damaged(e.to_string()))?;
        let admin_key = r.admin().map_err(|e| Damaged(e.to_string()))?;
        Ok(Self {
            r,
            store_id,
            admin_key,
        })
    }

    fn source(&self) -> Source<'_> {
        Source {
            store_id: self.store_id,
            admin: self.admin_key.till_id(),
            secrets: &self.r.secrets,
            recovery: self.r.recovery.as_ref(),
            certify_with: Some(&self.admin_key),
        }
    }
}

/// `tillmesh recovery restore FILE --from DIR --home NEWDIR` and
/// `tillmesh recovery drill FILE --from SINK|DIR`.
pub fn recovery(home: &Path, c: &RecoveryCmd, out: &mut dyn Write) -> Result<()> {
    let (file, from, till) = match c {
        RecoveryCmd::Restore { file, from, till } => (file, from, till),
        RecoveryCmd::Drill { file, from, json } => {
            let report = recovery_drill(home, file, from)?;
            return print_drill(&report, *json, out);
        }
        RecoveryCmd::Create { .. } => {
            return Err(rejected("recovery create runs on the admin till's store"));
        }
    };
    let opened = OpenedRecovery::read(file)?;
    let (r, admin_key) = (&opened.r, &opened.admin_key);
    let report = restore_home(home, from, till, &opened.source(), Pick::Newest)?;
    admin_key.save(&home.join(ADMIN_KEY_FILE))?;
    if let Some(k) = &r.recovery {
        write_private(
            &home.join(RECOVERY_KEY_FILE),
            &serde_json::to_vec_pretty(k)?,
        )?;
    }
    record_recovery(home, file, r)?;
    let rotated = take_over_keys(home)?;
    print_restore(&report, home, false, out)?;
    writeln!(
        out,
        "This till holds the admin key: it can invite the other tills again"
    )?;
    if let Some(key) = rotated {
        writeln!(
            out,
            "The recovery file lacks the store's current backup key, so this till made a new one ({}) for its backups. {}",
            key.key_id,
            recovery_note(&open_home(home)?, home)?
        )?;
    }
    Ok(())
}

/// What a recovery from a recovery file and a folder of backups would get.
#[derive(Debug, Serialize)]
pub struct DrillReport {
    /// The folder the backups were read from.
    pub from: String,
    /// The snapshot a recovery starts from, and the bundles applied after it.
    pub snapshot: String,
    pub bundles: usize,
    /// Files a recovery would pass over, with why.
    pub skipped: Vec<(String, String)>,
    /// Documents restored (each one loads).
    pub documents: usize,
    /// Tills of the store.
    pub tills: usize,
    /// Sales, and every receipt (sales, voids, refunds).
    pub sales: usize,
    pub receipts: usize,
    /// Unix ms of the newest sale restored, and its age in seconds.
    pub newest_sale: Option<u64>,
    pub newest_sale_age_s: Option<u64>,
    /// Unix ms of the newest backup file, and its age in seconds.
    pub newest_backup: Option<u64>,
    pub newest_backup_age_s: Option<u64>,
    /// Backup files whose signature, hash and encryption were checked.
    pub files_verified: usize,
    /// Audit chains checked, and their entries.
    pub audit_chains: usize,
    pub audit_entries: u64,
}

/// Restore from `from` (a sink of `home`, or a folder) with the recovery `file`
/// into a temporary home, check it all, and delete that home whatever happens.
/// The till's own store and keys are never opened.
fn recovery_drill(home: &Path, file: &Path, from: &str) -> Result<DrillReport> {
    let opened = OpenedRecovery::read(file)?;
    let (_, sink, _) = resolve(home, from)?;
    let dir = sink.root().to_path_buf();
    // Removed when dropped, on every return below: it holds keys of the store.
    let scratch = tempfile::Builder::new()
        .prefix("tillmesh-drill-")
        .tempdir()
        .context("cannot make a temporary folder for the drill")?;
    let tmp_home = scratch.path().join("home");
    let restored = restore_home(&tmp_home, &dir, "DRILL", &opened.source(), Pick::Newest)?;
    let mut store = open_home(&tmp_home)?;
    let docs = store.doc_ids()?;
    for id in &docs {
        store
            .heads(id)
            .map_err(|e| Damaged(format!("restored document {id} does not load: {e}")))?;
    }
    let extra: Vec<StoreSecret> = opened.r.recovery.iter().cloned().collect();
    let opener = Opener::of(&store, &extra)?;
    let verdicts = archive::verify_with(&opener, &sink, None)?;
    let bad: Vec<String> = verdicts
        .iter()
        .filter_map(|v| {
            v.error
                .as_ref()
                .map(|e| format!("{}: {e}", v.name.rsplit('/').next().unwrap_or(&v.name)))
        })
        .collect();
    if !bad.is_empty() {
        return Err(Damaged(format!(
            "{} of {} backup files failed verification: {}",
            bad.len(),
            verdicts.len(),
            bad.join("; ")
        ))
        .into());
    }
    let chains = store.verify_audit()?;
    let broken: Vec<String> = chains
        .iter()
        .filter(|c| !c.intact())
        .map(|c| format!("{}: {}", c.till.fmt_short(), c.broken.join("; ")))
        .collect();
    if !broken.is_empty() {
        return Err(Damaged(format!(
            "the restored audit trail fails verification: {}",
            broken.join("; ")
        ))
        .into());
    }
    let records = store.sales(None, None)?;
    let now = now_ms();
    let newest_sale = records.iter().map(|r| r.entry.hlc.ms()).max();
    let newest_backup = archive::list(&sink, opened.store_id)?
        .iter()
        .filter(|l| l.problem.is_none())
        .filter_map(|l| l.created_ms)
        .max();
    let report = DrillReport {
        from: dir.display().to_string(),
        snapshot: restored.snapshot.clone(),
        bundles: restored.bundles.len(),
        skipped: restored.skipped.clone(),
        documents: docs.len(),
        // The drill's own till is not one a recovery brings back.
        tills: store
            .tills()?
            .iter()
            .filter(|t| t.id != store.till_id())
            .count(),
        sales: records
            .iter()
            .filter(|r| r.entry.kind == tillmesh_store::EntryKind::Sale)
            .count(),
        receipts: records.len(),
        newest_sale,
        newest_sale_age_s: newest_sale.map(|t| now.saturating_sub(t) / 1000),
        newest_backup,
        newest_backup_age_s: newest_backup.map(|t| now.saturating_sub(t) / 1000),
        files_verified: verdicts.len(),
        // The drill's own till (its certificate is audited) is not counted.
        audit_chains: chains.iter().filter(|c| c.till != store.till_id()).count(),
        audit_entries: chains
            .iter()
            .filter(|c| c.till != store.till_id())
            .map(|c| c.entries)
            .sum(),
    };
    drop(store);
    scratch
        .close()
        .context("cannot delete the drill's temporary home")?;
    Ok(report)
}

fn print_drill(r: &DrillReport, json: bool, out: &mut dyn Write) -> Result<()> {
    if json {
        return print_json(out, r);
    }
    let age = |s: Option<u64>| match s {
        Some(s) if s >= 2 * 86_400 => format!(" ({} days ago)", s / 86_400),
        Some(s) if s >= 3_600 => format!(" ({} h ago)", s / 3_600),
        Some(s) => format!(" ({} min ago)", s / 60),
        None => String::new(),
    };
    writeln!(out, "Recovery drill from {}: passed", r.from)?;
    writeln!(
        out,
        "  restores {} documents of {} tills from {} and {} bundles",
        r.documents,
        r.tills,
        r.snapshot.rsplit('/').next().unwrap_or(&r.snapshot),
        r.bundles
    )?;
    writeln!(
        out,
        "  {} sales ({} receipts), the newest {}{}",
        r.sales,
        r.receipts,
        r.newest_sale.map(time).unwrap_or_else(|| "-".into()),
        age(r.newest_sale_age_s)
    )?;
    writeln!(
        out,
        "  newest backup {}{}",
        r.newest_backup.map(time).unwrap_or_else(|| "-".into()),
        age(r.newest_backup_age_s)
    )?;
    writeln!(
        out,
        "  {} backup files verified, {} audit chains ({} entries) intact",
        r.files_verified, r.audit_chains, r.audit_entries
    )?;
    for (n, why) in &r.skipped {
        writeln!(
            out,
            "  a recovery would skip {}: {why}",
            n.rsplit('/').next().unwrap_or(n)
        )?;
    }
    writeln!(
        out,
        "The temporary home is deleted; this till was not touched."
    )?;
    Ok(())
}

fn open_home(home: &Path) -> Result<Store> {
    let key = TillKey::load(&home.join(HomeFile::TillKey.name()))
        .with_context(|| format!("cannot read the till key in {}", home.display()))?;
    let mut store = Store::open(
        &home.join(archive::STORE_FILE),
        key,
        tillmesh_store::StoreOptions::default(),
    )?;
    crate::commands::adopt_admin_key(&mut store, home);
    Ok(store)
}

/// The keys of a till restored from a recovery file, which is now the admin
/// till: when it lacks the store's announced current backup key (the file was
/// written before a rotation, whose key left with the lost admin till), it makes
/// a new one, announced as held by itself, so its backups go to a key it holds
/// and its tills can fetch; and it keeps or makes the store's recovery key. Gives
/// the new backup key, if it made one.
fn take_over_keys(home: &Path) -> Result<Option<StoreSecret>> {
    let mut store = open_home(home)?;
    let held = store.store_secrets()?;
    let usable = match store.announced_backup_key()? {
        Some((id, _)) => held.iter().any(|k| k.key_id == id),
        None => !held.is_empty(),
    };
    if usable {
        ensure_keys(&mut store, home)?;
        return Ok(None);
    }
    rotate_keys(&mut store, home).map(Some)
}

#[cfg(test)]
mod tests {
    use tillmesh_store::{NewStore, Role, StoreOptions};

    use super::*;

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
    fn the_admin_till_rotates_a_key_thirty_days_old_and_announces_it() {
        let dir = tempfile::tempdir().expect("dir");
        let mut s = store(dir.path());
        let old = keys::generate(now_ms() - KEY_MAX_AGE.as_millis() as u64 - 1000);
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
