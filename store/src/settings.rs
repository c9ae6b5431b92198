//! The store-wide settings: every tunable the tills share, each with its
//! product default, its bounds and its unit, kept in the configuration
//! document under its key. A till reads a setting through [`Store::setting`],
//! which gives the default when the store has none and keeps a value that
//! arrived from elsewhere (an older or newer till, a hand-edited backup) within
//! the bounds, so no setting can stop a till from working.

use serde_json::json;

use crate::error::StorageError;
use crate::ids::DocId;
use crate::store::Store;

/// What a setting's number counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Seconds.
    Seconds,
    /// Minutes.
    Minutes,
    /// Days.
    Days,
    /// A plain count or factor.
    Count,
}

impl Unit {
    /// Its short name, as `config show` prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Seconds => "s",
            Unit::Minutes => "min",
            Unit::Days => "days",
            Unit::Count => "",
        }
    }

    /// Seconds in one of it, for a value given as a duration (`5m`, `2h`);
    /// `None` for a count.
    pub fn seconds(self) -> Option<u64> {
        match self {
            Unit::Seconds => Some(1),
            Unit::Minutes => Some(60),
            Unit::Days => Some(86_400),
            Unit::Count => None,
        }
    }
}

/// One store-wide setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// Its key in the configuration document (`sync/interval_s`).
    pub key: &'static str,
    /// The product default.
    pub default: u64,
    /// The smallest value taken.
    pub min: u64,
    /// The largest value taken.
    pub max: u64,
    /// What the number counts.
    pub unit: Unit,
    /// What it does, in a line.
    pub help: &'static str,
}

/// Seconds between anti-entropy rounds.
pub const SYNC_INTERVAL: &str = "sync/interval_s";
/// Seconds a sync session waits for its peer.
pub const SYNC_TIMEOUT: &str = "sync/timeout_s";
/// Changes applied per store transaction in a sync session.
pub const SYNC_BATCH: &str = "sync/batch";
/// Failed backup attempts in a row before the sink is alerted as failing.
pub const RETRY_ALERT_AFTER: &str = "retry/alert_after";
/// Seconds before the first retry of a failed backup or alert delivery.
pub const RETRY_BASE: &str = "retry/backoff_base_s";
/// Growth of the retry delay per failure.
pub const RETRY_FACTOR: &str = "retry/backoff_factor";
/// The longest retry delay, in seconds.
pub const RETRY_MAX: &str = "retry/backoff_max_s";
/// Days a backup key serves before the admin till rotates it.
pub const KEY_ROTATION: &str = "keys/rotation_days";
/// The zstd level of backups (1 fastest, 19 smallest).
pub const BACKUP_ZSTD_LEVEL: &str = "backup/zstd_level";

/// Every store-wide setting, in the order `config show` lists them.
pub const SETTINGS: &[Setting] = &[
    Setting {
        key: SYNC_INTERVAL,
        default: 300,
        min: 5,
        max: 86_400,
        unit: Unit::Seconds,
        help: "between anti-entropy rounds (changes also spread at once)",
    },
    Setting {
        key: SYNC_TIMEOUT,
        default: 30,
        min: 5,
        max: 600,
        unit: Unit::Seconds,
        help: "a sync session waits for its peer before it gives up",
    },
    Setting {
        key: SYNC_BATCH,
        default: 100,
        min: 1,
        max: 10_000,
        unit: Unit::Count,
        help: "changes a sync session applies per store transaction",
    },
    Setting {
        key: RETRY_ALERT_AFTER,
        default: 3,
        min: 1,
        max: 100,
        unit: Unit::Count,
        help: "failed backups in a row before the sink is alerted (retries go on)",
    },
    Setting {
        key: RETRY_BASE,
        default: 1,
        min: 1,
        max: 3_600,
        unit: Unit::Seconds,
        help: "before the first retry of a failed backup or alert delivery",
    },
    Setting {
        key: RETRY_FACTOR,
        default: 2,
        min: 1,
        max: 10,
        unit: Unit::Count,
        help: "growth of the retry delay per failure",
    },
    Setting {
        key: RETRY_MAX,
        default: 3_600,
        min: 1,
        max: 86_400,
        unit: Unit::Seconds,
        help: "the longest retry delay",
    },
    Setting {
        key: KEY_ROTATION,
        default: 30,
        min: 1,
        max: 365,
        unit: Unit::Days,
        help: "a backup key serves before the admin till makes a new one",
    },
    Setting {
        key: crate::catalog::BACKUP_INTERVAL,
        default: 3_600,
        min: 1,
        max: 7 * 86_400,
        unit: Unit::Seconds,
        help: "between the daemon's scheduled backups",
    },
    Setting {
        key: crate::catalog::SNAPSHOT_INTERVAL,
        default: 86_400,
        min: 1,
        max: 30 * 86_400,
        unit: Unit::Seconds,
        help: "between scheduled snapshots (the backups between are bundles)",
    },
    Setting {
        key: BACKUP_ZSTD_LEVEL,
        default: 3,
        min: 1,
        max: 19,
        unit: Unit::Count,
        help: "backup compression: zstd level, 1 fastest to 19 smallest",
    },
    Setting {
        key: crate::catalog::MAX_CLOCK_SKEW,
        default: crate::hlc::DEFAULT_MAX_SKEW_S,
        min: 1,
        max: 86_400,
        unit: Unit::Seconds,
        help: "another till's clock may be ahead and still move this till's",
    },
    Setting {
        key: "alerts/till_offline_min",
        default: 5,
        min: 0,
        max: 7 * 24 * 60,
        unit: Unit::Minutes,
        help: "a till is not heard from before it is alerted as offline",
    },
    Setting {
        key: "alerts/unreplicated_min",
        default: 15,
        min: 0,
        max: 7 * 24 * 60,
        unit: Unit::Minutes,
        help: "a change may be on its till only before it is alerted",
    },
    Setting {
        key: "alerts/backup_overdue_min",
        default: 180,
        min: 0,
        max: 7 * 24 * 60,
        unit: Unit::Minutes,
        help: "the last backup to a sink may be old before it is alerted (and two backup intervals)",
    },
    Setting {
        key: "alerts/refusals_min",
        default: 15,
        min: 0,
        max: 7 * 24 * 60,
        unit: Unit::Minutes,
        help: "a refused connection counts toward the refusals alert",
    },
];

/// The setting `key`, if there is one.
pub fn setting(key: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.key == key)
}

/// A setting that cannot be set as asked; nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum SettingError {
    /// No setting has that key.
    #[error("no setting {key}; the settings are: {known}")]
    Unknown {
        /// The key asked for.
        key: String,
        /// Every key, comma-separated.
        known: String,
    },
    /// The value is not one the setting takes.
    #[error("{key} takes {min} to {max}{unit}, not {value}")]
    OutOfRange {
        /// The setting.
        key: &'static str,
        /// What was asked.
        value: String,
        /// Its bounds.
        min: u64,
        /// Its bounds.
        max: u64,
        /// Its unit, with a leading space (or empty).
        unit: String,
    },
    /// Writing it failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl Setting {
    /// `raw` as this setting takes it: a whole number in its unit, or for a
    /// time, a duration with a unit of its own (`90s`, `5m`, `2h`, `1d`).
    pub fn parse(&self, raw: &str) -> Result<u64, SettingError> {
        let out_of_range = || SettingError::OutOfRange {
            key: self.key,
            value: raw.to_string(),
            min: self.min,
            max: self.max,
            unit: match self.unit.as_str() {
                "" => String::new(),
                u => format!(" {u}"),
            },
        };
        let raw_t = raw.trim();
        let value = match raw_t.parse::<u64>() {
            Ok(v) => v,
            Err(_) => {
                let per = self.unit.seconds().ok_or_else(out_of_range)?;
                let split = raw_t
                    .find(|c: char| !c.is_ascii_digit())
                    .ok_or_else(out_of_range)?;
                let (n, u) = raw_t.split_at(split);
                let n: u64 = n.parse().map_err(|_| out_of_range())?;
                let secs = match u {
                    "s" => 1,
                    "m" | "min" => 60,
                    "h" => 3_600,
                    "d" => 86_400,
                    _ => return Err(out_of_range()),
                };
                let total = n.checked_mul(secs).ok_or_else(out_of_range)?;
                if total % per != 0 {
                    return Err(out_of_range());
                }
                total / per
            }
        };
        if value < self.min || value > self.max {
            return Err(out_of_range());
        }
        Ok(value)
    }

    /// A stored value as this setting reads it: the default when it is
    /// missing or not a number, and within the bounds otherwise.
    pub fn read(&self, stored: Option<&serde_json::Value>) -> u64 {
        stored
            .and_then(|v| v.as_u64())
            .map(|v| v.clamp(self.min, self.max))
            .unwrap_or(self.default)
    }
}

fn known(key: &str) -> Result<&'static Setting, SettingError> {
    setting(key).ok_or_else(|| SettingError::Unknown {
        key: key.to_string(),
        known: SETTINGS
            .iter()
            .map(|s| s.key)
            .collect::<Vec<_>>()
            .join(", "),
    })
}

impl Store {
    /// The setting `key` (one of [`SETTINGS`]): the store's value, or the
    /// default. An unknown key is a programming error and reads as 0.
    pub fn setting(&self, key: &str) -> Result<u64, StorageError> {
        let Some(s) = setting(key) else {
            debug_assert!(false, "no setting {key}");
            return Ok(0);
        };
        Ok(s.read(self.config_value(key)?.as_ref()))
    }

    /// Every setting with the store's value, if it has one (else the default
    /// applies).
    pub fn settings(&self) -> Result<Vec<(&'static Setting, Option<u64>)>, StorageError> {
        SETTINGS
            .iter()
            .map(|s| {
                let stored = self.config_value(s.key)?;
                let set = stored
                    .as_ref()
                    .and_then(|v| v.as_u64())
                    .map(|_| s.read(stored.as_ref()));
                Ok((s, set))
            })
            .collect()
    }

    /// Set `key` to `raw` (parsed by [`Setting::parse`]) for every till of
    /// the store; audited. Takes a role that may write the configuration.
    pub fn set_setting(&mut self, key: &str, raw: &str) -> Result<u64, SettingError> {
        let s = known(key)?;
        let value = s.parse(raw)?;
        self.check_may_write(&DocId::Config)?;
        self.set_config_value(s.key, json!(value))?;
        Ok(value)
    }

    /// Put `key` back to its product default for every till; audited.
    pub fn reset_setting(&mut self, key: &str) -> Result<u64, SettingError> {
        let s = known(key)?;
        self.check_may_write(&DocId::Config)?;
        self.set_config_value(s.key, serde_json::Value::Null)?;
        Ok(s.default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_in_their_unit_and_within_bounds() {
        let interval = setting(SYNC_INTERVAL).expect("listed");
        assert_eq!(interval.parse("120").ok(), Some(120));
        assert_eq!(interval.parse("5m").ok(), Some(300));
        assert_eq!(interval.parse("1h").ok(), Some(3_600));
        assert!(interval.parse("2").is_err(), "below the minimum");
        assert!(interval.parse("2d").is_err(), "above the maximum");
        assert!(interval.parse("soon").is_err());
        let rotation = setting(KEY_ROTATION).expect("listed");
        assert_eq!(rotation.parse("14").ok(), Some(14));
        assert_eq!(rotation.parse("7d").ok(), Some(7));
        assert!(rotation.parse("36h").is_err(), "not a whole number of days");
        let batch = setting(SYNC_BATCH).expect("listed");
        assert!(batch.parse("5m").is_err(), "a count takes no unit");
        let e = batch.parse("0").expect_err("below the minimum").to_string();
        assert!(e.contains("sync/batch takes 1 to 10000"), "{e}");
    }

    #[test]
    fn a_stored_value_reads_within_bounds_or_as_the_default() {
        let timeout = setting(SYNC_TIMEOUT).expect("listed");
        assert_eq!(timeout.read(None), 30);
        assert_eq!(timeout.read(Some(&json!("x"))), 30);
        assert_eq!(timeout.read(Some(&serde_json::Value::Null)), 30);
        assert_eq!(timeout.read(Some(&json!(1))), 5, "clamped up");
        assert_eq!(timeout.read(Some(&json!(100_000))), 600, "clamped down");
        assert_eq!(timeout.read(Some(&json!(45))), 45);
    }

    #[test]
    fn every_default_is_within_its_bounds_and_keys_are_unique() {
        let mut keys = std::collections::BTreeSet::new();
        for s in SETTINGS {
            assert!(s.min <= s.default && s.default <= s.max, "{}", s.key);
            assert!(keys.insert(s.key), "{} twice", s.key);
        }
    }
}
