//! A sink's thread: it takes the entries the shards applied (a bounded channel the shards
//! never wait on), turns them into rows off the executors (decoding the batch, hashing each
//! transfer), and writes them in batches. When the server is away it keeps what it received,
//! up to a bound, and reconnects with back-off; the node's acknowledgements and throughput do
//! not depend on it. Entries lost on the way (a full queue, the bound, a snapshot restored past
//! them) show as gaps in the entries' chain: counted, logged, and reported by the health check.

use crate::entry::{EntryBatch, Gap};
use crate::postgres_archive::{Appended, ArchiveError, PgArchive};
use crate::redis_cache::{RedisCache, RedisError, RedisOptions};
use aurigraph_engine::replica::{AccountBalance, AppliedEntry};
use aurigraph_engine::SinkWritten;
use crossbeam_channel::{Receiver, RecvTimeoutError};
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Rows gathered before a batch is written (or after `FLUSH_INTERVAL`, whichever first).
const BATCH_ROWS_MAX: usize = 20_000;
const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
/// Rows kept while the server is away; older entries are dropped past it (a gap).
const PENDING_ROWS_MAX: usize = 2_000_000;
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// A downstream store the runner writes to.
pub trait Sink: Sized {
    type Error: std::fmt::Display;
    /// The sink's name in metrics, logs and the health check.
    const NAME: &'static str;
    /// Writes consecutive entries of one shard exactly once (see each sink).
    fn append(&mut self, shard: u32, entries: &[EntryBatch]) -> Result<Appended, Self::Error>;
    /// Writes the balances of every account of `shard` as of log index `index` (after a gap:
    /// the entries that follow then bring each account back to its latest balance).
    fn resync(
        &mut self,
        shard: u32,
        index: u64,
        balances: &[AccountBalance],
    ) -> Result<(), Self::Error>;
}

/// Where a sink reads a shard's balances from after a gap: (the log index they are at, every
/// account's balance of every asset it holds or held). The node answers from the shard's state.
pub type StateSource =
    Box<dyn FnMut(u32) -> Result<(u64, Vec<AccountBalance>), String> + Send + 'static>;

/// Resyncs of one shard at most this often (gaps in a row, e.g. a queue overflowing under
/// load, are covered by one).
const RESYNC_INTERVAL_MIN: Duration = Duration::from_secs(10);

impl Sink for PgArchive {
    type Error = ArchiveError;
    const NAME: &'static str = "postgres";
    fn append(&mut self, shard: u32, entries: &[EntryBatch]) -> Result<Appended, ArchiveError> {
        PgArchive::append(self, shard, entries)
    }
    fn resync(&mut self, shard: u32, index: u64, b: &[AccountBalance]) -> Result<(), ArchiveError> {
        PgArchive::write_balances(self, shard, index, b)
    }
}

impl Sink for RedisCache {
    type Error = RedisError;
    const NAME: &'static str = "redis";
    fn append(&mut self, shard: u32, entries: &[EntryBatch]) -> Result<Appended, RedisError> {
        RedisCache::append(self, shard, entries)
    }
    fn resync(&mut self, _shard: u32, _index: u64, b: &[AccountBalance]) -> Result<(), RedisError> {
        RedisCache::write_balances(self, b)
    }
}

/// What a sink has done, for metrics, the health check and tests.
#[derive(Debug, Default)]
pub struct SinkCounters {
    /// Per shard, the last log index written (the shards read it before saving a snapshot).
    pub written: Arc<SinkWritten>,
    pub rows_written: AtomicU64,
    pub errors: AtomicU64,
    /// Entries dropped because the pending bound was reached while the server was away.
    pub entries_dropped: AtomicU64,
    /// Gaps found in the entries' chain, and the log indexes they missed.
    pub gaps: AtomicU64,
    pub gap_entries: AtomicU64,
    /// Shards whose balances were written again from their state after a gap.
    pub resyncs: AtomicU64,
    state: Mutex<SinkState>,
}

#[derive(Debug, Default)]
struct SinkState {
    last_gap: Option<Gap>,
    /// The last resync after a gap: (shard, the log index its balances were written at).
    last_resync: Option<(u32, u64)>,
    /// The last write's failure, while the sink has not written since.
    failing: Option<String>,
}

/// The sink as the health check reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SinkHealth {
    Up,
    /// Writing but incomplete, or not writing: why.
    Degraded(String),
}

impl SinkCounters {
    /// Degraded while the last write failed (the server is away: the sink retries), and once a
    /// gap was found (the sink misses those entries' rows for good).
    pub fn health(&self) -> SinkHealth {
        let state = self.state.lock().expect("sink state");
        let mut reasons = Vec::new();
        if let Some(error) = &state.failing {
            reasons.push(format!("cannot write: {error}"));
        }
        if let Some(gap) = state.last_gap {
            let resynced = match state.last_resync {
                Some((shard, index)) => format!(
                    "; balances written again from the state (last: shard {shard} at log index \
                     {index}); the missed transfers' rows stay missing"
                ),
                None => String::new(),
            };
            reasons.push(format!(
                "{} gap(s) since start, {} log index(es) missed; last: {gap}{resynced}",
                self.gaps.load(Relaxed),
                self.gap_entries.load(Relaxed)
            ));
        }
        if reasons.is_empty() {
            SinkHealth::Up
        } else {
            SinkHealth::Degraded(reasons.join("; "))
        }
    }

    fn record_gaps(&self, sink: &str, gaps: &[Gap]) {
        for gap in gaps {
            tracing::warn!(sink, %gap, "sink gap: these entries' rows are missing downstream");
            self.gaps.fetch_add(1, Relaxed);
            self.gap_entries.fetch_add(gap.entries(), Relaxed);
            self.state.lock().expect("sink state").last_gap = Some(*gap);
        }
    }

    fn set_failing(&self, failing: Option<String>) {
        self.state.lock().expect("sink state").failing = failing;
    }
}

/// A sink's thread, started by the node.
pub struct SinkThread {
    pub counters: Arc<SinkCounters>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl SinkThread {
    /// Starts the PostgreSQL archive's thread.
    pub fn spawn_archive(
        url: String,
        applied: Receiver<(u32, Arc<AppliedEntry>)>,
        written: Arc<SinkWritten>,
        state: Option<StateSource>,
    ) -> SinkThread {
        SinkThread::spawn(move || PgArchive::connect(&url), applied, written, state)
    }

    /// Starts the Redis cache's thread.
    pub fn spawn_redis(
        url: String,
        options: RedisOptions,
        applied: Receiver<(u32, Arc<AppliedEntry>)>,
        written: Arc<SinkWritten>,
        state: Option<StateSource>,
    ) -> SinkThread {
        SinkThread::spawn(
            move || RedisCache::connect(&url, options.clone()),
            applied,
            written,
            state,
        )
    }

    fn spawn<S: Sink + 'static>(
        connect: impl FnMut() -> Result<S, S::Error> + Send + 'static,
        applied: Receiver<(u32, Arc<AppliedEntry>)>,
        written: Arc<SinkWritten>,
        state: Option<StateSource>,
    ) -> SinkThread {
        let counters = Arc::new(SinkCounters {
            written,
            ..SinkCounters::default()
        });
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (counters, stop) = (counters.clone(), stop.clone());
            std::thread::Builder::new()
                .name(format!("aurigraph-{}", S::NAME))
                .spawn(move || {
                    let mut resync = Resync {
                        state,
                        wanted: BTreeMap::new(),
                        done_at: BTreeMap::new(),
                    };
                    run(connect, &applied, &counters, &stop, &mut resync)
                })
                .expect("spawn a sink thread")
        };
        SinkThread {
            counters,
            stop,
            thread: Some(thread),
        }
    }

    /// After the engine stopped (nothing more will be applied): writes what the sink holds and
    /// what is queued (giving up once the server stays away past the longest back-off), then
    /// ends the thread.
    pub fn stop(mut self) {
        self.stop.store(true, Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What the sink received and has not written yet, per shard in log order, with its weight
/// (rows, at least 1 per entry) kept beside it.
#[derive(Default)]
struct Pending {
    by_shard: BTreeMap<u32, VecDeque<EntryBatch>>,
    weight: usize,
}

impl Pending {
    fn push(&mut self, shard: u32, entry: &AppliedEntry) {
        let batch = EntryBatch::of_applied(entry);
        self.weight += batch.weight();
        self.by_shard.entry(shard).or_default().push_back(batch);
    }

    /// Drops the oldest entry of the shard that holds the most (the chain shows the gap when
    /// what follows is written); false when empty.
    fn drop_oldest(&mut self) -> bool {
        let Some(entries) = self.by_shard.values_mut().max_by_key(|e| e.len()) else {
            return false;
        };
        let Some(dropped) = entries.pop_front() else {
            return false;
        };
        self.weight -= dropped.weight();
        true
    }

    /// Writes every shard's entries, each shard's in one transaction (all of it or none: what
    /// a failure left stays); returns the rows added (entries sent again add none).
    fn write<S: Sink>(
        &mut self,
        sink: &mut S,
        counters: &SinkCounters,
        resync: &mut Resync,
    ) -> Result<u64, S::Error> {
        let mut added = 0;
        for (&shard, entries) in self.by_shard.iter_mut() {
            let Some(last) = entries.back().map(|e| e.index) else {
                continue;
            };
            let appended = sink.append(shard, entries.make_contiguous())?;
            added += appended.rows;
            counters.record_gaps(S::NAME, &appended.gaps);
            if !appended.gaps.is_empty() || appended.first {
                // Balances the entries do not bring: the gap's, or genesis's.
                resync.want(shard);
            }
            counters.written.set(shard, last);
            self.weight -= entries.iter().map(EntryBatch::weight).sum::<usize>();
            entries.clear();
        }
        Ok(added)
    }
}

/// The shards whose balances are to be written again from their state, after a gap.
struct Resync {
    state: Option<StateSource>,
    /// Shard → when it may run (`RESYNC_INTERVAL_MIN` after the shard's last one).
    wanted: BTreeMap<u32, Instant>,
    done_at: BTreeMap<u32, Instant>,
}

impl Resync {
    fn want(&mut self, shard: u32) {
        if self.state.is_none() {
            return;
        }
        let at = self
            .done_at
            .get(&shard)
            .map_or_else(Instant::now, |&done| done + RESYNC_INTERVAL_MIN);
        self.wanted.entry(shard).or_insert(at);
    }

    /// Runs the resyncs that are due; stops at the first failure (tried again later).
    fn run_due<S: Sink>(&mut self, sink: &mut S, counters: &SinkCounters) -> Result<(), String> {
        let Some(state) = self.state.as_mut() else {
            return Ok(());
        };
        let now = Instant::now();
        let due: Vec<u32> = self
            .wanted
            .iter()
            .filter(|(_, &at)| at <= now)
            .map(|(&shard, _)| shard)
            .collect();
        for shard in due {
            let (index, balances) = state(shard)?;
            sink.resync(shard, index, &balances)
                .map_err(|e| e.to_string())?;
            tracing::info!(
                sink = S::NAME,
                shard,
                index,
                accounts = balances.len(),
                "sink resynced balances from the shard's state after a gap"
            );
            counters.resyncs.fetch_add(1, Relaxed);
            counters.state.lock().expect("sink state").last_resync = Some((shard, index));
            self.wanted.remove(&shard);
            self.done_at.insert(shard, Instant::now());
        }
        Ok(())
    }
}

fn run<S: Sink>(
    mut connect: impl FnMut() -> Result<S, S::Error>,
    applied: &Receiver<(u32, Arc<AppliedEntry>)>,
    counters: &SinkCounters,
    stop: &AtomicBool,
    resync: &mut Resync,
) {
    let name = S::NAME;
    let mut pending = Pending::default();
    let mut sink: Option<S> = None;
    let mut backoff = Duration::from_millis(100);
    let mut retry_at = Instant::now();
    let mut open = true;
    loop {
        // Gather until a batch is full or the interval passed.
        let deadline = Instant::now() + FLUSH_INTERVAL;
        if open && stop.load(Relaxed) {
            // Nothing more comes: take what is queued, then finish.
            for (shard, entry) in applied.try_iter() {
                pending.push(shard, &entry);
            }
            open = false;
        }
        while open && pending.weight < BATCH_ROWS_MAX {
            match applied.recv_deadline(deadline) {
                Ok((shard, entry)) => pending.push(shard, &entry),
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => open = false,
            }
        }
        // Past the bound (the server away): the oldest entries go, counted.
        while pending.weight > PENDING_ROWS_MAX && pending.drop_oldest() {
            counters.entries_dropped.fetch_add(1, Relaxed);
        }
        if pending.weight > 0 && Instant::now() >= retry_at {
            if sink.is_none() {
                match connect() {
                    Ok(s) => sink = Some(s),
                    Err(error) => {
                        tracing::warn!(sink = name, %error, "cannot connect; retrying");
                        counters.set_failing(Some(error.to_string()));
                    }
                }
            }
            if let Some(s) = sink.as_mut() {
                match pending.write(s, counters, resync) {
                    Ok(added) => {
                        counters.rows_written.fetch_add(added, Relaxed);
                        counters.set_failing(None);
                        backoff = Duration::from_millis(100);
                    }
                    Err(error) => {
                        tracing::warn!(sink = name, %error, "write failed; reconnecting");
                        counters.set_failing(Some(error.to_string()));
                        sink = None;
                    }
                }
            }
            if pending.weight > 0 {
                counters.errors.fetch_add(1, Relaxed);
                retry_at = Instant::now() + backoff;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
        if let Some(s) = sink.as_mut().filter(|_| !resync.wanted.is_empty()) {
            if let Err(error) = resync.run_due(s, counters) {
                tracing::warn!(sink = name, %error, "resync from state failed; retrying");
                counters.errors.fetch_add(1, Relaxed);
            }
        }
        if !open && (pending.weight == 0 || sink.is_none() && backoff == BACKOFF_MAX) {
            if pending.weight > 0 {
                tracing::warn!(
                    sink = name,
                    pending = pending.weight,
                    "stopping with rows not written"
                );
            }
            return;
        }
        if !open && pending.weight > 0 {
            std::thread::sleep(retry_at.saturating_duration_since(Instant::now()));
        }
    }
}
