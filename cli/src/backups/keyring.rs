//! The store's backup keys in the till home: `store.keys` (the store id, the
//! admin public key and the backup keys, so a restore can run beside a
//! daemon), the admin till's `recovery.key`, rotation, and `tillmesh keys`.

use super::*;

/// The keys file of a till home.
pub fn keys_path(home: &Path) -> PathBuf {
    crate::home::path(home, HomeFile::StoreKeys)
}

/// What `store.keys` holds.
#[derive(Serialize, Deserialize)]
pub(super) struct KeysFile {
    version: u16,
    pub(super) store_id: String,
    pub(super) admin: String,
    pub(super) secrets: Vec<StoreSecret>,
}

/// Whether a backup key's id is the id of its public half (a fetched key is
/// kept only then).
pub fn key_matches_id(k: &StoreSecret) -> bool {
    keys::recipient_of(k).is_some_and(|r| r.id == k.key_id)
}

/// Whether this till holds the admin key its store's trust root names (set by
/// `Ctx::open` from `admin.key`); a file's presence alone proves nothing.
pub(super) fn is_admin_till(store: &Store) -> bool {
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
pub(super) fn recovery_keys(home: &Path) -> Vec<StoreSecret> {
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
/// new one: the store's setting `keys/rotation_days` (30 by default).
pub fn key_max_age(store: &Store) -> Result<Duration> {
    Ok(Duration::from_secs(
        store.setting(tillmesh_store::settings::KEY_ROTATION)? * 86_400,
    ))
}

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
/// [`key_max_age`]; elsewhere nothing.
pub fn rotate_if_due(store: &mut Store, home: &Path) -> Result<Option<StoreSecret>> {
    if !is_admin_till(store) {
        return Ok(None);
    }
    let newest = store.store_secrets()?.iter().map(|k| k.created_ms).max();
    match newest {
        Some(t) if now_ms().saturating_sub(t) < key_max_age(store)?.as_millis() as u64 => Ok(None),
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
    write_keys(home, store.store_id(), admin, store.store_secrets()?)
}

/// Write `store.keys` (mode 0600): the store id, its admin public key (empty
/// when not known) and its backup keys.
pub(super) fn write_keys(
    home: &Path,
    store_id: StoreId,
    admin: String,
    secrets: Vec<StoreSecret>,
) -> Result<()> {
    let file = KeysFile {
        version: 1,
        store_id: store_id.to_string(),
        admin,
        secrets,
    };
    write_private(&keys_path(home), &serde_json::to_vec_pretty(&file)?)?;
    // The store's Google login follows the keys.
    if let Err(e) = crate::drive::reseal(home) {
        tracing::warn!(error = %format!("{e:#}"), "cannot seal the Google login to the store's new key");
    }
    Ok(())
}

/// The store's backup keys this home holds (none when it has no `store.keys`).
pub fn store_secrets(home: &Path) -> Result<Vec<StoreSecret>> {
    if !keys_path(home).exists() {
        return Ok(Vec::new());
    }
    Ok(read_keys_file(home)?.secrets)
}

/// The store id, as `store.keys` names it.
pub fn store_id_of(home: &Path) -> Result<String> {
    Ok(read_keys_file(home)?.store_id)
}

pub(super) fn read_keys_file(home: &Path) -> Result<KeysFile> {
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
