//! The ramp's arithmetic: the level (requests in flight, or requests per second) at each moment,
//! when it changes, how long a run lasts by default, and where the report intervals fall.

use std::time::Duration;

/// What the ramp sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RampKind {
    /// Closed loop: requests in flight (each worker sends its next request when its reply came).
    Concurrency,
    /// Open loop: requests per second, sent on schedule whatever the replies.
    Rate,
}

impl RampKind {
    pub fn name(self) -> &'static str {
        match self {
            RampKind::Concurrency => "concurrency",
            RampKind::Rate => "rate",
        }
    }

    /// The level's name with its unit, for axes and tables.
    pub fn label(self) -> &'static str {
        match self {
            RampKind::Concurrency => "concurrency (requests in flight)",
            RampKind::Rate => "target rate (requests/s)",
        }
    }
}

/// From `start` to `end` by `step` every `step_interval` (down when `end < start`); the level
/// stays at `end` once reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ramp {
    pub kind: RampKind,
    pub start: u64,
    pub end: u64,
    pub step: u64,
    pub step_interval: Duration,
}

impl Ramp {
    /// Steps taken by time `t` since the start.
    fn steps_at(&self, t: Duration) -> u64 {
        let n = t.as_nanos() / self.step_interval.as_nanos().max(1);
        n.min(u64::MAX as u128) as u64
    }

    /// The level at time `t` since the start.
    pub fn level_at(&self, t: Duration) -> u64 {
        let moved = self.steps_at(t).saturating_mul(self.step);
        if self.end >= self.start {
            self.start.saturating_add(moved).min(self.end)
        } else {
            self.start.saturating_sub(moved).max(self.end)
        }
    }

    /// Steps from `start` to `end`.
    pub fn steps(&self) -> u64 {
        self.start.abs_diff(self.end).div_ceil(self.step.max(1))
    }

    /// The duration of a run without `--duration`: up to the end level, then one step
    /// interval at it.
    pub fn default_duration(&self) -> Duration {
        self.step_interval
            .saturating_mul(u32::try_from(self.steps() + 1).unwrap_or(u32::MAX))
    }

    /// The highest level of the ramp.
    pub fn max_level(&self) -> u64 {
        self.start.max(self.end)
    }

    /// When the level changes next after `t`, if it still does.
    pub fn next_change_after(&self, t: Duration) -> Option<Duration> {
        let n = self.steps_at(t);
        if n >= self.steps() {
            return None;
        }
        Some(
            self.step_interval
                .saturating_mul(u32::try_from(n + 1).ok()?),
        )
    }
}

/// The report intervals of a run of `duration`: `[i * every, min((i + 1) * every, duration))`,
/// contiguous from 0, the last one possibly shorter.
pub fn interval_bounds(duration: Duration, every: Duration) -> Vec<(Duration, Duration)> {
    let mut bounds = Vec::new();
    if every.is_zero() {
        return bounds;
    }
    let mut start = Duration::ZERO;
    while start < duration {
        let end = (start + every).min(duration);
        bounds.push((start, end));
        start = end;
    }
    bounds
}

/// Count per second over an interval of `seconds` (0 for an empty interval).
pub fn per_second(count: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(start: u64, end: u64, step: u64) -> Ramp {
        Ramp {
            kind: RampKind::Concurrency,
            start,
            end,
            step,
            step_interval: Duration::from_secs(10),
        }
    }

    #[test]
    fn levels_step_up_and_stop_at_the_end() {
        let r = ramp(1, 50, 5);
        let at = |s: u64| r.level_at(Duration::from_secs(s));
        assert_eq!([at(0), at(9), at(10), at(19), at(20)], [1, 1, 6, 6, 11]);
        assert_eq!(at(90), 46);
        assert_eq!(at(100), 50);
        assert_eq!(at(1_000_000), 50);
        assert_eq!(r.steps(), 10);
        assert_eq!(r.default_duration(), Duration::from_secs(110));
        assert_eq!(r.max_level(), 50);
        assert_eq!(
            r.next_change_after(Duration::from_secs(15)),
            Some(Duration::from_secs(20))
        );
        assert_eq!(r.next_change_after(Duration::from_secs(100)), None);
    }

    #[test]
    fn levels_step_down_too() {
        let r = ramp(20, 3, 5);
        let at = |s: u64| r.level_at(Duration::from_secs(s));
        assert_eq!([at(0), at(10), at(20), at(30), at(40)], [20, 15, 10, 5, 3]);
        assert_eq!(r.steps(), 4);
        assert_eq!(r.max_level(), 20);
        let flat = ramp(4, 4, 1);
        assert_eq!(flat.steps(), 0);
        assert_eq!(flat.default_duration(), Duration::from_secs(10));
        assert_eq!(flat.level_at(Duration::from_secs(99)), 4);
    }

    #[test]
    fn intervals_cover_the_duration_contiguously() {
        let b = interval_bounds(Duration::from_secs(18), Duration::from_secs(4));
        let secs: Vec<(u64, u64)> = b.iter().map(|(a, z)| (a.as_secs(), z.as_secs())).collect();
        assert_eq!(secs, [(0, 4), (4, 8), (8, 12), (12, 16), (16, 18)]);
        let exact = interval_bounds(Duration::from_secs(12), Duration::from_secs(4));
        assert_eq!(exact.len(), 3);
        assert_eq!(exact.last().unwrap().1, Duration::from_secs(12));
        let ms = interval_bounds(Duration::from_millis(1050), Duration::from_millis(100));
        assert_eq!(ms.len(), 11);
        assert!(ms.windows(2).all(|w| w[0].1 == w[1].0));
        assert!(interval_bounds(Duration::from_secs(1), Duration::ZERO).is_empty());
        assert_eq!(per_second(10, 4.0), 2.5);
        assert_eq!(per_second(10, 0.0), 0.0);
    }
}
