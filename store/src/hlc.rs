//! Hybrid logical clocks: a timestamp on every change that orders events sanely
//! even when a till's wall clock is hours wrong.
//!
//! An [`Hlc`] packs milliseconds since the epoch (upper 48 bits) and a logical
//! counter (lower 16 bits) into a `u64`. A till's clock never goes backwards: each
//! local event is later than every event the till has seen, local or received,
//! whatever its wall clock says. Ties between tills are broken by till id where a
//! total order is needed.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use serde::{Deserialize, Serialize};

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
    /// Take note of a timestamp received from another till.
    pub fn observe(&mut self, remote: Hlc) {
        if remote > self.last {
            self.last = remote;
        }
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
        s.observe(remote);
        let local = s.tick(1_000_000_000);
        assert!(local > remote);
    }

    #[test]
    fn counter_overflow_borrows_a_millisecond() {
        let mut s = HlcState::resume(Hlc(Hlc::from_ms(7).0 | COUNTER_MAX));
        let t = s.tick(7);
        assert_eq!((t.ms(), t.counter()), (8, 0));
    }
}
