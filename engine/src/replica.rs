//! One shard's replica: raft-rs `RawNode` + the ledger state machine, without I/O.
//!
//! This is the consensus glue in the raft-rs style: the caller feeds it inputs (client
//! submissions, receipts from other shards, raft messages, ticks), takes its `Ready`, does the
//! I/O (fdatasync the log, send messages), and hands committed entries back for apply. The same
//! code runs under the glommio runtime and under a deterministic simulator.
//!
//! # Log entry format
//! An entry's `context` is 17 bytes: `kind u8` ‖ `proposer node id u64 LE` ‖ `proposal id u64 LE`.
//! - kind 1, transfers: `data` is a binary batch (see [`crate::batch`]) of records whose
//!   signatures the proposer verified.
//! - kind 2, markers: `data` is `count u32 LE` then `count` × (`source shard u32 LE`, `up_to u64 LE`):
//!   "credit the receipts of `source` up to its log index `up_to`" (DESIGN.md section 4).
//!
//! Entries with empty data are raft's own (the new leader's empty entry) and only advance the
//! applied index.
//!
//! # The ready cycle (several voters)
//! The caller loops: feed inputs ([`ShardReplica::step`] for raft messages from peers,
//! [`ShardReplica::tick`], submissions, receipts), then
//! 1. [`ShardReplica::ready`] returns a [`ReadyWork`]: a snapshot to persist (the replica already
//!    restored its state from it), entries and a hard state to persist, `messages` that may be
//!    sent at once and `persisted_messages` that must wait for the fdatasync. Committed entries
//!    that were already durable are applied inside `ready`.
//! 2. The caller makes the snapshot, entries and hard state durable (and visible in the
//!    `MemStorage`, which `ShardLog::stage` does), fdatasyncs, then sends `persisted_messages`.
//! 3. [`ShardReplica::persisted`] advances raft and applies what committed meanwhile; it returns
//!    more messages (a leader's), which may be sent at once.
//!
//! A follower thus acknowledges entries only after they are durable (asynchronous persistence in
//! raft-rs 0.7 terms: a non-leader's messages are all `persisted_messages`).
//!
//! Snapshots for lagging followers are made on demand: when raft asks the storage for one, the
//! replica archives its state at its applied index (`state_snapshot`) on the next ready cycle and
//! raft sends it on a later attempt.

use crate::batch::{decode_batch, BatchBuilder, BATCH_RECORDS_MAX};
use crate::ledger::{precheck, Receipt, ShardState};
use crate::record::{Record, TxHash};
use crate::result::ResultCode;
use crate::shard::{shard_of, ShardId};
use crate::state_snapshot::{decode_state, encode_state};
use crate::verify::SignatureVerifier;
use raft::eraftpb::{
    ConfChange, ConfChangeSingle, ConfChangeTransition, ConfChangeType, ConfChangeV2, ConfState,
    Entry, EntryType, HardState, Message, MessageType, Snapshot, SnapshotMetadata,
};
use raft::storage::MemStorage;
use raft::{
    Config, GetEntriesContext, RaftState, RawNode, Ready, SnapshotStatus, StateRole, Storage,
};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

pub const ENTRY_CONTEXT_BYTES: usize = 17;
pub const ENTRY_KIND_TRANSFERS: u8 = 1;
pub const ENTRY_KIND_MARKERS: u8 = 2;

/// What a client learns about one transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub tx_hash: TxHash,
    pub result: ResultCode,
    pub shard: ShardId,
    /// Log index of the entry that decided it; 0 when it was rejected before consensus.
    pub block: u64,
}

/// What the node knows of a transfer in its recent window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxStatus {
    /// Admitted, signature checks passed or pending, not yet decided by the log.
    Pending {
        shard: ShardId,
    },
    Decided(Outcome),
}

/// A block: one applied log entry that carries a payload (transfers or markers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockHeader {
    pub shard: ShardId,
    /// The entry's log index.
    pub height: u64,
    pub hash: [u8; 32],
    pub prev_hash: [u8; 32],
    pub tx_count: u32,
    pub term: u64,
    /// The shard's state hash right after this block applied.
    pub state_hash: u128,
    /// Wall-clock time this replica applied it (local, not part of any hash).
    pub timestamp_ms: u64,
}

/// Why a submission was not taken.
///
/// `NotLeader` carries the leader's node id when this replica knows it, so that a forwarding
/// layer can send the submission there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    #[error("this validator does not lead shard {shard} (leader: {leader:?})")]
    NotLeader { shard: ShardId, leader: Option<u64> },
    #[error("shard {0} is overloaded: too many transfers waiting for consensus")]
    Overloaded(ShardId),
    /// Raft takes one membership change at a time per group.
    #[error("shard {shard}: membership change refused: {reason}")]
    Membership {
        shard: ShardId,
        reason: &'static str,
    },
}

/// Bounds and timing of one replica.
#[derive(Clone, Debug)]
pub struct ReplicaConfig {
    pub node_id: u64,
    pub shard: ShardId,
    /// The group's voters (node ids) for a brand-new log; ignored when the storage already has a
    /// membership (from a snapshot or a recovered log). `[node_id]`: a single-voter group.
    pub voters: Vec<u64>,
    /// Raft's randomized election timeout is drawn from `[min, max)` ticks; 0 means raft's
    /// default (`[election_tick, 2 * election_tick)`). The simulator sets `max = min + 1` with a
    /// seed-chosen `min` per replica: raft-rs draws from the thread's RNG, which a deterministic
    /// run must not depend on.
    pub min_election_tick: usize,
    pub max_election_tick: usize,
    pub pre_vote: bool,
    pub check_quorum: bool,
    /// Records per proposed entry (a batch); bounded by `BATCH_RECORDS_MAX`.
    pub entry_records_max: usize,
    /// Records admitted and not yet decided; beyond it submissions get `Overloaded`.
    pub pending_records_max: usize,
    pub election_tick: usize,
    pub heartbeat_tick: usize,
    pub max_inflight_msgs: usize,
    pub max_size_per_msg_bytes: u64,
    /// Transfers remembered for `GET /transactions/{txHash}` (oldest forgotten first).
    pub recent_transactions_max: usize,
    /// Block headers remembered for `GET /blocks/{shard}/{height}`.
    pub recent_blocks_max: usize,
}

impl ReplicaConfig {
    pub fn new(node_id: u64, shard: ShardId) -> ReplicaConfig {
        ReplicaConfig {
            node_id,
            shard,
            voters: vec![node_id],
            min_election_tick: 0,
            max_election_tick: 0,
            pre_vote: true,
            check_quorum: true,
            entry_records_max: 8192,
            pending_records_max: 262_144,
            election_tick: 10,
            heartbeat_tick: 2,
            max_inflight_msgs: 256,
            max_size_per_msg_bytes: 8 << 20,
            recent_transactions_max: 262_144,
            recent_blocks_max: 4096,
        }
    }
}

/// A client submission waiting for its outcomes.
struct Ticket {
    outcomes: Vec<Option<Outcome>>,
    missing: usize,
}

/// Receipts received from one source shard and not yet credited here.
#[derive(Default)]
struct Inbox {
    receipts: VecDeque<Receipt>,
    /// Every receipt of the source up to this source index has been received.
    progress: u64,
    /// Highest `up_to` proposed in a marker by this node (while leader).
    proposed_up_to: u64,
}

/// Receipts to ship to another shard's core after apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptDelivery {
    pub source: ShardId,
    pub destination: ShardId,
    /// All receipts of `source` for `destination` up to this source index are included in
    /// this delivery or an earlier one.
    pub up_to: u64,
    pub receipts: Vec<Receipt>,
}

/// The storage raft reads: the caller's `MemStorage` (which the log keeps in step with the WAL)
/// plus the latest snapshot of the state machine, for followers whose log was truncated.
///
/// `MemStorage::snapshot` would describe a snapshot without data; this one answers with the
/// replica's archived state, or `SnapshotTemporarilyUnavailable` (and a request that the replica
/// makes one on its next ready cycle) when it has none recent enough.
#[derive(Clone)]
pub struct ReplicaStorage {
    mem: MemStorage,
    snapshot: Arc<Mutex<SnapshotSlot>>,
}

#[derive(Default)]
struct SnapshotSlot {
    latest: Option<Snapshot>,
    requested: bool,
}

impl ReplicaStorage {
    pub fn new(mem: MemStorage) -> ReplicaStorage {
        ReplicaStorage {
            mem,
            snapshot: Arc::default(),
        }
    }
    /// The in-memory log.
    pub fn mem(&self) -> &MemStorage {
        &self.mem
    }
}

impl Storage for ReplicaStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        self.mem.initial_state()
    }
    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        self.mem.entries(low, high, max_size, context)
    }
    fn term(&self, idx: u64) -> raft::Result<u64> {
        self.mem.term(idx)
    }
    fn first_index(&self) -> raft::Result<u64> {
        self.mem.first_index()
    }
    fn last_index(&self) -> raft::Result<u64> {
        self.mem.last_index()
    }
    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let first_index = self.mem.first_index()?;
        let mut slot = self.snapshot.lock().expect("snapshot slot poisoned");
        if let Some(snapshot) = &slot.latest {
            let index = snapshot.get_metadata().index;
            // Usable when the log continues right after it.
            if index >= request_index && index + 1 >= first_index {
                return Ok(snapshot.clone());
            }
        }
        slot.requested = true;
        Err(raft::Error::Store(
            raft::StorageError::SnapshotTemporarilyUnavailable,
        ))
    }
}

/// One turn of I/O work produced by [`ShardReplica::ready`].
#[derive(Debug, Default)]
pub struct ReadyWork {
    /// Identifies the turn; pass it back to [`ShardReplica::persisted`].
    pub number: u64,
    /// A snapshot received from the leader: make it durable (and apply it to the `MemStorage`)
    /// before the entries. The replica's state has already been restored from it.
    pub snapshot: Option<Snapshot>,
    /// Entries to append (raft's conflict rule: they replace the suffix from their first index).
    pub entries: Vec<Entry>,
    pub hard_state: Option<HardState>,
    /// Whether the hard state/entries/snapshot need an fdatasync before `persisted_messages`.
    pub must_sync: bool,
    /// Messages that may be sent now, before persistence (a leader's appends).
    pub messages: Vec<Message>,
    /// Messages to send only after the snapshot, entries and hard state are durable (votes,
    /// a follower's acknowledgements).
    pub persisted_messages: Vec<Message>,
}

impl ReadyWork {
    /// Whether anything must be written.
    pub fn has_writes(&self) -> bool {
        self.snapshot.is_some() || !self.entries.is_empty() || self.hard_state.is_some()
    }
}

/// Why a ready cycle failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    #[error("shard {shard}: snapshot from the leader at index {index} is unusable: {message}")]
    Snapshot {
        shard: ShardId,
        index: u64,
        message: String,
    },
}

/// A proposal of this node waiting for its entry to apply.
struct PendingProposal {
    term: u64,
    /// (ticket, slot) per record, in batch order; empty for markers.
    slots: Vec<(u64, u32)>,
}

/// The replica of one shard on one validator.
pub struct ShardReplica {
    config: ReplicaConfig,
    node: RawNode<ReplicaStorage>,
    /// The Ready handed out by [`ShardReplica::ready`] and not yet persisted.
    pending_ready: Option<Ready>,
    state: ShardState,
    verifier: SignatureVerifier,
    valid: Vec<bool>,
    results: Vec<ResultCode>,
    // Admission queue of this turn: (ticket, slot, record).
    admitted: Vec<(u64, u32, Record)>,
    /// Admitted by `submit_verified`: signatures already checked.
    admitted_verified: Vec<(u64, u32, Record)>,
    builder: BatchBuilder,
    next_ticket: u64,
    next_proposal: u64,
    tickets: HashMap<u64, Ticket>,
    /// Log index -> this node's proposal expected there. An entry applied at that index with
    /// the same term is ours; any other entry there means the proposal was lost.
    proposals: BTreeMap<u64, PendingProposal>,
    pending_records: usize,
    inboxes: Vec<Inbox>,
    /// Committed entries not yet applied (apply waits at a marker whose receipts are missing).
    apply_queue: VecDeque<Entry>,
    completed: Vec<(u64, Vec<Outcome>)>,
    failed: Vec<u64>,
    deliveries: Vec<ReceiptDelivery>,
    /// Outbox length per destination already delivered.
    delivered_len: Vec<usize>,
    /// Highest `up_to` told to each destination.
    delivered_up_to: Vec<u64>,
    leader_changes: u64,
    last_leader: u64,
    recent_transactions: HashMap<TxHash, TxStatus>,
    recent_order: VecDeque<TxHash>,
    recent_blocks: VecDeque<BlockHeader>,
    hashes: Vec<TxHash>,
    /// Wall-clock of the current apply call (supplied by the I/O edge).
    now_ms: u64,
    /// Membership changes applied and not yet taken by the I/O edge (which updates its links).
    membership_events: Vec<MembershipEvent>,
}

/// A membership change this replica applied: a validator joined (as learner or voter, with the
/// peer address the change carried) or left the shard's group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MembershipEvent {
    Joined { node_id: u64, peer_addr: Vec<u8> },
    Left { node_id: u64 },
}

/// A slog drain that forwards raft-rs's logs to `tracing` at debug level.
struct TracingDrain;

impl slog::Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;
    fn log(&self, record: &slog::Record, _: &slog::OwnedKVList) -> Result<(), slog::Never> {
        tracing::debug!(target: "raft", "{}", record.msg());
        Ok(())
    }
}

pub fn raft_logger() -> slog::Logger {
    slog::Logger::root(TracingDrain, slog::o!())
}

impl ShardReplica {
    /// Creates the replica over `storage` (already recovered) and `state` (from the latest
    /// snapshot or genesis). A storage without a membership (brand new) gets `config.voters`.
    /// A fresh single-voter group campaigns at once.
    pub fn new(
        config: ReplicaConfig,
        storage: MemStorage,
        state: ShardState,
    ) -> Result<ShardReplica, raft::Error> {
        assert!(config.entry_records_max >= 1 && config.entry_records_max <= BATCH_RECORDS_MAX);
        assert_eq!(config.shard, state.shard());
        assert!(
            config.max_inflight_msgs >= 1,
            "max_inflight_msgs bounds pipelining"
        );
        if !storage.initial_state()?.initialized() {
            assert!(!config.voters.is_empty(), "a new group needs voters");
            storage.initialize_with_conf_state(ConfState::from((config.voters.clone(), vec![])));
        }
        let raft_config = Config {
            id: config.node_id,
            election_tick: config.election_tick,
            heartbeat_tick: config.heartbeat_tick,
            min_election_tick: config.min_election_tick,
            max_election_tick: config.max_election_tick,
            applied: state.applied_index(),
            max_size_per_msg: config.max_size_per_msg_bytes,
            max_inflight_msgs: config.max_inflight_msgs,
            check_quorum: config.check_quorum,
            pre_vote: config.pre_vote,
            ..Default::default()
        };
        raft_config.validate()?;
        let node = RawNode::new(&raft_config, ReplicaStorage::new(storage), &raft_logger())?;
        let shard_count = state.shard_count() as usize;
        let mut replica = ShardReplica {
            pending_ready: None,
            builder: BatchBuilder::with_capacity(config.entry_records_max),
            config,
            node,
            verifier: SignatureVerifier::default(),
            valid: Vec::new(),
            results: Vec::new(),
            admitted: Vec::new(),
            admitted_verified: Vec::new(),
            next_ticket: 1,
            next_proposal: 1,
            tickets: HashMap::new(),
            proposals: BTreeMap::new(),
            pending_records: 0,
            inboxes: (0..shard_count).map(|_| Inbox::default()).collect(),
            apply_queue: VecDeque::new(),
            completed: Vec::new(),
            failed: Vec::new(),
            deliveries: Vec::new(),
            delivered_len: vec![0; shard_count],
            delivered_up_to: vec![0; shard_count],
            leader_changes: 0,
            last_leader: 0,
            recent_transactions: HashMap::new(),
            recent_order: VecDeque::new(),
            recent_blocks: VecDeque::new(),
            hashes: Vec::new(),
            now_ms: 0,
            membership_events: Vec::new(),
            state,
        };
        // Receipts that survived in the snapshot's outbox are delivered again: the destination
        // skips what it already credited.
        for d in 0..shard_count as ShardId {
            replica.queue_new_receipts(d);
        }
        let voters = replica.node.raft.prs().conf().voters().ids().len();
        if voters == 1
            && replica
                .node
                .raft
                .prs()
                .conf()
                .voters()
                .contains(replica.config.node_id)
        {
            replica.node.campaign()?;
        }
        Ok(replica)
    }

    pub fn shard(&self) -> ShardId {
        self.config.shard
    }
    pub fn state(&self) -> &ShardState {
        &self.state
    }
    pub fn node_id(&self) -> u64 {
        self.config.node_id
    }
    pub fn raw_node(&self) -> &RawNode<ReplicaStorage> {
        &self.node
    }
    pub fn raw_node_mut(&mut self) -> &mut RawNode<ReplicaStorage> {
        &mut self.node
    }
    /// Raft's term.
    pub fn term(&self) -> u64 {
        self.node.raft.term
    }
    /// Raft's commit index.
    pub fn commit_index(&self) -> u64 {
        self.node.raft.raft_log.committed
    }
    /// Whether a ready cycle has work (also true while a handed-out one is not yet persisted).
    pub fn has_ready(&self) -> bool {
        self.pending_ready.is_none() && self.node.has_ready()
    }
    pub fn is_leader(&self) -> bool {
        self.node.raft.state == StateRole::Leader
    }
    pub fn leader_id(&self) -> Option<u64> {
        let id = self.node.raft.leader_id;
        (id != 0).then_some(id)
    }
    pub fn leader_changes(&self) -> u64 {
        self.leader_changes
    }
    pub fn pending_records(&self) -> usize {
        self.pending_records
    }
    pub fn has_admitted(&self) -> bool {
        !self.admitted.is_empty() || !self.admitted_verified.is_empty()
    }
    /// Whether apply is waiting for receipts from another shard.
    pub fn apply_blocked(&self) -> bool {
        !self.apply_queue.is_empty()
    }

    /// A raft message from another replica of this shard. Messages that raft refuses (from a
    /// peer it does not know, a stale response) are dropped, as a transport would.
    pub fn step(&mut self, message: Message) -> Result<(), raft::Error> {
        assert!(
            self.pending_ready.is_none(),
            "step while a ready cycle is not persisted"
        );
        if message.get_msg_type() == MessageType::MsgSnapshot {
            // Raft keeps the snapshot's data; check it before raft commits to it.
            let data = &message.get_snapshot().data;
            if let Err(error) = decode_state(data) {
                tracing::warn!(shard = self.config.shard, from = message.from, %error, "bad snapshot dropped");
                return Ok(());
            }
        }
        match self.node.step(message) {
            Ok(()) => Ok(()),
            Err(raft::Error::StepPeerNotFound) | Err(raft::Error::StepLocalMsg) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// One raft tick: elections and heartbeats; also tells other shards how far apply got.
    pub fn tick(&mut self) {
        self.node.tick();
        self.announce_progress();
    }

    /// The transport tells the leader whether a snapshot message reached `to`.
    pub fn report_snapshot(&mut self, to: u64, delivered: bool) {
        let status = if delivered {
            SnapshotStatus::Finish
        } else {
            SnapshotStatus::Failure
        };
        self.node.report_snapshot(to, status);
    }

    /// The transport could not reach `to`: raft slows down sending to it (probe).
    pub fn report_unreachable(&mut self, to: u64) {
        self.node.report_unreachable(to);
    }

    /// Starts a ready cycle: applies committed entries that are durable, restores a snapshot
    /// received from the leader, and returns what the caller must persist and send. `None` when
    /// there is nothing to do. The caller persists, fdatasyncs, sends `persisted_messages`, then
    /// calls [`ShardReplica::persisted`]; no other input may be fed in between.
    pub fn ready(&mut self, now_ms: u64) -> Result<Option<ReadyWork>, ReplicaError> {
        assert!(self.pending_ready.is_none(), "previous ready not persisted");
        self.make_snapshot_if_requested();
        if !self.node.has_ready() {
            return Ok(None);
        }
        let mut ready = self.node.ready();
        let mut work = ReadyWork {
            number: ready.number(),
            must_sync: ready.must_sync(),
            ..Default::default()
        };
        if !ready.snapshot().is_empty() {
            let snapshot = ready.snapshot().clone();
            self.restore_snapshot(&snapshot)?;
            work.snapshot = Some(snapshot);
        }
        let committed = ready.take_committed_entries();
        self.apply_committed(committed, now_ms);
        work.entries = ready.take_entries();
        work.hard_state = ready.hs().cloned();
        work.messages = ready.take_messages();
        work.persisted_messages = ready.take_persisted_messages();
        self.pending_ready = Some(ready);
        Ok(Some(work))
    }

    /// The caller made the ready cycle `number` durable (and sent its persisted messages).
    /// Applies what committed meanwhile; returns messages that may be sent at once.
    pub fn persisted(&mut self, number: u64, now_ms: u64) -> Vec<Message> {
        let ready = self
            .pending_ready
            .take()
            .expect("persisted without a ready cycle");
        assert_eq!(
            ready.number(),
            number,
            "persisted the ready cycle handed out"
        );
        let mut light = self.node.advance_append(ready);
        let committed = light.take_committed_entries();
        self.apply_committed(committed, now_ms);
        self.advance_apply();
        light.take_messages()
    }

    /// Replaces the state with a snapshot received from the leader (catch-up after the log
    /// was truncated). The snapshot covers every committed entry up to its index.
    fn restore_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), ReplicaError> {
        let index = snapshot.get_metadata().index;
        let state = decode_state(&snapshot.data).map_err(|e| ReplicaError::Snapshot {
            shard: self.config.shard,
            index,
            message: e.to_string(),
        })?;
        let valid = state.shard() == self.config.shard
            && state.shard_count() == self.state.shard_count()
            && state.chain_id() == self.state.chain_id()
            && state.applied_index() == index;
        if !valid {
            return Err(ReplicaError::Snapshot {
                shard: self.config.shard,
                index,
                message: format!(
                    "archive is of shard {} of {} at index {}",
                    state.shard(),
                    state.shard_count(),
                    state.applied_index()
                ),
            });
        }
        tracing::info!(
            shard = self.config.shard,
            index,
            from = self.state.applied_index(),
            "restoring a snapshot from the leader"
        );
        self.state = state;
        // Committed entries waiting at a marker are covered by the snapshot.
        self.apply_queue.retain(|e| e.index > index);
        // Our proposals up to its index: their fate is unknown here.
        while let Some((&i, _)) = self.proposals.first_key_value() {
            if i > index {
                break;
            }
            let (_, lost) = self.proposals.pop_first().expect("non-empty");
            for (ticket, slot) in lost.slots {
                self.fail_slot(ticket, slot);
            }
        }
        // Receipts credited by the snapshot are dropped; markers are re-proposed as needed.
        for (source, inbox) in self.inboxes.iter_mut().enumerate() {
            let watermark = self.state.inbound_watermark(source as ShardId);
            while inbox
                .receipts
                .front()
                .is_some_and(|r| r.source_index <= watermark)
            {
                inbox.receipts.pop_front();
            }
            inbox.proposed_up_to = 0;
        }
        // The outbox was replaced: deliver all of it again (destinations skip what they have).
        for d in 0..self.state.shard_count() {
            self.delivered_len[d as usize] = 0;
            self.delivered_up_to[d as usize] = 0;
            self.queue_new_receipts(d);
        }
        Ok(())
    }

    /// Archives the state for a follower that needs a snapshot, when raft asked for one.
    fn make_snapshot_if_requested(&mut self) {
        let slot = self.node.store().snapshot.clone();
        let mut slot = slot.lock().expect("snapshot slot poisoned");
        if !slot.requested {
            return;
        }
        slot.requested = false;
        let applied = self.state.applied_index();
        let Ok(term) = self.node.raft.raft_log.term(applied) else {
            return;
        };
        if applied == 0 || term == 0 {
            return;
        }
        let mut meta = SnapshotMetadata {
            index: applied,
            term,
            ..Default::default()
        };
        meta.set_conf_state(self.node.raft.prs().conf().to_conf_state());
        let mut snapshot = Snapshot::default();
        snapshot.set_metadata(meta);
        snapshot.data = encode_state(&self.state).into();
        tracing::debug!(
            shard = self.config.shard,
            applied,
            "snapshot made for a follower"
        );
        slot.latest = Some(snapshot);
    }

    /// Takes a client submission. Stateless checks reject at once; the rest is queued for the
    /// next [`ShardReplica::propose_admitted`]. Returns the ticket whose outcomes will appear in
    /// [`ShardReplica::take_completed`].
    pub fn submit(&mut self, records: &[Record]) -> Result<u64, SubmitError> {
        self.admit(records, None)
    }

    /// Like [`ShardReplica::submit`] for records whose signatures the caller already verified
    /// (`valid[i]` for `records[i]`; the runtime verifies on the shard's core while the previous
    /// group commit is in flight). Invalid ones are answered `BAD_SIGNATURE` (after the
    /// stateless checks, as in the unverified path); the others wait for
    /// [`ShardReplica::propose_preverified`].
    pub fn submit_verified(
        &mut self,
        records: &[Record],
        valid: &[bool],
    ) -> Result<u64, SubmitError> {
        assert_eq!(records.len(), valid.len());
        self.admit(records, Some(valid))
    }

    fn admit(&mut self, records: &[Record], valid: Option<&[bool]>) -> Result<u64, SubmitError> {
        if !self.is_leader() {
            return Err(SubmitError::NotLeader {
                shard: self.config.shard,
                leader: self.leader_id(),
            });
        }
        if self.pending_records + records.len() > self.config.pending_records_max {
            return Err(SubmitError::Overloaded(self.config.shard));
        }
        let ticket_id = self.next_ticket;
        self.next_ticket += 1;
        let mut ticket = Ticket {
            outcomes: vec![None; records.len()],
            missing: 0,
        };
        for (slot, record) in records.iter().enumerate() {
            let stateless =
                precheck(record, self.state.chain_id(), self.state.assets()).and_then(|()| {
                    if shard_of(&record.from(), self.state.shard_count()) == self.config.shard {
                        Ok(())
                    } else {
                        Err(ResultCode::Malformed)
                    }
                });
            let stateless = match (stateless, valid) {
                (Ok(()), Some(valid)) if !valid[slot] => Err(ResultCode::BadSignature),
                (other, _) => other,
            };
            match stateless {
                Err(code) => ticket.outcomes[slot] = Some(self.rejected(record, code)),
                Ok(()) => {
                    if valid.is_some() {
                        self.admitted_verified
                            .push((ticket_id, slot as u32, *record));
                    } else {
                        self.admitted.push((ticket_id, slot as u32, *record));
                    }
                    ticket.missing += 1;
                    let shard = self.config.shard;
                    self.remember(record.tx_hash(), TxStatus::Pending { shard });
                }
            }
        }
        self.pending_records += ticket.missing;
        if ticket.missing == 0 {
            self.completed.push((ticket_id, finish(ticket)));
        } else {
            self.tickets.insert(ticket_id, ticket);
        }
        Ok(ticket_id)
    }

    fn rejected(&mut self, record: &Record, code: ResultCode) -> Outcome {
        let outcome = Outcome {
            tx_hash: record.tx_hash(),
            result: code,
            shard: self.config.shard,
            block: 0,
        };
        self.remember(outcome.tx_hash, TxStatus::Decided(outcome));
        outcome
    }

    /// Records a transfer's status in the bounded recent window.
    fn remember(&mut self, hash: TxHash, status: TxStatus) {
        if self.config.recent_transactions_max == 0 {
            return;
        }
        if self.recent_transactions.insert(hash, status).is_none() {
            self.recent_order.push_back(hash);
            while self.recent_order.len() > self.config.recent_transactions_max {
                let old = self.recent_order.pop_front().expect("non-empty");
                self.recent_transactions.remove(&old);
            }
        }
    }

    /// A transfer's status, if it is in the recent window.
    pub fn transaction(&self, hash: &TxHash) -> Option<TxStatus> {
        self.recent_transactions.get(hash).copied()
    }

    /// A block header, if it is in the recent window.
    pub fn block(&self, height: u64) -> Option<BlockHeader> {
        let first = self.recent_blocks.front()?.height;
        if height < first {
            return None;
        }
        // Heights are increasing but not contiguous (raft's own entries are not blocks).
        self.recent_blocks
            .binary_search_by_key(&height, |b| b.height)
            .ok()
            .map(|i| self.recent_blocks[i])
    }

    pub fn latest_block(&self) -> Option<BlockHeader> {
        self.recent_blocks.back().copied()
    }

    fn push_block(&mut self, entry: &Entry, tx_count: u32) {
        let (prev_hash, hash) = self.state.chain_block(entry.index, entry.term, &entry.data);
        if self.config.recent_blocks_max == 0 {
            return;
        }
        self.recent_blocks.push_back(BlockHeader {
            shard: self.config.shard,
            height: entry.index,
            hash,
            prev_hash,
            tx_count,
            term: entry.term,
            state_hash: self.state.state_hash(),
            timestamp_ms: self.now_ms,
        });
        while self.recent_blocks.len() > self.config.recent_blocks_max {
            self.recent_blocks.pop_front();
        }
    }

    /// Verifies the signatures of everything admitted this turn (one batch) and proposes the
    /// valid records as entries of at most `entry_records_max` records. Also proposes markers
    /// for receipts that arrived from other shards.
    pub fn propose_admitted(&mut self) {
        let admitted = self.take_admitted();
        if !admitted.is_empty() {
            let records: Vec<Record> = admitted.iter().map(|a| a.2).collect();
            let mut valid = std::mem::take(&mut self.valid);
            self.verifier.verify(&records, &mut valid);
            self.propose_verified(admitted, &valid);
            self.valid = valid;
        }
        self.propose_markers();
    }

    /// Takes this turn's admitted records `(ticket, slot, record)` so that the caller can verify
    /// their signatures in slices (yielding between them: a core must not stall its other
    /// tasks for a whole batch) and hand them back to [`ShardReplica::propose_verified`].
    pub fn take_admitted(&mut self) -> Vec<(u64, u32, Record)> {
        std::mem::take(&mut self.admitted)
    }

    /// Proposes what [`ShardReplica::submit_verified`] admitted, then markers.
    pub fn propose_preverified(&mut self) {
        let admitted = std::mem::take(&mut self.admitted_verified);
        self.propose_checked(admitted, None);
        self.propose_markers();
    }

    /// Proposes the admitted records whose signature is valid (`valid[i]` for `admitted[i]`)
    /// as entries of at most `entry_records_max` records; answers the others `BAD_SIGNATURE`.
    /// Then proposes markers for receipts that arrived from other shards.
    pub fn propose_verified(&mut self, admitted: Vec<(u64, u32, Record)>, valid: &[bool]) {
        assert_eq!(admitted.len(), valid.len());
        self.propose_checked(admitted, Some(valid));
        self.propose_markers();
    }

    fn propose_checked(&mut self, mut admitted: Vec<(u64, u32, Record)>, valid: Option<&[bool]>) {
        let mut slots: Vec<(u64, u32)> = Vec::with_capacity(self.config.entry_records_max);
        let mut valid_left = match valid {
            Some(v) => v.iter().filter(|ok| **ok).count(),
            None => admitted.len(),
        };
        for (i, &(ticket, slot, record)) in admitted.iter().enumerate() {
            if valid.is_some_and(|v| !v[i]) {
                let outcome = self.rejected(&record, ResultCode::BadSignature);
                self.resolve(ticket, slot, outcome);
                continue;
            }
            if self.builder.is_empty() {
                self.builder.reserve_records(valid_left);
            }
            valid_left -= 1;
            self.builder.push(&record);
            slots.push((ticket, slot));
            if self.builder.is_full() {
                self.propose_batch(&mut slots);
            }
        }
        if !self.builder.is_empty() {
            self.propose_batch(&mut slots);
        }
        // Keep the allocation for the next turn.
        admitted.clear();
        if self.admitted_verified.is_empty() {
            self.admitted_verified = admitted;
        }
    }

    fn propose_batch(&mut self, slots: &mut Vec<(u64, u32)>) {
        let data = self.builder.finish();
        let proposal = self.next_proposal;
        self.next_proposal += 1;
        let context = entry_context(ENTRY_KIND_TRANSFERS, self.config.node_id, proposal);
        let taken = std::mem::take(slots);
        match self.node.propose(context.to_vec(), data) {
            Ok(()) => self.track_proposal(taken),
            Err(error) => {
                // Lost leadership between admission and proposal: tell the clients.
                tracing::debug!(shard = self.config.shard, %error, "proposal dropped");
                for (ticket, slot) in taken {
                    self.fail_slot(ticket, slot);
                }
            }
        }
    }

    /// Remembers where the entry just proposed sits in the log (raft appends it at once).
    fn track_proposal(&mut self, slots: Vec<(u64, u32)>) {
        let index = self.node.raft.raft_log.last_index();
        let term = self.node.raft.term;
        if let Some(old) = self
            .proposals
            .insert(index, PendingProposal { term, slots })
        {
            // Our earlier proposal at this index was overwritten by a later leader.
            for (ticket, slot) in old.slots {
                self.fail_slot(ticket, slot);
            }
        }
    }

    fn propose_markers(&mut self) {
        if !self.is_leader() {
            return;
        }
        let mut payload = Vec::new();
        let mut count = 0u32;
        for (source, inbox) in self.inboxes.iter_mut().enumerate() {
            let floor = inbox
                .proposed_up_to
                .max(self.state.inbound_watermark(source as ShardId));
            if inbox.progress > floor && !inbox.receipts.is_empty() {
                payload.extend_from_slice(&(source as u32).to_le_bytes());
                payload.extend_from_slice(&inbox.progress.to_le_bytes());
                inbox.proposed_up_to = inbox.progress;
                count += 1;
            }
        }
        if count == 0 {
            return;
        }
        let mut data = count.to_le_bytes().to_vec();
        data.extend_from_slice(&payload);
        let proposal = self.next_proposal;
        self.next_proposal += 1;
        let context = entry_context(ENTRY_KIND_MARKERS, self.config.node_id, proposal);
        if self.node.propose(context.to_vec(), data).is_err() {
            for inbox in &mut self.inboxes {
                inbox.proposed_up_to = 0;
            }
        }
    }

    /// Receipts shipped by another shard's replica on this validator.
    pub fn receive_receipts(&mut self, delivery: ReceiptDelivery) {
        assert_eq!(delivery.destination, self.config.shard);
        let watermark = self.state.inbound_watermark(delivery.source);
        let inbox = &mut self.inboxes[delivery.source as usize];
        let floor = inbox.progress.max(watermark);
        for receipt in delivery.receipts {
            if receipt.source_index > floor {
                inbox.receipts.push_back(receipt);
            }
        }
        inbox.progress = inbox.progress.max(delivery.up_to);
    }

    /// The destination durably credited receipts up to `up_to`: forget them.
    pub fn receipts_credited(&mut self, destination: ShardId, up_to: u64) {
        let before = self.state.outbox(destination).len();
        self.state.prune_outbox(destination, up_to);
        let pruned = before - self.state.outbox(destination).len();
        self.delivered_len[destination as usize] -= pruned;
    }

    /// Applies committed entries in log order; stops at a marker whose receipts have not all
    /// arrived, and resumes on the next call (after [`ShardReplica::receive_receipts`]).
    /// `now_ms` is the wall clock, used only for block timestamps (never in state).
    pub fn apply_committed(&mut self, entries: Vec<Entry>, now_ms: u64) {
        self.now_ms = now_ms;
        self.apply_queue.extend(entries);
        while let Some(entry) = self.apply_queue.front() {
            if !self.markers_ready(entry) {
                break;
            }
            let entry = self.apply_queue.pop_front().expect("front exists");
            self.apply_entry(&entry);
        }
        for d in 0..self.state.shard_count() {
            self.queue_new_receipts(d);
        }
        self.note_leader();
    }

    /// Tells raft how far apply got (call after each Ready cycle).
    pub fn advance_apply(&mut self) {
        let applied = self.state.applied_index();
        if applied > self.node.raft.raft_log.applied {
            self.node.advance_apply_to(applied);
        }
    }

    fn markers_ready(&self, entry: &Entry) -> bool {
        if entry.get_entry_type() != EntryType::EntryNormal
            || entry.data.is_empty()
            || entry.context.first() != Some(&ENTRY_KIND_MARKERS)
        {
            return true;
        }
        match parse_markers(&entry.data) {
            Some(markers) => markers.iter().all(|&(source, up_to)| {
                source == self.config.shard
                    || source >= self.state.shard_count()
                    || self.inboxes[source as usize].progress >= up_to
                    || self.state.inbound_watermark(source) >= up_to
            }),
            None => true,
        }
    }

    fn apply_entry(&mut self, entry: &Entry) {
        self.apply_entry_inner(entry);
        // Proposals of ours at or below this index that did not apply are lost: their clients
        // must retry (resubmitting is harmless).
        while let Some((&i, _)) = self.proposals.first_key_value() {
            if i > entry.index {
                break;
            }
            let (_, lost) = self.proposals.pop_first().expect("non-empty");
            for (ticket, slot) in lost.slots {
                self.fail_slot(ticket, slot);
            }
        }
    }

    fn apply_entry_inner(&mut self, entry: &Entry) {
        let index = entry.index;
        match entry.get_entry_type() {
            EntryType::EntryConfChange => {
                let mut cc = ConfChange::default();
                if protobuf::Message::merge_from_bytes(&mut cc, &entry.data).is_ok() {
                    if let Ok(cs) = self.node.apply_conf_change(&cc) {
                        self.node.mut_store().mem.wl().set_conf_state(cs);
                    }
                }
                self.state.set_applied_index(index);
                return;
            }
            EntryType::EntryConfChangeV2 => {
                let mut cc = ConfChangeV2::default();
                if protobuf::Message::merge_from_bytes(&mut cc, &entry.data).is_ok() {
                    if let Ok(cs) = self.node.apply_conf_change(&cc) {
                        self.node.mut_store().mem.wl().set_conf_state(cs);
                        self.record_membership(&cc);
                    }
                }
                self.state.set_applied_index(index);
                return;
            }
            EntryType::EntryNormal => {}
        }
        if entry.data.is_empty() {
            self.state.set_applied_index(index);
            return;
        }
        let (kind, proposer, _proposal) = parse_context(&entry.context);
        let mine = proposer == self.config.node_id;
        match kind {
            ENTRY_KIND_TRANSFERS => {
                // Ours only if proposed at this index in this term: after a restart proposal
                // ids start over, and a replayed entry must not answer a new ticket.
                let slots = match self.proposals.first_key_value() {
                    Some((&i, p)) if mine && i == index && p.term == entry.term => {
                        self.proposals.pop_first().map(|(_, p)| p.slots)
                    }
                    _ => None,
                };
                match decode_batch(&entry.data) {
                    Ok(view) => {
                        let records = view.records();
                        let mut results = std::mem::take(&mut self.results);
                        let mut hashes = std::mem::take(&mut self.hashes);
                        self.state.apply_batch(index, records, &mut results);
                        hashes.clear();
                        hashes.extend(records.iter().map(Record::tx_hash));
                        for (i, &tx_hash) in hashes.iter().enumerate() {
                            let outcome = Outcome {
                                tx_hash,
                                result: results[i],
                                shard: self.config.shard,
                                block: index,
                            };
                            self.remember(tx_hash, TxStatus::Decided(outcome));
                        }
                        if let Some(slots) = slots {
                            assert_eq!(slots.len(), results.len(), "proposal matches entry");
                            for (i, (ticket, slot)) in slots.into_iter().enumerate() {
                                let outcome = Outcome {
                                    tx_hash: hashes[i],
                                    result: results[i],
                                    shard: self.config.shard,
                                    block: index,
                                };
                                self.resolve(ticket, slot, outcome);
                            }
                        }
                        self.push_block(entry, records.len() as u32);
                        self.results = results;
                        self.hashes = hashes;
                    }
                    Err(error) => {
                        // Only a faulty proposer can commit this; every replica skips it alike.
                        tracing::warn!(shard = self.config.shard, index, %error, "malformed batch entry skipped");
                        if let Some(slots) = slots {
                            for (ticket, slot) in slots {
                                self.fail_slot(ticket, slot);
                            }
                        }
                        self.state.set_applied_index(index);
                    }
                }
            }
            ENTRY_KIND_MARKERS => {
                for (source, up_to) in parse_markers(&entry.data).unwrap_or_default() {
                    if source == self.config.shard || source >= self.state.shard_count() {
                        continue;
                    }
                    let inbox = &mut self.inboxes[source as usize];
                    self.state
                        .apply_marker(source, up_to, inbox.receipts.iter());
                    while inbox
                        .receipts
                        .front()
                        .is_some_and(|r| r.source_index <= up_to)
                    {
                        inbox.receipts.pop_front();
                    }
                }
                self.state.set_applied_index(index);
                self.push_block(entry, 0);
            }
            _ => {
                tracing::warn!(
                    shard = self.config.shard,
                    index,
                    kind,
                    "unknown entry kind skipped"
                );
                self.state.set_applied_index(index);
            }
        }
    }

    fn resolve(&mut self, ticket_id: u64, slot: u32, outcome: Outcome) {
        let Some(ticket) = self.tickets.get_mut(&ticket_id) else {
            return;
        };
        debug_assert!(ticket.outcomes[slot as usize].is_none());
        ticket.outcomes[slot as usize] = Some(outcome);
        ticket.missing -= 1;
        self.pending_records -= 1;
        if ticket.missing == 0 {
            let ticket = self.tickets.remove(&ticket_id).expect("present");
            self.completed.push((ticket_id, finish(ticket)));
        }
    }

    /// A record whose fate is unknown here (its proposal was dropped): the ticket is answered
    /// with an error for the whole submission so the client retries (resubmission is harmless).
    fn fail_slot(&mut self, ticket_id: u64, _slot: u32) {
        if let Some(ticket) = self.tickets.remove(&ticket_id) {
            self.pending_records -= ticket.missing;
            self.failed.push(ticket_id);
        }
    }

    /// Submissions finished since the last call: (ticket, one outcome per record in order).
    pub fn take_completed(&mut self) -> Vec<(u64, Vec<Outcome>)> {
        std::mem::take(&mut self.completed)
    }

    /// Tickets whose proposals were lost (leadership changed): the client should retry.
    pub fn take_failed(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.failed)
    }

    /// Receipts to ship to other shards since the last call.
    /// Membership changes applied since the last call.
    pub fn take_membership_events(&mut self) -> Vec<MembershipEvent> {
        std::mem::take(&mut self.membership_events)
    }

    /// Proposes a membership change (raft-rs `ConfChangeV2`: several changes at once go through
    /// joint consensus, left automatically). `peer_addr` (for added nodes) travels in the
    /// change's context so that every replica applying it can reach the new validator. Returns
    /// the log index of the change's entry.
    pub fn propose_membership(
        &mut self,
        changes: &[(ConfChangeType, u64)],
        peer_addr: &[u8],
    ) -> Result<u64, SubmitError> {
        let shard = self.config.shard;
        if !self.is_leader() {
            return Err(SubmitError::NotLeader {
                shard,
                leader: self.leader_id(),
            });
        }
        let mut cc = ConfChangeV2::default();
        for &(change_type, node_id) in changes {
            let mut single = ConfChangeSingle::default();
            single.set_change_type(change_type);
            single.node_id = node_id;
            cc.mut_changes().push(single);
        }
        cc.set_transition(ConfChangeTransition::Auto);
        cc.context = peer_addr.to_vec().into();
        let before = self.node.raft.raft_log.last_index();
        self.node.propose_conf_change(Vec::new(), cc).map_err(|e| {
            tracing::warn!(shard, error = %e, "membership change refused by raft");
            SubmitError::Membership {
                shard,
                reason: "raft refused the change (see the node log)",
            }
        })?;
        let index = self.node.raft.raft_log.last_index();
        if index == before {
            return Err(SubmitError::Membership {
                shard,
                reason: "another membership change is in progress",
            });
        }
        Ok(index)
    }

    /// The group's learners (node ids, ascending).
    pub fn learners(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self
            .node
            .raft
            .prs()
            .conf()
            .learners()
            .iter()
            .copied()
            .collect();
        ids.sort_unstable();
        ids
    }

    fn record_membership(&mut self, cc: &ConfChangeV2) {
        for change in cc.get_changes() {
            let node_id = change.node_id;
            self.membership_events.push(match change.get_change_type() {
                ConfChangeType::AddNode | ConfChangeType::AddLearnerNode => {
                    MembershipEvent::Joined {
                        node_id,
                        peer_addr: cc.context.to_vec(),
                    }
                }
                ConfChangeType::RemoveNode => MembershipEvent::Left { node_id },
            });
        }
    }

    pub fn take_deliveries(&mut self) -> Vec<ReceiptDelivery> {
        std::mem::take(&mut self.deliveries)
    }

    /// Tells every other shard how far this one has applied, even without new receipts. A
    /// destination that restarted may be waiting at a marker for exactly that (its log says
    /// "receipts up to i" while our last receipt for it is older than i). Called on the raft
    /// tick, so it costs at most one small message per destination per tick.
    pub fn announce_progress(&mut self) {
        let applied = self.state.applied_index();
        for d in 0..self.state.shard_count() {
            if d == self.config.shard || self.delivered_up_to[d as usize] >= applied {
                continue;
            }
            self.delivered_up_to[d as usize] = applied;
            self.deliveries.push(ReceiptDelivery {
                source: self.config.shard,
                destination: d,
                up_to: applied,
                receipts: Vec::new(),
            });
        }
    }

    fn queue_new_receipts(&mut self, destination: ShardId) {
        if destination == self.config.shard {
            return;
        }
        let outbox = self.state.outbox(destination);
        let already = self.delivered_len[destination as usize];
        if outbox.len() == already {
            return;
        }
        let receipts: Vec<Receipt> = outbox.iter().skip(already).copied().collect();
        self.delivered_len[destination as usize] = outbox.len();
        self.delivered_up_to[destination as usize] = self.state.applied_index();
        self.deliveries.push(ReceiptDelivery {
            source: self.config.shard,
            destination,
            up_to: self.state.applied_index(),
            receipts,
        });
    }

    fn note_leader(&mut self) {
        let leader = self.node.raft.leader_id;
        if leader != 0 && leader != self.last_leader {
            self.leader_changes += 1;
            self.last_leader = leader;
            if leader != self.config.node_id {
                // Markers proposed as leader may be lost; the next leader re-proposes.
                for inbox in &mut self.inboxes {
                    inbox.proposed_up_to = 0;
                }
            }
        }
    }

    /// Tickets still waiting when leadership is lost cannot be answered by this node.
    pub fn fail_all_pending(&mut self) {
        let ids: Vec<u64> = self.tickets.keys().copied().collect();
        for id in ids {
            self.fail_slot(id, 0);
        }
        self.proposals.clear();
        self.admitted.clear();
        self.admitted_verified.clear();
    }
}

fn finish(ticket: Ticket) -> Vec<Outcome> {
    ticket
        .outcomes
        .into_iter()
        .map(|o| o.expect("every slot resolved"))
        .collect()
}

pub fn entry_context(kind: u8, proposer: u64, proposal: u64) -> [u8; ENTRY_CONTEXT_BYTES] {
    let mut context = [0u8; ENTRY_CONTEXT_BYTES];
    context[0] = kind;
    context[1..9].copy_from_slice(&proposer.to_le_bytes());
    context[9..17].copy_from_slice(&proposal.to_le_bytes());
    context
}

/// (kind, proposer, proposal); kind 0 when the context is not ours.
pub fn parse_context(context: &[u8]) -> (u8, u64, u64) {
    if context.len() != ENTRY_CONTEXT_BYTES {
        return (0, 0, 0);
    }
    (
        context[0],
        u64::from_le_bytes(context[1..9].try_into().unwrap()),
        u64::from_le_bytes(context[9..17].try_into().unwrap()),
    )
}

/// Parses a markers payload; `None` when malformed.
pub fn parse_markers(data: &[u8]) -> Option<Vec<(ShardId, u64)>> {
    let count = u32::from_le_bytes(data.get(..4)?.try_into().ok()?) as usize;
    if data.len() != 4 + count * 12 {
        return None;
    }
    Some(
        data[4..]
            .chunks_exact(12)
            .map(|c| {
                (
                    u32::from_le_bytes(c[..4].try_into().unwrap()),
                    u64::from_le_bytes(c[4..].try_into().unwrap()),
                )
            })
            .collect(),
    )
}
