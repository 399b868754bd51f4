//! The thread-per-core runtime: one glommio executor per core (pinned to its CPU when
//! `pin_cores` is set), each owning its shards.
//!
//! Shard `s` lives on core `s mod cores`. Nothing is shared between cores: every cross-core
//! interaction (a client submission, an account query, receipts from another shard) is a
//! message on a bounded single-producer ring between the two cores ([`mesh`]), and within a
//! core on the shard's local channel.
//!
//! Each shard runs as two tasks on its core: the ingress ([`ingress`]) verifies signatures in
//! slices while the driver ([`driver`]) waits for its group commit; the driver performs what
//! the shard's [`crate::node::ShardNode`] decides (the same sans-I/O code the simulator runs):
//! one turn drains the channel, proposes what arrived, persists the raft `Ready` with one group
//! commit (one fdatasync for everything that turn), then applies what committed and answers the
//! clients. Transfers are answered only after their entry was fdatasynced and applied.

mod counters;
pub mod custody;
mod driver;
pub mod ingress;
mod mesh;
mod peers;
mod per_core;
mod sinks;
mod submit;
pub mod verify_help;
pub mod watchdog;

pub use counters::{AtomicHistogram, HistogramCounts, ShardCounters, Stage, FSYNC_BOUNDS_NS};
pub use mesh::CoreCounters;
pub use sinks::{AppliedTap, SinkWritten, SINKS_MAX};

use crate::datadir::DataDir;
use crate::genesis::Genesis;
use crate::ledger::Account;
use crate::node::{ShardStatus, SubmitFailure};
use crate::record::{Address, TxHash};
use crate::replica::{BlockHeader, TxStatus};
use crate::shard::{shard_of, ShardId};
use aurigraph_net::transport::PeerTls;
use aurigraph_wire::steering::core_of_shard;
pub use custody::GatewayId;
use driver::Command;
pub use driver::ShardBackup;
use futures::channel::oneshot;
use glommio::{LocalExecutorBuilder, Placement};
use raft::eraftpb::ConfChangeType;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How fast a shard writes a local snapshot's file by default (`snapshot_write_bytes_per_sec`):
/// 128 MiB/s, a ~95 MB snapshot in under a second, about a quarter of what the development
/// VM's disk takes while the WAL runs at half load (docs/benchmarks.md).
pub const SNAPSHOT_WRITE_BYTES_PER_SEC_DEFAULT: u64 = 128 << 20;

/// How the engine runs.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub data_dir: PathBuf,
    pub node_id: u64,
    /// Executors (one per core). Shards are spread over them.
    pub cores: usize,
    /// Pin executor `i` to the `i`-th CPU this process may run on (its affinity mask, as
    /// `core_affinity` reads it); off lets the OS place them (validators sharing a host).
    pub pin_cores: bool,
    /// Records per consensus entry.
    pub entry_records_max: usize,
    /// Records admitted per shard and not yet decided.
    pub pending_records_max: usize,
    /// Commands queued per shard channel (back-pressure beyond it).
    pub shard_queue_depth: usize,
    /// Take a snapshot (and truncate the log) every this many applied entries...
    pub snapshot_interval_entries: u64,
    /// ...or every this many bytes of applied entries (bounds the in-memory log and the WAL).
    pub snapshot_interval_bytes: u64,
    /// How fast a local snapshot's file goes to the disk, per shard (0: unpaced): written in
    /// paced pieces so that the WAL's group commits do not queue behind it.
    pub snapshot_write_bytes_per_sec: u64,
    /// Ready cycles of a shard handed out and not yet durable, at most (1: no pipelining).
    pub ready_cycles_in_flight_max: usize,
    /// Where every shard sends its applied entries, one bounded channel per downstream sink (at
    /// most `SINKS_MAX`): a shard never waits on one; what does not fit is counted in
    /// `ShardCounters::applied_dropped` and the sink reports the gap. Empty: no sink.
    pub applied_taps: Vec<AppliedTap>,
    /// How much a shard applies past a local snapshot it waits to save until the sinks have
    /// written up to it; past it the snapshot is saved anyway (a crash then leaves the sink a
    /// gap, which it reports and resyncs from the state).
    pub sink_retain_bytes_max: u64,
    pub raft_tick: Duration,
    pub wal_segment_bytes_max: u64,
    pub wal_staged_bytes_max: usize,
    /// Start each WAL segment from a zero-filled spare (storage's `WalConfig::preallocate`).
    pub wal_preallocate: bool,
    /// io_uring registered memory per executor (bounded by RLIMIT_MEMLOCK).
    pub io_memory_bytes: usize,
    /// Longest stretch a task runs before yielding to the core's other tasks.
    pub task_quantum: Duration,
    /// Log a warning with a backtrace whenever a core's tasks run this much longer than
    /// `task_quantum` without yielding (glommio's stall detector); `None`: off.
    pub stall_report_after: Option<Duration>,
    /// Signatures verified in one batch equation between two yields (1 ..= 256; see
    /// `ingress::VERIFY_SLICE_SIGNATURES_DEFAULT`): smaller is kinder to the core's other
    /// tasks, larger verifies more per second.
    pub verify_slice_signatures: usize,
    /// The slice while submissions wait behind the one being verified (the core is
    /// saturated; see `ingress::VerifySlices`).
    pub verify_slice_signatures_backlogged: usize,
    /// Signatures a submission needs at least before its shard offers parts of it to the
    /// engine's other cores to verify, when nothing waits behind it (`verify_help`); 0: never.
    pub verify_help_signatures_min: usize,
    /// Transfers remembered per shard for lookups by hash.
    pub recent_transactions_per_shard: usize,
    /// Block headers remembered per shard.
    pub recent_blocks_per_shard: usize,
    /// The other validators with their base peer addresses (core `c` listens on port + `c`);
    /// empty: a single validator. Every shard's raft group has all of them as voters.
    pub peers: Vec<(u64, SocketAddr)>,
    /// This validator's base peer address; required when `peers` is not empty.
    pub peer_addr: Option<SocketAddr>,
    /// Mutual TLS on every peer link (`None`: plain TCP; see `aurigraph_net::transport`).
    pub peer_tls: Option<Arc<PeerTls>>,
    /// Without `peer_tls`: whether a validator that membership adds at an address beyond
    /// loopback is linked anyway (plain TCP on a network the operator trusts).
    pub allow_plaintext_peers: bool,
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
    /// A core whose heartbeat has not moved for this long is stalled (see `watchdog`); `None`
    /// turns the watchdog off.
    pub stall_timeout: Option<Duration>,
    /// What the watchdog does about a stalled core (stop the process; tests record it).
    pub stall_action: watchdog::StallAction,
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
            snapshot_interval_bytes: 512 << 20,
            snapshot_write_bytes_per_sec: SNAPSHOT_WRITE_BYTES_PER_SEC_DEFAULT,
            ready_cycles_in_flight_max: 8,
            applied_taps: Vec::new(),
            sink_retain_bytes_max: 256 << 20,
            raft_tick: Duration::from_millis(100),
            wal_segment_bytes_max: 64 << 20,
            wal_staged_bytes_max: 32 << 20,
            wal_preallocate: true,
            io_memory_bytes: 1 << 20,
            task_quantum: Duration::from_millis(1),
            stall_report_after: None,
            verify_slice_signatures: ingress::VERIFY_SLICE_SIGNATURES_DEFAULT,
            verify_slice_signatures_backlogged: ingress::VERIFY_SLICE_SIGNATURES_MAX,
            verify_help_signatures_min: verify_help::VERIFY_HELP_SIGNATURES_MIN_DEFAULT,
            recent_transactions_per_shard: 262_144,
            recent_blocks_per_shard: 4096,
            peers: Vec::new(),
            peer_addr: None,
            peer_tls: None,
            allow_plaintext_peers: false,
            join: false,
            election_ticks: 10,
            heartbeat_ticks: 2,
            forward_timeout: Duration::from_secs(5),
            forwards_pending_max: 4096,
            startup_timeout: Duration::from_secs(120),
            raft_piece_bytes: 1 << 20,
            raft_message_bytes_max: 1 << 30,
            stall_timeout: Some(Duration::from_secs(10)),
            stall_action: watchdog::StallAction::Exit,
        }
    }
}

/// A fault that stops the engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    DataDir(String),
    /// A setting this host cannot honour (e.g. pinning more executors than the CPUs allowed).
    #[error("{0}")]
    Config(String),
    #[error("shard {shard}: storage: {source}")]
    Storage {
        shard: ShardId,
        source: aurigraph_storage::StorageError,
    },
    #[error("shard {shard}: snapshot state: {message}")]
    Snapshot { shard: ShardId, message: String },
    /// The replica stopped: a snapshot from the leader it cannot use, or a committed
    /// membership change raft cannot apply.
    #[error("shard {shard}: replica stopped: {source}")]
    Replica {
        shard: ShardId,
        source: crate::replica::ReplicaError,
    },
    #[error("shard {shard}: consensus: {source}")]
    Raft { shard: ShardId, source: raft::Error },
    #[error("could not start executor {core}: {message}")]
    Executor { core: usize, message: String },
    /// An executor did not report its shards recovered within the start-up timeout. The
    /// stuck thread cannot be stopped from here: the node exits with the watchdog's status
    /// (`watchdog::EXIT_STALLED`) so that its supervisor starts it over.
    #[error("executor {core} did not recover its shards within {seconds} s")]
    StartupStalled { core: usize, seconds: u64 },
    #[error("the engine is shut down")]
    Stopped,
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
    /// Which gateway controls which account (gateway mode), from the genesis.
    custody: custody::Custody,
    /// Each core's channel for commands from threads that are not its executors (the
    /// executors themselves use the rings of [`mesh`]).
    foreign: Vec<async_channel::Sender<mesh::Foreign>>,
    counters: Arc<[ShardCounters]>,
    core_counters: Arc<[CoreCounters]>,
    executors: std::sync::Mutex<Vec<glommio::ExecutorJoinHandle<Result<(), EngineError>>>>,
    /// Each executor's heartbeat count, which the watchdog reads.
    beats: watchdog::Beats,
    watchdog: std::sync::Mutex<Option<watchdog::Watchdog>>,
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
        let (mesh_ends, foreign) = mesh::build(config.cores, config.shard_queue_depth);
        let mut help_ends = verify_help::build(config.cores).into_iter();
        let engine = Engine {
            inner: Arc::new(EngineInner {
                node_id: config.node_id,
                shard_count,
                cores: config.cores,
                chain_id: genesis.chain_id,
                assets: genesis.assets(),
                custody: custody::Custody::from_genesis(&genesis),
                foreign,
                counters: (0..shard_count).map(|_| ShardCounters::default()).collect(),
                core_counters: (0..config.cores).map(|_| CoreCounters::default()).collect(),
                executors: std::sync::Mutex::new(Vec::new()),
                beats: watchdog::Beats::new(config.cores),
                watchdog: std::sync::Mutex::new(None),
            }),
        };
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), EngineError>>();
        // Executors wait for this before starting their services: every shard must be ready.
        let (go_tx, go_rx) = async_channel::bounded::<bool>(config.cores);
        let engine_startup_timeout = config.startup_timeout;
        let mut failure = None;
        let cpus = if config.pin_cores {
            pinnable_cpus(config.cores)?
        } else {
            Vec::new()
        };
        for (core, ends) in mesh_ends.into_iter().enumerate() {
            let shards: Vec<ShardId> = (0..shard_count)
                .filter(|&s| core_of_shard(s, config.cores) == core)
                .collect();
            let placement = match cpus.get(core) {
                Some(&cpu) => Placement::Fixed(cpu),
                None => Placement::Unbound,
            };
            let config = config.clone();
            let genesis = genesis.clone();
            let ready = ready_tx.clone();
            let go = go_rx.clone();
            let service = service.clone();
            let handle = engine.clone();
            let core_shards = shards.len();
            let help = help_ends.next().expect("help ends for every core");
            let spawned = LocalExecutorBuilder::new(placement)
                // "aurigraph/3": within Linux's 15-byte thread names, so that `top -H`, `ps -L`
                // and /proc show which core a thread is.
                .name(&format!("aurigraph/{core}"))
                .io_memory(config.io_memory_bytes)
                // How long a task may run before `yield_if_needed` lets the core's other tasks in
                // (glommio's default is 100 ms): signature verification yields at this cadence,
                // so it bounds the latency it adds to HTTP and consensus work on the same core.
                .preempt_timer(config.task_quantum)
                .detect_stalls(config.stall_report_after.map(|overage| {
                    Box::new(StallReport { overage }) as Box<dyn glommio::StallDetectionHandler>
                }))
                .spawn(move || async move {
                    let core_setup = per_core::Core {
                        core,
                        config,
                        genesis,
                        shards,
                        ends,
                        help,
                    };
                    per_core::run_core(core_setup, handle, ready, go, service).await
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
            // before the next starts, so that recovery's disk reads do not compete. A core that
            // recovers nothing within the start-up timeout is reported as stalled. (Starts
            // stalled now and then until the glommio fix in third_party/README.md: an executor
            // parked with a runnable task queued after a blocking-pool completion.)
            let started = Instant::now();
            let startup_timeout = engine_startup_timeout;
            let mut recovered = 0;
            while recovered < core_shards {
                let left = startup_timeout.saturating_sub(started.elapsed());
                let received = ready_rx.recv_timeout(left);
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
        if let Some(timeout) = config.stall_timeout {
            *engine.inner.watchdog.lock().unwrap() = Some(watchdog::Watchdog::start(
                engine.inner.beats.clone(),
                timeout,
                config.stall_action,
            ));
        }
        Ok(engine)
    }

    pub fn node_id(&self) -> u64 {
        self.inner.node_id
    }

    pub fn shard_count(&self) -> u32 {
        self.inner.shard_count
    }
    /// The executors' liveness beats (each core counts one every 10 ms while it makes
    /// progress): what a supervisor's watchdog is fed from.
    pub fn beats(&self) -> watchdog::Beats {
        self.inner.beats.clone()
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

    /// Running totals of every core (index = core).
    pub fn core_counters(&self) -> &Arc<[CoreCounters]> {
        &self.inner.core_counters
    }

    /// The gateway named `name` (gateway mode), if the genesis gives it any account.
    pub fn gateway(&self, name: &str) -> Option<GatewayId> {
        self.inner.custody.gateway(name)
    }

    /// Asks every shard at once (each answers on its own core) and waits for all answers,
    /// in shard order.
    async fn ask_every_shard<T>(
        &self,
        ask: impl Fn(oneshot::Sender<T>) -> Command,
    ) -> Result<Vec<T>, EngineError> {
        let mut waits = Vec::with_capacity(self.inner.shard_count as usize);
        for shard in 0..self.inner.shard_count {
            let (reply, rx) = oneshot::channel();
            self.send_to(shard, ask(reply))
                .await
                .map_err(|_| EngineError::Stopped)?;
            waits.push(rx);
        }
        let mut answers = Vec::with_capacity(waits.len());
        for rx in waits {
            answers.push(rx.await.map_err(|_| EngineError::Stopped)?);
        }
        Ok(answers)
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
        let answers = self
            .ask_every_shard(|reply| Command::ChangeMembership {
                changes: changes.clone(),
                peer_addr: peer_addr.clone(),
                reply,
            })
            .await?;
        Ok((0..).zip(answers).collect())
    }

    /// The account as its shard holds it now.
    pub async fn account(&self, address: Address) -> Result<Option<Account>, EngineError> {
        let shard = shard_of(&address, self.inner.shard_count);
        let (tx, rx) = oneshot::channel();
        self.send_to(shard, Command::Account { address, reply: tx })
            .await
            .map_err(|_| EngineError::Stopped)?;
        rx.await.map_err(|_| EngineError::Stopped)
    }

    /// A transfer's status if it is within the recent window of its shard.
    pub async fn transaction(&self, hash: TxHash) -> Result<Option<TxStatus>, EngineError> {
        // The hash does not say which shard holds it: ask them all, prefer a decided status.
        let answers = self
            .ask_every_shard(|reply| Command::Transaction { hash, reply })
            .await?;
        let decided = answers
            .iter()
            .flatten()
            .find(|s| matches!(s, TxStatus::Decided(_)));
        Ok(decided.or(answers.iter().flatten().next()).copied())
    }

    /// A block of `shard` at `height`, if within the recent window.
    pub async fn block(
        &self,
        shard: ShardId,
        height: u64,
    ) -> Result<Option<BlockHeader>, EngineError> {
        if shard >= self.inner.shard_count {
            return Ok(None);
        }
        let (tx, rx) = oneshot::channel();
        let ask = Command::Block {
            height: Some(height),
            reply: tx,
        };
        self.send_to(shard, ask)
            .await
            .map_err(|_| EngineError::Stopped)?;
        rx.await.map_err(|_| EngineError::Stopped)
    }

    /// The latest block of every shard that has one.
    pub async fn latest_blocks(&self) -> Result<Vec<BlockHeader>, EngineError> {
        let answers = self
            .ask_every_shard(|reply| Command::Block {
                height: None,
                reply,
            })
            .await?;
        Ok(answers.into_iter().flatten().collect())
    }

    /// Consensus and state figures of every shard.
    pub async fn status(&self) -> Result<Vec<ShardStatus>, EngineError> {
        self.ask_every_shard(|reply| Command::Status { reply })
            .await
    }

    /// Every shard's state at its applied index, as a snapshot's bytes, taken while the node
    /// runs (a shard copies its state on its core between two turns, then encodes the copy
    /// off the core). Everything acknowledged before the call is in it: a transfer is
    /// acknowledged only once applied.
    pub async fn backup(
        &self,
    ) -> Result<Vec<Result<ShardBackup, crate::node::BackupRefused>>, EngineError> {
        self.ask_every_shard(|reply| Command::Backup { reply })
            .await
    }

    /// One shard's state at its applied index, taken as [`Engine::backup`] takes every shard's
    /// (for a sink resyncing that shard alone).
    pub async fn backup_shard(
        &self,
        shard: ShardId,
    ) -> Result<Result<ShardBackup, crate::node::BackupRefused>, EngineError> {
        let (reply, rx) = oneshot::channel();
        self.send_to(shard, Command::Backup { reply })
            .await
            .map_err(|_| EngineError::Stopped)?;
        rx.await.map_err(|_| EngineError::Stopped)
    }

    /// Stops every shard after its current turn (what was acknowledged is durable already) and
    /// joins the executors. Idempotent.
    /// The first stalled core the watchdog recorded (core, how long), with
    /// `StallAction::Record`.
    pub fn stalled_core(&self) -> Option<(usize, Duration)> {
        self.inner
            .watchdog
            .lock()
            .unwrap()
            .as_ref()
            .and_then(watchdog::Watchdog::stalled)
    }

    pub fn shutdown(&self) -> Option<EngineError> {
        // The executors' beats stop now for good reason: the watchdog first.
        if let Some(mut watchdog) = self.inner.watchdog.lock().unwrap().take() {
            watchdog.stop();
        }
        for shard in 0..self.inner.shard_count {
            let foreign = &self.inner.foreign[core_of_shard(shard, self.inner.cores)];
            if let Err(async_channel::TrySendError::Full(stop)) =
                foreign.try_send((shard, Command::Shutdown))
            {
                let _ = futures::executor::block_on(foreign.send(stop));
            }
        }
        self.join_error()
    }

    /// This engine's identity among the engines of the process (its executors' outboxes
    /// carry it).
    fn id(&self) -> usize {
        Arc::as_ptr(&self.inner) as usize
    }

    /// Sends `command` to `shard`, waiting while its queue is full: from one of the engine's
    /// executors over the rings of [`mesh`], from any other thread over the target core's
    /// foreign channel. `Err`: the engine stopped.
    async fn send_to(&self, shard: ShardId, command: Command) -> Result<(), Command> {
        assert!(shard < self.inner.shard_count, "shard {shard} out of range");
        let command = match mesh::Outbox::current(self.id()) {
            Some(outbox) => match outbox.send(shard, command).await {
                Ok(()) => return Ok(()),
                // The ring to that core not connected yet (only while the engine starts), or
                // the shard stopped (then the foreign channel's router drops it as well).
                Err(command) => command,
            },
            None => command,
        };
        let foreign = &self.inner.foreign[core_of_shard(shard, self.inner.cores)];
        foreign
            .send((shard, command))
            .await
            .map_err(|async_channel::SendError((_, command))| command)
    }

    /// Queues `command` for `shard` if there is room now (see [`Engine::send_to`]).
    #[expect(
        clippy::result_large_err,
        reason = "a command that found no room comes back to its sender, whole, to retry"
    )]
    fn try_send_to(&self, shard: ShardId, command: Command) -> Result<(), mesh::TrySendError> {
        if let Some(outbox) = mesh::Outbox::current(self.id()) {
            return outbox.try_send(shard, command);
        }
        let foreign = &self.inner.foreign[core_of_shard(shard, self.inner.cores)];
        foreign.try_send((shard, command)).map_err(|e| match e {
            async_channel::TrySendError::Full((_, c)) => mesh::TrySendError::Full(c),
            async_channel::TrySendError::Closed((_, c)) => mesh::TrySendError::Closed(c),
        })
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

/// The CPUs `cores` pinned executors go on: the first `cores` of those this process may run on
/// (its affinity mask: `taskset`, a cgroup's cpuset), in order. Pinning executor `i` to CPU `i`
/// regardless would fail, or pile executors together, under a mask that does not start at 0.
fn pinnable_cpus(cores: usize) -> Result<Vec<usize>, EngineError> {
    let mut cpus: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect();
    cpus.sort_unstable();
    if cpus.len() < cores {
        return Err(EngineError::Config(format!(
            "cannot pin {cores} executors: this process may run on {} CPUs ({cpus:?}); \
             use fewer --cores or --pin-cores false",
            cpus.len()
        )));
    }
    cpus.truncate(cores);
    Ok(cpus)
}

/// glommio's stall detector with our threshold: a core whose task queue runs longer than its
/// quantum plus `overage` without yielding logs a warning with the running task's backtrace
/// (glommio interrupts the thread with SIGUSR1 to take it). What found the large-table growth
/// stalls of apply (see `ledger::chunked` and `ReplicaConfig::preallocate_recent`).
#[derive(Debug)]
struct StallReport {
    overage: Duration,
}

impl glommio::StallDetectionHandler for StallReport {
    fn threshold(&self, _queue: glommio::TaskQueueHandle, _expected: Duration) -> Option<Duration> {
        Some(self.overage)
    }
}
