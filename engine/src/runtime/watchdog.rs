//! The per-core liveness watchdog. Every executor runs a heartbeat task that counts a beat each
//! [`HEARTBEAT_INTERVAL`] (10 ms); a thread outside the executors looks at the counts every
//! `CHECK_INTERVAL`. A core whose count has not moved for `stall_timeout` is stalled — its
//! reactor asleep on something that will not complete, or a task that never yields — and its
//! shards answer nothing while the process looks alive. The watchdog logs which core and for
//! how long, then stops the process (exit status 70, `EX_SOFTWARE`) so that its supervisor
//! restarts it; recovery then starts from what the disk holds, and nothing acknowledged was
//! lost (acknowledgements follow durability). Tests ask it to record the stall instead.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often each executor's heartbeat task counts a beat.
pub(crate) const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(10);

/// How often the watchdog thread looks at the beats.
const CHECK_INTERVAL: Duration = Duration::from_millis(500);

/// Exit status of a node stopped by the watchdog (`EX_SOFTWARE` of sysexits.h).
pub const EXIT_STALLED: i32 = 70;

/// A beat count that marks a core whose executor has finished (nothing left to watch).
const FINISHED: u64 = u64::MAX;

/// What the watchdog does about a stalled core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StallAction {
    /// Log it and exit the process with [`EXIT_STALLED`].
    Exit,
    /// Log it and record it ([`Watchdog::stalled`]); for tests.
    Record,
}

/// One beat counter per core, each on its own cache line (written every 10 ms by its core only).
#[repr(align(128))]
#[derive(Default)]
struct Beat(AtomicU64);

/// The executors' beat counters, shared between the cores and the watchdog.
#[derive(Clone)]
pub struct Beats(Arc<[Beat]>);

impl Beats {
    pub fn new(cores: usize) -> Beats {
        Beats((0..cores).map(|_| Beat::default()).collect())
    }

    /// Core `core` is alive (called by its heartbeat task).
    pub fn beat(&self, core: usize) {
        let beat = &self.0[core].0;
        if beat.load(Relaxed) != FINISHED {
            beat.fetch_add(1, Relaxed);
        }
    }

    /// Core `core`'s executor has finished its work: not a stall.
    pub fn finished(&self, core: usize) {
        self.0[core].0.store(FINISHED, Relaxed);
    }

    fn read(&self) -> Vec<u64> {
        self.0.iter().map(|b| b.0.load(Relaxed)).collect()
    }

    /// Whether every core beat since `last` (or finished), and the counts now: a supervisor's
    /// watchdog is told the node is alive only when each executor made progress.
    pub fn all_moved_since(&self, last: &[u64]) -> (bool, Vec<u64>) {
        let now = self.read();
        let moved = now
            .iter()
            .zip(last)
            .all(|(now, last)| *now == FINISHED || now != last);
        (moved && now.len() == last.len(), now)
    }

    /// The counts now (the first `last` for [`Beats::all_moved_since`]).
    pub fn counts(&self) -> Vec<u64> {
        self.read()
    }
}

/// The watchdog thread; stopped by [`Watchdog::stop`] (before the executors are shut down, whose
/// beats then stop for good reason) or when dropped.
pub struct Watchdog {
    stop: Arc<AtomicBool>,
    stalled: Arc<Mutex<Option<(usize, Duration)>>>,
    thread: Option<JoinHandle<()>>,
}

impl Watchdog {
    pub fn start(beats: Beats, stall_timeout: Duration, action: StallAction) -> Watchdog {
        assert!(
            stall_timeout >= CHECK_INTERVAL * 2,
            "a stall lasts several checks"
        );
        let stop = Arc::new(AtomicBool::new(false));
        let stalled = Arc::new(Mutex::new(None));
        let thread = {
            let stop = stop.clone();
            let stalled = stalled.clone();
            std::thread::Builder::new()
                .name("aurigraph-watch".into())
                .spawn(move || watch(&beats, stall_timeout, action, &stop, &stalled))
                .expect("spawn the watchdog thread")
        };
        Watchdog {
            stop,
            stalled,
            thread: Some(thread),
        }
    }

    /// The first stall seen (core, how long its beats had not moved), with `StallAction::Record`.
    pub fn stalled(&self) -> Option<(usize, Duration)> {
        *self.stalled.lock().expect("watchdog record")
    }

    pub fn stop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop();
    }
}

fn watch(
    beats: &Beats,
    stall_timeout: Duration,
    action: StallAction,
    stop: &AtomicBool,
    stalled: &Mutex<Option<(usize, Duration)>>,
) {
    let mut last = beats.read();
    let mut moved_at = vec![Instant::now(); last.len()];
    let mut reported = vec![false; last.len()];
    while !stop.load(Relaxed) {
        std::thread::park_timeout(CHECK_INTERVAL);
        if stop.load(Relaxed) {
            return;
        }
        let now = Instant::now();
        for (core, count) in beats.read().into_iter().enumerate() {
            if count != last[core] || count == FINISHED {
                last[core] = count;
                moved_at[core] = now;
                reported[core] = false;
                continue;
            }
            let still = now.duration_since(moved_at[core]);
            if still < stall_timeout || reported[core] {
                continue;
            }
            reported[core] = true;
            tracing::error!(
                core,
                stalled_ms = still.as_millis() as u64,
                "executor made no progress (its heartbeat stopped): its shards are not served"
            );
            match action {
                StallAction::Exit => {
                    eprintln!(
                        "aurigraph: executor of core {core} made no progress for {:.1} s; \
                         stopping (exit {EXIT_STALLED}) so that the supervisor restarts the node",
                        still.as_secs_f64()
                    );
                    std::process::exit(EXIT_STALLED);
                }
                StallAction::Record => {
                    stalled
                        .lock()
                        .expect("watchdog record")
                        .get_or_insert((core, still));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_core_whose_beats_stop_is_reported_and_a_finished_one_is_not() {
        let beats = Beats::new(3);
        let mut watchdog = Watchdog::start(
            beats.clone(),
            Duration::from_millis(1200),
            StallAction::Record,
        );
        beats.finished(2);
        let start = Instant::now();
        // Core 0 beats all along; core 1 stops after 300 ms; core 2 has finished.
        while start.elapsed() < Duration::from_millis(3000) {
            beats.beat(0);
            beats.beat(2);
            if start.elapsed() < Duration::from_millis(300) {
                beats.beat(1);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let (core, still) = watchdog.stalled().expect("core 1 stalled");
        assert_eq!(core, 1);
        assert!(still >= Duration::from_millis(1200), "{still:?}");
        watchdog.stop();
    }

    #[test]
    fn cores_that_beat_are_never_reported() {
        let beats = Beats::new(2);
        let watchdog = Watchdog::start(
            beats.clone(),
            Duration::from_millis(1000),
            StallAction::Record,
        );
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(2500) {
            beats.beat(0);
            beats.beat(1);
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(watchdog.stalled(), None);
    }
}
