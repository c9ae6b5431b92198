//! Hybrid logical clocks: a timestamp on every change that orders events sanely
//! even when a till's wall clock is hours wrong.
//!
//! An [`Hlc`] packs milliseconds since the epoch (upper 48 bits) and a logical
//! counter (lower 16 bits) into a `u64`. A till's clock never goes backwards: each
//! local event is later than every event the till has seen, local or received,
//! whatever its wall clock says. Ties between tills are broken by till id where a
//! total order is needed.
//!
//! One till with a clock years ahead must not drag every other till's clock
//! along: a till observes a remote timestamp only while it is at most a bound
//! (the store's `clock/max_skew_s`, [`DEFAULT_MAX_SKEW_S`] by default) ahead of its
//! own wall clock. The change carrying it is merged all the same; the largest such
//! skew is kept as a [`ClockSkew`] for `status` to raise. Calendar placement (the
//! day of a sale or stock movement, the month of an audit entry) comes from the
//! till's wall clock, never from the HLC, so a clock that was wrong once cannot
//! file later sales under a wrong day.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use serde::{Deserialize, Serialize};

use crate::error::StorageError;
use crate::ids::TillId;
use crate::store::Store;
use crate::tables::{self, meta};
use redb::ReadableDatabase;

/// How far ahead of a till's wall clock a remote timestamp may be and still move
/// its HLC, unless the store's configuration says otherwise: five minutes.
pub const DEFAULT_MAX_SKEW_S: u64 = 5 * 60;

/// A hybrid logical timestamp.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Hlc(u64);

const COUNTER_BITS: u32 = 16;
const COUNTER_MAX: u64 = (1 << COUNTER_BITS) - 1;

impl Hlc {
    /// The timestamp of raw bits.
    pub const fn from_u64(raw: u64) -> Self {
        Self(raw)
    }
    /// The raw bits; ordering the bits orders the timestamps.
    pub const fn as_u64(&self) -> u64 {
        self.0
    }
    /// A timestamp at a wall time with a zero counter.
    pub const fn from_ms(ms: u64) -> Self {
        Self(ms << COUNTER_BITS)
    }
    /// Milliseconds since the unix epoch.
    pub const fn ms(&self) -> u64 {
        self.0 >> COUNTER_BITS
    }
    /// The logical counter.
    pub const fn counter(&self) -> u64 {
        self.0 & COUNTER_MAX
    }
}

impl fmt::Display for Hlc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.ms(), self.counter())
    }
}
impl fmt::Debug for Hlc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hlc({self})")
    }
}

/// A source of wall-clock time, injected so tests can make a till's clock wrong.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Milliseconds since the unix epoch, as this till believes.
    fn now_ms(&self) -> u64;
}

/// The system clock, optionally shifted by a fixed offset (to simulate a wrong clock).
#[derive(Debug, Default)]
pub struct SystemClock {
    offset_ms: i64,
}

impl SystemClock {
    /// The system clock shifted by `offset_ms` (negative: behind).
    pub fn with_offset(offset_ms: i64) -> Self {
        Self { offset_ms }
    }
}

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        now.saturating_add(self.offset_ms).max(0) as u64
    }
}

/// A clock that only moves when told to: for tests and simulations.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A clock showing `ms`.
    pub fn new(ms: u64) -> Self {
        Self(Arc::new(AtomicI64::new(ms as i64)))
    }
    /// Move the clock by `delta_ms` (may be negative).
    pub fn advance(&self, delta_ms: i64) {
        self.0.fetch_add(delta_ms, Ordering::SeqCst);
    }
    /// Set the clock to `ms`.
    pub fn set(&self, ms: u64) {
        self.0.store(ms as i64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst).max(0) as u64
    }
}

/// The clock state of one till: the latest timestamp it has issued or seen.
#[derive(Debug, Clone, Copy, Default)]
pub struct HlcState {
    last: Hlc,
}

impl HlcState {
    /// Resume from the latest timestamp persisted.
    pub fn resume(last: Hlc) -> Self {
        Self { last }
    }
    /// The latest timestamp issued or seen.
    pub fn last(&self) -> Hlc {
        self.last
    }
    /// A timestamp for a local event: later than everything seen so far.
    pub fn tick(&mut self, now_ms: u64) -> Hlc {
        let wall = Hlc::from_ms(now_ms);
        self.last = if wall > self.last {
            wall
        } else if self.last.counter() < COUNTER_MAX {
            Hlc(self.last.0 + 1)
        } else {
            // Counter exhausted within one millisecond: borrow the next millisecond.
            Hlc::from_ms(self.last.ms() + 1)
        };
        self.last
    }
    /// Take note of a timestamp received from another till, at wall time
    /// `now_ms`. A timestamp more than `max_ahead_ms` ahead of the wall clock does
    /// not move the clock; then the answer is how far ahead it is.
    pub fn observe(&mut self, remote: Hlc, now_ms: u64, max_ahead_ms: u64) -> Option<u64> {
        let ahead = remote.ms().saturating_sub(now_ms);
        if ahead > max_ahead_ms {
            return Some(ahead);
        }
        if remote > self.last {
            self.last = remote;
        }
        None
    }
}

/// The largest skew of another till's clock this till has seen beyond the bound,
/// kept in the store (versioned JSON in its meta table).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ClockSkew {
    /// Format version ([`ClockSkew::VERSION`]).
    #[serde(rename = "v")]
    pub version: u32,
    /// The till whose timestamp it was.
    #[serde(with = "crate::model::till_hex")]
    pub till: TillId,
    /// How far its timestamp was ahead of this till's wall clock, in ms.
    pub ahead_ms: u64,
    /// The timestamp.
    pub hlc: Hlc,
    /// This till's wall clock when it saw it (unix ms).
    pub seen_at_ms: u64,
}

impl ClockSkew {
    /// The format version this build writes.
    pub const VERSION: u32 = 1;
}

impl Store {
    /// The largest skew of another till's clock this till has seen beyond the
    /// bound ([`Store::max_clock_skew_s`]), if any: that till's timestamps did not
    /// move this till's clock.
    pub fn clock_skew(&self) -> Result<Option<ClockSkew>, StorageError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(tables::META)?;
        let Some(v) = t.get(meta::CLOCK_SKEW)? else {
            return Ok(None);
        };
        match serde_json::from_slice::<ClockSkew>(v.value()) {
            Ok(skew) => Ok(Some(skew)),
            Err(e) => Err(StorageError::Database(format!(
                "meta entry {} does not read: {e}",
                meta::CLOCK_SKEW
            ))),
        }
    }

    /// This till's wall clock (unix ms), as its [`Clock`] says.
    pub fn wall_ms(&self) -> u64 {
        self.opts.clock.now_ms()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_when_wall_clock_goes_back() {
        let mut s = HlcState::default();
        let a = s.tick(10_000);
        let b = s.tick(5_000);
        let c = s.tick(5_000);
        assert!(a < b && b < c);
        assert_eq!(c.ms(), 10_000);
    }

    #[test]
    fn observed_remote_orders_later_events_after_it() {
        // A till whose clock is three hours behind still stamps its next event
        // after what it has received.
        let mut s = HlcState::default();
        let remote = Hlc::from_ms(1_000_000_000 + 3 * 3_600_000);
        // Its clock is behind, so the remote is ahead of it: within a bound of
        // four hours it is taken.
        assert_eq!(s.observe(remote, 1_000_000_000, 4 * 3_600_000), None);
        let local = s.tick(1_000_000_000);
        assert!(local > remote);
    }

    #[test]
    fn remote_far_ahead_of_the_wall_clock_is_not_followed() {
        let now = 1_800_000_000_000;
        let mut s = HlcState::resume(Hlc::from_ms(now - 1_000));
        let ten_years = 10 * 365 * 86_400_000;
        let bound = DEFAULT_MAX_SKEW_S * 1000;
        assert_eq!(
            s.observe(Hlc::from_ms(now + ten_years), now, bound),
            Some(ten_years)
        );
        assert_eq!(s.last(), Hlc::from_ms(now - 1_000));
        let local = s.tick(now);
        assert_eq!(local, Hlc::from_ms(now));
        // Just within the bound, it is followed.
        assert_eq!(s.observe(Hlc::from_ms(now + bound), now, bound), None);
        assert_eq!(s.last(), Hlc::from_ms(now + bound));
    }

    #[test]
    fn counter_overflow_borrows_a_millisecond() {
        let mut s = HlcState::resume(Hlc(Hlc::from_ms(7).0 | COUNTER_MAX));
        let t = s.tick(7);
        assert_eq!((t.ms(), t.counter()), (8, 0));
    }
}
