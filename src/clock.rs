//! The broker's wall clock, as Kafka's `Time`: one value the Broker hands down to every part that stamps
//! or compares wall-clock times (record timestamps, segment rolling, retention, offset commit and
//! expiration times, group state times), so that tests can move time instead of waiting for it.
//!
//! Deadlines and timers measured with `Instant` (sessions, flush intervals, sleeps) do not go through it:
//! they need a monotonic clock and tokio's timers.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, from the system or from a [`ManualClock`]. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    /// None: the system clock.
    manual: Option<Arc<AtomicI64>>,
}

impl Clock {
    /// The system's wall clock.
    pub fn system() -> Clock {
        Clock { manual: None }
    }

    /// Wall-clock milliseconds since the Unix epoch (0 before 1970, `i64::MAX` in the far future).
    pub fn now_ms(&self) -> i64 {
        match &self.manual {
            Some(now) => now.load(Ordering::SeqCst),
            None => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        }
    }
}

/// A clock that stands still until a test advances it; [`ManualClock::clock`] gives the [`Clock`] to hand
/// to the broker's parts, and every copy sees each advance.
#[derive(Debug)]
pub struct ManualClock {
    now_ms: Arc<AtomicI64>,
}

impl ManualClock {
    /// A clock stopped at `start_ms` milliseconds since the Unix epoch.
    pub fn new(start_ms: i64) -> ManualClock {
        ManualClock {
            now_ms: Arc::new(AtomicI64::new(start_ms)),
        }
    }

    /// The clock to pass to the parts under test.
    pub fn clock(&self) -> Clock {
        Clock {
            manual: Some(self.now_ms.clone()),
        }
    }

    /// Moves time forward by `by` (saturating), as seen by every [`Clock`] made from this one.
    pub fn advance(&self, by: Duration) {
        let by = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        let _ = self
            .now_ms
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |now| {
                Some(now.saturating_add(by))
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_advanced_and_every_copy_sees_it() {
        let manual = ManualClock::new(1_000);
        let (a, b) = (manual.clock(), manual.clock().clone());
        assert_eq!((a.now_ms(), b.now_ms()), (1_000, 1_000));
        manual.advance(Duration::from_secs(60));
        assert_eq!((a.now_ms(), b.now_ms()), (61_000, 61_000));
        manual.advance(Duration::MAX);
        assert_eq!(a.now_ms(), i64::MAX, "saturates instead of wrapping");
    }

    #[test]
    fn system_clock_is_after_2020() {
        assert!(Clock::system().now_ms() > 1_577_836_800_000);
        assert!(Clock::default().now_ms() > 1_577_836_800_000);
    }
}
