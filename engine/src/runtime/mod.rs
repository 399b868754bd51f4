//! The thread-per-core runtime: one glommio executor per core, pinned, each owning its shards.
//!
//! Shard `s` lives on core `s mod cores`, as one task that owns the shard's replica, log and
//! state. Nothing is shared between cores: every cross-core interaction (a client submission,
//! an account query, receipts from another shard) is a message on the target shard's bounded
//! lock-free channel (`async-channel`, whose wakers cross threads; glommio handles foreign
//! wakes). A shard's loop: drain its channel, verify and propose what arrived as one entry, persist
//! the raft `Ready` with one group commit (one fdatasync for everything that turn), then apply
//! what committed and answer the clients. Transfers are answered only after their entry was
//! fdatasynced and applied.

mod peers;

use crate::datadir::DataDir;
use crate::genesis::Genesis;
use crate::ledger::{Account, ShardState};
use crate::peering::{self, ForwardReply};
use crate::record::TxHash;
use crate::record::{Address, Record};
use crate::replica::{
    BlockHeader, MembershipEvent, Outcome, ReceiptDelivery, ReplicaConfig, ShardReplica,
    SubmitError, TxStatus,
};
use crate::shard::{shard_of, ShardId};
use crate::state_snapshot::{decode_state, encode_state};
use crate::verify::SignatureVerifier;
use aurigraph_storage::shard_log::ShardLog;
use aurigraph_storage::wal::WalConfig;
use futures::channel::oneshot;
use glommio::{LocalExecutorBuilder, Placement};
use peers::PeerLink;
use raft::eraftpb::{ConfChangeType, ConfState, Message, MessageType};
use raft::StateRole;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;

/// How the engine runs.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub data_dir: PathBuf,
    pub node_id: u64,
    /// Executors (one per core). Shards are spread over them.
    pub cores: usize,
    /// Pin executor `i` to CPU `i` (bare metal); off lets the OS place them (shared hosts, tests).
    pub pin_cores: bool,
    /// Records per consensus entry.
    pub entry_records_max: usize,
    /// Records admitted per shard and not yet decided.
    pub pending_records_max: usize,
    /// Commands queued per shard channel (back-pressure beyond it).
    pub shard_queue_depth: usize,
    /// Take a snapshot (and truncate the log) every this many applied entries.
    pub snapshot_interval_entries: u64,
    pub raft_tick: Duration,
    pub wal_segment_bytes_max: u64,
    pub wal_staged_bytes_max: usize,
    /// io_uring registered memory per executor (bounded by RLIMIT_MEMLOCK).
    pub io_memory_bytes: usize,
    /// Longest stretch a task runs before yielding to the core's other tasks.
    pub task_quantum: Duration,
    /// Transfers remembered per shard for lookups by hash.
    pub recent_transactions_per_shard: usize,
    /// Block headers remembered per shard.
    pub recent_blocks_per_shard: usize,
    /// The other validators with their base peer addresses (core `c` listens on port + `c`);
    /// empty: a single validator. Every shard's raft group has all of them as voters.
    pub peers: Vec<(u64, SocketAddr)>,
    /// This validator's base peer address; required when `peers` is not empty.
    pub peer_addr: Option<SocketAddr>,
    /// Joining an existing cluster: this validator starts in none of the shards' groups (its
    /// initial membership is the other validators); it receives the log once a leader adds it
    /// as a learner (`Engine::change_membership`).
    pub join: bool,
    /// Raft election timeout in ticks (randomized in `[n, 2n)` by raft); heartbeats every
    /// `heartbeat_ticks`.
    pub election_ticks: usize,
    pub heartbeat_ticks: usize,
    /// How long a follower waits for the leader's answer to a forwarded submission before
    /// telling its client to retry.
    pub forward_timeout: Duration,
    /// Forwarded submissions a follower's shard waits on at once (more: overloaded).
    pub forwards_pending_max: usize,
    /// How long one executor may take to recover its shards at start-up before the start is
    /// reported as stalled (`EngineError::StartupStalled`).
    pub startup_timeout: Duration,
    /// Raft messages larger than this (snapshots) travel in pieces of this size, paced by the
    /// transport's back-pressure (at most 1 MiB: a piece must fit the per-peer queue).
    pub raft_piece_bytes: usize,
    /// Largest raft message (a snapshot) a shard reassembles from pieces.
    pub raft_message_bytes_max: u64,
}

/// A service run on every core next to its shards (the HTTP server): called inside executor
/// `core` once the engine is ready; the future runs as a task of that executor.
pub type CoreService =
    Arc<dyn Fn(usize, Engine) -> Pin<Box<dyn Future<Output = ()>>> + Send + Sync>;

impl EngineConfig {
    pub fn new(data_dir: impl Into<PathBuf>, cores: usize) -> EngineConfig {
        EngineConfig {
            data_dir: data_dir.into(),
            node_id: 1,
            cores: cores.max(1),
            pin_cores: false,
            entry_records_max: 8192,
            pending_records_max: 262_144,
            shard_queue_depth: 4096,
            snapshot_interval_entries: 20_000,
            raft_tick: Duration::from_millis(100),
            wal_segment_bytes_max: 64 << 20,
            wal_staged_bytes_max: 32 << 20,
            io_memory_bytes: 1 << 20,
            task_quantum: Duration::from_millis(1),
            recent_transactions_per_shard: 262_144,
            recent_blocks_per_shard: 4096,
            peers: Vec::new(),
            peer_addr: None,
            join: false,
            election_ticks: 10,
            heartbeat_ticks: 2,
            forward_timeout: Duration::from_secs(5),
            forwards_pending_max: 4096,
            startup_timeout: Duration::from_secs(120),
            raft_piece_bytes: 1 << 20,
            raft_message_bytes_max: 1 << 30,
        }
    }
}

/// A shard's consensus and state figures, for operators and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardStatus {
    pub shard: ShardId,
    pub core: usize,
    pub role: &'static str,
    pub term: u64,
    pub leader_id: Option<u64>,
    pub commit_index: u64,
    pub applied_index: u64,
    pub last_index: u64,
    pub state_hash: u128,
    /// Hash of the accounts alone: equal across a restart even though the applied index moves.
    pub accounts_hash: u128,
    pub accounts: usize,
    pub leader_changes: u64,
    pub pending_records: usize,
    /// Commands waiting in the shard's channels (submissions, queries, receipts).
    pub queued_commands: usize,
    /// Voters of the shard's raft group (this node included).
    pub voters: usize,
    /// Their node ids, ascending.
    pub voter_ids: Vec<u64>,
    /// Learners (receive the log, do not vote), ascending.
    pub learner_ids: Vec<u64>,
    /// On the leader: `(peer, match index)` for every voter (this node included); empty on a
    /// follower.
    pub peer_matched: Vec<(u64, u64)>,
    /// The peer transport of this shard's core (none for a single validator): its counters and
    /// whether each peer's outbound link is up. The same for every shard of one core.
    pub transport: Option<aurigraph_net::transport::TransportCounters>,
    pub peer_links: Vec<(u64, bool)>,
    /// On the leader: `(peer, entries behind the leader's last index)` for every voter, this
    /// node included (0 lag); empty on a follower, which does not track its peers.
    pub peer_lag: Vec<(u64, u64)>,
}

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
}

impl Default for ShardCounters {
    fn default() -> ShardCounters {
        ShardCounters {
            wal_fsync_ns: AtomicHistogram::new(FSYNC_BOUNDS_NS),
            wal_bytes_written: AtomicU64::new(0),
            snapshots: AtomicU64::new(0),
            signatures_valid: AtomicU64::new(0),
            signatures_invalid: AtomicU64::new(0),
        }
    }
}

impl ShardCounters {
    fn record_verified(&self, valid: &[bool]) {
        let ok = valid.iter().filter(|&&v| v).count() as u64;
        let bad = valid.len() as u64 - ok;
        if ok > 0 {
            self.signatures_valid.fetch_add(ok, Relaxed);
        }
        if bad > 0 {
            self.signatures_invalid.fetch_add(bad, Relaxed);
        }
    }

    fn record_commit(&self, stats: &aurigraph_storage::CommitStats) {
        if stats.bytes_written == 0 {
            return;
        }
        self.wal_bytes_written
            .fetch_add(stats.bytes_written, Relaxed);
        let ns = stats.fsync_duration.as_nanos().min(u64::MAX as u128) as u64;
        self.wal_fsync_ns.observe(ns);
    }
}

/// A fault that stops the engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    DataDir(String),
    #[error("shard {shard}: storage: {source}")]
    Storage {
        shard: ShardId,
        source: aurigraph_storage::StorageError,
    },
    #[error("shard {shard}: snapshot state: {message}")]
    Snapshot { shard: ShardId, message: String },
    #[error("shard {shard}: consensus: {source}")]
    Raft { shard: ShardId, source: raft::Error },
    #[error("could not start executor {core}: {message}")]
    Executor { core: usize, message: String },
    /// An executor did not report its shards recovered within the start-up timeout. The
    /// stuck thread cannot be stopped from here; the process should start over.
    #[error("executor {core} did not recover its shards within {seconds} s")]
    StartupStalled { core: usize, seconds: u64 },
    #[error("the engine is shut down")]
    Stopped,
}

/// Why a submission got no outcomes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitFailure {
    #[error(transparent)]
    Rejected(#[from] SubmitError),
    #[error("shard {0}: the proposal was lost in a leadership change; resubmit (resubmission is harmless)")]
    Retry(ShardId),
    #[error("the engine is shutting down")]
    Stopped,
}

enum Command {
    /// `valid` is empty until the shard's ingress task verified the signatures. `from_peer`:
    /// forwarded by another validator, so never forwarded again.
    Submit {
        records: Vec<Record>,
        valid: Vec<bool>,
        from_peer: bool,
        reply: oneshot::Sender<Result<Vec<Outcome>, SubmitFailure>>,
    },
    SubmitDetached {
        records: Vec<Record>,
        valid: Vec<bool>,
        from_peer: bool,
        reply: oneshot::Sender<Result<(), SubmitFailure>>,
    },
    /// A raft message from this shard's replica on another validator.
    Raft(Box<Message>),
    /// A piece of a large raft message (a snapshot) from validator `from`.
    RaftPiece {
        from: u64,
        transfer: u64,
        total: u64,
        offset: u64,
        data: Vec<u8>,
    },
    /// The leader's answer to a submission this follower forwarded.
    ForwardReply {
        request: u64,
        reply: ForwardReply,
    },
    /// A membership change, on the shard's leader; answered once applied here.
    ChangeMembership {
        changes: Vec<(ConfChangeType, u64)>,
        peer_addr: Vec<u8>,
        reply: oneshot::Sender<Result<u64, SubmitFailure>>,
    },
    Account {
        address: Address,
        reply: oneshot::Sender<Option<Account>>,
    },
    Transaction {
        hash: TxHash,
        reply: oneshot::Sender<Option<TxStatus>>,
    },
    Block {
        height: Option<u64>,
        reply: oneshot::Sender<Option<BlockHeader>>,
    },
    Status {
        reply: oneshot::Sender<ShardStatus>,
    },
    Receipts(ReceiptDelivery),
    /// Validator `node`'s replica of `destination` durably credited (in a snapshot) this
    /// shard's receipts up to `up_to`.
    Credited {
        destination: ShardId,
        node: u64,
        up_to: u64,
    },
    Shutdown,
}

impl Command {
    /// A submission's records and signature verdicts (empty until verified).
    fn submission_mut(&mut self) -> Option<(&[Record], &mut Vec<bool>)> {
        match self {
            Command::Submit { records, valid, .. }
            | Command::SubmitDetached { records, valid, .. } => Some((records, valid)),
            _ => None,
        }
    }
}

/// Handle to a running engine; cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<EngineInner>,
}

struct EngineInner {
    node_id: u64,
    shard_count: u32,
    cores: usize,
    chain_id: u32,
    assets: Vec<u32>,
    shards: Vec<async_channel::Sender<Command>>,
    counters: Arc<[ShardCounters]>,
    executors: std::sync::Mutex<Vec<glommio::ExecutorJoinHandle<Result<(), EngineError>>>>,
}

impl Engine {
    /// Opens (or creates, with `genesis`) the data directory and starts one executor per core.
    /// Returns once every shard has recovered and is ready for submissions.
    pub fn start(config: EngineConfig, genesis: Option<&Genesis>) -> Result<Engine, EngineError> {
        Engine::start_with_services(config, genesis, None)
    }

    /// Like [`Engine::start`], and runs `service` on every core once the shards are ready.
    pub fn start_with_services(
        config: EngineConfig,
        genesis: Option<&Genesis>,
        service: Option<CoreService>,
    ) -> Result<Engine, EngineError> {
        let data_dir = DataDir::open(&config.data_dir, genesis, config.cores as u32)
            .map_err(EngineError::DataDir)?;
        let shard_count = data_dir.shard_count;
        let genesis = Arc::new(data_dir.genesis.clone());
        let mut senders = Vec::with_capacity(shard_count as usize);
        let mut receivers: Vec<Vec<(ShardId, async_channel::Receiver<Command>)>> =
            (0..config.cores).map(|_| Vec::new()).collect();
        for shard in 0..shard_count {
            let (tx, rx) = async_channel::bounded(config.shard_queue_depth);
            senders.push(tx);
            receivers[shard as usize % config.cores].push((shard, rx));
        }
        let engine = Engine {
            inner: Arc::new(EngineInner {
                node_id: config.node_id,
                shard_count,
                cores: config.cores,
                chain_id: genesis.chain_id,
                assets: genesis.assets(),
                shards: senders,
                counters: (0..shard_count).map(|_| ShardCounters::default()).collect(),
                executors: std::sync::Mutex::new(Vec::new()),
            }),
        };
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), EngineError>>();
        // Executors wait for this before starting their services: every shard must be ready.
        let (go_tx, go_rx) = async_channel::bounded::<bool>(config.cores);
        let engine_startup_timeout = config.startup_timeout;
        let mut failure = None;
        for (core, shards) in receivers.into_iter().enumerate() {
            let placement = if config.pin_cores {
                Placement::Fixed(core)
            } else {
                Placement::Unbound
            };
            let config = config.clone();
            let genesis = genesis.clone();
            let ready = ready_tx.clone();
            let go = go_rx.clone();
            // Nudges from this thread while the executor recovers its shards (see below).
            let (nudge_tx, nudge_rx) = async_channel::bounded::<()>(1);
            let service = service.clone();
            let handle = engine.clone();
            let core_shards = shards.len();
            let spawned = LocalExecutorBuilder::new(placement)
                .name(&format!("aurigraph-core-{core}"))
                .io_memory(config.io_memory_bytes)
                // How long a task may run before `yield_if_needed` lets the core's other tasks in
                // (glommio's default is 100 ms): signature verification yields at this cadence,
                // so it bounds the latency it adds to HTTP and consensus work on the same core.
                .preempt_timer(config.task_quantum)
                .spawn(move || async move {
                    // A task that only wakes: a message from another thread makes the reactor
                    // leave its sleep and look at every queue and completion again.
                    glommio::spawn_local(async move { while nudge_rx.recv().await.is_ok() {} })
                        .detach();
                    run_core(core, config, genesis, shards, handle, ready, go, service).await
                });
            match spawned {
                Ok(join) => engine.inner.executors.lock().unwrap().push(join),
                Err(e) => {
                    engine.shutdown();
                    return Err(EngineError::Executor {
                        core,
                        message: e.to_string(),
                    });
                }
            }
            // Executors start one at a time: each sets up its rings and recovers its shards
            // before the next starts. Started all at once, one executor now and then never
            // finished recovering (its reactor slept on an operation that did not complete),
            // about one start in twenty on this machine; root cause in glommio not yet found.
            // While waiting, nudge the executor every NUDGE_INTERVAL: now and then (about one
            // start in a hundred under load here) its reactor went to sleep with a blocking-pool
            // completion pending and no timer armed, and slept forever (gdb: parked in
            // io_uring_enter, its blocking thread idle). A wake from another thread writes the
            // reactor's eventfd, which makes it process that completion.
            let started = Instant::now();
            let startup_timeout = engine_startup_timeout;
            let mut recovered = 0;
            while recovered < core_shards {
                let left = startup_timeout.saturating_sub(started.elapsed());
                let wait = left.min(NUDGE_INTERVAL);
                let received = match ready_rx.recv_timeout(wait) {
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) if !left.is_zero() => {
                        let _ = nudge_tx.try_send(());
                        continue;
                    }
                    other => other,
                };
                recovered += 1;
                match received {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => {
                        failure = Some(error);
                        break;
                    }
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                        // Do not join: the stuck executor would block this thread too.
                        return Err(EngineError::StartupStalled {
                            core,
                            seconds: startup_timeout.as_secs(),
                        });
                    }
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                        failure = Some(EngineError::Stopped);
                        break;
                    }
                }
            }
            if failure.is_some() {
                break;
            }
        }
        drop(ready_tx);
        let ok = failure.is_none();
        for _ in 0..config.cores {
            let _ = go_tx.try_send(ok);
        }
        if let Some(error) = failure {
            let joined = engine.shutdown();
            return Err(match error {
                EngineError::Stopped => joined.unwrap_or(EngineError::Stopped),
                other => other,
            });
        }
        Ok(engine)
    }

    pub fn node_id(&self) -> u64 {
        self.inner.node_id
    }

    pub fn shard_count(&self) -> u32 {
        self.inner.shard_count
    }
    pub fn cores(&self) -> usize {
        self.inner.cores
    }
    pub fn chain_id(&self) -> u32 {
        self.inner.chain_id
    }
    pub fn assets(&self) -> &[u32] {
        &self.inner.assets
    }

    /// Running totals of every shard (index = shard), readable at any time without a message.
    pub fn shard_counters(&self) -> &Arc<[ShardCounters]> {
        &self.inner.counters
    }

    /// Submits records (any shards, any order) and resolves to one outcome per record, in
    /// order, once every record's entry was fdatasynced and applied (or rejected before).
    pub async fn submit(&self, records: Vec<Record>) -> Result<Vec<Outcome>, SubmitFailure> {
        self.submit_with(records, false).await
    }

    /// A submission another validator forwarded, with its signature verdicts: decided here or
    /// refused, never forwarded on. Records of more than one shard (not what a validator
    /// forwards) lose their verdicts and are verified here.
    async fn submit_from_peer(
        &self,
        records: Vec<Record>,
        valid: Vec<bool>,
    ) -> Result<Vec<Outcome>, SubmitFailure> {
        match self.single_shard(&records, &valid) {
            Some(shard) => {
                self.send_one(shard, |reply| Command::Submit {
                    records,
                    valid,
                    from_peer: true,
                    reply,
                })
                .await?
            }
            None => self.submit_with(records, true).await,
        }
    }

    async fn submit_from_peer_detached(
        &self,
        records: Vec<Record>,
        valid: Vec<bool>,
    ) -> Result<(), SubmitFailure> {
        match self.single_shard(&records, &valid) {
            Some(shard) => {
                self.send_one(shard, |reply| Command::SubmitDetached {
                    records,
                    valid,
                    from_peer: true,
                    reply,
                })
                .await?
            }
            None => self.submit_detached_with(records, true).await.map(|_| ()),
        }
    }

    /// Sends one command built around a reply channel to `shard` and waits for the reply.
    async fn send_one<T>(
        &self,
        shard: ShardId,
        command: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, SubmitFailure> {
        let (reply, rx) = oneshot::channel();
        self.inner.shards[shard as usize]
            .send(command(reply))
            .await
            .map_err(|_| SubmitFailure::Stopped)?;
        rx.await.map_err(|_| SubmitFailure::Stopped)
    }

    /// The one shard all `records` belong to, when they do and `valid` covers them.
    fn single_shard(&self, records: &[Record], valid: &[bool]) -> Option<ShardId> {
        let shard_count = self.inner.shard_count;
        let first = shard_of(&records.first()?.from(), shard_count);
        (valid.len() == records.len()
            && records
                .iter()
                .all(|r| shard_of(&r.from(), shard_count) == first))
        .then_some(first)
    }

    async fn submit_with(
        &self,
        records: Vec<Record>,
        from_peer: bool,
    ) -> Result<Vec<Outcome>, SubmitFailure> {
        let total = records.len();
        let waits = self
            .send_per_shard(records, |records, reply| Command::Submit {
                records,
                valid: Vec::new(),
                from_peer,
                reply,
            })
            .await?;
        let mut outcomes: Vec<Option<Outcome>> = vec![None; total];
        for (positions, rx) in waits {
            let got = rx.await.map_err(|_| SubmitFailure::Stopped)??;
            for (position, outcome) in positions.into_iter().zip(got) {
                outcomes[position] = Some(outcome);
            }
        }
        Ok(outcomes
            .into_iter()
            .map(|o| o.expect("every record answered"))
            .collect())
    }

    /// Splits `records` by owning shard and sends each shard one command built by `command`;
    /// returns, per shard reached, the positions of its records in `records` and its reply.
    async fn send_per_shard<T>(
        &self,
        records: Vec<Record>,
        command: impl Fn(Vec<Record>, oneshot::Sender<T>) -> Command,
    ) -> Result<Vec<(Vec<usize>, oneshot::Receiver<T>)>, SubmitFailure> {
        let shard_count = self.inner.shard_count as usize;
        let mut per_shard: Vec<(Vec<usize>, Vec<Record>)> =
            vec![(Vec::new(), Vec::new()); shard_count];
        for (i, r) in records.into_iter().enumerate() {
            let group = &mut per_shard[shard_of(&r.from(), shard_count as u32) as usize];
            group.0.push(i);
            group.1.push(r);
        }
        let mut waits = Vec::new();
        for (s, (positions, group)) in per_shard.into_iter().enumerate() {
            if group.is_empty() {
                continue;
            }
            let (tx, rx) = oneshot::channel();
            self.inner.shards[s]
                .send(command(group, tx))
                .await
                .map_err(|_| SubmitFailure::Stopped)?;
            waits.push((positions, rx));
        }
        Ok(waits)
    }

    /// Proposes a membership change on every shard this validator leads; each shard's answer:
    /// the log index at which the change applied here, or why not (`NotLeader` with the leader
    /// for shards led elsewhere). An operator runs it against every validator (or the leaders)
    /// until every shard applied it: `aurigraph validators` does.
    pub async fn change_membership(
        &self,
        changes: Vec<(ConfChangeType, u64)>,
        peer_addr: Vec<u8>,
    ) -> Result<Vec<(ShardId, Result<u64, SubmitFailure>)>, EngineError> {
        let mut waits = Vec::with_capacity(self.inner.shards.len());
        for (shard, tx) in self.inner.shards.iter().enumerate() {
            let (reply, rx) = oneshot::channel();
            tx.send(Command::ChangeMembership {
                changes: changes.clone(),
                peer_addr: peer_addr.clone(),
                reply,
            })
            .await
            .map_err(|_| EngineError::Stopped)?;
            waits.push((shard as ShardId, rx));
        }
        let mut results = Vec::with_capacity(waits.len());
        for (shard, rx) in waits {
            results.push((shard, rx.await.map_err(|_| EngineError::Stopped)?));
        }
        Ok(results)
    }

    /// The account as its shard holds it now.
    pub async fn account(&self, address: Address) -> Result<Option<Account>, EngineError> {
        let s = shard_of(&address, self.inner.shard_count) as usize;
        let (tx, rx) = oneshot::channel();
        self.inner.shards[s]
            .send(Command::Account { address, reply: tx })
            .await
            .map_err(|_| EngineError::Stopped)?;
        rx.await.map_err(|_| EngineError::Stopped)
    }

    /// Queues records for consensus and returns their hashes once every owning shard admitted
    /// them (the `?wait=false` path); their outcomes appear in [`Engine::transaction`].
    pub async fn submit_detached(
        &self,
        records: Vec<Record>,
    ) -> Result<Vec<TxHash>, SubmitFailure> {
        self.submit_detached_with(records, false).await
    }

    async fn submit_detached_with(
        &self,
        records: Vec<Record>,
        from_peer: bool,
    ) -> Result<Vec<TxHash>, SubmitFailure> {
        let hashes: Vec<TxHash> = records.iter().map(Record::tx_hash).collect();
        let waits = self
            .send_per_shard(records, |records, reply| Command::SubmitDetached {
                records,
                valid: Vec::new(),
                from_peer,
                reply,
            })
            .await?;
        for (_, rx) in waits {
            rx.await.map_err(|_| SubmitFailure::Stopped)??;
        }
        Ok(hashes)
    }

    /// A transfer's status if it is within the recent window of its shard.
    pub async fn transaction(&self, hash: TxHash) -> Result<Option<TxStatus>, EngineError> {
        // The hash does not say which shard holds it: ask them all, prefer a decided status.
        let mut found = None;
        for sender in &self.inner.shards {
            let (tx, rx) = oneshot::channel();
            sender
                .send(Command::Transaction { hash, reply: tx })
                .await
                .map_err(|_| EngineError::Stopped)?;
            match rx.await.map_err(|_| EngineError::Stopped)? {
                Some(TxStatus::Decided(o)) => return Ok(Some(TxStatus::Decided(o))),
                Some(pending) => found = Some(pending),
                None => {}
            }
        }
        Ok(found)
    }

    /// A block of `shard` at `height`, if within the recent window.
    pub async fn block(
        &self,
        shard: ShardId,
        height: u64,
    ) -> Result<Option<BlockHeader>, EngineError> {
        let Some(sender) = self.inner.shards.get(shard as usize) else {
            return Ok(None);
        };
        let (tx, rx) = oneshot::channel();
        sender
            .send(Command::Block {
                height: Some(height),
                reply: tx,
            })
            .await
            .map_err(|_| EngineError::Stopped)?;
        rx.await.map_err(|_| EngineError::Stopped)
    }

    /// The latest block of every shard that has one.
    pub async fn latest_blocks(&self) -> Result<Vec<BlockHeader>, EngineError> {
        let mut out = Vec::new();
        for sender in &self.inner.shards {
            let (tx, rx) = oneshot::channel();
            sender
                .send(Command::Block {
                    height: None,
                    reply: tx,
                })
                .await
                .map_err(|_| EngineError::Stopped)?;
            if let Some(b) = rx.await.map_err(|_| EngineError::Stopped)? {
                out.push(b);
            }
        }
        Ok(out)
    }

    /// Consensus and state figures of every shard.
    pub async fn status(&self) -> Result<Vec<ShardStatus>, EngineError> {
        let mut out = Vec::with_capacity(self.inner.shards.len());
        for sender in &self.inner.shards {
            let (tx, rx) = oneshot::channel();
            sender
                .send(Command::Status { reply: tx })
                .await
                .map_err(|_| EngineError::Stopped)?;
            out.push(rx.await.map_err(|_| EngineError::Stopped)?);
        }
        Ok(out)
    }

    /// Stops every shard after its current turn (what was acknowledged is durable already) and
    /// joins the executors. Idempotent.
    pub fn shutdown(&self) -> Option<EngineError> {
        for sender in &self.inner.shards {
            let _ = sender.try_send(Command::Shutdown);
            if sender.is_full() {
                let _ = futures::executor::block_on(sender.send(Command::Shutdown));
            }
        }
        self.join_error()
    }

    fn join_error(&self) -> Option<EngineError> {
        let handles: Vec<_> = std::mem::take(&mut *self.inner.executors.lock().unwrap());
        let mut first = None;
        for handle in handles {
            let result = match handle.join() {
                Ok(r) => r,
                Err(e) => Err(EngineError::Executor {
                    core: 0,
                    message: e.to_string(),
                }),
            };
            if let Err(e) = result {
                first.get_or_insert(e);
            }
        }
        first
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_core(
    core: usize,
    config: EngineConfig,
    genesis: Arc<Genesis>,
    shards: Vec<(ShardId, async_channel::Receiver<Command>)>,
    engine: Engine,
    ready: std::sync::mpsc::Sender<Result<(), EngineError>>,
    go: async_channel::Receiver<bool>,
    service: Option<CoreService>,
) -> Result<(), EngineError> {
    let shard_count = engine.shard_count();
    // This core's link to the same core of every other validator (none when single).
    let link = match PeerLink::start(core, &config, &genesis, shard_count) {
        Ok(link) => link,
        Err(error) => {
            let message = error.to_string();
            for _ in &shards {
                let _ = ready.send(Err(EngineError::Executor {
                    core,
                    message: message.clone(),
                }));
            }
            return Err(error);
        }
    };
    // Each driver's channel: verified submissions from its ingress task, raft messages and
    // forward replies from the peer router.
    let driver_channels: Vec<_> = shards
        .iter()
        .map(|(shard, _)| (*shard, async_channel::bounded(config.shard_queue_depth)))
        .collect();
    if let Some(link) = &link {
        let drivers = driver_channels
            .iter()
            .map(|(shard, (tx, _))| (*shard, tx.clone()))
            .collect();
        glommio::spawn_local(peers::route(link.clone(), drivers, engine.clone())).detach();
    }
    let mut tasks = Vec::new();
    for ((shard, rx), (_, (verified_tx, verified_rx))) in shards.into_iter().zip(driver_channels) {
        let config = config.clone();
        let genesis = genesis.clone();
        let peers = engine.clone();
        let ready = ready.clone();
        let link = link.clone();
        // Everything the shard's tasks log (recovery, turns, snapshots) carries the shard and
        // core: a debug-level span entered on every poll of the task, that is around each
        // driver turn (`Instrument`, never a guard held across an await).
        let span = tracing::debug_span!("shard", shard, core);
        let ingress_span = span.clone();
        tasks.push(glommio::spawn_local(
            async move {
                let opened = open_shard(core, &config, &genesis, shard, shard_count).await;
                match opened {
                    Ok((replica, log)) => {
                        let _ = ready.send(Ok(()));
                        // The ingress task verifies signatures while the driver waits for its group
                        // commit: the two overlap on this core (verification is the CPU-bound stage,
                        // the fdatasync the I/O-bound one).
                        let counters = peers.inner.counters.clone();
                        glommio::spawn_local(
                            ingress(rx, verified_tx, counters, shard).instrument(ingress_span),
                        )
                        .detach();
                        let result = ShardDriver {
                            core,
                            config,
                            replica,
                            log,
                            rx: verified_rx,
                            peers,
                            link,
                            waiting: std::collections::HashMap::new(),
                            forwarded: std::collections::HashMap::new(),
                            next_forward: 0,
                            last_transfer: None,
                            membership: None,
                            outgoing: std::collections::HashMap::new(),
                            incoming: std::collections::HashMap::new(),
                            next_transfer: 0,
                            credit_watermarks: Vec::new(),
                            last_credit_announce: Instant::now(),
                            credited_by: std::collections::HashMap::new(),
                            undelivered: std::collections::VecDeque::new(),
                            last_snapshot_index: 0,
                        }
                        .run()
                        .await;
                        if let Err(error) = &result {
                            tracing::error!(shard, %error, "shard stopped");
                        }
                        result
                    }
                    Err(error) => {
                        let message = error.to_string();
                        let _ = ready.send(Err(error));
                        Err(EngineError::DataDir(message))
                    }
                }
            }
            .instrument(span),
        ));
    }
    drop(ready);
    // Wakes from other threads (replies, channel sends) are queued for this executor and the
    // reactor is notified; should a notification be missed, the next reactor turn still runs
    // the queued wakes. A heartbeat guarantees such a turn every interval, so a lost
    // notification costs at most that much latency, never a hang.
    glommio::spawn_local(async {
        loop {
            glommio::timer::sleep(CHANNEL_POLL_INTERVAL).await;
        }
    })
    .detach();
    if let (Some(true), Some(service)) = (recv_polling(&go).await, service) {
        glommio::spawn_local(service(core, engine.clone())).detach();
    }
    drop(engine);
    let mut first_error = None;
    for task in tasks {
        if let Err(e) = task.await {
            first_error.get_or_insert(e);
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

async fn open_shard(
    core: usize,
    config: &EngineConfig,
    genesis: &Genesis,
    shard: ShardId,
    shard_count: u32,
) -> Result<(ShardReplica, ShardLog), EngineError> {
    let dir = DataDir::shard_dir(&config.data_dir, shard);
    let wal = WalConfig {
        dir: dir.join("wal"),
        segment_bytes_max: config.wal_segment_bytes_max,
        staged_bytes_max: config.wal_staged_bytes_max,
    };
    // Every validator votes in every shard's group (a single validator: itself alone).
    // A joining validator starts outside every group: the leader adds it as a learner.
    let own = (!config.join).then_some(config.node_id);
    let mut voters: Vec<u64> = own
        .into_iter()
        .chain(config.peers.iter().map(|&(id, _)| id))
        .collect();
    voters.sort_unstable();
    let initial_conf = ConfState {
        voters: voters.clone(),
        ..Default::default()
    };
    let (log, snapshot) = ShardLog::open(&dir, initial_conf, wal)
        .await
        .map_err(|source| EngineError::Storage { shard, source })?;
    let state = match snapshot {
        Some(bytes) => decode_state(&bytes).map_err(|e| EngineError::Snapshot {
            shard,
            message: e.to_string(),
        })?,
        None => ShardState::from_genesis(genesis, shard, shard_count),
    };
    if state.shard() != shard || state.shard_count() != shard_count {
        return Err(EngineError::Snapshot {
            shard,
            message: format!(
                "snapshot is of shard {} of {}, expected shard {shard} of {shard_count}",
                state.shard(),
                state.shard_count()
            ),
        });
    }
    let mut replica_config = ReplicaConfig::new(config.node_id, shard);
    replica_config.voters = voters;
    replica_config.election_tick = config.election_ticks;
    replica_config.heartbeat_tick = config.heartbeat_ticks;
    replica_config.entry_records_max = config.entry_records_max;
    replica_config.pending_records_max = config.pending_records_max;
    replica_config.recent_transactions_max = config.recent_transactions_per_shard;
    replica_config.recent_blocks_max = config.recent_blocks_per_shard;
    let replica = ShardReplica::new(replica_config, log.storage(), state)
        .map_err(|source| EngineError::Raft { shard, source })?;
    tracing::info!(
        shard,
        core,
        applied = replica.state().applied_index(),
        accounts = replica.state().account_count(),
        "shard recovered"
    );
    Ok((replica, log))
}

/// Verifies the signatures of each submission on the shard's core, in slices that yield to the
/// core's other tasks, and passes every command on to the shard's driver in arrival order.
///
/// A submission another validator forwarded with its signature verdicts is passed on as it is:
/// each transfer is verified once in the cluster, by the validator its client talked to.
/// Followers never verify what they apply: the leader's log holds only verified transfers.
async fn ingress(
    rx: async_channel::Receiver<Command>,
    tx: async_channel::Sender<Command>,
    counters: Arc<[ShardCounters]>,
    shard: ShardId,
) {
    let counters = &counters[shard as usize];
    let mut verifier = SignatureVerifier::default();
    let mut slice_valid = Vec::new();
    while let Some(mut command) = recv_polling(&rx).await {
        // A client's submission gets its verdicts here; one forwarded by another validator
        // arrives with them.
        if let Some((records, valid)) = command.submission_mut() {
            if valid.is_empty() {
                *valid = verify_in_slices(&mut verifier, records, &mut slice_valid).await;
                counters.record_verified(valid);
            }
        }
        let stop = matches!(command, Command::Shutdown);
        if tx.send(command).await.is_err() || stop {
            return;
        }
    }
}

/// How often a task waiting on a cross-thread channel also looks at it without being woken.
/// A wake from another thread reaches a glommio executor through its reactor, and one was seen
/// lost here (a test hung until a debugger's signal woke the reactor); this bounds the cost of
/// such a loss to one interval instead of forever.
const CHANNEL_POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Receives from a channel fed by other threads; `None` once it is closed and empty.
async fn recv_polling<T>(rx: &async_channel::Receiver<T>) -> Option<T> {
    loop {
        match rx.try_recv() {
            Ok(item) => return Some(item),
            Err(async_channel::TryRecvError::Closed) => return None,
            Err(async_channel::TryRecvError::Empty) => {}
        }
        let recv = pin!(rx.recv());
        let sleep = pin!(glommio::timer::sleep(CHANNEL_POLL_INTERVAL));
        match futures::future::select(recv, sleep).await {
            futures::future::Either::Left((Ok(item), _)) => return Some(item),
            futures::future::Either::Left((Err(_), _)) => return None,
            futures::future::Either::Right(_) => {}
        }
    }
}

async fn verify_in_slices(
    verifier: &mut SignatureVerifier,
    records: &[Record],
    slice_valid: &mut Vec<bool>,
) -> Vec<bool> {
    let mut valid = Vec::with_capacity(records.len());
    for slice in records.chunks(VERIFY_SLICE_RECORDS) {
        verifier.verify(slice, slice_valid);
        valid.extend_from_slice(slice_valid);
        glommio::yield_if_needed().await;
    }
    valid
}

/// The I/O edge of one shard: channel in, log and channels out.
struct ShardDriver {
    core: usize,
    config: EngineConfig,
    replica: ShardReplica,
    log: ShardLog,
    rx: async_channel::Receiver<Command>,
    peers: Engine,
    /// This core's link to the other validators (none when single).
    link: Option<Rc<PeerLink>>,
    waiting: std::collections::HashMap<u64, oneshot::Sender<Result<Vec<Outcome>, SubmitFailure>>>,
    /// Submissions forwarded to the leader, by request id, with the time to give up on them.
    forwarded: std::collections::HashMap<u64, (SubmitReply, Instant, u64)>,
    next_forward: u64,
    /// When this replica last handed its leadership over (rate limit).
    last_transfer: Option<Instant>,
    /// Durable credit watermarks of this (destination) shard's last snapshot, per source.
    credit_watermarks: Vec<(ShardId, u64)>,
    last_credit_announce: Instant,
    /// Credit watermarks reported for receipts of this (source) shard, by (destination,
    /// validator).
    credited_by: std::collections::HashMap<(ShardId, u64), u64>,
    /// Large raft messages (snapshots) going out in pieces, and coming in, per peer.
    outgoing: std::collections::HashMap<u64, peering::OutgoingPieces>,
    incoming: std::collections::HashMap<u64, peering::IncomingPieces>,
    next_transfer: u64,
    /// A membership change this leader proposed: its log index and the operator's reply.
    membership: Option<(u64, oneshot::Sender<Result<u64, SubmitFailure>>)>,
    /// Messages to other shards that found their channel full; retried every turn. Never
    /// awaited: two shards waiting on each other's full channels would deadlock.
    undelivered: std::collections::VecDeque<(ShardId, Command)>,
    last_snapshot_index: u64,
}

type SubmitReply = oneshot::Sender<Result<Vec<Outcome>, SubmitFailure>>;

/// How often the starting thread nudges an executor that has not reported its shards yet.
const NUDGE_INTERVAL: Duration = Duration::from_millis(200);

/// How often a shard repeats its durable credit watermarks to the source shards.
const CREDIT_ANNOUNCE_INTERVAL: Duration = Duration::from_secs(5);

/// Shortest time between two leadership hand-overs of one shard.
const LEADER_TRANSFER_INTERVAL: Duration = Duration::from_secs(2);

/// Signatures verified between two chances for the core's other tasks to run.
const VERIFY_SLICE_RECORDS: usize = 256;

/// Commands taken from the channel per turn (bounds one turn's work and latency).
const COMMANDS_PER_TURN_MAX: usize = 1024;

impl ShardDriver {
    async fn run(mut self) -> Result<(), EngineError> {
        let shard = self.replica.shard();
        self.last_snapshot_index = self.replica.state().applied_index();
        let mut next_tick = Instant::now() + self.config.raft_tick;
        loop {
            let idle = !self.replica.raw_node().has_ready() && !self.replica.has_admitted();
            if idle {
                let wait = next_tick.saturating_duration_since(Instant::now());
                let recv = pin!(self.rx.recv());
                let sleep = pin!(glommio::timer::sleep(wait));
                match futures::future::select(recv, sleep).await {
                    futures::future::Either::Left((Ok(command), _)) => {
                        if self.handle(command) {
                            break;
                        }
                    }
                    futures::future::Either::Left((Err(_), _)) => break,
                    futures::future::Either::Right(_) => {}
                }
            }
            let mut stop = false;
            for _ in 0..COMMANDS_PER_TURN_MAX {
                match self.rx.try_recv() {
                    Ok(command) => {
                        if self.handle(command) {
                            stop = true;
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
            if Instant::now() >= next_tick {
                self.replica.tick();
                self.expire_forwards();
                self.spread_leadership();
                if !self.credit_watermarks.is_empty()
                    && self.last_credit_announce.elapsed() >= CREDIT_ANNOUNCE_INTERVAL
                {
                    self.announce_credits();
                }
                next_tick = Instant::now() + self.config.raft_tick;
            }
            // The ingress task verified every submission's signatures already.
            self.replica.propose_preverified();
            self.process_ready().await?;
            self.pump_pieces();
            self.settle_membership();
            self.answer();
            self.deliver_receipts();
            self.snapshot_if_due().await?;
            if stop {
                break;
            }
        }
        // Everything acknowledged is already durable; answer what is left honestly.
        for (_, reply) in self.waiting.drain() {
            let _ = reply.send(Err(SubmitFailure::Stopped));
        }
        for (_, (reply, _, _)) in self.forwarded.drain() {
            let _ = reply.send(Err(SubmitFailure::Stopped));
        }
        tracing::info!(shard, "shard stopped");
        Ok(())
    }

    fn counters(&self) -> &ShardCounters {
        &self.peers.inner.counters[self.replica.shard() as usize]
    }

    /// Submissions reach the driver only through the ingress task, which verified them.
    fn submit(&mut self, records: &[Record], valid: &[bool]) -> Result<u64, SubmitError> {
        assert_eq!(
            valid.len(),
            records.len(),
            "ingress verifies every submission"
        );
        self.replica.submit_verified(records, valid)
    }

    /// Returns true on shutdown.
    fn handle(&mut self, command: Command) -> bool {
        let shard = self.replica.shard();
        match command {
            Command::Submit {
                records,
                valid,
                from_peer,
                reply,
            } => match self.submit(&records, &valid) {
                Ok(ticket) => {
                    self.waiting.insert(ticket, reply);
                }
                Err(SubmitError::NotLeader {
                    leader: Some(leader),
                    ..
                }) if !from_peer && self.link.is_some() => {
                    // The reply is answered either way (now on failure, later on success).
                    let _ = self.forward(leader, &records, &valid, Some(reply));
                }
                Err(error) => {
                    let _ = reply.send(Err(error.into()));
                }
            },
            Command::SubmitDetached {
                records,
                valid,
                from_peer,
                reply,
            } => {
                let result = match self.submit(&records, &valid) {
                    Ok(_) => Ok(()),
                    Err(SubmitError::NotLeader {
                        leader: Some(leader),
                        ..
                    }) if !from_peer && self.link.is_some() => {
                        self.forward(leader, &records, &valid, None)
                    }
                    Err(error) => Err(error.into()),
                };
                let _ = reply.send(result);
            }
            Command::ChangeMembership {
                changes,
                peer_addr,
                reply,
            } => {
                if self.membership.is_some() {
                    let _ = reply.send(Err(SubmitFailure::Rejected(SubmitError::Membership {
                        shard,
                        reason: "another membership change is in progress",
                    })));
                } else {
                    match self.replica.propose_membership(&changes, &peer_addr) {
                        Ok(index) => self.membership = Some((index, reply)),
                        Err(error) => {
                            let _ = reply.send(Err(error.into()));
                        }
                    }
                }
            }
            Command::RaftPiece {
                from,
                transfer,
                total,
                offset,
                data,
            } => {
                let max = self.config.raft_message_bytes_max;
                let whole = self
                    .incoming
                    .entry(from)
                    .or_default()
                    .accept(transfer, total, offset, &data, max);
                match whole.map(|w| w.map(|bytes| peering::decode_raft_message(&bytes))) {
                    Ok(Some(Ok(message))) => {
                        self.incoming.remove(&from);
                        if let Err(error) = self.replica.step(message) {
                            tracing::debug!(shard, %error, "raft message ignored");
                        }
                    }
                    Ok(Some(Err(error))) => {
                        tracing::warn!(shard, from, %error, "reassembled raft message dropped")
                    }
                    Ok(None) => {}
                    Err(why) => tracing::debug!(shard, from, why, "raft message piece dropped"),
                }
            }
            Command::Raft(message) => {
                if let Err(error) = self.replica.step(*message) {
                    tracing::debug!(shard = self.replica.shard(), %error, "raft message ignored");
                }
            }
            Command::ForwardReply { request, reply } => {
                if let Some((waiter, _, _)) = self.forwarded.remove(&request) {
                    let shard = self.replica.shard();
                    let _ = waiter.send(match reply {
                        ForwardReply::Outcomes(outcomes) => Ok(outcomes),
                        ForwardReply::Refused(refusal) => Err(peers::failure_of(shard, refusal)),
                    });
                }
            }
            Command::Transaction { hash, reply } => {
                let _ = reply.send(self.replica.transaction(&hash));
            }
            Command::Block { height, reply } => {
                let block = match height {
                    Some(h) => self.replica.block(h),
                    None => self.replica.latest_block(),
                };
                let _ = reply.send(block);
            }
            Command::Account { address, reply } => {
                let _ = reply.send(self.replica.state().account(&address).cloned());
            }
            Command::Status { reply } => {
                let _ = reply.send(self.status());
            }
            Command::Receipts(delivery) => self.replica.receive_receipts(delivery),
            Command::Credited {
                destination,
                node,
                up_to,
            } => self.credited(destination, node, up_to),
            Command::Shutdown => return true,
        }
        false
    }

    /// Sends a client's submission to the shard's leader on another validator. With `reply`,
    /// the leader's answer resolves it later (or the forward timeout does); without, the
    /// submission is fire-and-forget (`wait=false`). An `Err` when it could not be sent: the
    /// client hears that this validator does not lead and retries.
    fn forward(
        &mut self,
        leader: u64,
        records: &[Record],
        valid: &[bool],
        reply: Option<SubmitReply>,
    ) -> Result<(), SubmitFailure> {
        let shard = self.replica.shard();
        let not_leader = SubmitFailure::Rejected(SubmitError::NotLeader {
            shard,
            leader: Some(leader),
        });
        let refuse = |reply: Option<SubmitReply>, failure: SubmitFailure| {
            if let Some(reply) = reply {
                let _ = reply.send(Err(failure.clone()));
            }
            Err(failure)
        };
        let Some(link) = self.link.clone() else {
            return refuse(reply, not_leader);
        };
        if reply.is_some() && self.forwarded.len() >= self.config.forwards_pending_max {
            return refuse(
                reply,
                SubmitFailure::Rejected(SubmitError::Overloaded(shard)),
            );
        }
        let request = if reply.is_some() {
            self.next_forward += 1;
            self.next_forward
        } else {
            0
        };
        match link.send(leader, shard, |buf| {
            peering::encode_forward(request, records, valid, buf)
        }) {
            Ok(()) => {
                if let Some(reply) = reply {
                    let deadline = Instant::now() + self.config.forward_timeout;
                    self.forwarded.insert(request, (reply, deadline, leader));
                }
                Ok(())
            }
            Err(error) => {
                tracing::debug!(shard, leader, %error, "could not forward to the leader");
                refuse(reply, not_leader)
            }
        }
    }

    /// Leaders spread over the validators: shard `s` prefers the `s mod n`-th voter (by id).
    /// A leader that is not the preferred one hands over once the preferred voter's log has
    /// caught up with its own (a raft leadership transfer: no entry is lost, writes pause for
    /// about one round trip), at most once per `LEADER_TRANSFER_INTERVAL`.
    fn spread_leadership(&mut self) {
        if self.link.is_none() || !self.replica.is_leader() {
            return;
        }
        if self
            .last_transfer
            .is_some_and(|t| t.elapsed() < LEADER_TRANSFER_INTERVAL)
        {
            return;
        }
        let shard = self.replica.shard();
        let raft = &self.replica.raw_node().raft;
        let mut voters: Vec<u64> = raft.prs().conf().voters().ids().iter().collect();
        voters.sort_unstable();
        let preferred = voters[shard as usize % voters.len()];
        let last_index = raft.raft_log.last_index();
        let caught_up = raft
            .prs()
            .get(preferred)
            .is_some_and(|p| p.matched == last_index && p.recent_active);
        if preferred == self.config.node_id || !caught_up || raft.lead_transferee.is_some() {
            return;
        }
        tracing::info!(
            shard,
            to = preferred,
            "handing shard leadership to its preferred validator"
        );
        self.replica.raw_node_mut().transfer_leader(preferred);
        self.last_transfer = Some(Instant::now());
    }

    /// Forwarded submissions whose leader did not answer in time, or is not the leader any
    /// more (it may have died with them): the client retries at once (the transfer may still
    /// commit; resubmitting it is harmless).
    fn expire_forwards(&mut self) {
        if self.forwarded.is_empty() {
            return;
        }
        let now = Instant::now();
        let shard = self.replica.shard();
        let leader = self.replica.leader_id();
        let expired: Vec<u64> = self
            .forwarded
            .iter()
            .filter(|(_, (_, deadline, to))| *deadline <= now || leader != Some(*to))
            .map(|(&request, _)| request)
            .collect();
        for request in expired {
            if let Some((reply, _, _)) = self.forwarded.remove(&request) {
                let _ = reply.send(Err(SubmitFailure::Retry(shard)));
            }
        }
    }

    /// Sends raft messages to the other validators; a failed send is reported to raft so that
    /// it probes that peer (and retries a snapshot) instead of assuming delivery.
    fn send_raft(&mut self, messages: Vec<Message>) {
        if messages.is_empty() {
            return;
        }
        let Some(link) = self.link.clone() else {
            debug_assert!(false, "raft messages in a single-validator group");
            return;
        };
        let shard = self.replica.shard();
        for message in messages {
            let to = message.to;
            let is_snapshot = message.get_msg_type() == MessageType::MsgSnapshot;
            if protobuf::Message::compute_size(&message) as usize + 1 > self.config.raft_piece_bytes
            {
                // Too large for one transport message: send it in pieces, paced over turns.
                self.next_transfer += 1;
                let pieces = peering::OutgoingPieces {
                    transfer: self.next_transfer,
                    bytes: peering::raft_message_bytes(&message),
                    offset: 0,
                    is_snapshot,
                };
                if let Some(replaced) = self.outgoing.insert(to, pieces) {
                    if replaced.is_snapshot {
                        self.replica.report_snapshot(to, false);
                    }
                }
                continue;
            }
            if let Err(error) = link.send(to, shard, |buf| peering::encode_raft(&message, buf)) {
                tracing::trace!(shard, to, %error, "raft message not sent");
                if is_snapshot {
                    self.replica.report_snapshot(to, false);
                }
                self.replica.report_unreachable(to);
            }
        }
    }

    /// Sends the next pieces of large raft messages while the transport takes them; a full
    /// queue waits for the next turn, a broken link gives the message up (raft retries it).
    fn pump_pieces(&mut self) {
        if self.outgoing.is_empty() {
            return;
        }
        let Some(link) = self.link.clone() else {
            return;
        };
        let shard = self.replica.shard();
        let piece_bytes = self.config.raft_piece_bytes;
        let mut finished = Vec::new();
        for (&to, pieces) in self.outgoing.iter_mut() {
            while let Some((offset, data)) = pieces.next_piece(piece_bytes) {
                let (transfer, total, n) = (pieces.transfer, pieces.bytes.len() as u64, data.len());
                match link.send(to, shard, |buf| {
                    peering::encode_raft_chunk(transfer, total, offset, data, buf)
                }) {
                    Ok(()) => pieces.advance(n),
                    Err(aurigraph_net::transport::SendError::Full(_)) => break,
                    Err(error) => {
                        tracing::debug!(shard, to, %error, "large raft message given up");
                        finished.push((to, pieces.is_snapshot, false));
                        break;
                    }
                }
            }
            if pieces.done() {
                if pieces.is_snapshot {
                    tracing::info!(
                        shard,
                        to,
                        bytes = pieces.bytes.len(),
                        pieces = pieces.bytes.len().div_ceil(piece_bytes),
                        "snapshot sent in pieces"
                    );
                }
                finished.push((to, pieces.is_snapshot, true));
            }
        }
        for (to, is_snapshot, delivered) in finished {
            self.outgoing.remove(&to);
            if is_snapshot {
                self.replica.report_snapshot(to, delivered);
            }
            if !delivered {
                self.replica.report_unreachable(to);
            }
        }
    }

    fn status(&self) -> ShardStatus {
        let node = self.replica.raw_node();
        let raft = &node.raft;
        let shard = self.replica.shard();
        let last_index = raft.raft_log.last_index();
        let mut peer_matched: Vec<(u64, u64)> = if raft.state == StateRole::Leader {
            raft.prs().iter().map(|(&id, p)| (id, p.matched)).collect()
        } else {
            Vec::new()
        };
        peer_matched.sort_unstable();
        let peer_lag = peer_matched
            .iter()
            .map(|&(id, matched)| (id, last_index.saturating_sub(matched)))
            .collect();
        let mut voter_ids: Vec<u64> = raft.prs().conf().voters().ids().iter().collect();
        voter_ids.sort_unstable();
        ShardStatus {
            shard: self.replica.shard(),
            core: self.core,
            role: match raft.state {
                StateRole::Leader => "LEADER",
                StateRole::Follower => "FOLLOWER",
                StateRole::Candidate => "CANDIDATE",
                StateRole::PreCandidate => "PRE_CANDIDATE",
            },
            term: raft.term,
            leader_id: self.replica.leader_id(),
            commit_index: raft.raft_log.committed,
            applied_index: self.replica.state().applied_index(),
            last_index,
            state_hash: self.replica.state().state_hash(),
            accounts_hash: self.replica.state().accounts_hash(),
            accounts: self.replica.state().account_count(),
            leader_changes: self.replica.leader_changes(),
            pending_records: self.replica.pending_records(),
            queued_commands: self.peers.inner.shards[shard as usize].len() + self.rx.len(),
            transport: self.link.as_ref().map(|l| l.transport.counters()),
            peer_links: self
                .link
                .as_ref()
                .map(|l| {
                    let mut links: Vec<(u64, bool)> = voter_ids
                        .iter()
                        .chain(self.replica.learners().iter())
                        .filter(|&&id| id != self.config.node_id)
                        .map(|&id| (id, l.transport.is_connected(id)))
                        .collect();
                    links.sort_unstable();
                    links
                })
                .unwrap_or_default(),
            voters: voter_ids.len(),
            voter_ids,
            learner_ids: self.replica.learners(),
            peer_matched,
            peer_lag,
        }
    }

    async fn process_ready(&mut self) -> Result<(), EngineError> {
        let shard = self.replica.shard();
        // The replica applies committed (already durable) entries inside `ready`.
        let work = self
            .replica
            .ready(now_ms())
            .map_err(|e| EngineError::Snapshot {
                shard,
                message: e.to_string(),
            })?;
        let Some(mut work) = work else {
            return Ok(());
        };
        // A leader's appends and heartbeats may go before its own write (raft counts its vote
        // only once persisted); everything else waits for the fdatasync below.
        self.send_raft(std::mem::take(&mut work.messages));
        if let Some(snapshot) = work.snapshot.take() {
            // Only a follower receives snapshots (from its leader): the replica restored its
            // state already; make it durable before the entries that follow it.
            let meta = snapshot.get_metadata();
            let index = meta.index;
            self.log
                .save_snapshot(
                    index,
                    meta.term,
                    meta.get_conf_state().clone(),
                    snapshot.data.to_vec(),
                )
                .await
                .map_err(|source| EngineError::Storage { shard, source })?;
            self.last_snapshot_index = index;
            tracing::info!(
                shard,
                index,
                "caught up from the leader's snapshot: installed"
            );
            // Durable here now: its credits count as this validator's.
            let state = self.replica.state();
            self.credit_watermarks = (0..state.shard_count())
                .filter(|&s| s != shard)
                .map(|s| (s, state.inbound_watermark(s)))
                .filter(|&(_, w)| w > 0)
                .collect();
            self.announce_credits();
        }
        if work.has_writes() {
            // One group commit (one fdatasync; more only if the entries overflow the staging
            // buffer) for everything this turn produced; nothing is acknowledged before it.
            let stats = self
                .log
                .persist(&work.entries, work.hard_state.as_ref())
                .await
                .map_err(|source| EngineError::Storage { shard, source })?;
            self.counters().record_commit(&stats);
        }
        // Durable now: a follower's acknowledgements and votes may go.
        self.send_raft(std::mem::take(&mut work.persisted_messages));
        let messages = self.replica.persisted(work.number, now_ms());
        self.send_raft(messages);
        Ok(())
    }

    /// Applies membership changes to this core's links and answers a proposed change once it
    /// applied (or failed: leadership lost before it applied).
    fn settle_membership(&mut self) {
        let events = self.replica.take_membership_events();
        if let Some(link) = &self.link {
            for event in events {
                match event {
                    MembershipEvent::Joined { node_id, peer_addr } => {
                        if node_id == self.config.node_id {
                            continue;
                        }
                        let addr = std::str::from_utf8(&peer_addr)
                            .ok()
                            .and_then(|a| a.parse::<SocketAddr>().ok())
                            .and_then(|a| aurigraph_net::transport::core_addr(a, self.core as u32));
                        match addr {
                            // Already known (another shard on this core applied it first): fine.
                            Some(addr) => {
                                if link.transport.add_peer(node_id, addr).is_ok() {
                                    tracing::info!(node_id, %addr, "validator joined: linked");
                                }
                            }
                            None => tracing::warn!(
                                node_id,
                                "validator joined without a usable peer address"
                            ),
                        }
                    }
                    MembershipEvent::Left { node_id } => {
                        if node_id != self.config.node_id && link.transport.remove_peer(node_id) {
                            tracing::info!(node_id, "validator left: unlinked");
                        }
                    }
                }
            }
        }
        let Some((index, _)) = &self.membership else {
            return;
        };
        let index = *index;
        if self.replica.state().applied_index() >= index {
            let (_, reply) = self.membership.take().expect("checked");
            let _ = reply.send(Ok(index));
        } else if !self.replica.is_leader() {
            let (_, reply) = self.membership.take().expect("checked");
            let _ = reply.send(Err(SubmitFailure::Retry(self.replica.shard())));
        }
    }

    fn answer(&mut self) {
        for (ticket, outcomes) in self.replica.take_completed() {
            if let Some(reply) = self.waiting.remove(&ticket) {
                let _ = reply.send(Ok(outcomes));
            }
        }
        let shard = self.replica.shard();
        for ticket in self.replica.take_failed() {
            if let Some(reply) = self.waiting.remove(&ticket) {
                let _ = reply.send(Err(SubmitFailure::Retry(shard)));
            }
        }
    }

    fn deliver_receipts(&mut self) {
        for delivery in self.replica.take_deliveries() {
            self.undelivered
                .push_back((delivery.destination, Command::Receipts(delivery)));
        }
        while let Some((destination, command)) = self.undelivered.pop_front() {
            match self.peers.inner.shards[destination as usize].try_send(command) {
                Ok(()) => {}
                Err(async_channel::TrySendError::Full(command)) => {
                    self.undelivered.push_front((destination, command));
                    break;
                }
                Err(async_channel::TrySendError::Closed(_)) => {}
            }
        }
    }

    /// Sends this validator's durable credit watermarks of this (destination) shard to the
    /// source shards: locally through their channels, to the other validators over this core's
    /// link (their router hands them on). Repeated every `CREDIT_ANNOUNCE_INTERVAL`, so a
    /// dropped message or a restarted peer only delays pruning.
    fn announce_credits(&mut self) {
        let shard = self.replica.shard();
        let node_id = self.config.node_id;
        for &(source, up_to) in &self.credit_watermarks {
            self.undelivered.push_back((
                source,
                Command::Credited {
                    destination: shard,
                    node: node_id,
                    up_to,
                },
            ));
        }
        if let Some(link) = self.link.clone() {
            let raft = &self.replica.raw_node().raft;
            let members: Vec<u64> = raft.prs().iter().map(|(&id, _)| id).collect();
            for peer in members.into_iter().filter(|&id| id != node_id) {
                for &(source, up_to) in &self.credit_watermarks {
                    let _ = link.send(peer, shard, |buf| {
                        peering::encode_credited(shard, source, up_to, buf)
                    });
                }
            }
        }
        self.last_credit_announce = Instant::now();
    }

    /// A validator's credit watermark for receipts of this (source) shard: forget the receipts
    /// every member of this shard's group has durably credited (members that never reported
    /// count as 0, so a new or silent validator holds pruning back, never forward).
    fn credited(&mut self, destination: ShardId, node: u64, up_to: u64) {
        let known = self.credited_by.entry((destination, node)).or_insert(0);
        *known = (*known).max(up_to);
        let raft = &self.replica.raw_node().raft;
        let safe = raft
            .prs()
            .iter()
            .map(|(&id, _)| {
                self.credited_by
                    .get(&(destination, id))
                    .copied()
                    .unwrap_or(0)
            })
            .min()
            .unwrap_or(0);
        if safe > 0 {
            self.replica.receipts_credited(destination, safe);
        }
    }

    async fn snapshot_if_due(&mut self) -> Result<(), EngineError> {
        let applied = self.replica.state().applied_index();
        if applied < self.last_snapshot_index + self.config.snapshot_interval_entries {
            return Ok(());
        }
        self.snapshot().await
    }

    async fn snapshot(&mut self) -> Result<(), EngineError> {
        let shard = self.replica.shard();
        let state = self.replica.state();
        let applied = state.applied_index();
        let node = self.replica.raw_node();
        let term = node.raft.raft_log.term(applied).unwrap_or(node.raft.term);
        let conf = node.raft.prs().conf().to_conf_state();
        let data = encode_state(state);
        let watermarks: Vec<(ShardId, u64)> = (0..state.shard_count())
            .filter(|&s| s != shard)
            .map(|s| (s, state.inbound_watermark(s)))
            .collect();
        self.log
            .save_snapshot(applied, term, conf, data)
            .await
            .map_err(|source| EngineError::Storage { shard, source })?;
        self.last_snapshot_index = applied;
        self.counters().snapshots.fetch_add(1, Relaxed);
        // Our credits up to these watermarks are durable now: tell the sources here and on
        // every other validator (they forget receipts only up to what all validators report).
        self.credit_watermarks = watermarks.into_iter().filter(|&(_, w)| w > 0).collect();
        self.announce_credits();
        tracing::debug!(shard, applied, "snapshot saved");
        Ok(())
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

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
