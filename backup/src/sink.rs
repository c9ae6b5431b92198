//! Where backup files rest: immutable named objects on an untrusted medium.
//!
//! Names are `/`-separated paths such as `<store>/snapshots/<file>`. A sink
//! never shows a half-written object: [`FolderSink`] writes to a temporary name,
//! flushes file and directory, renames, then reads the object back and checks
//! its hash.
//!
//! Every sink a till uses is built in one place, from a [`SinkConfig`] (what
//! `sinks.json` holds). A sink is `Send + Sync`, so it is written beside the
//! store from any thread; its errors carry a [`SinkErrorKind`] that retries and
//! alerts act on (a throttled or transient failure is retried, a full medium
//! or a refused credential is told to the operator).

use std::fs;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

/// One object on a sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    /// Its name.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
}

/// A place that holds backup files.
///
/// A remote sink resumes an interrupted `put` from what the remote reports it
/// holds, within the call; a `put` that returns an error left no object of that
/// name (or the older one).
pub trait Sink: std::fmt::Debug + Send + Sync {
    /// How operators know this sink (a path, a device).
    fn describe(&self) -> String;
    /// Every complete object whose name starts with `prefix`, sorted by name.
    fn list(&self, prefix: &str) -> Result<Vec<Object>, SinkError>;
    /// Store `bytes` as `name`, replacing an older object of that name; when this
    /// returns, the object is complete, durable and verified.
    fn put(&self, name: &str, bytes: &[u8]) -> Result<(), SinkError>;
    /// The whole object `name`. No backup file is larger than
    /// [`MAX_FILE`](crate::format::MAX_FILE): a larger object is refused
    /// ([`SinkError::TooLarge`]), by [`FolderSink`] before it is read.
    fn get(&self, name: &str) -> Result<Vec<u8>, SinkError> {
        self.get_limited(name, crate::format::MAX_FILE)
    }
    /// The whole object `name` when it is at most `max` bytes long, else
    /// [`SinkError::TooLarge`]; never more than `max` bytes are held in memory
    /// (by [`FolderSink`]; a sink without its own implementation reads the
    /// object, then checks).
    fn get_limited(&self, name: &str, max: u64) -> Result<Vec<u8>, SinkError>;
    /// The first `len` bytes of object `name` (all of it when shorter): enough
    /// to read a file's header without reading the rest. By default the whole
    /// object, cut.
    fn get_start(&self, name: &str, len: usize) -> Result<Vec<u8>, SinkError> {
        let mut bytes = self.get(name)?;
        bytes.truncate(len);
        Ok(bytes)
    }
    /// Remove `name`.
    fn delete(&self, name: &str) -> Result<(), SinkError>;
    /// Free bytes on the medium, when known.
    fn free_space(&self) -> Option<u64>;
    /// Bytes used on the account and its limit, for a remote sink that has
    /// an account (`None` for a folder).
    fn quota(&self) -> Option<(u64, Option<u64>)> {
        None
    }
    /// Whether it is an account somewhere else (Drive), where a full quota
    /// is for this till to make room in, rather than a device an operator
    /// manages.
    fn is_remote(&self) -> bool {
        false
    }
}

/// How a sink is configured (`sinks.json`, `kind` names the variant): the one
/// place sinks are built from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
#[non_exhaustive]
pub enum SinkConfig {
    /// A folder: local disk, USB stick, SD card or mounted share.
    Folder {
        /// The folder (it must exist when the sink is used).
        path: PathBuf,
    },
    /// A folder in Google Drive (the store's login gives the tokens).
    Drive(crate::drive::DriveConfig),
}

impl SinkConfig {
    /// The kinds this version builds, as `kind` names them.
    pub const KINDS: &'static [&'static str] = &["folder", "drive"];

    /// A configuration of `kind` at `location` (for a folder, its path).
    pub fn parse(kind: &str, location: &Path) -> Result<SinkConfig, SinkError> {
        match kind {
            "folder" => Ok(SinkConfig::Folder {
                path: location.to_path_buf(),
            }),
            "drive" => Ok(SinkConfig::Drive(crate::drive::DriveConfig {
                api: crate::drive::GOOGLE_API.to_string(),
                folder: location.display().to_string(),
                app_data: false,
            })),
            other => Err(SinkError::UnknownKind(other.to_string())),
        }
    }

    /// Its kind, as `kind` names it.
    pub fn kind(&self) -> &'static str {
        match self {
            SinkConfig::Folder { .. } => "folder",
            SinkConfig::Drive(_) => "drive",
        }
    }

    /// Where it is, for operators (a folder's path).
    pub fn location(&self) -> String {
        match self {
            SinkConfig::Folder { path } => path.display().to_string(),
            SinkConfig::Drive(d) => d.folder.clone(),
        }
    }

    /// The sink, ready to use; fails when it cannot be reached now (a stick
    /// that is out, a folder that is gone). A Drive sink needs `drive`, the
    /// store's Google login.
    pub fn open(
        &self,
        drive: Option<std::sync::Arc<dyn crate::drive::AccessTokens>>,
    ) -> Result<std::sync::Arc<dyn Sink>, SinkError> {
        match self {
            SinkConfig::Folder { path } => Ok(std::sync::Arc::new(FolderSink::new(path)?)),
            SinkConfig::Drive(config) => match drive {
                Some(tokens) => Ok(std::sync::Arc::new(crate::drive::DriveSink::new(
                    config.clone(),
                    tokens,
                )?)),
                None => Err(SinkError::Auth {
                    sink: format!("Google Drive folder {}", config.folder),
                    reason: "this store has no Google login; run `tillmesh drive login`".into(),
                }),
            },
        }
    }
}

/// What kind of failure a [`SinkError`] is, for what to do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkErrorKind {
    /// Credentials refused or missing, or no permission: an operator must act.
    Auth,
    /// The remote asked to slow down: retry later (after `retry_after` if said).
    Throttled,
    /// The medium or the network failed for now: retry with backoff.
    Transient,
    /// The medium is full: make room (retention), then retry, else tell.
    Quota,
    /// The object (or the sink's folder) does not exist.
    NotFound,
    /// What was read or written is wrong: a failing device, a tampered file.
    Damaged,
    /// The request itself is wrong (a bad name, an unknown kind): never retried.
    Invalid,
}

impl SinkErrorKind {
    /// Whether trying again later may succeed without an operator.
    pub fn retryable(self) -> bool {
        matches!(
            self,
            SinkErrorKind::Throttled | SinkErrorKind::Transient | SinkErrorKind::NotFound
        )
    }
}

/// The prefix of temporary files; never listed.
const TMP_PREFIX: &str = ".tmp-";

/// A folder: local disk, USB stick, SD card or mounted share.
#[derive(Debug, Clone)]
pub struct FolderSink {
    root: PathBuf,
}

impl FolderSink {
    /// A sink in folder `root`, which must exist (a missing folder usually means
    /// an unplugged device; it is not created).
    pub fn new(root: impl Into<PathBuf>) -> Result<FolderSink, SinkError> {
        let root = root.into();
        match fs::metadata(&root) {
            Ok(m) if m.is_dir() => Ok(FolderSink { root }),
            Ok(_) => Err(SinkError::Missing(format!(
                "{} is not a folder",
                root.display()
            ))),
            Err(e) if e.kind() == ErrorKind::PermissionDenied => {
                Err(SinkError::PermissionDenied(root.display().to_string()))
            }
            Err(_) => Err(missing(&root)),
        }
    }

    /// The folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, name: &str) -> Result<PathBuf, SinkError> {
        let ok = !name.is_empty()
            && name
                .split('/')
                .all(|p| !p.is_empty() && p != "." && p != ".." && !p.starts_with(TMP_PREFIX));
        if !ok {
            return Err(SinkError::BadName(name.to_string()));
        }
        Ok(self.root.join(name))
    }

    fn io(&self, path: &Path, e: std::io::Error, needed: u64) -> SinkError {
        if !self.root.exists() {
            return SinkError::Missing(format!(
                "{} disappeared (device removed?)",
                self.root.display()
            ));
        }
        match e.kind() {
            ErrorKind::StorageFull | ErrorKind::QuotaExceeded => SinkError::Full {
                sink: self.describe(),
                needed,
                free: self.free_space(),
            },
            ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem => {
                SinkError::PermissionDenied(path.display().to_string())
            }
            ErrorKind::NotFound => SinkError::NotFound(path.display().to_string()),
            _ => SinkError::Io {
                path: path.display().to_string(),
                reason: e.to_string(),
            },
        }
    }

    fn write_new(&self, tmp: &Path, bytes: &[u8]) -> std::io::Result<()> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    }
}

/// The folder of a sink is not there: usually an unplugged device.
fn missing(root: &Path) -> SinkError {
    SinkError::Missing(format!(
        "{} does not exist (is the device plugged in and mounted?)",
        root.display()
    ))
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        fs::File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

impl Sink for FolderSink {
    fn describe(&self) -> String {
        format!("folder {}", self.root.display())
    }

    fn list(&self, prefix: &str) -> Result<Vec<Object>, SinkError> {
        if !self.root.is_dir() {
            return Err(missing(&self.root));
        }
        let mut out = Vec::new();
        let mut stack = vec![self.root.clone()];
        while let Some(dir) = stack.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(self.io(&dir, e, 0)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| self.io(&dir, e, 0))?;
                let path = entry.path();
                let file_name = entry.file_name().to_string_lossy().into_owned();
                if file_name.starts_with(TMP_PREFIX) {
                    continue;
                }
                let meta = entry.metadata().map_err(|e| self.io(&path, e, 0))?;
                if meta.is_dir() {
                    stack.push(path);
                    continue;
                }
                let Ok(rel) = path.strip_prefix(&self.root) else {
                    continue;
                };
                let name = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/");
                if name.starts_with(prefix) {
                    out.push(Object {
                        name,
                        size: meta.len(),
                    });
                }
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn put(&self, name: &str, bytes: &[u8]) -> Result<(), SinkError> {
        let path = self.path(name)?;
        let dir = path
            .parent()
            .ok_or_else(|| SinkError::BadName(name.to_string()))?
            .to_path_buf();
        if !self.root.is_dir() {
            return Err(missing(&self.root));
        }
        if let Some(free) = self.free_space()
            && free < bytes.len() as u64
        {
            return Err(SinkError::Full {
                sink: self.describe(),
                needed: bytes.len() as u64,
                free: Some(free),
            });
        }
        fs::create_dir_all(&dir).map_err(|e| self.io(&dir, e, bytes.len() as u64))?;
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(
            "{TMP_PREFIX}{file_name}-{:08x}",
            rand::random::<u32>()
        ));
        let written = self
            .write_new(&tmp, bytes)
            .and_then(|()| fs::rename(&tmp, &path))
            .and_then(|()| sync_dir(&dir));
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(self.io(&path, e, bytes.len() as u64));
        }
        // Read back: a stick that lies about writes is found now, not at restore.
        let back = fs::read(&path).map_err(|e| self.io(&path, e, 0))?;
        if blake3::hash(&back) != blake3::hash(bytes) {
            let _ = fs::remove_file(&path);
            return Err(SinkError::VerifyFailed(path.display().to_string()));
        }
        Ok(())
    }

    fn get_limited(&self, name: &str, max: u64) -> Result<Vec<u8>, SinkError> {
        use std::io::Read;
        let path = self.path(name)?;
        let too_large = |size| SinkError::TooLarge {
            path: path.display().to_string(),
            size,
            max,
        };
        let file = fs::File::open(&path).map_err(|e| self.io(&path, e, 0))?;
        let size = file.metadata().map_err(|e| self.io(&path, e, 0))?.len();
        if size > max {
            return Err(too_large(size));
        }
        // The size may change while the file is read (a medium being written
        // to, or one that lies): never read past the limit.
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        file.take(max + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| self.io(&path, e, 0))?;
        if bytes.len() as u64 > max {
            return Err(too_large(bytes.len() as u64));
        }
        Ok(bytes)
    }

    fn get_start(&self, name: &str, len: usize) -> Result<Vec<u8>, SinkError> {
        use std::io::Read;
        let path = self.path(name)?;
        let mut bytes = Vec::with_capacity(len);
        fs::File::open(&path)
            .and_then(|f| f.take(len as u64).read_to_end(&mut bytes))
            .map_err(|e| self.io(&path, e, 0))?;
        Ok(bytes)
    }

    fn delete(&self, name: &str) -> Result<(), SinkError> {
        let path = self.path(name)?;
        fs::remove_file(&path).map_err(|e| self.io(&path, e, 0))?;
        if let Some(dir) = path.parent() {
            let _ = sync_dir(dir);
        }
        Ok(())
    }

    fn free_space(&self) -> Option<u64> {
        crate::device::space(&self.root).map(|(free, _)| free)
    }
}

/// A sink operation that failed. Earlier objects are untouched by any failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    /// The medium is full.
    #[error("{sink} is full: the backup needs {needed} bytes{}", free.map(|f| format!(", {f} are free")).unwrap_or_default())]
    Full {
        /// The sink.
        sink: String,
        /// Bytes the write needed.
        needed: u64,
        /// Bytes free, when known.
        free: Option<u64>,
    },
    /// Not allowed to write or read.
    #[error("permission denied on {0} (read-only device or folder?)")]
    PermissionDenied(String),
    /// The folder or device is gone.
    #[error("{0}")]
    Missing(String),
    /// No such object.
    #[error("{0} does not exist")]
    NotFound(String),
    /// The object read back differs from what was written.
    #[error("{0} read back differently from what was written; the device may be failing")]
    VerifyFailed(String),
    /// An object larger than it may be: refused before it is read.
    #[error("{path} is {size} bytes, over the {max}-byte limit for a backup file; refused")]
    TooLarge {
        /// The object.
        path: String,
        /// Its size, or as much of it as was read.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// An object name that could escape the sink.
    #[error("invalid object name {0:?}")]
    BadName(String),
    /// Another input/output error.
    #[error("{path}: {reason}")]
    Io {
        /// Where.
        path: String,
        /// What the system said.
        reason: String,
    },
    /// A sink kind this version does not build.
    #[error("unknown sink kind {0:?}; this version supports: {kinds}", kinds = SinkConfig::KINDS.join(", "))]
    UnknownKind(String),
    /// The remote refused this till's credentials, or they are missing.
    #[error("{sink} refused the credentials: {reason}")]
    Auth {
        /// The sink.
        sink: String,
        /// What it said, and what to do.
        reason: String,
    },
    /// The remote asked to slow down.
    #[error("{sink} asks to slow down{}", retry_after.map(|d| format!(" (retry after {} s)", d.as_secs())).unwrap_or_default())]
    Throttled {
        /// The sink.
        sink: String,
        /// How long it asked to wait, if it said.
        retry_after: Option<std::time::Duration>,
    },
    /// The remote or the network failed for now.
    #[error("{sink}: {reason}")]
    Transient {
        /// The sink.
        sink: String,
        /// What failed.
        reason: String,
    },
    /// The remote account's storage is full.
    #[error("{sink} is full: {reason}")]
    Quota {
        /// The sink.
        sink: String,
        /// What it said.
        reason: String,
    },
    /// The remote refused the request itself (a bug, or a remote that changed).
    #[error("{sink} refused the request: {reason}")]
    Rejected {
        /// The sink.
        sink: String,
        /// What it said.
        reason: String,
    },
}

impl SinkError {
    /// What kind of failure this is.
    pub fn kind(&self) -> SinkErrorKind {
        match self {
            SinkError::Full { .. } | SinkError::Quota { .. } => SinkErrorKind::Quota,
            SinkError::PermissionDenied(_) | SinkError::Auth { .. } => SinkErrorKind::Auth,
            // A folder that is gone is usually a stick that is out: it comes back.
            SinkError::Missing(_) | SinkError::Io { .. } | SinkError::Transient { .. } => {
                SinkErrorKind::Transient
            }
            SinkError::NotFound(_) => SinkErrorKind::NotFound,
            SinkError::VerifyFailed(_) | SinkError::TooLarge { .. } => SinkErrorKind::Damaged,
            SinkError::BadName(_) | SinkError::UnknownKind(_) | SinkError::Rejected { .. } => {
                SinkErrorKind::Invalid
            }
            SinkError::Throttled { .. } => SinkErrorKind::Throttled,
        }
    }

    /// How long the sink asked to wait before the next try, if it said.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            SinkError::Throttled { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_are_listed_only_when_complete() {
        let dir = tempfile::tempdir().expect("dir");
        let sink = FolderSink::new(dir.path()).expect("sink");
        sink.put("s/snapshots/a.tms", b"one").expect("put");
        sink.put("s/bundles/t/b.tmb", b"two").expect("put");
        fs::write(dir.path().join("s/snapshots/.tmp-c.tms-1"), b"half").expect("tmp");
        let names: Vec<String> = sink
            .list("s/")
            .expect("list")
            .into_iter()
            .map(|o| o.name)
            .collect();
        assert_eq!(names, vec!["s/bundles/t/b.tmb", "s/snapshots/a.tms"]);
        assert_eq!(sink.get("s/snapshots/a.tms").expect("get"), b"one");
        // The start of an object, for its header: no more, and all of a short one.
        assert_eq!(
            sink.get_start("s/snapshots/a.tms", 2).expect("start"),
            b"on"
        );
        assert_eq!(
            sink.get_start("s/snapshots/a.tms", 84).expect("start"),
            b"one"
        );
        assert!(matches!(
            sink.get_start("s/snapshots/none.tms", 2),
            Err(SinkError::NotFound(_))
        ));
        sink.put("s/snapshots/a.tms", b"uno").expect("replace");
        assert_eq!(sink.get("s/snapshots/a.tms").expect("get"), b"uno");
        // An object over the limit is refused, also by `get` over the largest
        // backup file (a sparse file: nothing of it is on disk).
        assert!(matches!(
            sink.get_limited("s/snapshots/a.tms", 2),
            Err(SinkError::TooLarge {
                size: 3,
                max: 2,
                ..
            })
        ));
        assert_eq!(
            sink.get_limited("s/snapshots/a.tms", 3).expect("fits"),
            b"uno"
        );
        let huge = fs::File::create(dir.path().join("s/snapshots/huge.tms")).expect("file");
        huge.set_len(crate::format::MAX_FILE + 1).expect("sparse");
        assert!(matches!(
            sink.get("s/snapshots/huge.tms"),
            Err(SinkError::TooLarge { .. })
        ));
        sink.delete("s/snapshots/a.tms").expect("delete");
        assert!(matches!(
            sink.get("s/snapshots/a.tms"),
            Err(SinkError::NotFound(_))
        ));
        for bad in ["../x", "a//b", "", "s/.tmp-x", "/abs"] {
            assert!(
                matches!(sink.put(bad, b"x"), Err(SinkError::BadName(_))),
                "{bad}"
            );
        }
        assert!(sink.free_space().is_some_and(|f| f > 0));
    }

    #[test]
    fn sinks_are_built_from_their_configuration_and_errors_say_their_kind() {
        let dir = tempfile::tempdir().expect("dir");
        let config = SinkConfig::parse("folder", dir.path()).expect("folder");
        // The form `sinks.json` keeps.
        let json = serde_json::to_value(&config).expect("json");
        assert_eq!(json["kind"], "folder");
        assert_eq!(
            serde_json::from_value::<SinkConfig>(json).expect("read"),
            config
        );
        let sink = config.open(None).expect("open");
        sink.put("s/x", b"x").expect("put");
        // The sink moves to, and is used from, another thread.
        let there = std::thread::spawn(move || sink.get("s/x"))
            .join()
            .expect("thread");
        assert_eq!(there.expect("get"), b"x");
        assert!(matches!(
            SinkConfig::parse("ftp", dir.path()),
            Err(SinkError::UnknownKind(k)) if k == "ftp"
        ));
        assert!(serde_json::from_str::<SinkConfig>(r#"{"kind":"ftp","path":"/x"}"#).is_err());

        let gone = SinkConfig::parse("folder", &dir.path().join("unplugged")).expect("config");
        let e = gone.open(None).expect_err("missing");
        assert_eq!(e.kind(), SinkErrorKind::Transient);
        assert!(e.kind().retryable());
        let full = SinkError::Full {
            sink: "nas".into(),
            needed: 10,
            free: Some(1),
        };
        assert_eq!(full.kind(), SinkErrorKind::Quota);
        assert!(!full.kind().retryable());
        let slow = SinkError::Throttled {
            sink: "drive".into(),
            retry_after: Some(std::time::Duration::from_secs(7)),
        };
        assert_eq!(slow.kind(), SinkErrorKind::Throttled);
        assert_eq!(slow.retry_after(), Some(std::time::Duration::from_secs(7)));
        assert!(slow.to_string().contains("retry after 7 s"));
        assert_eq!(
            SinkError::PermissionDenied("x".into()).kind(),
            SinkErrorKind::Auth
        );
        assert_eq!(
            SinkError::VerifyFailed("x".into()).kind(),
            SinkErrorKind::Damaged
        );
    }

    #[test]
    fn a_missing_folder_is_named() {
        let dir = tempfile::tempdir().expect("dir");
        let gone = dir.path().join("stick");
        let e = FolderSink::new(&gone).expect_err("missing");
        assert!(e.to_string().contains("plugged in"), "{e}");
        fs::create_dir(&gone).expect("mkdir");
        let sink = FolderSink::new(&gone).expect("sink");
        fs::remove_dir(&gone).expect("unplug");
        let e = sink.put("s/x", b"x").expect_err("removed");
        assert!(matches!(e, SinkError::Missing(_)), "{e}");
    }
}
