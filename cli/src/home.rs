//! A till's home directory as a typed value: every file it holds named in one
//! place ([`HomeFile`], with the format version this version writes), and the
//! one way a file is written there ([`write_private`]: a temporary file of mode
//! 0600, fsynced, renamed over the old one, the directory fsynced), so a crash
//! leaves the old file or the new one, never half of one, and no other user
//! reads a key.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// A till's home directory (mode 0700).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home(PathBuf);

/// The files of a till home. docs/OPERATIONS.md lists them for operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HomeFile {
    /// This till's key (ed25519; its public half is the till id).
    TillKey,
    /// The store's admin key, on an admin till.
    AdminKey,
    /// The store's recovery key, on the admin till.
    RecoveryKey,
    /// The store itself (redb).
    Store,
    /// The store id, admin key and backup keys, for restores beside a daemon.
    StoreKeys,
    /// The named backup sinks.
    Sinks,
    /// The daemon's backup schedule state per sink.
    BackupState,
    /// Files imported whole from USB sticks.
    UsbImported,
    /// The last recovery file written.
    RecoveryState,
    /// The running daemon's API port and token.
    Api,
    /// The running daemon's API socket.
    ApiSocket,
    /// A relay's home (`tillmesh relay`).
    Relay,
    /// The store's Google login, its tokens encrypted to the store's keys.
    DriveLogin,
    /// The alerts the daemon raised and cleared, and their pushes.
    Alerts,
    /// What the daemon last saw of the other tills, for `status` without it.
    LastStatus,
    /// What happened (sync sessions, arrivals, backups, conflicts, alerts),
    /// for `tillmesh report`; `journal.1.jsonl` holds the lines before.
    Journal,
}

impl HomeFile {
    /// Every file, in the order docs/OPERATIONS.md lists them.
    pub const ALL: [HomeFile; 16] = [
        HomeFile::TillKey,
        HomeFile::AdminKey,
        HomeFile::RecoveryKey,
        HomeFile::Store,
        HomeFile::StoreKeys,
        HomeFile::Sinks,
        HomeFile::BackupState,
        HomeFile::UsbImported,
        HomeFile::RecoveryState,
        HomeFile::Api,
        HomeFile::ApiSocket,
        HomeFile::Relay,
        HomeFile::DriveLogin,
        HomeFile::Alerts,
        HomeFile::LastStatus,
        HomeFile::Journal,
    ];

    /// Its name in the home.
    pub const fn name(self) -> &'static str {
        match self {
            HomeFile::TillKey => "till.key",
            HomeFile::AdminKey => "admin.key",
            HomeFile::RecoveryKey => "recovery.key",
            HomeFile::Store => "store.redb",
            HomeFile::StoreKeys => "store.keys",
            HomeFile::Sinks => "sinks.json",
            HomeFile::BackupState => "backup-state.json",
            HomeFile::UsbImported => "usb-imported.json",
            HomeFile::RecoveryState => "recovery-state.json",
            HomeFile::Api => "api.json",
            HomeFile::ApiSocket => "api.sock",
            HomeFile::Relay => "relay",
            HomeFile::DriveLogin => "drive.json",
            HomeFile::Alerts => "alerts.json",
            HomeFile::LastStatus => "last-status.json",
            HomeFile::Journal => "journal.jsonl",
        }
    }

    /// The format version this version writes, for the JSON files this crate
    /// formats (each reads its older versions); `None` for files another crate
    /// formats (keys, the store) or that hold no format (a socket, a folder).
    pub fn version(self) -> Option<u32> {
        match self {
            HomeFile::StoreKeys
            | HomeFile::BackupState
            | HomeFile::Api
            | HomeFile::DriveLogin
            | HomeFile::Alerts
            | HomeFile::Journal => Some(1),
            HomeFile::Sinks | HomeFile::RecoveryState | HomeFile::UsbImported => Some(2),
            _ => None,
        }
    }
}

impl Home {
    /// The home at `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self(dir.into())
    }

    /// Where `file` lives in this home.
    pub fn file(&self, file: HomeFile) -> PathBuf {
        path(&self.0, file)
    }

    /// Create the directory (and its parents), readable by its owner only.
    pub fn create(&self) -> Result<()> {
        std::fs::create_dir_all(&self.0)
            .with_context(|| format!("cannot create the till home {}", self.0.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&self.0, std::fs::Permissions::from_mode(0o700))
                .with_context(|| format!("cannot restrict access to {}", self.0.display()))?;
        }
        Ok(())
    }

    /// Write `file` whole ([`write_private`]).
    pub fn write(&self, file: HomeFile, bytes: &[u8]) -> Result<()> {
        write_private(&self.file(file), bytes)
    }
}

impl std::ops::Deref for Home {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for Home {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

/// Where `file` lives in the home at `dir`.
pub fn path(dir: &Path, file: HomeFile) -> PathBuf {
    dir.join(file.name())
}

/// Write `bytes` to `path` whole, readable by its owner only: a temporary file
/// beside it (mode 0600, fsynced) renamed over it, then the directory fsynced,
/// so a crash leaves the old file or the new one.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    let tmp = path.with_file_name(name);
    {
        let mut o = std::fs::OpenOptions::new();
        o.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            o.mode(0o600);
        }
        let mut f = o
            .open(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        f.write_all(bytes)
            .and_then(|_| f.sync_all())
            .with_context(|| format!("cannot write {}", tmp.display()))?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    #[cfg(unix)]
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // The rename itself durable: a power cut must not bring the old file back.
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_has_its_own_name() {
        let names: std::collections::BTreeSet<_> = HomeFile::ALL.iter().map(|f| f.name()).collect();
        assert_eq!(names.len(), HomeFile::ALL.len());
    }

    #[test]
    fn a_write_replaces_the_file_whole_and_only_its_owner_reads_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = Home::new(dir.path().join("h"));
        home.create().expect("create");
        home.write(HomeFile::Sinks, b"first").expect("write");
        home.write(HomeFile::Sinks, b"second").expect("write");
        assert_eq!(
            std::fs::read(home.file(HomeFile::Sinks)).expect("read"),
            b"second"
        );
        let left: Vec<_> = std::fs::read_dir(&*home)
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(
            left,
            vec![std::ffi::OsString::from("sinks.json")],
            "no temporary file left"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode(&home.file(HomeFile::Sinks)), 0o600);
            assert_eq!(mode(&home), 0o700);
        }
    }

    #[test]
    fn a_write_that_cannot_happen_says_where_and_keeps_the_old_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = Home::new(dir.path());
        home.write(HomeFile::StoreKeys, b"old").expect("write");
        // The temporary name taken by a directory: the write fails, the old file stays.
        std::fs::create_dir(dir.path().join("store.keys.tmp")).expect("block");
        let err = home
            .write(HomeFile::StoreKeys, b"new")
            .expect_err("blocked");
        assert!(format!("{err:#}").contains("store.keys.tmp"), "{err:#}");
        assert_eq!(
            std::fs::read(home.file(HomeFile::StoreKeys)).expect("read"),
            b"old"
        );
    }
}
