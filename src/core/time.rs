//! Time as the broker sees it: a value handed in, never a clock read.
//!
//! A [`Time`] is a point on the runtime's clock, measured from an origin the
//! caller fixes (the production server uses its start; the simulator, the
//! start of simulated time; tests, zero). The broker only compares times and
//! adds durations to them, so any monotonic origin works, and a recorded run
//! replays with exactly the times it had.

use core::fmt;
use core::ops::Add;
use core::time::Duration;

/// A point in time, as a duration since the caller's origin.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time(Duration);

impl Time {
    /// The origin.
    pub const ZERO: Time = Time(Duration::ZERO);

    /// The time `since_origin` after the origin.
    pub const fn from_origin(since_origin: Duration) -> Time {
        Time(since_origin)
    }

    /// How long after the origin this time is.
    pub const fn since_origin(self) -> Duration {
        self.0
    }

    /// How long after `earlier` this time is, or zero if it is not later.
    pub fn saturating_since(self, earlier: Time) -> Duration {
        self.0.saturating_sub(earlier.0)
    }
}

impl Add<Duration> for Time {
    type Output = Time;

    /// Saturates instead of overflowing: a deadline past the end of time is
    /// one that never comes.
    fn add(self, duration: Duration) -> Time {
        Time(self.0.saturating_add(duration))
    }
}

impl fmt::Display for Time {
    /// Seconds since the origin, to the microsecond: `12.000345s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:06}s", self.0.as_secs(), self.0.subsec_micros())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_add_durations_and_saturate() {
        let t = Time::from_origin(Duration::from_millis(1500));
        assert_eq!(
            (t + Duration::from_millis(500)).since_origin(),
            Duration::from_secs(2)
        );
        assert_eq!(
            Time::from_origin(Duration::MAX) + Duration::from_secs(1),
            Time::from_origin(Duration::MAX)
        );
        assert_eq!(t.saturating_since(Time::ZERO), Duration::from_millis(1500));
        assert_eq!(Time::ZERO.saturating_since(t), Duration::ZERO);
        assert_eq!(t.to_string(), "1.500000s");
    }
}
