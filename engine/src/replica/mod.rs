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
//!   "credit the receipts of `source` up to its log index `up_to`" (docs/architecture.md, cross-shard transfers).
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
//! 2. The caller stages the snapshot, entries and hard state (visible in the `MemStorage`, which
//!    `ShardLog::stage` does) and calls [`ShardReplica::staged`]; raft takes input again.
//! 3. Once they are durable the caller sends `persisted_messages` and calls
//!    [`ShardReplica::persisted`]; what commits because of it applies at the next cycle.
//!
//! Several cycles may be staged and not yet durable (raft-rs's asynchronous append): a leader
//! proposes and sends the next group while the previous one's fdatasync runs. A follower
//! acknowledges entries only after they are durable (a non-leader's messages are all
//! `persisted_messages`), and nothing applies before it is durable here (raft-rs applies up to
//! the smaller of the commit and the persisted index).

//! Snapshots for lagging followers are made on demand: when raft asks the storage for one, the
//! replica archives its state at its applied index (`state_snapshot`) on the next ready cycle and
//! raft sends it on a later attempt.

use crate::batch::{decode_batch, BatchBuilder, BATCH_RECORDS_MAX};
use crate::ledger::chunked::ChunkedQueue;
use crate::ledger::{precheck, Receipt, ShardState};
use crate::record::{Address, Record, TxHash};
use crate::result::ResultCode;
use crate::shard::{shard_of, ShardId};
use crate::state_snapshot::{decode_state, encode_state};
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

mod admission;
mod apply;
mod cycle;
mod entry;
mod links;
pub(crate) use links::conf_change_v2;
mod storage;

pub use admission::{archived_records, ARCHIVE_ENTRY_RECORDS_MIN};
pub use entry::{
    entry_context, parse_context, parse_markers, ENTRY_CONTEXT_BYTES, ENTRY_KIND_MARKERS,
    ENTRY_KIND_TRANSFERS,
};
pub use storage::{bootstrap_snapshot, ReplicaStorage, BOOTSTRAP_INDEX, BOOTSTRAP_TERM};

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

pub use crate::ledger::BlockHeader;

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
    /// default (`[election_tick, 2 * election_tick)`). raft-rs draws from the thread's RNG; the
    /// simulator replaces each draw with one from its seed (`ShardNode::set_election_timeout`).
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
    /// Transfers remembered for `GET /transactions/{txHash}` (oldest forgotten first; at most
    /// `ledger::RECENT_TRANSACTIONS_LIMIT`). The window of decided transfers is part of the
    /// replicated state (`ShardState::record_decision`): every validator of a chain must use the
    /// same value for their answers to agree.
    pub recent_transactions_max: usize,
    /// Block headers remembered for `GET /blocks/{shard}/{height}` (at most
    /// `ledger::RECENT_BLOCKS_LIMIT`; the same on every validator, like the above).
    pub recent_blocks_max: usize,
    /// Allocate the recent windows at their bounds up front (and again after a snapshot
    /// replaced the state) rather than let them grow under load: growing a window of 262,144
    /// transfers rehashes it and copies its order, a stall of tens of milliseconds on the
    /// shard's core (glommio's stall detector caught them). The runtime sets it; the
    /// simulator and tests, with many short-lived states, do not.
    pub preallocate_recent: bool,
    /// Keep each applied transfer entry (its bytes and results) for a downstream sink
    /// ([`ShardReplica::take_applied`]).
    pub tap_applied: bool,
    /// With `tap_applied`: also the balances each entry changed (`AppliedEntry::balances`;
    /// off, they are left empty, and marker entries that only credit are not tapped).
    pub tap_balances: bool,
}

/// An entry as it applied, for a downstream sink: its log index, its bytes (a binary batch;
/// shared, not copied), each record's result and the balances it changed. Empty `data`: no
/// transfers (a marker crediting receipts, or only the shard's applied index: see
/// [`ShardReplica::take_applied`]).
///
/// A shard's entries form a chain: each covers the log indexes `previous + 1 ..= index`, and
/// the next one's `previous` is this one's `index`. Where a sink sees `previous` beyond what it
/// holds, entries were lost on the way (its queue was full, or the replica restored a
/// snapshot past them): a gap, which the sink reports.
#[derive(Clone, Debug)]
pub struct AppliedEntry {
    pub index: u64,
    pub previous: u64,
    pub data: bytes::Bytes,
    pub results: Vec<ResultCode>,
    /// The balances this entry changed, after it applied (an account and asset may appear
    /// more than once, with the same balance).
    pub balances: Vec<AccountBalance>,
}

/// One account's balance of one asset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccountBalance {
    pub address: crate::Address,
    pub asset: u32,
    pub balance: u64,
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
            preallocate_recent: false,
            tap_applied: false,
            tap_balances: true,
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
    receipts: ChunkedQueue<Receipt>,
    /// Every receipt of the source up to this source index has been received — except those
    /// at or below `gap_through`, if that is above the state's watermark.
    progress: u64,
    /// The source had already forgotten (pruned) its receipts up to this index when it first
    /// delivered to us, and we had not credited them: markers beyond the watermark cannot
    /// apply here until a snapshot of this shard (from its leader) credits past this point.
    gap_through: u64,
    /// Highest `up_to` proposed in a marker by this node (while leader).
    proposed_up_to: u64,
    /// The source's replica on this validator left the source's group: receipts beyond
    /// `progress` never reach this replica (see [`ReceiptDelivery::source_left`]).
    source_left: bool,
}

/// Receipts to ship to another shard's core after apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptDelivery {
    pub source: ShardId,
    pub destination: ShardId,
    /// All receipts of `source` for `destination` up to this source index are included in
    /// this delivery or an earlier one — above `pruned_through`.
    pub up_to: u64,
    /// The source forgot its receipts for `destination` up to this index (every member of
    /// the source's group reported them durably credited). A destination replica that has
    /// not credited that far never saw them: it must not apply a marker past them.
    pub pruned_through: u64,
    /// The source's replica applied a configuration without this validator (it was removed
    /// from the source's group): it applies nothing more, so receipts beyond `up_to` never
    /// come. A marker past them can only be passed with a snapshot of the destination shard.
    pub source_left: bool,
    pub receipts: Vec<Receipt>,
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
#[derive(Clone, Debug, thiserror::Error)]
pub enum ReplicaError {
    #[error("shard {shard}: snapshot from the leader at index {index} is unusable: {message}")]
    Snapshot {
        shard: ShardId,
        index: u64,
        message: String,
    },
    /// A committed membership change that raft-rs could not apply (or decode). Every replica
    /// applies the same entry, so this is a bug or a damaged log: the replica stops rather
    /// than run on with a configuration that differs from its log.
    #[error("shard {shard}: membership change at index {index} cannot be applied: {message}")]
    Membership {
        shard: ShardId,
        index: u64,
        message: String,
    },
}

/// A proposal of this node waiting for its entry to apply.
struct PendingProposal {
    term: u64,
    /// One per record, in batch order; empty for markers.
    slots: Vec<Slot>,
}

/// A proposed record's ticket, its slot in the ticket, and its `txHash` (computed once, at
/// admission, and used again when the entry applies here).
type Slot = (u64, u32, TxHash);

/// The replica of one shard on one validator.
pub struct ShardReplica {
    config: ReplicaConfig,
    node: RawNode<ReplicaStorage>,
    /// The Ready handed out by [`ShardReplica::ready`] and not yet staged (its writes not yet
    /// readable by raft from the storage).
    pending_ready: Option<Ready>,
    state: ShardState,
    results: Vec<ResultCode>,
    /// The entry being built: admitted records (signatures verified) are copied straight into
    /// it, the one copy of a record on its way from the submission into the log; `building`
    /// holds their slots. Entries filled before the next turn, and submitted batch archives
    /// that are entries themselves, wait in `built`, in order, and are proposed at the turn
    /// (bounded by `pending_records_max`: each holds at least one admitted record).
    builder: BatchBuilder,
    building: Vec<Slot>,
    built: Vec<(Vec<u8>, Vec<Slot>)>,
    /// Records of the last entry built: sizes the next one's buffer.
    entry_records_last: usize,
    next_ticket: u64,
    next_proposal: u64,
    tickets: HashMap<u64, Ticket, foldhash::fast::RandomState>,
    /// Log index -> this node's proposal expected there. An entry applied at that index with
    /// the same term is ours; any other entry there means the proposal was lost.
    proposals: BTreeMap<u64, PendingProposal>,
    pending_records: usize,
    inboxes: Vec<Inbox>,
    /// Committed entries not yet applied (apply waits at a marker whose receipts are missing).
    apply_queue: VecDeque<Entry>,
    /// Apply waits at a marker whose receipts the source already forgot: only a snapshot of
    /// this shard from its leader can move it on (see `Inbox::gap_through`).
    snapshot_wanted: bool,
    /// Highest index of a committed membership change applied to raft ahead of the ledger
    /// (apply waited at a marker before it: `apply_membership_ahead`); at or below the
    /// ledger's applied index when raft's configuration is the ledger's.
    membership_ahead_to: u64,
    /// A membership change that could not be applied: the replica stops (`ready` returns it).
    fatal: Option<ReplicaError>,
    completed: Vec<(u64, Vec<Outcome>)>,
    failed: Vec<u64>,
    deliveries: Vec<ReceiptDelivery>,
    /// Outbox length per destination already delivered.
    delivered_len: Vec<usize>,
    /// Highest `up_to` told to each destination.
    delivered_up_to: Vec<u64>,
    leader_changes: u64,
    /// (leader, term) last seen: a new one is a new leadership (`note_leader`).
    last_leadership: (u64, u64),
    /// This validator's own statuses, not in the log (PENDING on the leader, a rejection before
    /// consensus), at most `recent_transactions_max`; decided transfers live in the state's
    /// window. `recent_order` may name a transfer already dropped from the map (decided since).
    recent_transactions: HashMap<TxHash, TxStatus, foldhash::fast::RandomState>,
    recent_order: VecDeque<TxHash>,
    hashes: Vec<TxHash>,
    /// Transfer entries applied since the edge last took them (with `tap_applied`).
    applied_tap: Vec<AppliedEntry>,
    /// The last log index the tap's chain covers (`AppliedEntry::previous` of the next one).
    tap_position: u64,
    /// Bytes of entry data applied since this replica was created (what the in-memory log
    /// holds since the last snapshot, roughly: the node snapshots by it).
    applied_bytes: u64,
    /// Wall-clock of the current apply call (supplied by the I/O edge).
    now_ms: u64,
    /// The configuration changed since the edge last reconciled its links (starts true: the
    /// edge links to the configuration it opened with).
    membership_changed: bool,
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
    /// snapshot or genesis). A storage without a membership gets `config.voters`; with none
    /// (a joining validator) it starts with an empty configuration.
    /// A fresh single-voter group campaigns at once.
    pub fn new(
        config: ReplicaConfig,
        storage: MemStorage,
        mut state: ShardState,
    ) -> Result<ShardReplica, raft::Error> {
        // The recent windows (possibly from a snapshot) take this validator's bounds.
        state.set_recent_bounds(config.recent_transactions_max, config.recent_blocks_max);
        if config.preallocate_recent {
            state.reserve_recent();
        }
        assert!(config.entry_records_max >= 1 && config.entry_records_max <= BATCH_RECORDS_MAX);
        assert_eq!(config.shard, state.shard());
        assert!(
            config.max_inflight_msgs >= 1,
            "max_inflight_msgs bounds pipelining"
        );
        if !storage.initial_state()?.initialized() && !config.voters.is_empty() {
            storage.initialize_with_conf_state(ConfState::from((config.voters.clone(), vec![])));
        }
        // Without voters and without a configuration: a validator joining the group. raft-rs
        // starts it with an empty configuration (it neither votes nor campaigns) and it waits
        // for the leader's snapshot, which brings the group's configuration.
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
        let recent_order = admission::recent_order_queue(&config);
        let mut replica = ShardReplica {
            pending_ready: None,
            builder: BatchBuilder::with_capacity(config.entry_records_max),
            config,
            node,
            results: Vec::new(),
            building: Vec::new(),
            built: Vec::new(),
            entry_records_last: 0,
            next_ticket: 1,
            next_proposal: 1,
            tickets: HashMap::default(),
            proposals: BTreeMap::new(),
            pending_records: 0,
            inboxes: (0..shard_count).map(|_| Inbox::default()).collect(),
            apply_queue: VecDeque::new(),
            snapshot_wanted: false,
            membership_ahead_to: 0,
            fatal: None,
            completed: Vec::new(),
            failed: Vec::new(),
            deliveries: Vec::new(),
            delivered_len: vec![0; shard_count],
            delivered_up_to: vec![0; shard_count],
            leader_changes: 0,
            last_leadership: (0, 0),
            recent_transactions: HashMap::default(),
            recent_order,
            hashes: Vec::new(),
            applied_tap: Vec::new(),
            tap_position: 0,
            applied_bytes: 0,
            now_ms: 0,
            membership_changed: true,
            state,
        };
        // A sink is told of what applies from here on (what the state holds is before it).
        replica.tap_position = replica.state.applied_index();
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
    /// Whether a ready cycle has work (false while a handed-out one is not yet staged).
    pub fn has_ready(&self) -> bool {
        self.pending_ready.is_none() && self.node.has_ready()
    }
    /// Whether raft holds a snapshot from the leader that the next ready cycle restores (that
    /// cycle must start with no earlier write pending: the snapshot is written first).
    pub fn has_snapshot_to_restore(&self) -> bool {
        self.node.raft.raft_log.unstable_snapshot().is_some()
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
        !self.builder.is_empty() || !self.built.is_empty()
    }
    /// Whether apply is waiting for receipts from another shard.
    /// Bytes of entry data applied since this replica was created.
    pub fn applied_bytes(&self) -> u64 {
        self.applied_bytes
    }
    /// The transfer entries applied since the last call (with `tap_applied`), oldest first.
    /// When entries without transfers (markers, membership, a leader's empty entry) applied
    /// after the last transfer entry, a last one with no data carries the applied index, so
    /// that a sink's position follows the log even where it has nothing to write.
    pub fn take_applied(&mut self) -> Vec<AppliedEntry> {
        let applied = self.state.applied_index();
        if self.config.tap_applied && applied > self.tap_position {
            self.tap(applied, bytes::Bytes::new(), Vec::new(), Vec::new());
        }
        self.tap_position = self.tap_position.max(applied);
        std::mem::take(&mut self.applied_tap)
    }

    /// Adds an applied entry to the tap's chain.
    pub(super) fn tap(
        &mut self,
        index: u64,
        data: bytes::Bytes,
        results: Vec<ResultCode>,
        balances: Vec<AccountBalance>,
    ) {
        assert!(index > self.tap_position, "the tap's chain moves forward");
        self.applied_tap.push(AppliedEntry {
            index,
            previous: self.tap_position,
            data,
            results,
            balances,
        });
        self.tap_position = index;
    }

    pub fn apply_blocked(&self) -> bool {
        !self.apply_queue.is_empty()
    }
    /// Whether apply waits at a marker that only a snapshot from the leader can pass: the
    /// source shard forgot receipts this replica never credited (it was not yet in the
    /// source's group when they were pruned), or this validator's replica of the source left
    /// the source's group before it applied them.
    pub fn wants_snapshot(&self) -> bool {
        self.snapshot_wanted
    }

    /// A raft message from another replica of this shard. Messages that raft refuses (from a
    /// peer it does not know, a stale response) are dropped, as a transport would.
    pub fn step(&mut self, message: Message) -> Result<(), raft::Error> {
        assert!(
            self.pending_ready.is_none(),
            "step while a ready cycle is not staged"
        );
        if message.get_msg_type() == MessageType::MsgSnapshot {
            // Raft keeps the snapshot's data; check it before raft commits to it.
            let data = &message.get_snapshot().data;
            if let Err(error) = decode_state(data) {
                tracing::warn!(shard = self.config.shard, from = message.from, %error, "bad snapshot dropped");
                return Ok(());
            }
        }
        self.learn_commit_from_stale_refusal(&message);
        match self.node.step(message) {
            Ok(()) => Ok(()),
            Err(raft::Error::StepPeerNotFound) | Err(raft::Error::StepLocalMsg) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// One raft tick: elections and heartbeats; also tells other shards how far apply got.
    pub fn tick(&mut self) {
        let raft = &self.node.raft;
        let timing_out = raft.state == StateRole::Follower
            && raft.promotable()
            && raft.election_elapsed + 1 >= raft.randomized_election_timeout();
        self.node.tick();
        // raft-rs refuses to campaign while committed membership changes are not applied (a
        // replica whose apply waits at a marker), and restarts its election timer with the old
        // leader still known: it would then ignore every (pre-)vote as "within the leader's
        // lease" for ever, and with a voter down the group could elect no one. A follower
        // whose election timeout passed without a campaign has not heard from its leader for a
        // whole timeout: it forgets that leader, as a candidate would, and votes again.
        let raft = &mut self.node.raft;
        if timing_out && raft.state == StateRole::Follower && raft.leader_id != raft::INVALID_ID {
            tracing::info!(
                shard = self.config.shard,
                leader = raft.leader_id,
                "election timeout without a campaign (membership changes not applied yet): \
                 forgetting the leader"
            );
            raft.leader_id = raft::INVALID_ID;
        }
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

    /// Replaces the state with a snapshot received from the leader (catch-up after the log
    /// was truncated). The snapshot covers every committed entry up to its index.
    pub(super) fn restore_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), ReplicaError> {
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
        // What the snapshot covers was not applied here entry by entry: the tap's chain jumps,
        // and a sink that had not reached `index` sees the gap.
        self.tap_position = self.tap_position.max(index);
        self.state.set_recent_bounds(
            self.config.recent_transactions_max,
            self.config.recent_blocks_max,
        );
        if self.config.preallocate_recent {
            self.state.reserve_recent();
        }
        // The configuration is the snapshot's: the edge reconciles its links to it.
        self.membership_changed = true;
        // Committed entries waiting at a marker are covered by the snapshot (raft-rs restores
        // only a snapshot at or past its commit index), and so are membership changes applied
        // ahead of them: raft's configuration is the snapshot's.
        self.apply_queue.retain(|e| e.index > index);
        self.membership_ahead_to = 0;
        // Our proposals up to its index: their fate is unknown here.
        while let Some((&i, _)) = self.proposals.first_key_value() {
            if i > index {
                break;
            }
            let (_, lost) = self.proposals.pop_first().expect("non-empty");
            for (ticket, slot, _) in lost.slots {
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

    /// A follower asked this leader for a snapshot at an index beyond what it committed (the
    /// request may be older than this leader, whose commit index can lag the follower's):
    /// raft-rs would send that follower nothing but a snapshot this leader cannot make before
    /// it commits that far — which, with a voter down, needs that very follower's
    /// acknowledgement. Send it appends again instead (probing); the follower asks again once
    /// its whole log is committed (seed 702359).
    fn release_unservable_snapshot_requests(&mut self) {
        if self.node.raft.state != StateRole::Leader {
            return;
        }
        let committed = self.node.raft.raft_log.committed;
        let shard = self.config.shard;
        for (&id, progress) in self.node.raft.mut_prs().iter_mut() {
            let requested = progress.pending_request_snapshot;
            if requested != raft::INVALID_INDEX && requested > committed {
                tracing::info!(
                    shard,
                    follower = id,
                    requested,
                    committed,
                    "snapshot request beyond this leader's commit index: sending appends"
                );
                progress.pending_request_snapshot = raft::INVALID_INDEX;
                progress.become_probe();
            }
        }
    }

    /// Archives the state for a follower that needs a snapshot, when raft asked for one.
    pub(super) fn make_snapshot_if_requested(&mut self) {
        let slot = self.node.store().snapshot.clone();
        let mut slot = slot.lock().expect("snapshot slot poisoned");
        if !slot.requested {
            return;
        }
        if self.membership_ahead() {
            // raft's configuration is ahead of the state: asked again next cycle.
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
}

fn finish(ticket: Ticket) -> Vec<Outcome> {
    ticket
        .outcomes
        .into_iter()
        .map(|o| o.expect("every slot resolved"))
        .collect()
}
