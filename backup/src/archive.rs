//! Backup, list, verify, import, USB carry and point-in-time restore.
//!
//! Layout on a sink, shared by every till of a store:
//! `<store>/snapshots/<created>-<till>-<nonce>.tms`,
//! `<store>/bundles/<till>/<created>-<nonce>.tmb` and `<store>/index/<till>.tmi`
//! (what the sink held when that till last wrote there: heads per document).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::Path;

use serde::Serialize;
use tillmesh_store::{
    ChangeHash, DocId, MemberStatus, NewStore, Proof, Role, Store, StoreId, StoreOptions,
    StoreSecret, TillId, TillKey, TillName,
};

use crate::format::{self, Form, FormatError, Header, Kind, Recipients, Writer};
use crate::keys;
use crate::sink::{Sink, SinkError};

/// Heads per document (by id text).
pub type Heads = BTreeMap<String, Vec<[u8; 32]>>;

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn hashes(heads: &[[u8; 32]]) -> Vec<ChangeHash> {
    heads.iter().map(|h| ChangeHash(*h)).collect()
}

fn raw(heads: &[ChangeHash]) -> Vec<[u8; 32]> {
    heads.iter().map(|h| h.0).collect()
}

/// The object name of a new file.
fn object_name(store: StoreId, kind: Kind, till: &TillId, created_ms: u64) -> String {
    let nonce: u32 = rand::random();
    match kind {
        Kind::Snapshot => format!(
            "{store}/snapshots/{created_ms:013}-{}-{nonce:08x}.tms",
            till.fmt_short()
        ),
        Kind::Bundle => format!("{store}/bundles/{till}/{created_ms:013}-{nonce:08x}.tmb"),
        Kind::Index => format!("{store}/index/{till}.tmi"),
    }
}

/// Whom every file a till writes for `store` is encrypted to: the store's
/// current backup key (named in the header) and, when the store publishes one,
/// its recovery key, so a recovery file reads backups made after any rotation.
/// Every writer of snapshots, bundles and indexes takes its recipients here.
pub fn recipients(store: &Store) -> Result<Recipients, BackupError> {
    let secrets = store.store_secrets()?;
    let key = current_key(store, &secrets)?.ok_or(BackupError::NoKey)?;
    let mut to = Recipients::new(key)?;
    if let Some(r) = store
        .recovery_recipient()?
        .as_ref()
        .and_then(keys::parse_recipient)
    {
        to = to.and(r);
    }
    Ok(to)
}

/// The key new files are encrypted to: the one the admin key announced (none
/// while this till has not fetched it yet), or on a store that never announced
/// one, the newest held.
pub fn current_key<'a>(
    store: &Store,
    secrets: &'a [StoreSecret],
) -> Result<Option<&'a StoreSecret>, BackupError> {
    Ok(match store.announced_backup_key()? {
        Some((id, _)) => secrets.iter().find(|k| k.key_id == id),
        None => keys::current(secrets),
    })
}

/// The keys to open files with: the store's own, then `extra` (the recovery key
/// on the admin till).
pub(crate) fn keys_with(
    store: &Store,
    extra: &[StoreSecret],
) -> Result<Vec<StoreSecret>, BackupError> {
    let mut keys = store.store_secrets()?;
    keys.extend_from_slice(extra);
    Ok(keys)
}

fn is_member(store: &Store, till: &TillId) -> bool {
    matches!(store.member_status(till), Ok(MemberStatus::Member(_)))
}

/// What opening a store's files takes, read from the store once: its id, the
/// keys to decrypt with and its members (whose signatures count). Files are then
/// read, decrypted and checked without the store, so a till's store stays free
/// for sales meanwhile. Take a new one after importing changes that may have
/// moved the membership.
#[derive(Clone)]
pub struct Opener {
    store: StoreId,
    keys: Vec<StoreSecret>,
    members: BTreeSet<TillId>,
}

impl std::fmt::Debug for Opener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opener")
            .field("store", &self.store)
            .field("keys", &self.keys.len())
            .field("members", &self.members.len())
            .finish()
    }
}

impl Opener {
    /// The store's own keys plus `extra` (the recovery key on the admin till),
    /// and its members as they are now.
    pub fn of(store: &Store, extra: &[StoreSecret]) -> Result<Opener, BackupError> {
        let members = store
            .tills()?
            .into_iter()
            .map(|t| t.id)
            .filter(|id| is_member(store, id))
            .collect();
        Ok(Opener {
            store: store.store_id(),
            keys: keys_with(store, extra)?,
            members,
        })
    }

    /// The store whose files this opens.
    pub fn store_id(&self) -> StoreId {
        self.store
    }

    /// Decrypt and check a file of the store: its signature must be a member's.
    pub fn open(&self, bytes: &[u8]) -> Result<(Header, format::Contents), FormatError> {
        format::open(bytes, self.store, &self.keys, |t| self.members.contains(t))
    }
}

/// How long a [`Pending`] backup's step holds the store by default: it takes
/// documents until this is spent (at least one), so a sale made meanwhile waits
/// about this long at most.
pub const STEP_TIME: std::time::Duration = std::time::Duration::from_millis(50);

/// The time a step may hold the store: it takes items until this is spent, and
/// always at least one, so every step makes progress.
struct Budget {
    start: std::time::Instant,
    budget: std::time::Duration,
    taken: usize,
}

impl Budget {
    fn new(budget: std::time::Duration) -> Budget {
        Budget {
            start: std::time::Instant::now(),
            budget,
            taken: 0,
        }
    }

    /// Whether the step should stop before the next item; if not, it is counted
    /// as taken.
    fn spent(&mut self) -> bool {
        if self.taken > 0 && self.start.elapsed() > self.budget {
            return true;
        }
        self.taken += 1;
        false
    }
}

/// A backup in the making. [`Pending::step`] takes documents from the store for a
/// short while at a time, so a till's store is free for sales between steps;
/// [`Pending::write`] compresses, encrypts and writes the file and this till's
/// index without the store. [`backup`] runs all of it in one go.
///
/// The index written at the end names, for each document, the heads this backup
/// read (or, for a document with nothing new for a bundle, the heads the store had
/// when that was checked), never later ones: a sale made while the backup is in
/// the making is left to the next one.
pub struct Pending {
    kind: Kind,
    created_ms: u64,
    store: StoreId,
    store_name: String,
    till: TillKey,
    recipients: Recipients,
    writer: Writer,
    since: Heads,
    todo: Vec<DocId>,
    docs: usize,
    index: Vec<(String, Vec<[u8; 32]>)>,
    changes: usize,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("kind", &self.kind)
            .field("created_ms", &self.created_ms)
            .field("docs_left", &self.todo.len())
            .field("docs_written", &self.writer.len())
            .finish_non_exhaustive()
    }
}

impl Pending {
    /// Start a snapshot of `store` (or, for [`Kind::Bundle`], a bundle of what
    /// `sink` lacks, by its index files) to be written to `sink`.
    pub fn start(store: &Store, sink: &dyn Sink, kind: Kind) -> Result<Pending, BackupError> {
        let since = if kind == Kind::Snapshot {
            Heads::new()
        } else {
            sink_heads(&Opener::of(store, &[])?, sink)?
        };
        Pending::start_from(store, kind, since)
    }

    /// [`Pending::start`] with what the sink holds already read
    /// ([`sink_heads`], which needs no store); ignored for a snapshot.
    pub fn start_from(store: &Store, kind: Kind, since: Heads) -> Result<Pending, BackupError> {
        let (kind, since) = if kind == Kind::Snapshot {
            (Kind::Snapshot, Heads::new())
        } else {
            (Kind::Bundle, since)
        };
        let mut todo = store.doc_ids()?;
        todo.reverse();
        Ok(Pending {
            kind,
            created_ms: now_ms(),
            store: store.store_id(),
            store_name: store.store_name().to_string(),
            till: store.till_key().clone(),
            recipients: recipients(store)?,
            writer: Writer::new(kind, store.store_id(), store.store_name())
                .with_level(store.setting(tillmesh_store::settings::BACKUP_ZSTD_LEVEL)? as i32),
            since,
            index: Vec::with_capacity(todo.len()),
            docs: todo.len(),
            todo,
            changes: 0,
        })
    }

    /// How far it has come: (documents taken, documents in the store).
    pub fn progress(&self) -> (usize, usize) {
        (self.docs - self.todo.len(), self.docs)
    }

    /// Take more documents from `store` until `budget` is spent (at least one);
    /// true when every document has been taken.
    pub fn step(
        &mut self,
        store: &mut Store,
        budget: std::time::Duration,
    ) -> Result<bool, BackupError> {
        let mut budget = Budget::new(budget);
        while let Some(id) = self.todo.pop() {
            if budget.spent() {
                self.todo.push(id);
                break;
            }
            let name = id.to_string();
            let have = self.since.get(&name).map(|h| hashes(h)).unwrap_or_default();
            if self.kind == Kind::Snapshot || have.is_empty() {
                // A snapshot, or a document the sink lacks entirely: its saved
                // form is about half the size of its changes one by one.
                let changes = if self.kind == Kind::Bundle {
                    store.changes_since(&id, &[])?.len()
                } else {
                    0
                };
                if self.kind == Kind::Bundle && changes == 0 {
                    continue;
                }
                self.changes += changes;
                let (saved, heads) = store.save_doc(&id)?;
                self.index.push((name.clone(), raw(&heads)));
                self.writer.add(&name, raw(&heads), Form::Saved, saved);
                let proofs = Proof::encode_list(&store.proofs(&id)?);
                self.writer.add(&name, Vec::new(), Form::Proofs, proofs);
                continue;
            }
            let changes = store.changes_since(&id, &have)?;
            let heads = raw(&store.heads(&id)?);
            self.index.push((name.clone(), heads.clone()));
            if changes.is_empty() {
                continue;
            }
            self.changes += changes.len();
            let record =
                postcard::to_stdvec(&changes).map_err(|e| FormatError::Encode(e.to_string()))?;
            self.writer.add(&name, heads, Form::Changes, record);
            let proofs = Proof::encode_list(&store.proofs(&id)?);
            self.writer.add(&name, Vec::new(), Form::Proofs, proofs);
        }
        Ok(self.todo.is_empty())
    }

    /// Compress, encrypt and sign what was taken, write it to `sink` (nothing for
    /// a bundle with no changes), then this till's index there. Needs no store.
    pub fn write(self, sink: &dyn Sink) -> Result<BackupReport, BackupError> {
        let Pending {
            kind,
            created_ms,
            store,
            store_name,
            till,
            recipients,
            writer,
            index,
            changes,
            ..
        } = self;
        let mut report = BackupReport {
            name: None,
            kind,
            bytes: 0,
            docs: writer.len(),
            changes,
        };
        if !writer.is_empty() {
            let file = writer.finish_for(&till, &recipients, created_ms)?;
            let name = object_name(store, kind, &till.till_id(), created_ms);
            sink.put(&name, &file)?;
            report.bytes = file.len() as u64;
            report.name = Some(name);
        }
        let mut w = Writer::new(Kind::Index, store, &store_name);
        for (doc, heads) in index {
            w.add(&doc, heads, Form::Heads, Vec::new());
        }
        sink.put(
            &object_name(store, Kind::Index, &till.till_id(), created_ms),
            &w.finish_for(&till, &recipients, created_ms)?,
        )?;
        Ok(report)
    }
}

/// What the sink holds, by the index files of every till that wrote there.
/// Unreadable index files are skipped: the next bundle is then only larger.
pub fn sink_heads(opener: &Opener, sink: &dyn Sink) -> Result<Heads, BackupError> {
    let mut out = Heads::new();
    for obj in sink.list(&format!("{}/index/", opener.store_id()))? {
        match read(sink, &obj.name, obj.size)?.and_then(|b| opener.open(&b)) {
            Ok((_, c)) => {
                for e in c.manifest.entries {
                    let slot = out.entry(e.doc).or_default();
                    for h in e.heads {
                        if !slot.contains(&h) {
                            slot.push(h);
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(file = obj.name, error = %e, "skipping an unreadable sink index")
            }
        }
    }
    Ok(out)
}

/// What one backup wrote.
#[derive(Debug, Clone, Serialize)]
pub struct BackupReport {
    /// The object written (`None`: nothing new to write).
    pub name: Option<String>,
    /// Snapshot or bundle.
    pub kind: Kind,
    /// Its size.
    pub bytes: u64,
    /// Documents in it.
    pub docs: usize,
    /// Changes in it (bundles).
    pub changes: usize,
}

/// Write a snapshot (or, for [`Kind::Bundle`], the changes the sink lacks) of
/// `store` to `sink`, then this till's index there, holding the store throughout
/// (see [`Pending`] to let it go between steps).
pub fn backup(store: &mut Store, sink: &dyn Sink, kind: Kind) -> Result<BackupReport, BackupError> {
    let mut pending = Pending::start(store, sink, kind)?;
    while !pending.step(store, std::time::Duration::MAX)? {}
    pending.write(sink)
}

/// One file on a sink, as `backup list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    /// The object name.
    pub name: String,
    /// Snapshot or bundle.
    pub kind: Option<Kind>,
    /// Creating till.
    pub creator: Option<String>,
    /// When it was made.
    pub created_ms: Option<u64>,
    /// Key it is encrypted to.
    pub key_id: Option<String>,
    /// Size in bytes.
    pub bytes: u64,
    /// What is wrong with its header, if anything (`verify` checks the rest).
    pub problem: Option<String>,
}

/// The snapshots and bundles of `store_id` on `sink`, oldest first, from their
/// headers.
pub fn list(sink: &dyn Sink, store_id: StoreId) -> Result<Vec<Listed>, BackupError> {
    list_where(sink, store_id, |_| true)
}

/// [`list`], reading only the files whose names `wanted` accepts.
fn list_where(
    sink: &dyn Sink,
    store_id: StoreId,
    mut wanted: impl FnMut(&str) -> bool,
) -> Result<Vec<Listed>, BackupError> {
    let mut out = Vec::new();
    for obj in sink.list(&format!("{store_id}/"))? {
        if obj.name.ends_with(".tmi") || !wanted(&obj.name) {
            continue;
        }
        let bytes = sink.get_start(&obj.name, format::HEADER_LEN)?;
        let mut l = Listed {
            name: obj.name,
            kind: None,
            creator: None,
            created_ms: None,
            key_id: None,
            bytes: obj.size,
            problem: None,
        };
        match Header::decode(&bytes) {
            Ok(h) => {
                l.kind = Some(h.kind);
                l.creator = Some(h.creator.fmt_short());
                l.created_ms = Some(h.created_ms);
                l.key_id = Some(h.key_id_hex());
                if h.store != store_id {
                    l.problem = Some(FormatError::OtherStore(h.store).to_string());
                } else if let Err(e) = format::check_time(&h) {
                    l.problem = Some(e.to_string());
                }
            }
            Err(e) => l.problem = Some(e.to_string()),
        }
        out.push(l);
    }
    out.sort_by_key(|l| (l.created_ms.unwrap_or(0), l.name.clone()));
    Ok(out)
}

/// The verdict on one file.
#[derive(Debug, Clone, Serialize)]
pub struct Verified {
    /// The object name.
    pub name: String,
    /// Documents inside (when intact).
    pub docs: usize,
    /// `None` when intact, else what is wrong.
    pub error: Option<String>,
}

/// Decrypt every file (or only `name`) and check every hash and signature.
pub fn verify(
    store: &Store,
    sink: &dyn Sink,
    name: Option<&str>,
) -> Result<Vec<Verified>, BackupError> {
    verify_with(&Opener::of(store, &[])?, sink, name)
}

/// [`verify`] without the store: files are opened with `opener`, which may
/// hold extra keys (the admin till's recovery key opens files of a backup key
/// the till does not hold).
pub fn verify_with(
    opener: &Opener,
    sink: &dyn Sink,
    name: Option<&str>,
) -> Result<Vec<Verified>, BackupError> {
    verify_each(opener, sink, name, &mut |_, _| {})
}

/// [`verify_with`], telling `done(checked, total)` before the first file and
/// after each (the files to check are known once the sink is listed).
pub fn verify_each(
    opener: &Opener,
    sink: &dyn Sink,
    name: Option<&str>,
    done: &mut dyn FnMut(usize, usize),
) -> Result<Vec<Verified>, BackupError> {
    let mut out = Vec::new();
    let todo: Vec<_> = list(sink, opener.store_id())?
        .into_iter()
        .filter(|l| name.is_none_or(|n| l.name.ends_with(n)))
        .collect();
    let total = todo.len();
    done(0, total);
    for l in todo {
        let v = match read(sink, &l.name, l.bytes)?.and_then(|b| opener.open(&b)) {
            Ok((_, c)) => Verified {
                name: l.name,
                docs: c.manifest.docs(),
                error: None,
            },
            Err(e) => Verified {
                name: l.name,
                docs: 0,
                error: Some(e.to_string()),
            },
        };
        out.push(v);
        done(out.len(), total);
    }
    if let Some(n) = name
        && out.is_empty()
    {
        return Err(BackupError::NoSuchBackup(n.to_string()));
    }
    Ok(out)
}

/// What an import merged.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Imported {
    /// Documents that gained something.
    pub docs: usize,
    /// Changes new to this till.
    pub changes: usize,
    /// Whether the membership document may have gained changes: who is a
    /// member may have moved, so an [`Opener`] taken before is stale.
    #[serde(skip)]
    pub membership: bool,
}

/// Decode every record of `c` before anything is merged.
fn decode_records(c: &format::Contents) -> Result<VecDeque<Incoming>, BackupError> {
    let mut out: VecDeque<Incoming> = VecDeque::with_capacity(c.records.len());
    for (e, r) in c.manifest.entries.iter().zip(&c.records) {
        let id: DocId = e
            .doc
            .parse()
            .map_err(|_| FormatError::Damaged(format!("unknown document {}", e.doc)))?;
        let rec = match e.form {
            Form::Saved => Record::Saved(r.clone()),
            Form::Changes => Record::Changes(
                postcard::from_bytes(r)
                    .map_err(|err| FormatError::Damaged(format!("{}: {err}", e.doc)))?,
            ),
            Form::Heads => continue,
            Form::Proofs => {
                let proofs = Proof::decode_list(r)
                    .map_err(|err| FormatError::Damaged(format!("{}: {err}", e.doc)))?;
                match out.back_mut() {
                    Some(last) if last.id == id => last.proofs = proofs,
                    _ => {
                        return Err(FormatError::Damaged(format!(
                            "proofs of {} without its document",
                            e.doc
                        ))
                        .into());
                    }
                }
                continue;
            }
        };
        out.push_back(Incoming {
            id,
            rec,
            heads: hashes(&e.heads),
            proofs: Vec::new(),
        });
    }
    Ok(out)
}

/// One document of a file, to be merged.
struct Incoming {
    id: DocId,
    rec: Record,
    heads: Vec<ChangeHash>,
    proofs: Vec<Proof>,
}

enum Record {
    Saved(Vec<u8>),
    Changes(Vec<Vec<u8>>),
}

/// Whole documents merged per durable write when nothing waits for the store
/// (a restore, an import without the daemon).
const SAVED_BATCH: usize = 512;

/// Whole documents merged per durable write by a step with a time budget: about
/// 8 ms each for a till's day of 500 sales, so a step overruns its budget little.
const STEP_BATCH: usize = 4;

/// Whole documents merged per durable write by a restore that tells its
/// progress: a restore has nothing waiting for its store, so its writes are
/// larger than a live step's, yet small enough to tell how far it is often.
const RESTORE_BATCH: usize = 64;

/// An opened file being merged into a store, documents it already holds
/// skipped. Every record is decoded before anything is merged; [`Import::step`]
/// then merges for a short while at a time, so a till's store is free for sales
/// between steps (each step's writes are durable on their own).
pub struct Import {
    todo: VecDeque<Incoming>,
    docs: usize,
    done: Imported,
}

impl std::fmt::Debug for Import {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Import")
            .field("docs_left", &self.todo.len())
            .field("done", &self.done)
            .finish()
    }
}

impl Import {
    /// Decode the records of an opened file.
    pub fn new(c: &format::Contents) -> Result<Import, BackupError> {
        let mut todo = decode_records(c)?;
        // Membership first: the changes of a till the file's membership
        // certifies are proven by that till, and a step that merged them
        // before the membership would refuse them.
        if let Some(i) = todo.iter().position(|r| r.id == DocId::Membership)
            && let Some(m) = todo.remove(i)
        {
            todo.push_front(m);
        }
        Ok(Import {
            docs: todo.len(),
            todo,
            done: Imported::default(),
        })
    }

    /// How far it has come: (documents merged or found held, documents in the
    /// file).
    pub fn progress(&self) -> (usize, usize) {
        (self.docs - self.todo.len(), self.docs)
    }

    /// Merge documents into `store` until `budget` is spent (at least one); true
    /// when every document has been merged.
    pub fn step(
        &mut self,
        store: &mut Store,
        budget: std::time::Duration,
    ) -> Result<bool, BackupError> {
        let batch = if budget == std::time::Duration::MAX {
            SAVED_BATCH
        } else {
            STEP_BATCH
        };
        self.step_in(store, budget, batch)
    }

    /// [`Import::step`] with `batch` whole documents per durable write.
    fn step_in(
        &mut self,
        store: &mut Store,
        budget: std::time::Duration,
        batch: usize,
    ) -> Result<bool, BackupError> {
        let mut budget = Budget::new(budget);
        let mut saved: Vec<(DocId, Vec<u8>, Vec<Proof>)> = Vec::new();
        while let Some(next) = self.todo.pop_front() {
            if budget.spent() {
                self.todo.push_front(next);
                break;
            }
            if store.holds(&next.id, &next.heads)? {
                continue;
            }
            match next.rec {
                Record::Saved(bytes) => {
                    saved.push((next.id, bytes, next.proofs));
                    if saved.len() == batch {
                        merge_saved(store, &mut saved, &mut self.done)?;
                    }
                }
                Record::Changes(changes) => {
                    let r = store.apply_changes(&next.id, &changes, &next.proofs)?;
                    if r.new_changes > 0 {
                        self.done.docs += 1;
                        self.done.changes += r.new_changes;
                        self.done.membership |= next.id == DocId::Membership;
                    }
                }
            }
        }
        merge_saved(store, &mut saved, &mut self.done)?;
        Ok(self.todo.is_empty())
    }

    /// What was merged so far.
    pub fn imported(&self) -> Imported {
        self.done
    }
}

/// Merge an opened file into `store` in one go, skipping documents it already
/// holds.
fn merge(store: &mut Store, c: &format::Contents) -> Result<Imported, BackupError> {
    let mut import = Import::new(c)?;
    while !import.step(store, std::time::Duration::MAX)? {}
    Ok(import.imported())
}

/// [`merge`] for a restore into a new till home: a file made before signed
/// changes (manifest version 1) carries no proofs of authorship, and its
/// history is accepted on the word of its signer, a member (checked before it
/// was opened). Imports into a running till never take this path.
fn merge_restoring(
    store: &mut Store,
    c: &format::Contents,
    tell: &dyn Fn(usize, usize),
) -> Result<Imported, BackupError> {
    let legacy = c.manifest.version < format::MANIFEST_VERSION;
    if legacy {
        tracing::warn!(
            "restoring a backup made before signed changes: its history is accepted as it stands"
        );
        store.accept_legacy_history(true)?;
    }
    let r = (|| {
        let mut import = Import::new(c)?;
        // In steps of a tenth of a second, saying how far it is after each.
        loop {
            let done =
                import.step_in(store, std::time::Duration::from_millis(100), RESTORE_BATCH)?;
            let (n, total) = import.progress();
            tell(n, total);
            if done {
                return Ok(import.imported());
            }
        }
    })();
    if legacy {
        store.accept_legacy_history(false)?;
    }
    r
}

fn merge_saved(
    store: &mut Store,
    batch: &mut Vec<(DocId, Vec<u8>, Vec<Proof>)>,
    done: &mut Imported,
) -> Result<(), BackupError> {
    if batch.is_empty() {
        return Ok(());
    }
    let docs: Vec<(DocId, &[u8], Vec<Proof>)> = batch
        .iter_mut()
        .map(|(id, b, p)| (*id, b.as_slice(), std::mem::take(p)))
        .collect();
    let r = store.apply_saved_many(&docs)?;
    if r.new_changes > 0 {
        done.docs += docs.len();
        done.changes += r.new_changes;
        done.membership |= docs.iter().any(|(id, ..)| *id == DocId::Membership);
    }
    batch.clear();
    Ok(())
}

/// Check, decrypt and merge one file into `store`. A file not signed by a
/// member is refused before anything of it is read.
pub fn import(store: &mut Store, bytes: &[u8]) -> Result<Imported, BackupError> {
    import_with(store, &Opener::of(store, &[])?, bytes)
}

/// [`import`], opening the file with `opener`.
fn import_with(store: &mut Store, opener: &Opener, bytes: &[u8]) -> Result<Imported, BackupError> {
    let (_, c) = opener.open(bytes)?;
    merge(store, &c)
}

/// Read file `name` of `size` bytes (as listed) whole, once its header shows
/// that size is right and within [`format::MAX_BODY`]: a file announcing more,
/// or whose size does not match its header, is refused (`Ok(Err)`) after
/// reading its header alone. `Err` when the sink fails.
pub fn read(
    sink: &dyn Sink,
    name: &str,
    size: u64,
) -> Result<Result<Vec<u8>, FormatError>, SinkError> {
    let start = sink.get_start(name, format::HEADER_LEN)?;
    let checked = Header::decode(&start).and_then(|h| format::check_size(&h, size));
    if let Err(e) = checked {
        return Ok(Err(e));
    }
    match sink.get_limited(name, size) {
        // It grew since it was listed.
        Err(SinkError::TooLarge { .. }) => Ok(Err(FormatError::TrailingBytes)),
        other => other.map(Ok),
    }
}

/// Read and open a listed file: `Err` when the sink fails (the medium is
/// gone: stop), `Ok(Err)` when this file is refused (too large, damaged,
/// forged, encrypted to a key this till lacks: go on with the next).
pub fn open_listed(
    sink: &dyn Sink,
    opener: &Opener,
    l: &Listed,
) -> Result<Result<(Header, format::Contents), FormatError>, SinkError> {
    Ok(read(sink, &l.name, l.bytes)?.and_then(|b| opener.open(&b)))
}

/// What `usb sync` moved.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UsbReport {
    /// Files read from the stick.
    pub files_read: usize,
    /// Files passed over because this till imported them before.
    pub files_known: usize,
    /// Changes new to this till.
    pub imported_changes: usize,
    /// Files refused, with why.
    pub refused: Vec<(String, String)>,
    /// The bundle written to the stick, if anything was new to it.
    pub exported: Option<String>,
    /// Changes in it.
    pub exported_changes: usize,
    /// Files whose every document this till now holds: they need not be read
    /// again.
    #[serde(skip)]
    pub imported_files: Vec<String>,
    /// The tills (short ids) whose files brought this till new changes: they
    /// reached it this way.
    #[serde(skip)]
    pub brought_by: BTreeSet<String>,
}

impl UsbReport {
    /// Count the outcome of importing listed file `l`; true when it may have
    /// moved the membership (take a new [`Opener`]).
    pub fn add(&mut self, l: &Listed, result: Result<Imported, BackupError>) -> bool {
        self.files_read += 1;
        match result {
            Ok(i) => {
                self.imported_changes += i.changes;
                self.imported_files.push(l.name.clone());
                if let Some(creator) = l.creator.as_ref().filter(|_| i.changes > 0) {
                    self.brought_by.insert(creator.clone());
                }
                i.membership
            }
            Err(e) => {
                tracing::warn!(file = l.name, error = %e, "refused a file on the stick");
                self.refused.push((l.name.clone(), e.to_string()));
                false
            }
        }
    }

    /// Count the bundle written to the stick.
    pub fn exported(&mut self, b: BackupReport) {
        self.exported = b.name;
        self.exported_changes = b.changes;
    }
}

/// The files on a stick that `usb sync` reads: the store's snapshots and
/// bundles not made by this till (`me`) and not among `known` (imported
/// before), oldest first; how many were known is in the second place.
pub fn usb_files(
    sink: &dyn Sink,
    store_id: StoreId,
    me: &TillId,
    known: &BTreeSet<String>,
) -> Result<(Vec<Listed>, usize), BackupError> {
    let me = me.fmt_short();
    let mut skipped = 0;
    let files = list_where(sink, store_id, |name| {
        let k = known.contains(name);
        skipped += usize::from(k);
        !k
    })?
    .into_iter()
    .filter(|l| l.creator.as_deref() != Some(me.as_str()))
    .collect();
    Ok((files, skipped))
}

/// Import what the stick has and this till lacks, then export what the stick
/// lacks: one command, both ways. Files are opened with the store's keys and
/// `extra` (the recovery key on the admin till); files named in `known`
/// (imported before) are not read again.
pub fn usb_sync(
    store: &mut Store,
    sink: &dyn Sink,
    extra: &[StoreSecret],
    known: &BTreeSet<String>,
) -> Result<UsbReport, BackupError> {
    let mut opener = Opener::of(store, extra)?;
    let (files, files_known) = usb_files(sink, store.store_id(), &store.till_id(), known)?;
    let mut report = UsbReport {
        files_known,
        ..UsbReport::default()
    };
    for l in files {
        let result = open_listed(sink, &opener, &l)?
            .map_err(BackupError::from)
            .and_then(|(_, c)| merge(store, &c));
        if report.add(&l, result) {
            opener = Opener::of(store, extra)?;
        }
    }
    report.exported(backup(store, sink, Kind::Bundle)?);
    Ok(report)
}

/// Which snapshot a restore starts from.
#[derive(Debug, Clone)]
pub enum Pick {
    /// The newest intact snapshot.
    Newest,
    /// The snapshot whose name ends with this text (no fallback).
    Named(String),
    /// The newest intact snapshot at or before this time, with the bundles up to
    /// it: the state as it was then.
    At(u64),
}

/// What a restore needs to know and may use.
#[derive(Debug)]
pub struct RestoreSpec<'a> {
    /// The store.
    pub store_id: StoreId,
    /// Its admin public key: the trust root for who may sign backups.
    pub admin: TillId,
    /// Store keys to decrypt with; the new till keeps them.
    pub secrets: &'a [StoreSecret],
    /// The store's recovery key, from a recovery file: it opens files whose
    /// backup key is not among `secrets`. The new till's store never holds it
    /// (a store hands its keys to the tills that join).
    pub recovery: Option<&'a StoreSecret>,
    /// The new till's home folder (must not hold a till yet).
    pub home: &'a Path,
    /// The new till's key.
    pub key: TillKey,
    /// The new till's name.
    pub till_name: TillName,
    /// The admin key, when at hand: the new till is then certified at once.
    pub certify_with: Option<&'a TillKey>,
    /// Which snapshot.
    pub pick: Pick,
}

/// What a restore did.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    /// The snapshot restored.
    pub snapshot: String,
    /// Bundles applied after it.
    pub bundles: Vec<String>,
    /// Files passed over, with why (damaged, forged, after the chosen time).
    pub skipped: Vec<(String, String)>,
    /// Documents restored.
    pub docs: usize,
}

/// The store file of a till home.
pub const STORE_FILE: &str = "store.redb";

/// Restore a store from `sink` into a new till home.
pub fn restore(sink: &dyn Sink, spec: RestoreSpec<'_>) -> Result<RestoreReport, BackupError> {
    restore_with(sink, spec, &|_, _, _| {})
}

/// [`restore`], telling `tell` how far it is: (`snapshot`, documents merged,
/// of how many) as the snapshot goes in, then (`bundles`, bundles merged, of
/// how many), at least every tenth of a second while it works.
pub fn restore_with(
    sink: &dyn Sink,
    spec: RestoreSpec<'_>,
    tell: &dyn Fn(&str, usize, usize),
) -> Result<RestoreReport, BackupError> {
    let path = spec.home.join(STORE_FILE);
    if path.exists() {
        return Err(BackupError::HomeInUse(spec.home.display().to_string()));
    }
    let openers: Vec<StoreSecret> = spec.secrets.iter().chain(spec.recovery).cloned().collect();
    let listed = list(sink, spec.store_id)?;
    let mut snapshots: Vec<&Listed> = listed
        .iter()
        .filter(|l| l.kind == Some(Kind::Snapshot) && l.problem.is_none())
        .collect();
    snapshots.reverse();
    let mut skipped = Vec::new();
    for l in snapshots {
        let created = l.created_ms.unwrap_or(0);
        match &spec.pick {
            Pick::Named(n) if !l.name.ends_with(n.as_str()) => continue,
            Pick::At(t) if created > *t => continue,
            _ => {}
        }
        // Membership is checked once the snapshot's membership document is in.
        let opened = read(sink, &l.name, l.bytes)?
            .and_then(|b| format::open(&b, spec.store_id, &openers, |_| true));
        let (header, contents) = match opened {
            Ok(o) => o,
            Err(e) => {
                if matches!(spec.pick, Pick::Named(_)) {
                    return Err(BackupError::Damaged {
                        name: l.name.clone(),
                        source: e,
                    });
                }
                tracing::warn!(file = l.name, error = %e, "skipping a damaged snapshot");
                skipped.push((l.name.clone(), e.to_string()));
                continue;
            }
        };
        std::fs::create_dir_all(spec.home).map_err(|e| SinkError::Io {
            path: spec.home.display().to_string(),
            reason: e.to_string(),
        })?;
        let result = restore_into(
            &path,
            &spec,
            &l.name,
            &header,
            &contents,
            &listed,
            skipped.clone(),
            sink,
            tell,
        );
        if result.is_err() {
            let _ = std::fs::remove_file(&path);
        }
        match result {
            // Signed by a till that everything restored says is no member (a
            // revocation in a later file, say): an older snapshot may do.
            Err(BackupError::Damaged {
                name,
                source: e @ FormatError::NotMember(_),
            }) if !matches!(spec.pick, Pick::Named(_)) => {
                tracing::warn!(file = name, error = %e, "skipping a snapshot of a till that is no member");
                skipped.push((name, e.to_string()));
            }
            other => return other,
        }
    }
    Err(BackupError::NoSnapshot {
        at: match spec.pick {
            Pick::At(t) => Some(t),
            _ => None,
        },
        oldest_ms: listed
            .iter()
            .filter(|l| l.kind == Some(Kind::Snapshot))
            .filter_map(|l| l.created_ms)
            .min(),
        skipped,
    })
}

#[allow(clippy::too_many_arguments)]
fn restore_into(
    path: &Path,
    spec: &RestoreSpec<'_>,
    name: &str,
    header: &Header,
    contents: &format::Contents,
    listed: &[Listed],
    mut skipped: Vec<(String, String)>,
    sink: &dyn Sink,
    tell: &dyn Fn(&str, usize, usize),
) -> Result<RestoreReport, BackupError> {
    let mut store = Store::create(
        path,
        spec.key.clone(),
        NewStore {
            store_id: spec.store_id,
            store_name: contents.manifest.store_name.clone(),
            till_name: spec.till_name.clone(),
            role: Role::Till,
            founder: false,
        },
        StoreOptions::default(),
    )?;
    store.set_admin_key(spec.admin)?;
    for s in spec.secrets {
        store.add_store_secret(s.clone())?;
    }
    merge_restoring(&mut store, contents, &|n, total| tell("snapshot", n, total))?;
    let not_member = || BackupError::Damaged {
        name: name.to_string(),
        source: FormatError::NotMember(header.creator),
    };
    if !is_member(&store, &header.creator) {
        return Err(not_member());
    }
    // The store now holds the keys, the snapshot's members and the admin key.
    let recovery: &[StoreSecret] = spec.recovery.map(std::slice::from_ref).unwrap_or(&[]);
    let mut opener = Opener::of(&store, recovery)?;
    let mut bundles = Vec::new();
    let wanted: Vec<&Listed> = listed
        .iter()
        .filter(|l| {
            let created = l.created_ms.unwrap_or(0);
            l.kind == Some(Kind::Bundle)
                && created > header.created_ms
                && !matches!(spec.pick, Pick::At(t) if created > t)
        })
        .collect();
    for (i, l) in wanted.iter().enumerate() {
        tell("bundles", i, wanted.len());
        let merged = read(sink, &l.name, l.bytes)?
            .map_err(BackupError::from)
            .and_then(|b| opener.open(&b).map_err(BackupError::from))
            .and_then(|(_, c)| merge_restoring(&mut store, &c, &|_, _| {}));
        match merged {
            Ok(i) => {
                bundles.push(l.name.clone());
                if i.membership {
                    opener = Opener::of(&store, recovery)?;
                }
            }
            Err(e) => {
                tracing::warn!(file = l.name, error = %e, "skipping a bundle");
                skipped.push((l.name.clone(), e.to_string()));
            }
        }
    }
    if !wanted.is_empty() {
        tell("bundles", wanted.len(), wanted.len());
    }
    // The snapshot's signer once more, by the membership of everything
    // restored: a revocation in a later file (which the signer's own snapshot
    // may leave out) counts.
    if !is_member(&store, &header.creator) {
        return Err(not_member());
    }
    if let Some(admin) = spec.certify_with {
        let role = Role::Till;
        store.certify(admin, spec.key.till_id(), &spec.till_name, role)?;
    }
    let docs = store.doc_ids()?.len();
    Ok(RestoreReport {
        snapshot: name.to_string(),
        bundles,
        skipped,
        docs,
    })
}

impl BackupError {
    /// The kind of sink failure this is, when a sink failed.
    pub fn sink_kind(&self) -> Option<crate::SinkErrorKind> {
        match self {
            BackupError::Sink(e) => Some(e.kind()),
            _ => None,
        }
    }

    /// How long the sink asked to wait before the next try, if it said.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            BackupError::Sink(e) => e.retry_after(),
            _ => None,
        }
    }
}

/// A backup operation that failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    /// The sink failed.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// A file could not be made or opened.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// A named file could not be opened.
    #[error("{name}: {source}")]
    Damaged {
        /// The object.
        name: String,
        /// Why.
        source: FormatError,
    },
    /// This till holds no store key.
    #[error(
        "this till holds no store backup key (a till gets it at `init` or `join`); re-join the store"
    )]
    NoKey,
    /// No such backup.
    #[error("no backup named {0} on this sink")]
    NoSuchBackup(String),
    /// No usable snapshot.
    #[error("{}", no_snapshot(*at, *oldest_ms, skipped))]
    NoSnapshot {
        /// The time asked for, if any.
        at: Option<u64>,
        /// When the oldest snapshot on the sink was made, if there is one.
        oldest_ms: Option<u64>,
        /// Files passed over.
        skipped: Vec<(String, String)>,
    },
    /// The target home already holds a till.
    #[error("{0} already holds a till; restore into a new, empty folder")]
    HomeInUse(String),
    /// The store failed.
    #[error(transparent)]
    Storage(#[from] tillmesh_store::StorageError),
    /// Merging failed.
    #[error(transparent)]
    Apply(#[from] tillmesh_store::ApplyError),
    /// Creating the new store failed.
    #[error(transparent)]
    Open(#[from] tillmesh_store::OpenStoreError),
    /// Membership failed.
    #[error(transparent)]
    Membership(#[from] tillmesh_store::MembershipError),
}

/// A time as UTC text, `2026-11-24T18:00:00Z`.
fn utc(ms: u64) -> String {
    let s = (ms / 1000) % 86_400;
    format!(
        "{}T{:02}:{:02}:{:02}Z",
        tillmesh_store::Day::from_unix_ms(ms),
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

fn no_snapshot(at: Option<u64>, oldest_ms: Option<u64>, skipped: &[(String, String)]) -> String {
    let mut m = match (at, oldest_ms) {
        (Some(t), Some(o)) if o > t => format!(
            "no snapshot at or before {}; the oldest on this sink is from {}",
            utc(t),
            utc(o)
        ),
        (_, None) if skipped.is_empty() => "this sink holds no snapshot of the store".to_string(),
        _ => "no intact snapshot to restore from".to_string(),
    };
    if !skipped.is_empty() {
        m.push_str(&format!(" ({} damaged skipped)", skipped.len()));
    }
    m
}
