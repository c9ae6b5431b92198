//! `tillmesh usb`: removable devices, and a sync with a stick in steps (files
//! read beside the store, documents merged a step at a time).

use super::*;

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
    let sink: OpenSink = std::sync::Arc::new(FolderSink::new(dir)?);
    let place = Place::Stick(dir.display().to_string());
    sync_through(store, home, sink, &place, json, progress).await
}

/// Where a sync through a sink went: a stick, or a remote sink used as the
/// store's mailbox (Google Drive).
#[derive(Debug, Clone)]
pub enum Place {
    /// A USB stick (or any folder) at this path.
    Stick(String),
    /// A remote sink of this name; the files of the tills named (short ids)
    /// are not read this time (the mesh brings their changes).
    Mailbox(String, BTreeSet<String>),
}

impl Place {
    fn noun(&self) -> &'static str {
        match self {
            Place::Stick(_) => "the stick",
            Place::Mailbox(..) => "Google Drive",
        }
    }

    /// The path other tills' changes take through it, as `status` names it.
    fn via(&self) -> &'static str {
        match self {
            Place::Stick(_) => "usb",
            Place::Mailbox(..) => "drive",
        }
    }
}

/// Sync with the other tills through `sink`: import the files they left there
/// that this till lacks, then leave a bundle of what the sink lacks. Files are
/// read, decrypted and checked beside the store and merged
/// [`archive::STEP_TIME`] at a time. `usb sync` carries a stick between tills;
/// Google Drive serves as a mailbox between tills with no other path.
pub async fn sync_through(
    store: &StoreHandle,
    home: &Path,
    sink: OpenSink,
    place: &Place,
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
    let (s2, id) = (sink.clone(), opener.store_id());
    let (mut known, listed) = tokio::task::spawn_blocking(move || {
        let known = load_usb_known(&h2);
        let listed = archive::usb_files(&*s2, id, &me, &known.files);
        (known, listed)
    })
    .await?;
    let (mut files, files_known) = listed?;
    if let Place::Mailbox(_, skip) = place {
        files.retain(|l| l.creator.as_ref().is_none_or(|c| !skip.contains(c)));
    }
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
            Ok(archive::open_listed(&*s2, &o2, &l2)?
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
        if r.add(&l, result) {
            let ex = extra.clone();
            opener = store.call(move |s| Opener::of(s, &ex)).await??;
        }
    }
    r.exported(stepped_backup(store, &sink, Kind::Bundle, progress).await??);
    remember_usb(home, &mut known, &r, place);
    crate::metrics::changes_received(place.via(), r.imported_changes as u64);
    let (p2, r2) = (place.clone(), r.clone());
    store.call(move |s| record_usb(s, &p2, &r2)).await?;
    let mut out = Vec::new();
    print_usb(&r, place, json, &mut out)?;
    Ok(out)
}

/// Files on USB sticks this till has imported whole, so `usb sync` need not
/// read them again (object names are unique: creation time, till, nonce).
pub(super) fn usb_known_path(home: &Path) -> PathBuf {
    crate::home::path(home, HomeFile::UsbImported)
}

/// Names kept in [`usb_known_path`]; the oldest are forgotten beyond it (and
/// only read again, harmlessly, if still on a stick).
pub(super) const USB_KNOWN_LIMIT: usize = 50_000;

/// The content of [`usb_known_path`]. Version 2 added `arrivals`.
#[derive(Serialize, Deserialize)]
pub(super) struct UsbKnown {
    version: u32,
    files: BTreeSet<String>,
    /// By till (short id): how its changes last reached this till through a
    /// file.
    #[serde(default)]
    arrivals: BTreeMap<String, Arrival>,
}

/// How another till's changes last reached this one through a file it made:
/// on a stick (`usb`) or through the store's Drive folder (`drive`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Arrival {
    /// `usb` or `drive`.
    pub via: String,
    /// When (unix ms).
    pub at: u64,
}

/// By till (short id): how its changes last reached this till through a file
/// (the mesh's paths are the daemon's to tell).
pub fn file_arrivals(home: &Path) -> BTreeMap<String, Arrival> {
    load_usb_known(home).arrivals
}

pub(super) fn load_usb_known(home: &Path) -> UsbKnown {
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
            version: USB_KNOWN_VERSION,
            files: BTreeSet::new(),
            arrivals: BTreeMap::new(),
        },
    }
}

/// The version of [`UsbKnown`] this version writes.
const USB_KNOWN_VERSION: u32 = 2;

pub(super) fn remember_usb(
    home: &Path,
    known: &mut UsbKnown,
    r: &archive::UsbReport,
    place: &Place,
) {
    if r.imported_files.is_empty() {
        return;
    }
    let at = now_ms();
    for till in &r.brought_by {
        let via = place.via().to_string();
        known.arrivals.insert(till.clone(), Arrival { via, at });
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
    known.version = USB_KNOWN_VERSION;
    let result = serde_json::to_vec(&*known)
        .map_err(anyhow::Error::from)
        .and_then(|b| write_private(&usb_known_path(home), &b));
    if let Err(e) = result {
        tracing::warn!(error = %e, "cannot remember the files imported from the stick");
    }
}

/// Audit a sync through a stick or a mailbox that moved something.
pub(super) fn record_usb(store: &mut Store, place: &Place, r: &archive::UsbReport) {
    let (kind, at) = match place {
        Place::Stick(dir) => ("usb-sync", dir),
        Place::Mailbox(sink, _) => ("drive-sync", sink),
    };
    if r.imported_changes > 0 || r.exported.is_some() {
        let _ = store.record_backup_event(
            kind,
            at,
            serde_json::json!({ "imported": r.imported_changes, "exported": r.exported_changes, "refused": r.refused.len() }),
        );
    }
}

pub(super) fn print_usb(
    r: &archive::UsbReport,
    place: &Place,
    json: bool,
    out: &mut dyn Write,
) -> Result<()> {
    if json {
        return print_json(out, r);
    }
    let noun = place.noun();
    write!(
        out,
        "Imported {} changes from {} files on {noun}",
        r.imported_changes, r.files_read
    )?;
    if r.files_known > 0 {
        write!(out, " ({} imported before, not read again)", r.files_known)?;
    }
    writeln!(out)?;
    match &r.exported {
        Some(n) => writeln!(
            out,
            "Exported {} changes to {noun} ({})",
            r.exported_changes,
            n.rsplit('/').next().unwrap_or(n)
        )?,
        None => writeln!(out, "Exported nothing: {noun} already holds every change")?,
    }
    for (n, why) in &r.refused {
        writeln!(out, "REFUSED  {}: {why}", n.rsplit('/').next().unwrap_or(n))?;
    }
    Ok(())
}
