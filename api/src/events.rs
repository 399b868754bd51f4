//! The node's event hub: the applied blocks that `StreamTransactionEvents` streams (gRPC,
//! `grpc::events`, docs/api.md), held in memory per shard for a while, so that a stream can
//! start from the oldest block held or resume right after a block it saw.
//!
//! The engine hands every applied entry to the hub's tap, one more downstream sink beside the
//! archive's and Redis's (`engine::runtime::sinks`): a shard never waits on it, and what does
//! not fit its queue is dropped and counted. A thread of its own drains the tap into one ring
//! per shard of the entries that carry transfers (the others only move the shard's newest
//! index), bounded by `grpc_events_retain_bytes_max` over the node: past it, the oldest entry
//! of the node goes first. Streams are local tasks on the cores: they read the rings under a
//! short lock and, when nothing is new, wait on an `event_listener::Event` (std wakers: the
//! cores run glommio executors, no tokio runtime).
//!
//! The hub never holds back a shard's local snapshot: its tap's written positions are at the
//! top from the start. What it keeps is a window for streams, not a promise of delivery. After
//! a restart a node applies again the entries past the snapshot it starts from (raft-rs
//! applies from the state's applied index: `replica::ShardReplica::new`), so a shard's ring
//! starts right after that snapshot, and a client that resumes after a block past it gets
//! exactly the blocks that follow.
//!
//! With nobody subscribed the hub costs its thread's pushes and evictions (one lock per
//! drained batch) and the memory it retains; no block is decoded or hashed until a stream
//! reads it.

use crate::config::{ConfigError, FileConfig, NodeArgs};
use aurigraph_engine::record::{Address, Record};
use aurigraph_engine::replica::{AccountBalance, AppliedEntry};
use aurigraph_engine::shard::SHARDS_MAX;
use aurigraph_engine::{AppliedTap, ResultCode, ShardId, SinkWritten};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// `grpc_events_retain_bytes_max` by default: the blocks the hub holds over all shards.
pub const RETAIN_BYTES_DEFAULT: u64 = 64 << 20;
/// The least it may be set to (a few full blocks: a smaller window would cut off every stream
/// that is not exactly at the head).
pub const RETAIN_BYTES_MIN: u64 = 1 << 20;
/// The most it may be set to (memory: it is held in RAM; the config also refuses more than
/// half of the host's memory).
pub const RETAIN_BYTES_LIMIT: u64 = 1 << 40;
/// Applied entries queued for the hub's thread (each shares its bytes with the log); past it
/// the shards drop entries for the hub, and its streams see a gap.
pub const TAP_QUEUE_ENTRIES: usize = 65_536;
/// Entries the thread moves into the rings under one lock (bounds the time streams wait on it).
const DRAIN_BATCH_ENTRIES_MAX: usize = 1024;
/// Event streams open at once over the node: each may buffer a few encoded blocks
/// (`grpc::STREAM_ANSWERS_BUFFERED_MAX`, up to about 1 MiB each at 8,192 transfers a block).
pub const STREAMS_MAX: usize = 256;
/// What holding one entry costs beside its bytes: the `Arc`, the `AppliedEntry`, its slots in
/// the shard's ring and in the node's order.
const HELD_ENTRY_OVERHEAD_BYTES: u64 = 160;

/// `grpc_events_retain_bytes_max` of the flag, its environment variable or the file, checked.
pub(crate) fn retain_bytes_max(args: &NodeArgs, file: &FileConfig) -> Result<u64, ConfigError> {
    let value = args
        .grpc_events_retain_bytes_max
        .or(file.grpc_events_retain_bytes_max);
    checked_retain_bytes_max(value, crate::heap::host_memory_mib())
}

/// The bound (`None`: the default), checked against its limits and half of the host's memory
/// (`None`: unknown), for it is held in RAM.
fn checked_retain_bytes_max(
    value: Option<u64>,
    host_memory_mib: Option<u64>,
) -> Result<u64, ConfigError> {
    let bytes = value.unwrap_or(RETAIN_BYTES_DEFAULT);
    let name = format!("grpc_events_retain_bytes_max {bytes} (--grpc-events-retain-bytes-max)");
    if !(RETAIN_BYTES_MIN..=RETAIN_BYTES_LIMIT).contains(&bytes) {
        return Err(ConfigError::Invalid(format!(
            "{name}: must be between {RETAIN_BYTES_MIN} (1 MiB) and {RETAIN_BYTES_LIMIT} (1 TiB)"
        )));
    }
    let half_memory_bytes = host_memory_mib.map(|mib| mib / 2 * (1 << 20));
    if let Some(half) = half_memory_bytes.filter(|&half| bytes > half) {
        return Err(ConfigError::Invalid(format!(
            "{name}: more than half of this host's memory ({half} bytes); the event hub holds \
             its blocks in RAM"
        )));
    }
    Ok(bytes)
}

/// The node's event hub (one per node, shared by every core's streams).
pub struct EventHub {
    rings: Mutex<Rings>,
    /// Notified after every batch the thread moved in, and when the hub closes.
    applied: event_listener::Event,
    streams: AtomicUsize,
}

struct Rings {
    /// Indexed by shard id (`SHARDS_MAX`; an empty ring allocates nothing).
    shards: Box<[ShardRing]>,
    /// The shard of every held entry, in the order they arrived: the front's ring front is the
    /// node's oldest entry (`order.len()` is the sum of the rings' lengths).
    order: VecDeque<ShardId>,
    held_bytes: u64,
    held_bytes_max: u64,
    /// Numbers the held entries in arrival order, so that a stream over several shards sends
    /// their blocks in the order they applied here.
    next_seq: u64,
    closed: bool,
}

#[derive(Default)]
struct ShardRing {
    /// Strictly increasing log indexes, each in `span.floor + 1 ..= span.newest`.
    entries: VecDeque<Held>,
    /// `None` until the hub saw an entry of the shard.
    span: Option<Span>,
}

/// What the hub knows of a shard: every entry with transfers in `floor + 1 ..= newest` is held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub floor: u64,
    pub newest: u64,
    /// The last index the hub never received (the snapshot the node started from, a snapshot
    /// restored from the leader, entries its full queue dropped): a stream behind it missed
    /// blocks that were never here, not blocks it was too slow for.
    skipped_through: u64,
}

impl Span {
    /// Whether the hub dropped blocks of the shard for room (rather than never having the
    /// ones before its oldest).
    pub fn evicted(&self) -> bool {
        self.floor > self.skipped_through
    }
}

struct Held {
    entry: Arc<AppliedEntry>,
    seq: u64,
    bytes: u64,
}

/// Where a stream starts on the shards it does not resume.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// The blocks applied from now on.
    Latest,
    /// The oldest block held, then on.
    Earliest,
}

/// Why a stream cannot start.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// `STREAMS_MAX` streams are open.
    Streams { max: usize },
    /// A resume position older than what the hub holds of its shard.
    OutOfRange {
        shard: ShardId,
        after: u64,
        span: Span,
    },
}

/// What a stream reads next.
#[derive(Debug)]
pub enum Next {
    /// The shard's next block (its position moved to it).
    Block {
        shard: ShardId,
        entry: Arc<AppliedEntry>,
    },
    /// Nothing new: wait on [`Subscription::listen`].
    Wait,
    /// The stream's position in `shard` is older than what the hub holds.
    Behind(Behind),
    /// The hub stopped (the node is stopping).
    Closed,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Behind {
    pub shard: ShardId,
    /// The last block the stream passed.
    pub after: u64,
    pub span: Span,
    /// The blocks it missed were dropped for room (`true`: it read too slowly), or never
    /// reached the hub (`false`).
    pub evicted: bool,
}

impl EventHub {
    pub fn new(retain_bytes_max: u64) -> EventHub {
        assert!(retain_bytes_max >= RETAIN_BYTES_MIN);
        EventHub {
            rings: Mutex::new(Rings {
                shards: (0..SHARDS_MAX).map(|_| ShardRing::default()).collect(),
                order: VecDeque::new(),
                held_bytes: 0,
                held_bytes_max: retain_bytes_max,
                next_seq: 0,
                closed: false,
            }),
            applied: event_listener::Event::new(),
            streams: AtomicUsize::new(0),
        }
    }

    /// Starts a hub and its thread; returns them and the tap the engine feeds.
    pub fn spawn(retain_bytes_max: u64) -> (EventHubThread, AppliedTap) {
        let hub = Arc::new(EventHub::new(retain_bytes_max));
        let (sender, applied) = crossbeam_channel::bounded(TAP_QUEUE_ENTRIES);
        let (stop, stopped) = crossbeam_channel::bounded::<()>(1);
        let written = Arc::new(SinkWritten::default());
        // Never a reason to keep a shard's log: every position is written already.
        for shard in 0..SHARDS_MAX {
            written.set(shard, u64::MAX);
        }
        let tap = AppliedTap {
            sink: "events",
            sender,
            written,
            balances: false,
        };
        let drained = hub.clone();
        let thread = std::thread::Builder::new()
            .name("aurigraph-events".into())
            .spawn(move || drain(&drained, &applied, &stopped))
            .expect("spawn the event hub's thread");
        let thread = EventHubThread {
            hub,
            stop: Some(stop),
            thread: Some(thread),
        };
        (thread, tap)
    }

    /// Moves applied entries into the rings (the thread's work; tests call it directly), then
    /// wakes the streams waiting.
    pub fn take(&self, applied: impl IntoIterator<Item = (ShardId, Arc<AppliedEntry>)>) {
        let mut rings = self.lock();
        for (shard, entry) in applied {
            rings.take(shard, entry);
        }
        drop(rings);
        // With nobody waiting this is an atomic load.
        self.applied.notify(usize::MAX);
    }

    /// Stops the hub: streams end (their next read is `Next::Closed`).
    pub fn close(&self) {
        self.lock().closed = true;
        self.applied.notify(usize::MAX);
    }

    /// Opens a stream over `shards` (distinct, each below `SHARDS_MAX`): after the given block
    /// on the shards `resume_after` names (each among `shards`), from `start` on the others.
    pub fn subscribe(
        self: &Arc<Self>,
        shards: &[ShardId],
        resume_after: &[(ShardId, u64)],
        start: Start,
    ) -> Result<Subscription, Refused> {
        let open = self.streams.fetch_add(1, Ordering::Relaxed);
        // From here on the count is ours to give back: `Subscription::drop`, or below.
        let mut subscription = Subscription {
            hub: self.clone(),
            positions: Vec::with_capacity(shards.len()),
        };
        if open >= STREAMS_MAX {
            return Err(Refused::Streams { max: STREAMS_MAX });
        }
        let mut resumed: Vec<Option<u64>> = vec![None; SHARDS_MAX as usize];
        for &(shard, after) in resume_after {
            assert!(
                resumed[shard as usize].replace(after).is_none(),
                "shard {shard} twice"
            );
        }
        let rings = self.lock();
        for &shard in shards {
            let span = rings.shards[shard as usize].span;
            let after = match (resumed[shard as usize].take(), span) {
                (Some(after), Some(span)) if after < span.floor => {
                    return Err(Refused::OutOfRange { shard, after, span });
                }
                (Some(after), _) => Some(after),
                (None, Some(span)) => Some(match start {
                    Start::Latest => span.newest,
                    Start::Earliest => span.floor,
                }),
                // Nothing seen of the shard yet: from its first entry, whichever the start.
                (None, None) => None,
            };
            subscription.positions.push(Position { shard, after });
        }
        assert!(
            resumed.iter().all(Option::is_none),
            "every shard resumed is among those read"
        );
        Ok(subscription)
    }

    /// What the hub holds of `shard` (`None`: nothing seen yet).
    pub fn span(&self, shard: ShardId) -> Option<Span> {
        self.lock().shards[shard as usize].span
    }

    /// The bytes the rings hold and their bound.
    pub fn held_bytes(&self) -> (u64, u64) {
        let rings = self.lock();
        (rings.held_bytes, rings.held_bytes_max)
    }

    /// Event streams open now.
    pub fn streams(&self) -> usize {
        self.streams.load(Ordering::Relaxed)
    }

    fn lock(&self) -> MutexGuard<'_, Rings> {
        // A panic while holding the lock leaves the rings consistent at every step that could
        // panic (assertions before mutations): go on with them.
        self.rings
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The hub's thread: drains the tap until the engine drops it or `stop` is called, then
/// closes the hub.
fn drain(
    hub: &EventHub,
    applied: &crossbeam_channel::Receiver<(ShardId, Arc<AppliedEntry>)>,
    stop: &crossbeam_channel::Receiver<()>,
) {
    loop {
        crossbeam_channel::select! {
            recv(applied) -> first => match first {
                Ok(first) => {
                    let more = applied.try_iter().take(DRAIN_BATCH_ENTRIES_MAX - 1);
                    hub.take(std::iter::once(first).chain(more));
                }
                Err(_) => break,
            },
            recv(stop) -> _ => break,
        }
    }
    hub.close();
}

impl Rings {
    fn take(&mut self, shard: ShardId, entry: Arc<AppliedEntry>) {
        assert!(shard < SHARDS_MAX, "shard {shard} out of bounds");
        assert!(
            entry.index > entry.previous,
            "an entry covers at least its own index"
        );
        let ring = &mut self.shards[shard as usize];
        let span = ring.span.get_or_insert(Span {
            floor: entry.previous,
            newest: entry.previous,
            skipped_through: entry.previous,
        });
        if entry.index <= span.newest {
            // Seen already (a replica of the shard started again from an older state).
            return;
        }
        if entry.previous > span.newest {
            // A gap: the queue was full, or the replica restored a snapshot past these.
            tracing::info!(
                shard,
                after = span.newest,
                up_to = entry.previous,
                "event hub: blocks skipped (streams behind them end)"
            );
            span.floor = entry.previous;
            span.skipped_through = entry.previous;
            let dropped: u64 = ring.entries.drain(..).map(|held| held.bytes).sum();
            self.held_bytes -= dropped;
            self.order.retain(|s| *s != shard);
        }
        span.newest = entry.index;
        if !entry.data.is_empty() {
            let bytes = held_bytes(&entry);
            ring.entries.push_back(Held {
                entry,
                seq: self.next_seq,
                bytes,
            });
            self.next_seq += 1;
            self.order.push_back(shard);
            self.held_bytes += bytes;
        }
        // The newest entry stays even alone over the bound: the bound is then one entry.
        while self.held_bytes > self.held_bytes_max && self.order.len() > 1 {
            self.evict_oldest();
        }
    }

    fn evict_oldest(&mut self) {
        let shard = self.order.pop_front().expect("an entry to evict");
        let ring = &mut self.shards[shard as usize];
        let held = ring.entries.pop_front().expect("order names held entries");
        let span = ring.span.as_mut().expect("a shard with entries has a span");
        assert!(held.entry.index > span.floor);
        span.floor = held.entry.index;
        self.held_bytes -= held.bytes;
    }

    /// The invariants, checked in full (tests).
    #[cfg(test)]
    fn check(&self) {
        let mut bytes = 0;
        let mut held = 0;
        for ring in self.shards.iter() {
            let Some(span) = ring.span else {
                assert!(ring.entries.is_empty());
                continue;
            };
            assert!(span.floor <= span.newest && span.skipped_through <= span.floor);
            let mut last = span.floor;
            for h in &ring.entries {
                assert!(h.entry.index > last && h.entry.index <= span.newest);
                last = h.entry.index;
                bytes += h.bytes;
            }
            held += ring.entries.len();
        }
        assert_eq!(bytes, self.held_bytes);
        assert_eq!(held, self.order.len());
        assert!(self.held_bytes <= self.held_bytes_max || self.order.len() <= 1);
    }
}

/// What holding an entry costs (its bytes may also be in the raft log until a snapshot
/// compacts it; counted in full, so the bound holds when they are not).
fn held_bytes(entry: &AppliedEntry) -> u64 {
    let results = entry.results.len() * std::mem::size_of::<ResultCode>();
    let balances = entry.balances.len() * std::mem::size_of::<AccountBalance>();
    (entry.data.len() + results + balances) as u64 + HELD_ENTRY_OVERHEAD_BYTES
}

/// The hub's thread, stopped and joined by [`EventHubThread::stop`] or on drop.
pub struct EventHubThread {
    hub: Arc<EventHub>,
    stop: Option<crossbeam_channel::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EventHubThread {
    pub fn hub(&self) -> &Arc<EventHub> {
        &self.hub
    }

    /// Stops the thread (streams end) and joins it.
    pub fn stop(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the event hub's thread panicked");
            }
        }
    }
}

impl Drop for EventHubThread {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// One stream's positions: per shard it reads, the last block it passed.
pub struct Subscription {
    hub: Arc<EventHub>,
    positions: Vec<Position>,
}

#[derive(Clone, Copy, Debug)]
struct Position {
    shard: ShardId,
    /// `None`: from the first entry the hub sees of the shard.
    after: Option<u64>,
}

impl Subscription {
    /// The next block of the stream's shards (the one that arrived first of each shard's next),
    /// or why there is none. Only blocks with transfers are returned; the position moves past
    /// the others.
    pub fn read(&mut self) -> Next {
        let rings = self.hub.lock();
        if rings.closed {
            return Next::Closed;
        }
        // (position's slot, entry's slot in its ring, seq)
        let mut first: Option<(usize, usize, u64)> = None;
        for (slot, position) in self.positions.iter_mut().enumerate() {
            let ring = &rings.shards[position.shard as usize];
            let Some(span) = ring.span else { continue };
            let after = *position.after.get_or_insert(span.floor);
            if after < span.floor {
                return Next::Behind(Behind {
                    shard: position.shard,
                    after,
                    span,
                    evicted: after >= span.skipped_through,
                });
            }
            let i = ring.entries.partition_point(|h| h.entry.index <= after);
            match ring.entries.get(i) {
                Some(held) if first.is_none_or(|(_, _, seq)| held.seq < seq) => {
                    first = Some((slot, i, held.seq));
                }
                Some(_) => {}
                // Past every held entry: what follows up to `newest` has no transfers.
                None => position.after = Some(after.max(span.newest)),
            }
        }
        let Some((slot, i, _)) = first else {
            return Next::Wait;
        };
        let position = &mut self.positions[slot];
        let entry = rings.shards[position.shard as usize].entries[i]
            .entry
            .clone();
        position.after = Some(entry.index);
        Next::Block {
            shard: position.shard,
            entry,
        }
    }

    /// A listener notified when the hub moves entries in or closes: take it, call
    /// [`Subscription::read`] again, then await it if that still says `Wait` (no wake-up is
    /// lost in between).
    pub fn listen(&self) -> event_listener::EventListener {
        self.hub.applied.listen()
    }

    /// The last block passed in `shard` (`None`: not read, or nothing seen of it yet).
    pub fn after(&self, shard: ShardId) -> Option<u64> {
        self.positions
            .iter()
            .find(|p| p.shard == shard)
            .and_then(|p| p.after)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.streams.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The records of a held block a stream shows, with their place in the block (0-based, among
/// all its records) and result: all of them, or those `account` sends or receives.
pub fn matching<'a>(
    entry: &'a AppliedEntry,
    account: Option<&'a Address>,
) -> impl Iterator<Item = (u32, &'a Record, ResultCode)> + 'a {
    let records = match aurigraph_engine::decode_batch(&entry.data) {
        Ok(view) if view.len() == entry.results.len() => view.records(),
        Ok(view) => {
            // The replica taps one result per record of the batch it applied.
            debug_assert!(
                false,
                "{} records, {} results",
                view.len(),
                entry.results.len()
            );
            tracing::error!(
                index = entry.index,
                "event hub: a held entry's results do not match its records"
            );
            &[]
        }
        Err(error) => {
            // Only entries that applied as batches are tapped with data.
            debug_assert!(false, "a held entry is not a batch: {error}");
            tracing::error!(index = entry.index, %error, "event hub: a held entry is not a batch");
            &[]
        }
    };
    records
        .iter()
        .zip(&entry.results)
        .enumerate()
        .filter(move |(_, (record, _))| {
            account.is_none_or(|a| {
                record.from_bytes_as_address() == a || record.to_bytes_as_address() == a
            })
        })
        .map(|(position, (record, result))| (position as u32, record, *result))
}

#[cfg(test)]
mod tests;
