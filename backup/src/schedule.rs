//! When the daemon's scheduled backups run, and how failed ones are retried.
//!
//! Each sink has its own [`SinkSchedule`]: a backup is due every `interval`;
//! a snapshot when the last one this till wrote there is older than
//! `snapshot_interval`, a bundle (only the changes the sink lacks) otherwise.
//! A failed backup (device unplugged, disk full, permission denied) is queued
//! and retried after an exponential [`Backoff`] with jitter: base 1 s,
//! multiplier 2, cap 1 h. After [`ALERT_AFTER`] failures in a row the sink is
//! flagged for the operator, and retries go on at the capped pace.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::format::Kind;

/// Failures in a row after which a sink is flagged to the operator.
pub const ALERT_AFTER: u32 = 3;

/// Exponential backoff with jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay before the first retry.
    pub base: Duration,
    /// Growth per failure.
    pub multiplier: u32,
    /// Longest delay.
    pub cap: Duration,
}

impl Default for Backoff {
    /// Base 1 s, multiplier 2, cap 1 h.
    fn default() -> Self {
        Backoff {
            base: Duration::from_secs(1),
            multiplier: 2,
            cap: Duration::from_secs(3600),
        }
    }
}

impl Backoff {
    /// The delay before retry number `failures` (1 = after the first failure),
    /// without jitter: `base × multiplier^(failures-1)`, at most `cap`.
    pub fn ceiling(&self, failures: u32) -> Duration {
        let mut d = self.base;
        for _ in 1..failures.max(1) {
            d = d.saturating_mul(self.multiplier);
            if d >= self.cap {
                return self.cap;
            }
        }
        d.min(self.cap)
    }

    /// The delay before retry number `failures`, with "equal jitter": half the
    /// ceiling plus a random part of the other half (`unit` in `0.0..1.0`), so
    /// tills that failed together do not retry together.
    pub fn delay(&self, failures: u32, unit: f64) -> Duration {
        let c = self.ceiling(failures);
        c / 2 + c.mul_f64(unit.clamp(0.0, 1.0) / 2.0)
    }
}

/// The schedule and last outcome of one sink, as the daemon keeps it (and
/// writes it to the till home for `status`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SinkSchedule {
    /// When the next attempt is due (unix ms).
    pub next_ms: u64,
    /// Failures in a row since the last success.
    pub failures: u32,
    /// When the last backup succeeded (unix ms).
    pub last_ok_ms: Option<u64>,
    /// When this till last wrote a snapshot there (unix ms).
    pub last_snapshot_ms: Option<u64>,
    /// The size of the last file written.
    pub last_bytes: Option<u64>,
    /// The last error, while failing.
    pub last_error: Option<String>,
    /// What kind of failure the last error was, while failing.
    #[serde(default)]
    pub last_error_kind: Option<crate::sink::SinkErrorKind>,
    /// Bytes used on the sink's account (remote sinks), as last seen.
    #[serde(default)]
    pub quota_used: Option<u64>,
    /// The account's limit, as last seen (none when unlimited or unknown).
    #[serde(default)]
    pub quota_limit: Option<u64>,
}

impl SinkSchedule {
    /// Whether an attempt is due at `now_ms`.
    pub fn due(&self, now_ms: u64) -> bool {
        now_ms >= self.next_ms
    }

    /// What the next attempt writes: a snapshot when none was written within
    /// `snapshot_interval`, else a bundle.
    pub fn kind(&self, now_ms: u64, snapshot_interval: Duration) -> Kind {
        match self.last_snapshot_ms {
            Some(t) if now_ms.saturating_sub(t) < snapshot_interval.as_millis() as u64 => {
                Kind::Bundle
            }
            _ => Kind::Snapshot,
        }
    }

    /// Record a success of `kind` writing `bytes` at `now_ms`; the next is due
    /// one `interval` later.
    pub fn succeeded(&mut self, kind: Kind, bytes: u64, now_ms: u64, interval: Duration) {
        self.failures = 0;
        self.last_error = None;
        self.last_error_kind = None;
        self.last_ok_ms = Some(now_ms);
        if kind == Kind::Snapshot {
            self.last_snapshot_ms = Some(now_ms);
        }
        if bytes > 0 {
            self.last_bytes = Some(bytes);
        }
        self.next_ms = now_ms + interval.as_millis() as u64;
    }

    /// Record a failure at `now_ms`; the retry is due after the backoff
    /// (`unit` is the jitter, in `0.0..1.0`), and not before `at_least` (what a
    /// throttled sink asked for). Gives the delay.
    pub fn failed(
        &mut self,
        error: String,
        now_ms: u64,
        backoff: &Backoff,
        unit: f64,
        at_least: Duration,
    ) -> Duration {
        self.failures = self.failures.saturating_add(1);
        self.last_error = Some(error);
        let d = backoff.delay(self.failures, unit).max(at_least);
        self.next_ms = now_ms + d.as_millis() as u64;
        d
    }

    /// Whether the operator should be told: after `after` failures in a row
    /// (the store's `retry/alert_after`, by default [`ALERT_AFTER`]), or at
    /// once when only a person can fix it (a full account, a refused login).
    pub fn alert(&self, after: u32) -> bool {
        self.failures >= after.max(1)
            || (self.failures > 0
                && matches!(
                    self.last_error_kind,
                    Some(crate::sink::SinkErrorKind::Quota | crate::sink::SinkErrorKind::Auth)
                ))
    }

    /// The account's quota as last seen (remote sinks).
    pub fn quota(&self) -> Option<crate::drive::Quota> {
        self.quota_used.map(|usage| crate::drive::Quota {
            usage,
            limit: self.quota_limit,
        })
    }

    /// Whether the account is more than 80 % full, as last seen.
    pub fn nearly_full(&self) -> bool {
        self.quota().is_some_and(|q| q.nearly_full())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_account_or_a_refused_login_alerts_at_once_and_80_percent_warns() {
        let backoff = Backoff::default();
        let mut s = SinkSchedule::default();
        s.failed("Drive down".into(), 0, &backoff, 0.5, Duration::ZERO);
        s.last_error_kind = Some(crate::sink::SinkErrorKind::Transient);
        assert!(!s.alert(ALERT_AFTER), "one transient failure is ridden out");
        s.last_error_kind = Some(crate::sink::SinkErrorKind::Quota);
        assert!(s.alert(ALERT_AFTER), "a full account needs a person now");
        s.succeeded(Kind::Snapshot, 10, 1, Duration::from_secs(60));
        assert!(!s.alert(ALERT_AFTER) && s.last_error_kind.is_none());
        s.quota_used = Some(80);
        s.quota_limit = Some(100);
        assert!(!s.nearly_full());
        s.quota_used = Some(81);
        assert!(s.nearly_full());
        s.quota_limit = None;
        assert!(!s.nearly_full(), "no limit, never full");
        // What older versions wrote still reads.
        let old: SinkSchedule =
            serde_json::from_str(r#"{"next_ms":1,"failures":0,"last_ok_ms":null,"last_snapshot_ms":null,"last_bytes":null,"last_error":null}"#)
                .expect("old state");
        assert_eq!(old.last_error_kind, None);
    }

    #[test]
    fn backoff_doubles_from_one_second_to_an_hour() {
        let b = Backoff::default();
        let secs: Vec<u64> = (1..=14).map(|n| b.ceiling(n).as_secs()).collect();
        assert_eq!(
            secs,
            [
                1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 3600, 3600
            ]
        );
        assert_eq!(b.ceiling(u32::MAX), Duration::from_secs(3600));
    }

    #[test]
    fn jitter_stays_between_half_and_the_whole_ceiling() {
        let b = Backoff::default();
        for n in 1..20 {
            let c = b.ceiling(n);
            assert_eq!(b.delay(n, 0.0), c / 2);
            assert_eq!(b.delay(n, 1.0), c);
            let mid = b.delay(n, 0.5);
            assert!(mid > c / 2 && mid < c, "{n}: {mid:?} of {c:?}");
        }
    }

    #[test]
    fn a_failing_sink_backs_off_then_resumes_its_interval() {
        let b = Backoff::default();
        let hour = Duration::from_secs(3600);
        let mut s = SinkSchedule::default();
        assert!(s.due(0));
        assert_eq!(s.kind(0, Duration::from_secs(86_400)), Kind::Snapshot);
        let mut now = 1_000;
        let mut last = Duration::ZERO;
        for n in 1..=5 {
            let d = s.failed("device missing".into(), now, &b, 0.999, Duration::ZERO);
            assert!(d > last, "retry {n} waits longer");
            assert!(!s.due(now + d.as_millis() as u64 - 1));
            assert!(s.due(now + d.as_millis() as u64));
            assert_eq!(s.alert(ALERT_AFTER), n >= ALERT_AFTER);
            now += d.as_millis() as u64;
            last = d;
        }
        // A sink that asks to wait longer than the backoff is waited for.
        let d = s.failed("throttled".into(), now, &b, 0.0, Duration::from_secs(7_200));
        assert_eq!(d, Duration::from_secs(7_200));
        now += d.as_millis() as u64;
        s.succeeded(Kind::Snapshot, 500, now, hour);
        assert_eq!(s.failures, 0);
        assert!(!s.alert(ALERT_AFTER));
        assert_eq!(s.last_error, None);
        assert_eq!(s.next_ms, now + 3_600_000);
        assert_eq!(
            s.kind(now + 60_000, Duration::from_secs(86_400)),
            Kind::Bundle
        );
        assert_eq!(
            s.kind(now + 86_400_000, Duration::from_secs(86_400)),
            Kind::Snapshot
        );
    }
}
