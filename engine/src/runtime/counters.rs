//! Running totals of each shard for `/metrics`: written by the shard's own tasks with relaxed
//! atomics, read by any thread at scrape time (no lock, no allocation when observing).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A Prometheus-style histogram of integer observations (fixed upper bounds), updated with
/// relaxed atomics: no lock and no allocation when observing.
pub struct AtomicHistogram {
    bounds: &'static [u64],
    /// One per bound, then the overflow bucket (+Inf); not cumulative.
    buckets: Box<[AtomicU64]>,
    sum: AtomicU64,
}

/// A read of an [`AtomicHistogram`] (or the sum of several with the same bounds).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HistogramCounts {
    pub bounds: &'static [u64],
    /// One per bound, then +Inf; not cumulative.
    pub counts: Vec<u64>,
    pub sum: u64,
}

impl AtomicHistogram {
    pub fn new(bounds: &'static [u64]) -> AtomicHistogram {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]));
        AtomicHistogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, value: u64) {
        self.observe_n(value, 1);
    }

    /// Records `n` observations of `value`.
    pub fn observe_n(&self, value: u64, n: u64) {
        let i = self.bounds.partition_point(|&b| b < value);
        self.buckets[i].fetch_add(n, Relaxed);
        self.sum.fetch_add(value.saturating_mul(n), Relaxed);
    }

    pub fn read(&self) -> HistogramCounts {
        HistogramCounts {
            bounds: self.bounds,
            counts: self.buckets.iter().map(|b| b.load(Relaxed)).collect(),
            sum: self.sum.load(Relaxed),
        }
    }
}

impl HistogramCounts {
    /// Adds another read of a histogram with the same bounds.
    pub fn add(&mut self, other: &HistogramCounts) {
        if self.counts.is_empty() {
            *self = other.clone();
            return;
        }
        debug_assert_eq!(self.bounds, other.bounds);
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.sum += other.sum;
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// Upper bounds of the WAL fdatasync histogram, in nanoseconds (50 µs .. 2.5 s).
pub const FSYNC_BOUNDS_NS: &[u64] = &[
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
];

/// Running totals of one shard for `/metrics`, written by the shard's own tasks (on its core)
/// with relaxed atomics and read by any thread at scrape time.
#[repr(align(128))]
pub struct ShardCounters {
    /// Duration of each group commit's fdatasync (summed when one persist needed several).
    pub wal_fsync_ns: AtomicHistogram,
    pub wal_bytes_written: AtomicU64,
    pub snapshots: AtomicU64,
    pub signatures_valid: AtomicU64,
    pub signatures_invalid: AtomicU64,
    /// Transfers a gateway submitted for accounts it controls (admitted with no signature).
    pub transfers_custodial: AtomicU64,
    /// Lookups of the verifier's decompressed-key cache (bounded: `KEY_CACHE_ENTRIES_MAX`).
    pub key_cache_hits: AtomicU64,
    pub key_cache_misses: AtomicU64,
    /// Where a shard's time goes, per turn and per submission (`Stage`), in nanoseconds.
    pub stage_ns: [AtomicHistogram; Stage::COUNT],
    /// Binary batches of this shard submitted whole on its core (steered requests) and
    /// admitted: proposed as the log entry itself (no copy of their records)...
    pub archives_as_entries: AtomicU64,
    /// ...or copied into the entry being built (a record refused, or too few or too many
    /// records for an entry of their own).
    pub archives_copied: AtomicU64,
    /// Commands that reached the shard over a ring from another executor (`mesh`).
    pub commands_from_cores: AtomicU64,
    /// Commands from threads that are not executors (the control plane: tests, shutdown).
    pub commands_from_threads: AtomicU64,
    /// Ready cycles with writes, staged while the shard had no group commit in flight...
    pub write_cycles_alone: AtomicU64,
    /// ...and while one was in flight: proposed and sent while the previous fdatasync ran.
    pub write_cycles_overlapped: AtomicU64,
    /// Per downstream sink (in `EngineConfig::applied_taps` order): applied entries handed to
    /// its queue, and those it had no room for.
    pub applied_tapped: [AtomicU64; super::SINKS_MAX],
    pub applied_dropped: [AtomicU64; super::SINKS_MAX],
    /// Local snapshots saved although a sink had not written up to them (it stayed behind past
    /// `sink_retain_bytes_max`).
    pub snapshots_ahead_of_sinks: AtomicU64,
    /// Commands waiting behind the submission the shard's ingress verifies now (0 once it took
    /// the last one queued): the cores whose shards have none are offered other cores'
    /// verification (`verify_help`).
    pub ingress_backlog: AtomicU64,
}

impl Default for ShardCounters {
    fn default() -> ShardCounters {
        ShardCounters {
            wal_fsync_ns: AtomicHistogram::new(FSYNC_BOUNDS_NS),
            wal_bytes_written: AtomicU64::new(0),
            snapshots: AtomicU64::new(0),
            signatures_valid: AtomicU64::new(0),
            signatures_invalid: AtomicU64::new(0),
            transfers_custodial: AtomicU64::new(0),
            key_cache_hits: AtomicU64::new(0),
            key_cache_misses: AtomicU64::new(0),
            stage_ns: std::array::from_fn(|_| AtomicHistogram::new(FSYNC_BOUNDS_NS)),
            archives_as_entries: AtomicU64::new(0),
            archives_copied: AtomicU64::new(0),
            commands_from_cores: AtomicU64::new(0),
            commands_from_threads: AtomicU64::new(0),
            write_cycles_alone: AtomicU64::new(0),
            write_cycles_overlapped: AtomicU64::new(0),
            applied_tapped: Default::default(),
            applied_dropped: Default::default(),
            snapshots_ahead_of_sinks: AtomicU64::new(0),
            ingress_backlog: AtomicU64::new(0),
        }
    }
}

/// The stages of a transfer's way through its shard, timed (`ShardCounters::stage_ns`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// From the submitting core's send to the shard's driver taking the submission: the
    /// channels, the ingress task's verification, and the turn the driver was in.
    ToAdmission,
    /// The start of a turn: entries built and proposed, raft's ready (with the entries other
    /// validators' acknowledgements committed since the last turn, applied).
    ProposeApply,
    /// A turn's write and fdatasync (and a snapshot from the leader, if any, after the local
    /// one being archived), wall clock: it includes waiting for the core once the I/O
    /// completed.
    Persist,
    /// The rest of a turn: raft's answer to the write (entries it committed applied: on a
    /// single validator, all of them), clients answered, messages to other shards.
    Answer,
}

impl Stage {
    pub const COUNT: usize = 4;
    pub const ALL: [Stage; Stage::COUNT] = [
        Stage::ToAdmission,
        Stage::ProposeApply,
        Stage::Persist,
        Stage::Answer,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Stage::ToAdmission => "to_admission",
            Stage::ProposeApply => "propose_apply",
            Stage::Persist => "persist",
            Stage::Answer => "answer",
        }
    }
}

impl ShardCounters {
    /// Counts a whole batch's admission (`ShardNode::submit_archive`): as an entry of its own
    /// (`Some(true)`), copied (`Some(false)`), or not admitted (`None`, not counted).
    pub(super) fn record_archive(&self, whole: Option<bool>) {
        let counted = match whole {
            Some(true) => &self.archives_as_entries,
            Some(false) => &self.archives_copied,
            None => return,
        };
        counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Records that `stage` took `elapsed`.
    pub(super) fn record_stage(&self, stage: Stage, elapsed: std::time::Duration) {
        let ns = elapsed.as_nanos().min(u64::MAX as u128) as u64;
        self.stage_ns[stage as usize].observe(ns);
    }

    /// Records that `stage` took the time since `*since`, and starts the next stage now.
    pub(super) fn lap(&self, stage: Stage, since: &mut std::time::Instant) {
        let now = std::time::Instant::now();
        self.record_stage(stage, now - *since);
        *since = now;
    }

    pub(super) fn record_key_cache(&self, hits: u64, misses: u64) {
        if hits > 0 {
            self.key_cache_hits.fetch_add(hits, Relaxed);
        }
        if misses > 0 {
            self.key_cache_misses.fetch_add(misses, Relaxed);
        }
    }

    /// Transfers admitted without a signature: a gateway moving accounts it controls.
    pub(super) fn record_custodial(&self, count: u64) {
        if count > 0 {
            self.transfers_custodial.fetch_add(count, Relaxed);
        }
    }

    pub(super) fn record_verified(&self, valid: &[bool]) {
        let ok = valid.iter().filter(|&&v| v).count() as u64;
        let bad = valid.len() as u64 - ok;
        if ok > 0 {
            self.signatures_valid.fetch_add(ok, Relaxed);
        }
        if bad > 0 {
            self.signatures_invalid.fetch_add(bad, Relaxed);
        }
    }

    pub(super) fn record_commit(&self, stats: &aurigraph_storage::CommitStats) {
        if stats.bytes_written == 0 {
            return;
        }
        self.wal_bytes_written
            .fetch_add(stats.bytes_written, Relaxed);
        let ns = stats.fsync_duration.as_nanos().min(u64::MAX as u128) as u64;
        self.wal_fsync_ns.observe(ns);
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn atomic_histogram_buckets_by_upper_bound() {
        static BOUNDS: &[u64] = &[10, 100, 1000];
        let h = AtomicHistogram::new(BOUNDS);
        h.observe(0);
        h.observe(10); // le="10" includes 10
        h.observe(11);
        h.observe_n(1000, 3);
        h.observe(5000);
        let r = h.read();
        assert_eq!(r.counts, vec![2, 1, 3, 1]);
        assert_eq!(r.count(), 7);
        assert_eq!(r.sum, 10 + 11 + 3000 + 5000);
        let mut total = HistogramCounts::default();
        total.add(&r);
        total.add(&r);
        assert_eq!(total.counts, vec![4, 2, 6, 2]);
    }

    #[test]
    fn shard_counters_count_outcomes_and_commits() {
        let c = ShardCounters::default();
        c.record_verified(&[true, false, true]);
        assert_eq!(c.signatures_valid.load(Relaxed), 2);
        assert_eq!(c.signatures_invalid.load(Relaxed), 1);
        c.record_commit(&aurigraph_storage::CommitStats::default());
        assert_eq!(c.wal_fsync_ns.read().count(), 0);
        c.record_commit(&aurigraph_storage::CommitStats {
            bytes_written: 8192,
            fsync_duration: Duration::from_micros(700),
            ..Default::default()
        });
        let h = c.wal_fsync_ns.read();
        assert_eq!(h.count(), 1);
        assert_eq!(
            h.counts[FSYNC_BOUNDS_NS.partition_point(|&b| b < 700_000)],
            1
        );
        assert_eq!(c.wal_bytes_written.load(Relaxed), 8192);
    }
}
