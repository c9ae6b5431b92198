//! `tillmesh restore`: a new till home from a sink's snapshots and bundles,
//! at a point in time if asked, never over a live till.

use super::*;

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

pub(super) fn print_restore(
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

pub(super) fn new_home(home: &Path) -> Result<()> {
    if home.join(HomeFile::Store.name()).exists() || home.join(HomeFile::TillKey.name()).exists() {
        return Err(rejected(format!(
            "{} already holds a till; restore into a new, empty folder",
            home.display()
        )));
    }
    crate::commands::create_home(home)
}

/// A till restored with the admin till's keys, for that till to certify.
#[derive(Debug, Clone)]
pub struct ToCertify {
    /// The restored till's id.
    pub till: TillId,
    /// Its name.
    pub name: String,
    /// The admin till's home.
    pub admin_home: PathBuf,
}

/// `tillmesh restore --from DIR --home NEWDIR`. With `--certify`, the new
/// till for the admin till (whose keys were used) to certify in its own store.
pub fn restore(home: &Path, a: &RestoreArgs, out: &mut dyn Write) -> Result<Option<ToCertify>> {
    let source = a
        .keys
        .clone()
        .or_else(|| std::env::var_os("TILLMESH_HOME").map(PathBuf::from))
        .filter(|k| k != home)
        .ok_or_else(|| {
            rejected("restore needs the store keys of a till: run it with TILLMESH_HOME set to a till of the store, or pass --keys DIR")
        })?;
    let kf = read_keys_file(&source)?;
    // A configured sink of the till the keys come from (Google Drive, say),
    // else a folder, as `backup --to` reads it.
    let (_, sink, _) = resolve(&source, &a.from.to_string_lossy())?;
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
    let keys_home = source;
    let source = Source {
        store_id,
        admin,
        secrets: &kf.secrets,
        recovery: None,
        certify_with: certify.as_ref(),
    };
    let shown = crate::progress::Shown::new("restore", a.json);
    let report = restore_home(home, &*sink, &a.till, &source, pick, &shown)?;
    shown.finish();
    print_restore(&report, home, a.json, out)?;
    if !a.certify {
        return Ok(None);
    }
    let till = TillKey::load(&home.join(HomeFile::TillKey.name()))?.till_id();
    if certify.is_none() {
        return Err(rejected(format!(
            "restored into {}, but only the admin till certifies a till: there, run \
             tillmesh admin certify {till} --name {}",
            home.display(),
            a.till
        )));
    }
    Ok(Some(ToCertify {
        till,
        name: a.till.clone(),
        admin_home: keys_home,
    }))
}

/// What a restore trusts and decrypts with: from a till's `store.keys`, or from
/// the recovery file.
pub(super) struct Source<'a> {
    pub(super) store_id: StoreId,
    pub(super) admin: TillId,
    pub(super) secrets: &'a [StoreSecret],
    /// The store's recovery key (from a recovery file): decrypts, is never
    /// put into the new till's store.
    pub(super) recovery: Option<&'a StoreSecret>,
    pub(super) certify_with: Option<&'a TillKey>,
}

/// Restore from the folder `from` into the new till home `home` (a fresh till
/// key, and `store.keys`).
pub(super) fn restore_home(
    home: &Path,
    from: &dyn Sink,
    till: &str,
    source: &Source<'_>,
    pick: Pick,
    shown: &crate::progress::Shown,
) -> Result<archive::RestoreReport> {
    let till_name = till.parse().map_err(|e| rejected(format!("{e}")))?;
    let existed = home.exists();
    new_home(home)?;
    let result = restore_new_home(home, from, till_name, source, pick, shown);
    if result.is_err() && !existed {
        // Leave nothing behind that looks like a till home.
        let _ = std::fs::remove_dir_all(home);
    }
    result
}

pub(super) fn restore_new_home(
    home: &Path,
    from: &dyn Sink,
    till_name: tillmesh_store::TillName,
    source: &Source<'_>,
    pick: Pick,
    shown: &crate::progress::Shown,
) -> Result<archive::RestoreReport> {
    let key = TillKey::generate();
    let report = archive::restore_with(
        from,
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
        &|step, done, total| shown.tell(step, done, total),
    )
    .map_err(restore_error)?;
    key.save(&home.join(HomeFile::TillKey.name()))?;
    write_keys(
        home,
        source.store_id,
        source.admin.to_string(),
        source.secrets.to_vec(),
    )?;
    Ok(report)
}

pub(super) fn restore_error(e: BackupError) -> anyhow::Error {
    match e {
        BackupError::NoSnapshot { ref skipped, .. } if skipped.is_empty() => e.into(),
        BackupError::Damaged { .. } | BackupError::NoSnapshot { .. } => {
            Damaged(e.to_string()).into()
        }
        BackupError::HomeInUse(_) => rejected(e.to_string()),
        other => other.into(),
    }
}

pub(super) fn open_home(home: &Path) -> Result<Store> {
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
pub(super) fn take_over_keys(home: &Path) -> Result<Option<StoreSecret>> {
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
