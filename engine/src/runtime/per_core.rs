//! One core: its peer link, its shards (each an ingress task and a driver task), and the
//! service (HTTP) that runs next to them once every shard of the engine is ready.

use super::driver::Command;
use super::driver::{ShardDriver, Writes};
use super::ingress::{ingress, VerifySlices};
use super::mesh;
use super::peers::{self, PeerLink};
use super::verify_help::{self, HelpEnds, HelpSetup};
use super::watchdog::HEARTBEAT_INTERVAL;
use super::{CoreService, Engine, EngineConfig, EngineError};
use crate::datadir::DataDir;
use crate::genesis::Genesis;
use crate::ledger::ShardState;
use crate::node::{NodeConfig, ShardNode};
use crate::replica::{bootstrap_snapshot, ReplicaConfig, ShardReplica};
use crate::shard::ShardId;
use crate::state_snapshot::decode_state;
use aurigraph_storage::shard_log::ShardLog;
use aurigraph_storage::wal::WalConfig;
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use raft::eraftpb::{ConfState, HardState};
use raft::Storage;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;

/// How often a shard repeats its durable credit watermarks to the source shards.
const CREDIT_ANNOUNCE_INTERVAL: Duration = Duration::from_secs(5);

/// How long a core waits for its rings to the other cores before it serves clients anyway.
const RING_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Shortest time between two leadership hand-overs of one shard.
const LEADER_TRANSFER_INTERVAL: Duration = Duration::from_secs(2);

/// The node's decisions' bounds, from the engine's configuration.
fn node_config(config: &EngineConfig, replicated: bool) -> NodeConfig {
    NodeConfig {
        node_id: config.node_id,
        // Milliseconds since the epoch at start-up: a restarted node never reuses request ids.
        incarnation: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        replicated,
        forward_timeout_ms: config.forward_timeout.as_millis() as u64,
        forwards_pending_max: config.forwards_pending_max,
        raft_piece_bytes: config.raft_piece_bytes,
        raft_message_bytes_max: config.raft_message_bytes_max,
        snapshot_interval_entries: config.snapshot_interval_entries,
        snapshot_interval_bytes: config.snapshot_interval_bytes,
        credit_announce_interval_ms: CREDIT_ANNOUNCE_INTERVAL.as_millis() as u64,
        leader_transfer_interval_ms: LEADER_TRANSFER_INTERVAL.as_millis() as u64,
        ready_cycles_in_flight_max: config.ready_cycles_in_flight_max,
    }
}

/// One shard's two channels on its core, each bounded by `shard_queue_depth`.
struct ShardChannels {
    shard: ShardId,
    /// What clients, peers and other shards send the shard (over this core's outbox or a
    /// ring's router); the shard's ingress task reads it.
    ingress: (Rc<LocalSender<Command>>, LocalReceiver<Command>),
    /// Verified submissions from the ingress task; raft messages and forward replies from the
    /// peer router. The shard's driver reads it.
    driver: (Rc<LocalSender<Command>>, LocalReceiver<Command>),
}

impl ShardChannels {
    fn new(shard: ShardId, depth: usize) -> ShardChannels {
        let bounded = || {
            let (tx, rx) = local_channel::new_bounded(depth);
            (Rc::new(tx), rx)
        };
        ShardChannels {
            shard,
            ingress: bounded(),
            driver: bounded(),
        }
    }
}

/// What one executor is given: its core, its shards and its ends of the rings.
pub(super) struct Core {
    pub core: usize,
    pub config: EngineConfig,
    pub genesis: Arc<Genesis>,
    /// The shards this core owns (`s mod cores == core`).
    pub shards: Vec<ShardId>,
    pub ends: mesh::CoreEnds,
    /// Its ends of the rings that share verification between cores.
    pub help: HelpEnds,
}

pub(super) async fn run_core(
    setup: Core,
    engine: Engine,
    ready: std::sync::mpsc::Sender<Result<(), EngineError>>,
    go: async_channel::Receiver<bool>,
    service: Option<CoreService>,
) -> Result<(), EngineError> {
    let Core {
        core,
        config,
        genesis,
        shards,
        ends,
        help,
    } = setup;
    let shard_count = engine.shard_count();
    let channels: Vec<ShardChannels> = shards
        .iter()
        .map(|&shard| ShardChannels::new(shard, config.shard_queue_depth))
        .collect();
    // The ingress channel of each shard of this core (index = shard), for the outbox.
    let mut local = vec![None; shard_count as usize];
    for channel in &channels {
        local[channel.shard as usize] = Some(channel.ingress.0.clone());
    }
    let connecting = mesh::install(
        engine.id(),
        (core, config.cores),
        ends,
        local,
        engine.inner.counters.clone(),
        engine.inner.core_counters.clone(),
    );
    let (help_desk, help_answers) = verify_help::install(
        HelpSetup {
            core,
            cores: config.cores,
            signatures_min: config.verify_help_signatures_min,
            chunk: config.verify_slice_signatures,
            core_counters: engine.inner.core_counters.clone(),
            shard_counters: engine.inner.counters.clone(),
            shards: shards.clone(),
            shard_count: shard_count as usize,
        },
        help,
    );
    let mut help_answers = help_answers.into_iter();
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
    if let Some(link) = &link {
        let drivers = channels
            .iter()
            .map(|channel| (channel.shard, channel.driver.0.clone()))
            .collect();
        glommio::spawn_local(peers::route(link.clone(), drivers, engine.clone())).detach();
    }
    let mut tasks = Vec::new();
    for channel in channels {
        let ShardChannels {
            shard,
            ingress: (ingress_tx, ingress_rx),
            driver: (driver_tx, driver_rx),
        } = channel;
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
        let (answers_shard, answers) = help_answers.next().expect("answers for every shard");
        assert_eq!(answers_shard, shard);
        let help = (help_desk.clone(), answers);
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
                            ingress(
                                (ingress_rx, ingress_tx.clone()),
                                driver_tx.clone(),
                                counters,
                                shard,
                                VerifySlices {
                                    idle: config.verify_slice_signatures,
                                    backlogged: config.verify_slice_signatures_backlogged,
                                },
                                help,
                            )
                            .instrument(ingress_span),
                        )
                        .detach();
                        let node_config = node_config(&config, link.is_some());
                        let result = ShardDriver {
                            core,
                            node: ShardNode::new(node_config, replica),
                            config,
                            log,
                            rx: driver_rx,
                            queue: driver_tx,
                            ingress_queue: ingress_tx,
                            engine: peers,
                            link,
                            started: Instant::now(),
                            archiving: None,
                            writes: Writes::default(),
                        }
                        .run()
                        .await;
                        match &result {
                            Err(EngineError::Storage { source, .. }) => fail_stop(shard, source),
                            Err(error) => tracing::error!(shard, %error, "shard stopped"),
                            Ok(()) => {}
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
    // A beat for the watchdog every interval: a core whose beats stop is stalled.
    let beats = engine.inner.beats.clone();
    glommio::spawn_local(async move {
        loop {
            glommio::timer::sleep(HEARTBEAT_INTERVAL).await;
            beats.beat(core);
        }
    })
    .detach();
    let beats = engine.inner.beats.clone();
    if let (Ok(true), Some(service)) = (go.recv().await, service) {
        // Every executor runs now: the rings connect. Clients are served once this core
        // reaches every other one over its own ring, or after `RING_CONNECT_TIMEOUT` anyway:
        // until a ring connects, commands to that core take its foreign channel (slower, but
        // nothing is lost), and a core that never served would go unnoticed.
        let connected = futures::future::join_all(connecting);
        let timeout = glommio::timer::sleep(RING_CONNECT_TIMEOUT);
        if let futures::future::Either::Right(_) =
            futures::future::select(std::pin::pin!(connected), std::pin::pin!(timeout)).await
        {
            tracing::warn!(
                core,
                seconds = RING_CONNECT_TIMEOUT.as_secs(),
                "rings to other cores not all connected; serving, with commands to those \
                 cores on the shared channel until they connect"
            );
        }
        glommio::spawn_local(service(core, engine.clone())).detach();
    }
    drop(engine);
    let mut first_error = None;
    for task in tasks {
        if let Err(e) = task.await {
            first_error.get_or_insert(e);
        }
    }
    // Every shard of this core has stopped: its executor ends, and its beats with it.
    beats.finished(core);
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// A write, fdatasync, snapshot or directory sync failed while the shard ran. The WAL is poisoned
/// (after a failed fdatasync the kernel may have dropped the dirty pages: retrying could report
/// durable what is not), so the shard cannot go on, and a node without one of its shards must not
/// go on either: the whole process stops, with its own exit status, and its supervisor restarts
/// it; recovery then decides from what the disk really holds. Nothing that was not durable was
/// acknowledged, so stopping loses nothing acknowledged.
fn fail_stop(shard: ShardId, error: &aurigraph_storage::StorageError) -> ! {
    let code = aurigraph_storage::STORAGE_FAILURE_EXIT_CODE;
    tracing::error!(
        shard,
        %error,
        exit_code = code,
        "storage failure: stopping the process; restart it to recover from the disk"
    );
    std::process::exit(code)
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
        preallocate: config.wal_preallocate,
        preallocate_bytes_per_sec: Some(WalConfig::PREALLOCATE_BYTES_PER_SEC_DEFAULT),
    };
    // The founding validators (`--peers`, and this one) vote in every shard's group (a single
    // validator: itself alone). A joining validator starts with no configuration at all: the
    // leader adds it as a learner and its snapshot brings the group's configuration.
    let voters: Vec<u64> = if config.join {
        Vec::new()
    } else {
        let mut voters: Vec<u64> = std::iter::once(config.node_id)
            .chain(config.peers.iter().map(|&(id, _)| id))
            .collect();
        voters.sort_unstable();
        voters.dedup();
        voters
    };
    let initial_conf = ConfState {
        voters: voters.clone(),
        ..Default::default()
    };
    let (mut log, mut snapshot) = ShardLog::open(&dir, initial_conf, wal)
        .await
        .map_err(|source| EngineError::Storage { shard, source })?;
    let fresh = snapshot.is_none()
        && log.storage().last_index().unwrap_or(0) == 0
        && log
            .storage()
            .initial_state()
            .is_ok_and(|s| s.hard_state == HardState::default());
    if fresh && !voters.is_empty() {
        // A founding replica's first start: its log begins with the founding snapshot (see
        // `replica::BOOTSTRAP_INDEX`), saved durably before anything else happens.
        let mut genesis_state = ShardState::from_genesis(genesis, shard, shard_count);
        let (index, term, conf, data) = bootstrap_snapshot(&mut genesis_state, &voters);
        log.save_snapshot(index, term, conf, data.clone())
            .await
            .map_err(|source| EngineError::Storage { shard, source })?;
        snapshot = Some(data);
    }
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
    replica_config.preallocate_recent = true;
    replica_config.tap_applied = !config.applied_taps.is_empty();
    replica_config.tap_balances = config.applied_taps.iter().any(|tap| tap.balances);
    let replica = ShardReplica::new(replica_config, log.storage(), state)
        .map_err(|source| EngineError::Raft { shard, source })?;
    tracing::info!(
        shard,
        core,
        applied = replica.state().applied_index(),
        accounts = replica.state().account_count(),
        state_hash = %format!("{:032x}", replica.state().state_hash()),
        "shard recovered"
    );
    Ok((replica, log))
}
