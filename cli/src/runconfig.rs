//! The till's own settings for `tillmesh run`: the addresses it binds, mDNS,
//! relay-only, its log. They come from the flags, then the TOML file named by
//! `--config`, then the defaults, in that order; the store-wide settings every
//! till shares are `tillmesh config` ([`crate::config`]).
//!
//! ```toml
//! version = 1
//! home = "/var/lib/tillmesh"
//! bind = "0.0.0.0:7447"
//! api_port = 7440
//! mdns = true
//! relay_only = false
//! # sync_interval_s = 300     # this till only; else the store's setting
//! # mailbox_every_s = 60
//! # metrics_bind = "0.0.0.0:9470"
//! # metrics_token_file = "metrics.token"
//!
//! [log]
//! file = "/var/log/tillmesh/tillmesh.log"
//! format = "text"             # or "json"
//! level = "info"
//! max_size_mb = 16
//! keep = 5
//! ```
//!
//! A relative path in the file is taken from the file's folder. Unknown keys
//! are refused (a misspelt key would otherwise be silently ignored).
//!
//! The file may name the till's `home`. Without `--home` or `TILLMESH_HOME`,
//! a command's till home is the `home` of `run --config FILE`, else that of
//! the system's file [`SYSTEM_CONFIG`] (the Debian package's, so that
//! `sudo -u tillmesh tillmesh status` finds the till the service runs), else
//! the user's data folder (`~/.local/share/tillmesh`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::args::RunArgs;
use crate::commands::rejected;

/// The version of the config file this build writes and reads.
pub const VERSION: u32 = 1;

/// The system's config file: the Debian package installs it, and its `home`
/// is every command's default till home (`TILLMESH_SYSTEM_CONFIG` names
/// another, for tests).
pub const SYSTEM_CONFIG: &str = "/etc/tillmesh/tillmesh.toml";

/// The till home a config file names for `cli` when neither `--home` nor
/// `TILLMESH_HOME` did: `run --config FILE`'s, else the system file's.
pub fn configured_home(cli: &crate::args::Cli) -> Result<Option<PathBuf>> {
    if let crate::args::Command::Run(RunArgs {
        config: Some(file), ..
    }) = &cli.command
    {
        return Ok(RunSettings::read(file)?.home);
    }
    let system = std::env::var_os("TILLMESH_SYSTEM_CONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(SYSTEM_CONFIG));
    if !system.exists() {
        return Ok(None);
    }
    Ok(RunSettings::read(&system)?.home)
}

/// The log's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Lines for people.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Where the daemon's log goes, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// The log file; standard error when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// Text or JSON.
    #[serde(default)]
    pub format: LogFormat,
    /// A tracing filter (`info`, `warn,tillmesh=debug`); `TILLMESH_LOG`
    /// wins over it. Default: `info` to a file, `warn` to standard error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    /// The file is set aside past this many MiB.
    #[serde(default = "default_max_size_mb")]
    pub max_size_mb: u64,
    /// Files kept, the current one included.
    #[serde(default = "default_keep")]
    pub keep: usize,
}

fn default_max_size_mb() -> u64 {
    16
}

fn default_keep() -> usize {
    5
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            file: None,
            format: LogFormat::Text,
            level: None,
            max_size_mb: default_max_size_mb(),
            keep: default_keep(),
        }
    }
}

/// The settings `tillmesh run` runs with: flags, file and defaults merged.
/// Serialized, it is a config file that gives the same settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSettings {
    /// The file's format version.
    #[serde(default = "current_version")]
    pub version: u32,
    /// The till's home (its key and store), unless `--home` or
    /// `TILLMESH_HOME` says otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home: Option<PathBuf>,
    /// UDP address for direct connections between tills.
    #[serde(default = "default_bind")]
    pub bind: SocketAddr,
    /// Relays only, no direct connections.
    #[serde(default)]
    pub relay_only: bool,
    /// Find and announce tills on the LAN by mDNS.
    #[serde(default = "yes")]
    pub mdns: bool,
    /// This till's anti-entropy interval, over the store's setting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_interval_s: Option<u64>,
    /// Seconds between Drive mailbox syncs while some till is unreached.
    #[serde(default = "default_mailbox")]
    pub mailbox_every_s: u64,
    /// The local API's port on 127.0.0.1 (0: any free one).
    #[serde(default)]
    pub api_port: u16,
    /// Where `/metrics` is also served for the LAN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_bind: Option<SocketAddr>,
    /// The token file for `metrics_bind`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_token_file: Option<PathBuf>,
    /// The log.
    #[serde(default)]
    pub log: LogSettings,
}

fn current_version() -> u32 {
    VERSION
}

fn default_bind() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 0))
}

fn yes() -> bool {
    true
}

fn default_mailbox() -> u64 {
    60
}

impl Default for RunSettings {
    fn default() -> Self {
        RunSettings {
            version: VERSION,
            home: None,
            bind: default_bind(),
            relay_only: false,
            mdns: true,
            sync_interval_s: None,
            mailbox_every_s: default_mailbox(),
            api_port: 0,
            metrics_bind: None,
            metrics_token_file: None,
            log: LogSettings::default(),
        }
    }
}

impl RunSettings {
    /// The settings of `a`: its flags over its `--config` file over the
    /// defaults, checked.
    pub fn resolve(a: &RunArgs) -> Result<RunSettings> {
        let mut s = match &a.config {
            Some(file) => Self::read(file)?,
            None => RunSettings::default(),
        };
        if let Some(b) = a.bind {
            s.bind = b;
        }
        s.relay_only |= a.relay_only;
        s.mdns &= !a.no_mdns;
        if a.sync_interval.is_some() {
            s.sync_interval_s = a.sync_interval;
        }
        if let Some(m) = a.mailbox_every {
            s.mailbox_every_s = m;
        }
        if let Some(p) = a.api_port {
            s.api_port = p;
        }
        if a.metrics_bind.is_some() {
            s.metrics_bind = a.metrics_bind;
        }
        if a.metrics_token_file.is_some() {
            s.metrics_token_file = a.metrics_token_file.clone();
        }
        if a.log_file.is_some() {
            s.log.file = a.log_file.clone();
        }
        if a.log_json {
            s.log.format = LogFormat::Json;
        }
        s.check()?;
        Ok(s)
    }

    /// The config file `file`, its relative paths taken from its folder.
    pub fn read(file: &Path) -> Result<RunSettings> {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read the config file {}", file.display()))?;
        let mut s: RunSettings = toml::from_str(&text).map_err(|e| {
            rejected(format!(
                "the config file {} is not valid: {}",
                file.display(),
                e.to_string().trim_end()
            ))
        })?;
        if s.version > VERSION {
            return Err(rejected(format!(
                "the config file {} is version {}; this tillmesh reads up to version {VERSION}",
                file.display(),
                s.version
            )));
        }
        let file = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
        let dir = file.parent().unwrap_or(Path::new("/"));
        for p in [&mut s.home, &mut s.metrics_token_file, &mut s.log.file]
            .into_iter()
            .flatten()
        {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        }
        s.version = VERSION;
        Ok(s)
    }

    fn check(&self) -> Result<()> {
        match (&self.metrics_bind, &self.metrics_token_file) {
            (Some(_), None) => {
                return Err(rejected(
                    "--metrics-bind (metrics_bind in a config file) needs --metrics-token-file \
                     (metrics_token_file): the token Prometheus must send",
                ));
            }
            (None, Some(_)) => {
                return Err(rejected(
                    "--metrics-token-file (metrics_token_file in a config file) is for \
                     --metrics-bind (metrics_bind): give the address to serve /metrics on",
                ));
            }
            _ => {}
        }
        if self.sync_interval_s == Some(0) || self.mailbox_every_s == 0 {
            return Err(rejected("an interval is at least 1 second"));
        }
        if self.log.max_size_mb == 0 || self.log.keep == 0 {
            return Err(rejected(
                "the log's max_size_mb and keep are at least 1 (the file being written counts)",
            ));
        }
        if let Some(level) = &self.log.level {
            tracing_subscriber::EnvFilter::try_new(level)
                .map_err(|e| rejected(format!("log level {level:?} is not a filter: {e}")))?;
        }
        Ok(())
    }

    /// As a config file (what `run --check` prints).
    pub fn to_toml(&self) -> Result<String> {
        Ok(toml::to_string(self)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let f = dir.join("tillmesh.toml");
        std::fs::write(&f, text).expect("write");
        f
    }

    #[test]
    fn flags_win_over_the_file_and_the_file_over_the_defaults() {
        let dir = tempfile::tempdir().expect("dir");
        let f = write(
            dir.path(),
            "version = 1\nbind = \"0.0.0.0:7447\"\napi_port = 7440\nmdns = false\n\
             metrics_bind = \"0.0.0.0:9470\"\nmetrics_token_file = \"token\"\n\
             [log]\nfile = \"logs/t.log\"\nformat = \"json\"\nkeep = 3\n",
        );
        let a = RunArgs {
            config: Some(f.clone()),
            api_port: Some(7441),
            ..RunArgs::default()
        };
        let s = RunSettings::resolve(&a).expect("valid");
        assert_eq!(s.bind, "0.0.0.0:7447".parse().expect("addr"));
        assert_eq!(s.api_port, 7441, "the flag wins");
        assert!(!s.mdns);
        assert_eq!(s.log.file, Some(dir.path().join("logs/t.log")));
        assert_eq!(s.metrics_token_file, Some(dir.path().join("token")));
        assert_eq!(s.log.format, LogFormat::Json);
        assert_eq!((s.log.keep, s.log.max_size_mb), (3, 16));
        // What --check prints reads back as the same settings.
        let again = write(dir.path(), &s.to_toml().expect("toml"));
        assert_eq!(RunSettings::read(&again).expect("reads"), s);
        let none = RunSettings::resolve(&RunArgs::default()).expect("defaults");
        assert_eq!(none, RunSettings::default());
    }

    #[test]
    fn a_bad_file_is_refused_saying_why() {
        let dir = tempfile::tempdir().expect("dir");
        let cases = [
            ("mnds = false\n", "unknown field `mnds`"),
            ("bind = \"nowhere\"\n", "invalid socket address"),
            ("version = 9\n", "version 9"),
            (
                "metrics_bind = \"0.0.0.0:9470\"\n",
                "needs --metrics-token-file",
            ),
            ("[log]\nformat = \"xml\"\n", "unknown variant `xml`"),
            ("[log]\nkeep = 0\n", "at least 1"),
        ];
        for (text, want) in cases {
            let a = RunArgs {
                config: Some(write(dir.path(), text)),
                ..RunArgs::default()
            };
            let e = format!("{:#}", RunSettings::resolve(&a).expect_err(text));
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }
}
