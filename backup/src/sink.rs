//! Where backup files rest: immutable named objects on an untrusted medium.
//!
//! Names are `/`-separated paths such as `<store>/snapshots/<file>`. A sink
//! never shows a half-written object: [`FolderSink`] writes to a temporary name,
//! flushes file and directory, renames, then reads the object back and checks
//! its hash.

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
pub trait Sink: std::fmt::Debug {
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
        #[cfg(unix)]
        {
            let s = rustix::fs::statvfs(&self.root).ok()?;
            Some(s.f_bavail.saturating_mul(s.f_frsize))
        }
        #[cfg(not(unix))]
        {
            None
        }
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
