//! The I/O edge of one shard: performs what its [`ShardNode`] decides. Commands come in on the
//! shard's channel (through the ingress task, which verified submissions); the node's actions
//! go out to the transport, to clients' reply channels and to other shards' channels; its
//! writes go to the shard's log. One group commit is in flight at a time; while it runs, the
//! shard goes on with its next turns (raft-rs's asynchronous append) and stages their writes
//! for the next group, which starts when the one in flight is durable: a group holds whatever
//! accumulated meanwhile, so its size follows the load.

use super::counters::{ShardCounters, Stage};
use super::mesh::TrySendError;
use super::peers::PeerLink;
use super::submit::Submitted;
use super::{Engine, EngineConfig, EngineError};
use crate::ledger::Account;
use crate::node::{
    Answer, BackupRefused, Effects, LocalMessage, LocalSnapshot, Now, SendRefused, ShardNode,
    ShardStatus, SubmitFailure, Submitter,
};
use crate::peering::{Outbound, PeerMessage};
use crate::record::{Address, Record, TxHash};
use crate::replica::{BlockHeader, Outcome, TxStatus};
use crate::shard::ShardId;
use aurigraph_net::transport::SendError;
use aurigraph_storage::background::spawn_background;
use aurigraph_storage::shard_log::ShardLog;
use futures::channel::oneshot;
use futures::future::Either;
use futures::FutureExt;
use glommio::channels::local_channel::{LocalReceiver, LocalSender};
use raft::eraftpb::ConfChangeType;
use raft::eraftpb::ConfState;

use std::pin::pin;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod snapshots;
pub(super) use snapshots::Archiving;

/// What a shard's channel carries.
pub(super) enum Command {
    /// A submission: a client's (waiting for outcomes or detached) or one another validator
    /// forwarded. `valid` is empty until the shard's ingress task verified the signatures (a
    /// forwarded one arrives with the forwarding validator's verdicts).
    Submit {
        records: Submitted,
        valid: Vec<bool>,
        /// Per record, whether the authenticated gateway controls its source account (no
        /// signature needed: `custody`); empty when none does.
        custodial: Vec<bool>,
        from: Submitter<Reply>,
        /// The core whose executor allocated `records` and `custodial` (they go back to it
        /// once admitted); `None` from threads that are not executors and from peers. (A u16:
        /// at most 256 cores, and it keeps `Command` small for the channels.)
        home: Option<u16>,
        /// When the submitting core sent it (`None`: forwarded by a peer).
        sent: Option<Instant>,
    },
    /// A message from this shard's replica on validator `from` (raft, pieces, forward replies).
    Peer {
        from: u64,
        message: PeerMessage,
    },
    /// A message from another shard of this validator.
    Local(LocalMessage),
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
    /// The shard's state at its applied index, encoded as a snapshot's bytes, for a backup.
    Backup {
        reply: oneshot::Sender<Result<ShardBackup, BackupRefused>>,
    },
    Shutdown,
}

impl Command {
    /// A submission's records, signature verdicts (empty until verified) and custodial flags.
    pub(super) fn submission_mut(&mut self) -> Option<(&[Record], &mut Vec<bool>, &[bool])> {
        match self {
            Command::Submit {
                records,
                valid,
                custodial,
                ..
            } => Some((records.records(), valid, custodial)),
            _ => None,
        }
    }
}

/// How the runtime answers: the reply channel of the command that asked.
pub(super) enum Reply {
    Outcomes(oneshot::Sender<Result<Vec<Outcome>, SubmitFailure>>),
    Admitted(oneshot::Sender<Result<(), SubmitFailure>>),
    Membership(oneshot::Sender<Result<u64, SubmitFailure>>),
}

/// Commands taken from the channel per turn (bounds one turn's work and latency).
const COMMANDS_PER_TURN_MAX: usize = 1024;

/// A group commit (write and fdatasync, from start to the shard hearing of it) that takes this
/// long or longer is logged at debug level.
const SLOW_COMMIT_LOGGED: Duration = Duration::from_millis(5);

/// The node's actions, performed on this core.
struct RuntimeIo<'a> {
    shard: ShardId,
    core: usize,
    engine: &'a Engine,
    link: Option<&'a PeerLink>,
}

impl Effects for RuntimeIo<'_> {
    type Reply = Reply;

    fn send(&mut self, to: u64, message: Outbound<'_>) -> Result<(), SendRefused> {
        let Some(link) = self.link else {
            debug_assert!(false, "peer messages from a single validator");
            return Err(SendRefused::Down);
        };
        match link.send(to, self.shard, |buf| message.encode(buf)) {
            Ok(()) => Ok(()),
            Err(SendError::Full(_)) => Err(SendRefused::Full),
            Err(error) => {
                tracing::trace!(shard = self.shard, to, %error, "peer message not sent");
                Err(SendRefused::Down)
            }
        }
    }

    fn reply(&mut self, to: Reply, answer: Answer) {
        // A client that went away dropped its receiver: nothing to do.
        match (to, answer) {
            (Reply::Outcomes(tx), Answer::Outcomes(result)) => drop(tx.send(result)),
            (Reply::Admitted(tx), Answer::Admitted(result)) => drop(tx.send(result)),
            (Reply::Membership(tx), Answer::Membership(result)) => drop(tx.send(result)),
            (_, answer) => debug_assert!(false, "answer of another kind: {answer:?}"),
        }
    }

    fn to_shard(
        &mut self,
        destination: ShardId,
        message: LocalMessage,
    ) -> Result<(), LocalMessage> {
        if destination >= self.engine.shard_count() {
            return Ok(());
        }
        match self
            .engine
            .try_send_to(destination, Command::Local(message))
        {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(Command::Local(message))) => Err(message),
            // Closed: the engine is stopping.
            Err(_) => Ok(()),
        }
    }

    fn link(&mut self, node_id: u64, peer_addr: &[u8]) {
        if let Some(link) = self.link {
            link.want(self.shard, node_id, peer_addr, self.core);
        }
    }

    fn unlink(&mut self, node_id: u64) {
        if let Some(link) = self.link {
            link.unwant(self.shard, node_id);
        }
    }
}

/// One shard's part of a backup: its state at `index` as a snapshot's bytes, with the term and
/// configuration a snapshot file records.
#[derive(Debug)]
pub struct ShardBackup {
    pub index: u64,
    pub term: u64,
    pub conf: ConfState,
    /// The state hash at `index`.
    pub state_hash: u128,
    pub data: Vec<u8>,
}

/// What a waiting shard woke up to.
enum Woke {
    Command(Option<Command>),
    Tick,
    Written(Result<aurigraph_storage::CommitStats, aurigraph_storage::StorageError>),
}

/// One shard on its core: the node, its log, its channel.
pub(super) struct ShardDriver {
    pub core: usize,
    pub config: EngineConfig,
    pub node: ShardNode<Reply>,
    pub log: ShardLog,
    /// Verified submissions from the shard's ingress task; peer messages from the core's
    /// peer router; commands of every other kind, passed on by the ingress task.
    pub rx: LocalReceiver<Command>,
    /// The sending end of `rx`, and that of the shard's ingress channel: their lengths are
    /// the shard's queue.
    pub queue: Rc<LocalSender<Command>>,
    pub ingress_queue: Rc<LocalSender<Command>>,
    pub engine: Engine,
    /// This core's link to the other validators (none when single).
    pub link: Option<Rc<PeerLink>>,
    /// The monotonic clock's origin (the node sees milliseconds since it).
    pub started: Instant,
    /// A local snapshot being archived on glommio's blocking pool while turns go on.
    pub archiving: Option<Archiving>,
    pub writes: Writes,
}

/// The shard's writes on their way to disk: ready cycles staged for the next group commit, and
/// the group commit in flight.
#[derive(Default)]
pub(super) struct Writes {
    /// The last ready cycle whose writes are all staged and in no group commit yet.
    staged_up_to: Option<u64>,
    /// The last ready cycle the group commit in flight makes durable (`None` also when it
    /// holds only part of a cycle still being staged).
    committing_up_to: Option<u64>,
    /// When the group commit in flight started.
    commit_started: Option<Instant>,
}

impl ShardDriver {
    fn now(&self) -> Now {
        let wall_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Now {
            monotonic_ms: self.started.elapsed().as_millis() as u64,
            wall_ms,
        }
    }

    fn counters(&self) -> &ShardCounters {
        &self.engine.inner.counters[self.node.shard() as usize]
    }

    pub(super) async fn run(mut self) -> Result<(), EngineError> {
        let shard = self.node.shard();
        let mut next_tick = Instant::now() + self.config.raft_tick;
        loop {
            if self.node.is_idle() || !self.node.can_start_turn() {
                // Every cycle not yet durable is in the group commit in flight (a turn starts
                // one for what it staged): waiting for it, a command or the tick is enough.
                assert!(
                    !self.node.is_persisting() || self.log.is_syncing(),
                    "ready cycles in flight without a group commit"
                );
                let wait = next_tick.saturating_duration_since(Instant::now());
                let woke = {
                    let recv = self.rx.recv().map(Woke::Command);
                    let sleep = glommio::timer::sleep(wait).map(|_| Woke::Tick);
                    let log = &mut self.log;
                    let written = async {
                        if log.is_syncing() {
                            Woke::Written(log.finish_sync().await)
                        } else {
                            std::future::pending().await
                        }
                    };
                    let (sleep, written) = (pin!(sleep), pin!(written));
                    let timed = futures::future::select(sleep, written);
                    match futures::future::select(pin!(recv), timed).await {
                        Either::Left((woke, _)) => woke,
                        Either::Right((either, _)) => either.factor_first().0,
                    }
                };
                let stop = match woke {
                    Woke::Command(Some(command)) => self.handle(command),
                    // Every sender gone: nothing can reach the shard any more.
                    Woke::Command(None) => true,
                    Woke::Tick => false,
                    Woke::Written(result) => {
                        self.written(result).await?;
                        false
                    }
                };
                if stop {
                    break;
                }
            }
            if self.log.is_syncing() {
                // A group commit that completed meanwhile.
                if let Some(result) = self.log.finish_sync().now_or_never() {
                    self.written(result).await?;
                }
            }
            let mut stop = false;
            for _ in 0..COMMANDS_PER_TURN_MAX {
                // What is queued now, without waiting (a local channel has no `try_recv`).
                match self.rx.recv().now_or_never() {
                    Some(Some(command)) => {
                        if self.handle(command) {
                            stop = true;
                            break;
                        }
                    }
                    _ => break,
                }
            }
            if Instant::now() >= next_tick {
                let now = self.now();
                let (node, mut io) = self.split();
                node.tick(&mut io, now);
                next_tick = Instant::now() + self.config.raft_tick;
            }
            self.turn().await?;
            if stop {
                break;
            }
        }
        // What is staged or in flight was acknowledged to no one: made durable all the same,
        // so the log is closed with no write under way.
        self.drain_writes().await?;
        let (node, mut io) = self.split();
        node.shutdown(&mut io);
        tracing::info!(shard, "shard stopped");
        Ok(())
    }

    /// The node and the effects it acts through (disjoint borrows of the driver).
    fn split(&mut self) -> (&mut ShardNode<Reply>, RuntimeIo<'_>) {
        let io = RuntimeIo {
            shard: self.node.shard(),
            core: self.core,
            engine: &self.engine,
            link: self.link.as_deref(),
        };
        (&mut self.node, io)
    }

    /// One turn: a ready cycle when the node may start one (its writes staged for the next
    /// group commit, nothing acknowledged before they are durable), then the rest of the turn,
    /// a local snapshot when one is due, and a group commit of what is staged when none is in
    /// flight.
    async fn turn(&mut self) -> Result<(), EngineError> {
        let shard = self.node.shard();
        self.save_archived(false).await?;
        let mut stage_started = Instant::now();
        if self.node.can_start_turn() {
            let now = self.now();
            let (node, mut io) = self.split();
            let persist = node
                .start_turn(&mut io, now)
                .map_err(|source| EngineError::Replica { shard, source })?;
            if let Some(persist) = persist {
                self.counters().lap(Stage::ProposeApply, &mut stage_started);
                if let Some(snapshot) = &persist.snapshot {
                    // Only a follower receives snapshots (from its leader): the replica
                    // restored its state already. The node starts such a cycle with nothing
                    // else in flight; a local snapshot being archived is older: saved first,
                    // so that snapshots are saved in index order.
                    assert!(!self.log.is_syncing() && self.writes.staged_up_to.is_none());
                    self.save_archived(true).await?;
                    let meta = snapshot.get_metadata();
                    self.log
                        .save_snapshot(
                            meta.index,
                            meta.term,
                            meta.get_conf_state().clone(),
                            snapshot.data.to_vec(),
                        )
                        .await
                        .map_err(|source| EngineError::Storage { shard, source })?;
                }
                let durable_meanwhile = self
                    .stage(&persist.entries, persist.hard_state.as_ref())
                    .await?;
                self.node.staged(persist.number);
                let durable = if persist.snapshot.is_some() && self.log.wal().staged_bytes() == 0 {
                    // Its only write was the leader's snapshot, saved (durably) above, and
                    // nothing was in flight before it: durable already.
                    Some(persist.number)
                } else {
                    self.writes.staged_up_to = Some(persist.number);
                    let cycles = if self.log.is_syncing() {
                        &self.counters().write_cycles_overlapped
                    } else {
                        &self.counters().write_cycles_alone
                    };
                    cycles.fetch_add(1, Relaxed);
                    durable_meanwhile
                };
                if let Some(number) = durable {
                    let now = self.now();
                    let (node, mut io) = self.split();
                    node.persisted(&mut io, number, now);
                }
            }
        }
        let (node, mut io) = self.split();
        let finishing = Instant::now();
        let snapshot = node.finish_turn(&mut io);
        self.counters().lap(Stage::Answer, &mut stage_started);
        self.tap_applied();
        if let Some(snapshot) = snapshot {
            self.start_archiving(snapshot, finishing);
        }
        if !self.log.is_syncing() && self.writes.staged_up_to.is_some() {
            self.start_writes().await?;
        }
        Ok(())
    }

    /// Stages a ready cycle's entries and hard state. When they do not fit the staging buffer,
    /// what it holds is written first (after the group in flight): returns the last cycle that
    /// became durable on the way, for the node once this one is staged too.
    async fn stage(
        &mut self,
        entries: &[raft::eraftpb::Entry],
        hard_state: Option<&raft::eraftpb::HardState>,
    ) -> Result<Option<u64>, EngineError> {
        let shard = self.node.shard();
        let mut durable = None;
        let mut rest = entries;
        loop {
            let (staged, done) = self
                .log
                .stage_prefix(rest, hard_state)
                .map_err(|source| EngineError::Storage { shard, source })?;
            rest = &rest[staged..];
            if done {
                return Ok(durable);
            }
            // The staging buffer is full: the group in flight, then one of what is staged
            // (which holds part of this cycle, or an earlier cycle's writes).
            if self.log.is_syncing() {
                let result = self.log.finish_sync().await;
                durable = self.record_written(result)?.or(durable);
            }
            self.start_writes().await?;
            let result = self.log.finish_sync().await;
            durable = self.record_written(result)?.or(durable);
        }
    }

    /// Hands the entries applied this turn to each downstream sink's channel, without waiting:
    /// what does not fit is dropped and counted (`applied_dropped`), never waited for.
    fn tap_applied(&mut self) {
        if self.config.applied_taps.is_empty() {
            return;
        }
        let shard = self.node.shard();
        for entry in self.node.take_applied() {
            let entry = Arc::new(entry);
            for (i, tap) in self.config.applied_taps.iter().enumerate() {
                let counters = self.counters();
                match tap.sender.try_send((shard, entry.clone())) {
                    Ok(()) => counters.applied_tapped[i].fetch_add(1, Relaxed),
                    Err(_) => counters.applied_dropped[i].fetch_add(1, Relaxed),
                };
            }
        }
    }

    /// Starts a group commit of everything staged.
    async fn start_writes(&mut self) -> Result<(), EngineError> {
        let shard = self.node.shard();
        assert!(!self.log.is_syncing());
        let started = self
            .log
            .start_sync()
            .await
            .map_err(|source| EngineError::Storage { shard, source })?;
        assert!(started, "a group commit of nothing staged");
        self.writes.committing_up_to = self.writes.staged_up_to.take();
        self.writes.commit_started = Some(Instant::now());
        Ok(())
    }

    /// The group commit in flight ended: counts it, and returns the last ready cycle it made
    /// durable.
    fn record_written(
        &mut self,
        result: Result<aurigraph_storage::CommitStats, aurigraph_storage::StorageError>,
    ) -> Result<Option<u64>, EngineError> {
        let shard = self.node.shard();
        let stats = result.map_err(|source| EngineError::Storage { shard, source })?;
        self.counters().record_commit(&stats);
        if let Some(mut started) = self.writes.commit_started.take() {
            let took = started.elapsed();
            if took >= SLOW_COMMIT_LOGGED {
                // At debug level: lined up with the snapshot lines, says what a tail was.
                tracing::debug!(
                    shard,
                    took_us = took.as_micros() as u64,
                    write_us = stats.write_duration.as_micros() as u64,
                    fsync_us = stats.fsync_duration.as_micros() as u64,
                    bytes = stats.bytes_written,
                    rolled = stats.segment_rolled,
                    "slow group commit"
                );
            }
            self.counters().lap(Stage::Persist, &mut started);
        }
        Ok(self.writes.committing_up_to.take())
    }

    /// The group commit in flight ended: the node hears which cycles are durable, and a turn
    /// follows at once, before more commands are taken: it applies what became committed and
    /// answers those clients without waiting behind the admission of what queued meanwhile.
    async fn written(
        &mut self,
        result: Result<aurigraph_storage::CommitStats, aurigraph_storage::StorageError>,
    ) -> Result<(), EngineError> {
        self.notify_written(result)?;
        self.turn().await
    }

    /// The group commit in flight ended: the node hears which cycles are durable.
    fn notify_written(
        &mut self,
        result: Result<aurigraph_storage::CommitStats, aurigraph_storage::StorageError>,
    ) -> Result<(), EngineError> {
        if let Some(number) = self.record_written(result)? {
            let now = self.now();
            let (node, mut io) = self.split();
            node.persisted(&mut io, number, now);
        }
        Ok(())
    }

    /// Makes every staged write durable: the group in flight, then one of what is staged.
    async fn drain_writes(&mut self) -> Result<(), EngineError> {
        if self.log.is_syncing() {
            let result = self.log.finish_sync().await;
            self.notify_written(result)?;
        }
        if self.writes.staged_up_to.is_some() {
            self.start_writes().await?;
            let result = self.log.finish_sync().await;
            self.notify_written(result)?;
        }
        Ok(())
    }

    /// Returns true on shutdown.
    fn handle(&mut self, command: Command) -> bool {
        let (node, mut io) = self.split();
        match command {
            Command::Submit {
                records,
                valid,
                custodial,
                from,
                home,
                sent,
            } => {
                let copied = match records {
                    Submitted::Records(records) => {
                        node.submit(&mut io, &records, &valid, from);
                        Some(records)
                    }
                    // Kept: it is the entry, or copied into one.
                    Submitted::Archive(archive) => {
                        let whole = node.submit_archive(&mut io, archive, &valid, from);
                        io.engine.inner.counters[io.shard as usize].record_archive(whole);
                        None
                    }
                };
                if let Some(sent) = sent {
                    let counters = &io.engine.inner.counters[io.shard as usize];
                    counters.record_stage(Stage::ToAdmission, sent.elapsed());
                }
                // Admitted or answered: the node copied what it keeps. The lender frees them.
                if let (Some(home), Some(records)) = (home, copied) {
                    let lent = super::mesh::Lent::Submission(records, custodial);
                    self.send_home(usize::from(home), lent);
                }
            }
            Command::Peer { from, message } => node.peer_message(&mut io, from, message),
            Command::Local(message) => {
                if let Some((source, buffer)) = node.local_message(message) {
                    let home = source as usize % self.engine.cores();
                    self.send_home(home, super::mesh::Lent::Receipts(buffer));
                }
            }
            Command::ChangeMembership {
                changes,
                peer_addr,
                reply,
            } => node.change_membership(&mut io, &changes, &peer_addr, Reply::Membership(reply)),
            Command::Transaction { hash, reply } => {
                let _ = reply.send(node.replica().transaction(&hash));
            }
            Command::Block { height, reply } => {
                let replica = node.replica();
                let block = match height {
                    Some(h) => replica.block(h),
                    None => replica.latest_block(),
                };
                let _ = reply.send(block);
            }
            Command::Account { address, reply } => {
                let _ = reply.send(node.replica().state().account(&address).cloned());
            }
            Command::Status { reply } => {
                let _ = reply.send(self.status());
            }
            Command::Backup { reply } => match node.backup_image() {
                // Copied on the core; encoded (sorted, rkyv) on glommio's blocking pool. The
                // state hash is the copied state's: read now, not decoded from the archive.
                Ok(LocalSnapshot {
                    index,
                    term,
                    conf,
                    image,
                }) => {
                    let state_hash = node.replica().state().state_hash();
                    glommio::spawn_local(async move {
                        let data = spawn_background(move || image.encode()).await;
                        let _ = reply.send(Ok(ShardBackup {
                            index,
                            term,
                            conf,
                            state_hash,
                            data,
                        }));
                    })
                    .detach();
                }
                Err(refused) => {
                    let _ = reply.send(Err(refused));
                }
            },
            Command::Shutdown => return true,
        }
        false
    }

    fn send_home(&self, home: usize, lent: super::mesh::Lent) {
        if let Some(outbox) = super::mesh::Outbox::current(self.engine.id()) {
            outbox.send_home(home, lent);
        }
    }

    fn status(&self) -> ShardStatus {
        let mut status = self.node.status();
        status.core = self.core;
        status.queued_commands = self.queue.len() + self.ingress_queue.len();
        if let Some(link) = &self.link {
            status.transport = Some(link.transport.counters());
            status.peer_links = self
                .node
                .peers()
                .into_iter()
                .map(|id| (id, link.transport.is_connected(id)))
                .collect();
        }
        status
    }
}
