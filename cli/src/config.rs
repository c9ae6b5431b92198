//! `tillmesh config show|set|reset`: the store-wide settings every till
//! shares ([`tillmesh_store::settings`]), and the pieces of the daemon that
//! read them: the retry pace of backups and alert pushes, when a failing
//! sink is alerted. The till's own settings are `tillmesh run --config`
//! ([`crate::runconfig`]).

use std::io::Write;
use std::time::Duration;

use anyhow::Result;
use serde::Serialize;
use tillmesh_backup::schedule::Backoff;
use tillmesh_store::Store;
use tillmesh_store::settings::{self, SettingError};

use crate::args::ConfigCmd;
use crate::commands::{print_json, rejected};
use crate::output::Table;

/// A setting refused as a usage error (exit code 2); a store error as it is.
pub fn setting_error(e: SettingError) -> anyhow::Error {
    match e {
        SettingError::Storage(s) => s.into(),
        other => rejected(other.to_string()),
    }
}

/// The store's retry pace: `retry/backoff_base_s`, `retry/backoff_factor`,
/// `retry/backoff_max_s`.
pub fn backoff(store: &Store) -> Result<Backoff> {
    Ok(Backoff {
        base: Duration::from_secs(store.setting(settings::RETRY_BASE)?),
        multiplier: store.setting(settings::RETRY_FACTOR)? as u32,
        cap: Duration::from_secs(store.setting(settings::RETRY_MAX)?),
    })
}

/// Failed backups in a row before a sink is alerted: `retry/alert_after`.
pub fn alert_after(store: &Store) -> Result<u32> {
    Ok(store.setting(settings::RETRY_ALERT_AFTER)? as u32)
}

/// The sync settings the daemon's mesh node runs with: the interval between
/// anti-entropy rounds (`over`, the till's own `--sync-interval`, wins over
/// the store's) and each session's limits.
pub fn sync_tuning(store: &Store, over: Option<u64>) -> Result<(Duration, tillmesh_mesh::Limits)> {
    let interval = match over {
        Some(s) => s.max(1),
        None => store.setting(settings::SYNC_INTERVAL)?,
    };
    Ok((
        Duration::from_secs(interval),
        tillmesh_mesh::Limits {
            timeout: Duration::from_secs(store.setting(settings::SYNC_TIMEOUT)?),
            batch: store.setting(settings::SYNC_BATCH)? as usize,
        },
    ))
}

#[derive(Serialize)]
struct Row {
    key: &'static str,
    value: u64,
    default: u64,
    set: bool,
    unit: &'static str,
    min: u64,
    max: u64,
    means: &'static str,
}

/// `tillmesh config …`.
pub fn run(store: &mut Store, c: &ConfigCmd, out: &mut dyn Write) -> Result<()> {
    match c {
        ConfigCmd::Show(f) => {
            let rows: Vec<Row> = store
                .settings()?
                .into_iter()
                .map(|(s, set)| Row {
                    key: s.key,
                    value: set.unwrap_or(s.default),
                    default: s.default,
                    set: set.is_some(),
                    unit: s.unit.as_str(),
                    min: s.min,
                    max: s.max,
                    means: s.help,
                })
                .collect();
            if f.json {
                return print_json(out, &rows);
            }
            let mut t = Table::new(&["SETTING", ">VALUE", "UNIT", ">DEFAULT", "MEANS"]);
            for r in &rows {
                t.row(vec![
                    r.key.into(),
                    // A value set for the store is marked, so a default that
                    // changes in a later version is told apart.
                    format!("{}{}", r.value, if r.set { "*" } else { "" }),
                    r.unit.into(),
                    r.default.to_string(),
                    r.means.into(),
                ]);
            }
            write!(out, "{}", t.render())?;
            writeln!(
                out,
                "* set for this store; `tillmesh config set KEY VALUE` changes one for every till"
            )?;
        }
        ConfigCmd::Set { key, value } => {
            let v = store.set_setting(key, value).map_err(setting_error)?;
            let unit = settings::setting(key).map_or("", |s| s.unit.as_str());
            writeln!(
                out,
                "{key} is now {v}{}{unit} on every till of the store (running daemons take it within seconds)",
                if unit.is_empty() { "" } else { " " },
            )?;
        }
        ConfigCmd::Reset { key } => {
            let v = store.reset_setting(key).map_err(setting_error)?;
            writeln!(
                out,
                "{key} is back to its default, {v}, on every till of the store"
            )?;
        }
    }
    Ok(())
}
