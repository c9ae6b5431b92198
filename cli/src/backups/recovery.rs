//! Recovery files: `recovery create` (the passphrase is the caller's), the
//! record of the last one written and whether it went stale, opening one, and
//! `recovery restore` / `recovery drill`.

use super::*;

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
pub(super) fn passphrase() -> Result<String> {
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
pub(super) struct RecoveryState {
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

pub(super) fn recovery_state_path(home: &Path) -> PathBuf {
    crate::home::path(home, HomeFile::RecoveryState)
}

pub(super) fn record_recovery(home: &Path, file: &Path, r: &keys::Recovery) -> Result<()> {
    let st = RecoveryState {
        version: 2,
        made_ms: now_ms(),
        file: file.display().to_string(),
        key_ids: r.secrets.iter().map(|k| k.key_id.clone()).collect(),
        recovery_key: r.recovery.as_ref().map(|k| k.key_id.clone()),
    };
    write_private(&recovery_state_path(home), &serde_json::to_vec_pretty(&st)?)
}

pub(super) fn recovery_state(home: &Path) -> Option<RecoveryState> {
    let bytes = std::fs::read(recovery_state_path(home)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Whether the last recovery file holds the store's recovery key: then it reads
/// every backup, whatever key rotations came after it.
pub(super) fn holds_recovery_key(store: &Store, st: &RecoveryState) -> Result<bool> {
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
pub(super) fn work_factor() -> u8 {
    crate::core::caller_env("TILLMESH_SCRYPT_WORK_FACTOR")
        .and_then(|v| v.parse().ok())
        .unwrap_or(18)
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

/// `tillmesh recovery restore FILE --from DIR|--drive [FOLDER] --home NEWDIR` and
/// `tillmesh recovery drill FILE --from SINK|DIR`.
pub fn recovery(home: &Path, c: &RecoveryCmd, out: &mut dyn Write) -> Result<()> {
    let (file, from, drive, google, till) = match c {
        RecoveryCmd::Restore {
            file,
            from,
            drive,
            google,
            till,
        } => (file, from, drive, google, till),
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
    // From a folder, or from Google Drive after a sign-in (the new machine
    // has no login yet).
    let (sink, signed): (Box<dyn Sink>, _) = match (from, drive) {
        (Some(dir), _) => (Box::new(FolderSink::new(dir)?), None),
        (None, Some(folder)) => {
            let folder = match folder.as_str() {
                "" => format!("tillmesh-{}", opened.store_id),
                f => f.to_string(),
            };
            let signed = crate::drive::sign_in(google, out)?;
            (Box::new(signed.sink(&folder)?), Some((signed, folder)))
        }
        (None, None) => return Err(rejected("give --from DIR or --drive [FOLDER]")),
    };
    let shown = crate::progress::Shown::new("restore", false);
    let report = restore_home(home, &*sink, till, &opened.source(), Pick::Newest, &shown)?;
    shown.finish();
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
    if let Some((signed, folder)) = signed {
        // The new till backs up where it was restored from, with that login.
        crate::drive::keep_login(home, &signed, &store_secrets(home)?)?;
        let policy = Policy::default().to_string();
        sink_add(home, "drive", "drive", Path::new(&folder), &policy)?;
        writeln!(
            out,
            "The Google login is kept for the store, and the sink `drive` backs up to the Drive folder {folder}"
        )?;
    }
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
pub(super) fn recovery_drill(home: &Path, file: &Path, from: &str) -> Result<DrillReport> {
    let opened = OpenedRecovery::read(file)?;
    let (_, sink, _) = resolve(home, from)?;
    // Removed when dropped, on every return below: it holds keys of the store.
    let scratch = tempfile::Builder::new()
        .prefix("tillmesh-drill-")
        .tempdir()
        .context("cannot make a temporary folder for the drill")?;
    let tmp_home = scratch.path().join("home");
    let shown = crate::progress::Shown::new("drill", true);
    let restored = restore_home(
        &tmp_home,
        &*sink,
        "DRILL",
        &opened.source(),
        Pick::Newest,
        &shown,
    )?;
    let mut store = open_home(&tmp_home)?;
    let docs = store.doc_ids()?;
    for id in &docs {
        store
            .heads(id)
            .map_err(|e| Damaged(format!("restored document {id} does not load: {e}")))?;
    }
    let extra: Vec<StoreSecret> = opened.r.recovery.iter().cloned().collect();
    let opener = Opener::of(&store, &extra)?;
    let verdicts = archive::verify_with(&opener, &*sink, None)?;
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
    let newest_backup = archive::list(&*sink, opened.store_id)?
        .iter()
        .filter(|l| l.problem.is_none())
        .filter_map(|l| l.created_ms)
        .max();
    let report = DrillReport {
        from: sink.describe(),
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

pub(super) fn print_drill(r: &DrillReport, json: bool, out: &mut dyn Write) -> Result<()> {
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
