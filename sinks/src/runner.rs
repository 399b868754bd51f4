//! The archive sink's thread: it takes the entries the shards applied (a bounded channel
//! the shards never wait on), turns them into rows off the executors (decoding the batch,
//! hashing each transfer), and writes them to PostgreSQL in batches. When PostgreSQL is away it
//! keeps what it received, up to a bound, and reconnects with back-off; the node's
//! acknowledgements and throughput do not depend on it.

use crate::postgres_archive::{ArchivedTransfer, EntryBatch, PgArchive};
use aurigraph_engine::replica::AppliedEntry;
use aurigraph_wire::batch::decode_batch;
use crossbeam_channel::{Receiver, RecvTimeoutError};
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Rows gathered before a batch is written (or after `FLUSH_INTERVAL`, whichever first).
const BATCH_ROWS_MAX: usize = 20_000;
const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
/// Rows kept while PostgreSQL is away; older entries are dropped past it (counted: a gap).
const PENDING_ROWS_MAX: usize = 2_000_000;
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// What the sink has done, for metrics and tests.
#[derive(Debug, Default)]
pub struct SinkCounters {
    pub rows_written: AtomicU64,
    pub errors: AtomicU64,
    /// Entries dropped because the pending bound was reached while PostgreSQL was away.
    pub entries_dropped: AtomicU64,
    /// Per shard, the last log index written to the archive (read at scrape time).
    archived: std::sync::Mutex<Vec<u64>>,
}

impl SinkCounters {
    /// The last log index written per shard (0: none yet).
    pub fn archived(&self) -> Vec<u64> {
        self.archived.lock().expect("sink counters").clone()
    }

    fn set_archived(&self, shard: u32, index: u64) {
        let mut archived = self.archived.lock().expect("sink counters");
        let shard = shard as usize;
        if archived.len() <= shard {
            archived.resize(shard + 1, 0);
        }
        archived[shard] = archived[shard].max(index);
    }
}

pub struct ArchiveSink {
    pub counters: Arc<SinkCounters>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ArchiveSink {
    /// Starts the sink's thread.
    pub fn spawn(url: String, applied: Receiver<(u32, AppliedEntry)>) -> ArchiveSink {
        let counters = Arc::new(SinkCounters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (counters, stop) = (counters.clone(), stop.clone());
            std::thread::Builder::new()
                .name("aurigraph-archive".into())
                .spawn(move || run(&url, &applied, &counters, &stop))
                .expect("spawn the archive sink thread")
        };
        ArchiveSink {
            counters,
            stop,
            thread: Some(thread),
        }
    }

    /// After the engine stopped (nothing more will be applied): writes what the sink holds and
    /// what is queued (giving up once PostgreSQL stays away past the longest back-off), then
    /// ends the thread.
    pub fn stop(mut self) {
        self.stop.store(true, Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What an entry counts for in the pending bound: its rows, and at least 1 (an entry with
/// none still moves its shard's cursor, so it must be written too).
fn weight(batch: &EntryBatch) -> usize {
    batch.transfers.len().max(1)
}

/// A shard's applied entry as archive rows.
fn rows_of(entry: &AppliedEntry) -> EntryBatch {
    if entry.data.is_empty() {
        // No transfers: only the shard's position moves.
        return EntryBatch {
            index: entry.index,
            transfers: Vec::new(),
        };
    }
    let records = decode_batch(&entry.data)
        .expect("an applied entry is a valid batch")
        .records();
    EntryBatch {
        index: entry.index,
        transfers: records
            .iter()
            .zip(&entry.results)
            .map(|(r, result)| ArchivedTransfer {
                tx_hash: r.tx_hash().0,
                from: r.from().0,
                to: r.to().0,
                asset: r.asset(),
                amount: r.amount(),
                nonce: r.nonce(),
                result: result.as_str(),
            })
            .collect(),
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
        let batch = rows_of(entry);
        self.weight += weight(&batch);
        self.by_shard.entry(shard).or_default().push_back(batch);
    }

    /// Drops the oldest entry of the shard that holds the most; false when empty.
    fn drop_oldest(&mut self) -> bool {
        let Some(entries) = self.by_shard.values_mut().max_by_key(|e| e.len()) else {
            return false;
        };
        let Some(dropped) = entries.pop_front() else {
            return false;
        };
        self.weight -= weight(&dropped);
        true
    }

    /// Writes every shard's entries, each shard's in one transaction (all of it or none: what
    /// a failure left stays); returns the rows PostgreSQL added (entries sent again add none).
    fn write(
        &mut self,
        archive: &mut PgArchive,
        counters: &SinkCounters,
    ) -> Result<u64, crate::ArchiveError> {
        let mut added = 0;
        for (&shard, entries) in self.by_shard.iter_mut() {
            let Some(last) = entries.back().map(|e| e.index) else {
                continue;
            };
            added += archive.append(shard, entries.make_contiguous())?;
            counters.set_archived(shard, last);
            self.weight -= entries.iter().map(weight).sum::<usize>();
            entries.clear();
        }
        Ok(added)
    }
}

fn run(
    url: &str,
    applied: &Receiver<(u32, AppliedEntry)>,
    counters: &SinkCounters,
    stop: &AtomicBool,
) {
    let mut pending = Pending::default();
    let mut archive: Option<PgArchive> = None;
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
        // Past the bound (PostgreSQL away): the oldest entries go, counted.
        while pending.weight > PENDING_ROWS_MAX && pending.drop_oldest() {
            counters.entries_dropped.fetch_add(1, Relaxed);
        }
        if pending.weight > 0 && Instant::now() >= retry_at {
            if archive.is_none() {
                match PgArchive::connect(url) {
                    Ok(a) => archive = Some(a),
                    Err(error) => tracing::warn!(%error, "archive: cannot connect; retrying"),
                }
            }
            if let Some(a) = archive.as_mut() {
                match pending.write(a, counters) {
                    Ok(added) => {
                        counters.rows_written.fetch_add(added, Relaxed);
                        backoff = Duration::from_millis(100);
                    }
                    Err(error) => {
                        tracing::warn!(%error, "archive: write failed; reconnecting");
                        archive = None;
                    }
                }
            }
            if pending.weight > 0 {
                counters.errors.fetch_add(1, Relaxed);
                retry_at = Instant::now() + backoff;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
        if !open && (pending.weight == 0 || archive.is_none() && backoff == BACKOFF_MAX) {
            if pending.weight > 0 {
                tracing::warn!(
                    pending = pending.weight,
                    "archive: stopping with rows not written"
                );
            }
            return;
        }
        if !open && pending.weight > 0 {
            std::thread::sleep(retry_at.saturating_duration_since(Instant::now()));
        }
    }
}
