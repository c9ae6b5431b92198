//! Where the log goes: standard error (warnings, by default), or for a daemon
//! with a log file ([`crate::runconfig::LogSettings`]), a file set aside at a
//! size and kept in a few generations (`tillmesh.log`, `tillmesh.log.1`, …),
//! as text or one JSON object per line. `TILLMESH_LOG` sets the filter
//! (`info`, `warn,tillmesh_mesh=debug`) over everything else.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::args::{Cli, Command};
use crate::runconfig::{LogFormat, LogSettings, RunSettings};

/// What is never worth a line: iroh's relay transport reports its own
/// shutdown (`relay_recv_channel closed`) as an error when a command closes
/// its endpoint, which is no news to whoever ran it (`status` shows the relay).
const QUIET: &str = "iroh::socket::transports::relay=off,swarm_discovery=warn";

/// Start logging for `cli`: to the log file of `tillmesh run`'s settings if it
/// has one (a settings error is left to the command to report), else to
/// standard error.
pub fn init(cli: &Cli) {
    use std::io::IsTerminal;
    let settings = match &cli.command {
        Command::Run(a) if !a.check => RunSettings::resolve(a).ok().map(|s| s.log),
        _ => None,
    };
    let log = settings.unwrap_or_default();
    let filter = |default: &str| {
        EnvFilter::try_from_env("TILLMESH_LOG").unwrap_or_else(|_| {
            let level = log.level.as_deref().unwrap_or(default);
            EnvFilter::try_new(format!("{level},{QUIET}"))
                .unwrap_or_else(|_| EnvFilter::new(format!("warn,{QUIET}")))
        })
    };
    let file = log.file.as_ref().map(|f| RotatingLog::open(f, &log));
    match file {
        Some(Ok(writer)) => {
            let b = tracing_subscriber::fmt()
                .with_env_filter(filter("info"))
                .with_ansi(false)
                .with_writer(writer);
            match log.format {
                LogFormat::Json => b.json().init(),
                LogFormat::Text => b.init(),
            }
        }
        other => {
            let b = tracing_subscriber::fmt()
                .with_env_filter(filter("warn"))
                .with_ansi(std::io::stderr().is_terminal() && log.format == LogFormat::Text)
                .with_writer(std::io::stderr);
            match log.format {
                LogFormat::Json => b.json().init(),
                LogFormat::Text => b.init(),
            }
            if let Some(Err(e)) = other {
                tracing::error!("{e:#}; logging to standard error instead");
            }
        }
    }
}

/// A log file that is set aside once it passes its size: `FILE` becomes
/// `FILE.1`, `FILE.1` becomes `FILE.2` … and the oldest beyond `keep` goes.
/// Lines are never split between two files.
#[derive(Debug, Clone)]
pub struct RotatingLog {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    file: std::fs::File,
    size: u64,
    max: u64,
    keep: usize,
}

fn open_append(path: &Path) -> std::io::Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    o.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o640);
    o.open(path)
}

/// Set `current` aside as `older[0]`, each of `older` moving one place down
/// and the last one going: the rotation of the log and of the journal.
pub fn set_aside(current: &Path, older: &[PathBuf]) -> std::io::Result<()> {
    for i in (1..older.len()).rev() {
        match std::fs::rename(&older[i - 1], &older[i]) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    match older.first() {
        Some(first) => std::fs::rename(current, first),
        None => std::fs::remove_file(current),
    }
}

impl RotatingLog {
    /// Open (or go on with) the log at `path`, making its folder.
    pub fn open(path: &Path, s: &LogSettings) -> Result<RotatingLog> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot make the log folder {}", dir.display()))?;
        }
        let file = open_append(path)
            .with_context(|| format!("cannot open the log file {}", path.display()))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(RotatingLog {
            inner: Arc::new(Mutex::new(Inner {
                path: path.to_path_buf(),
                file,
                size,
                max: s.max_size_mb.max(1) << 20,
                keep: s.keep.max(1),
            })),
        })
    }

    /// The files kept besides the current one, newest first.
    fn older(path: &Path, keep: usize) -> Vec<PathBuf> {
        (1..keep)
            .map(|i| {
                let mut name = path.as_os_str().to_owned();
                name.push(format!(".{i}"));
                PathBuf::from(name)
            })
            .collect()
    }
}

impl Inner {
    fn write_line(&mut self, buf: &[u8]) -> std::io::Result<()> {
        if self.size > 0 && self.size + buf.len() as u64 > self.max {
            set_aside(&self.path, &RotatingLog::older(&self.path, self.keep))?;
            self.file = open_append(&self.path)?;
            self.size = 0;
        }
        self.file.write_all(buf)?;
        self.size += buf.len() as u64;
        Ok(())
    }
}

/// One write to a [`RotatingLog`]: the formatter hands it a whole line.
#[derive(Debug)]
pub struct LogWriter<'a>(&'a RotatingLog);

impl Write for LogWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut inner = self.0.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.write_line(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for RotatingLog {
    type Writer = LogWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LogWriter(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_is_set_aside_at_its_size_keeping_whole_lines_and_a_few_files() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("logs/tillmesh.log");
        let s = LogSettings {
            max_size_mb: 1,
            keep: 3,
            ..LogSettings::default()
        };
        let log = RotatingLog::open(&path, &s).expect("open");
        let line = format!("{}\n", "x".repeat(99));
        for _ in 0..(4 * 1024 * 1024 / 100) {
            log.make_writer().write_all(line.as_bytes()).expect("write");
        }
        let older = RotatingLog::older(&path, 3);
        for f in std::iter::once(&path).chain(&older) {
            let text = std::fs::read_to_string(f).expect("kept");
            assert!(text.len() as u64 <= 1 << 20, "{} too big", f.display());
            assert!(text.lines().all(|l| l.len() == 99), "whole lines only");
        }
        assert!(!dir.path().join("logs/tillmesh.log.3").exists(), "3 kept");
        // Started again, it goes on with the file it finds.
        drop(log);
        let before = std::fs::metadata(&path).expect("log").len();
        let log = RotatingLog::open(&path, &s).expect("reopen");
        log.make_writer().write_all(line.as_bytes()).expect("write");
        assert_eq!(std::fs::metadata(&path).expect("log").len(), before + 100);
    }
}
