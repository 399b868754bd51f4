//! `ShardNode`: everything one shard's driver decides, without I/O.
//!
//! The raft-rs pattern one level up: [`crate::replica::ShardReplica`] is the consensus and
//! ledger core of one shard; `ShardNode` wraps it with the decisions a validator's shard makes
//! around it — admission and ticket matching, the order of a ready cycle, forwarding to the
//! leader and answering forwarded submissions, credit watermarks and receipt pruning, large
//! raft messages (snapshots) in pieces, membership events, leadership hand-over. It performs no
//! I/O and reads no clock: the glommio runtime (production) and the deterministic simulator
//! (tests) both drive this same code, so a seed exercises what runs in production.
//!
//! # Inputs and actions
//! Inputs are method calls: a verified submission ([`ShardNode::submit`]), a message from the
//! same shard on another validator ([`ShardNode::peer_message`]), a message from another shard
//! of this validator ([`ShardNode::local_message`]), a tick, a membership change, and the
//! completion of I/O the node asked for.
//!
//! Actions that do not wait go through [`Effects`], implemented by the edge: send a peer
//! message (the transport may refuse it — full or down — and the node reacts at once), answer a
//! client, hand a message to another shard, link or unlink a validator. Work that takes time is
//! returned as a value and its completion is the next input:
//! - [`Persist`] from [`ShardNode::start_turn`]: a ready cycle's snapshot, entries and hard
//!   state, made durable with one group commit, then [`ShardNode::persisted`];
//! - [`LocalSnapshot`] from [`ShardNode::finish_turn`]: the state archived at the applied
//!   index, saved (and the log truncated), then [`ShardNode::snapshot_saved`].
//!
//! # One turn
//! inputs → [`ShardNode::tick`] when due → `start_turn` → persist → `persisted` →
//! `finish_turn` → save the snapshot if one is due → `snapshot_saved`. No raft input may be
//! fed while a turn's persist is in flight (raft-rs's rule for a `Ready`).

mod admission;
mod backup;
mod cycles;
pub use backup::BackupRefused;
use cycles::InFlightCycle;
mod credits;
mod forward;
mod membership;
mod pieces;
mod status;

pub use forward::{failure_of, refusal_of};
pub use status::ShardStatus;

use crate::ledger::Receipt;
use crate::peering::{ForwardReply, Outbound, PeerMessage};
use crate::replica::{Outcome, ReceiptDelivery, ReplicaError, ShardReplica, SubmitError};
use crate::shard::ShardId;
use crate::state_snapshot::{capture_state, StateImage};
use raft::eraftpb::{ConfState, Entry, HardState, Message, MessageType, Snapshot};
use std::collections::{HashMap, VecDeque};

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

/// The decisions' bounds and timing (durations in milliseconds of the edge's monotonic clock).
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub node_id: u64,
    /// Distinguishes this start of the node from earlier ones: forwarded request ids start at
    /// `incarnation << 20`, so a leader's late reply to a request of an earlier start never
    /// answers a new one.
    pub incarnation: u64,
    /// Other validators exist (there is a transport): followers forward client submissions to
    /// the leader, leadership spreads over validators, credits are announced to peers.
    pub replicated: bool,
    /// How long a follower waits for the leader's answer to a forwarded submission.
    pub forward_timeout_ms: u64,
    /// Forwarded submissions waited on at once (more: overloaded).
    pub forwards_pending_max: usize,
    /// Raft messages larger than this travel in pieces of this size.
    pub raft_piece_bytes: usize,
    /// Largest raft message reassembled from pieces.
    pub raft_message_bytes_max: u64,
    /// Take a local snapshot (and truncate the log) every this many applied entries...
    pub snapshot_interval_entries: u64,
    /// ...or once this many bytes of entries applied since the last one: the raft log is kept
    /// in memory until a snapshot truncates it, so this bounds its memory (and its WAL) under a
    /// load of large entries (8,192 transfers make a 1.4 MB entry).
    pub snapshot_interval_bytes: u64,
    /// How often durable credit watermarks are repeated to the source shards.
    pub credit_announce_interval_ms: u64,
    /// Shortest time between two leadership hand-overs.
    pub leader_transfer_interval_ms: u64,
    /// Ready cycles handed out and not yet durable, at most (1: each write is durable before
    /// the next cycle starts; more: the next group is proposed and sent while a write runs).
    pub ready_cycles_in_flight_max: usize,
}

impl NodeConfig {
    pub fn new(node_id: u64) -> NodeConfig {
        NodeConfig {
            node_id,
            incarnation: 0,
            replicated: false,
            forward_timeout_ms: 5_000,
            forwards_pending_max: 4096,
            raft_piece_bytes: 1 << 20,
            raft_message_bytes_max: 1 << 30,
            snapshot_interval_entries: 20_000,
            snapshot_interval_bytes: 512 << 20,
            credit_announce_interval_ms: 5_000,
            leader_transfer_interval_ms: 2_000,
            ready_cycles_in_flight_max: 8,
        }
    }
}

/// The edge's clocks at an input: `monotonic_ms` for deadlines, `wall_ms` for block timestamps
/// only (never in state).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Now {
    pub monotonic_ms: u64,
    pub wall_ms: u64,
}

/// The transport did not take a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendRefused {
    /// The peer's queue is full: try again later (back-pressure).
    Full,
    /// No usable link to the peer (unknown, disconnected, closed, or the message is invalid).
    Down,
}

/// An answer to whoever submitted.
#[derive(Debug, PartialEq)]
pub enum Answer {
    /// One outcome per record, in order, once decided.
    Outcomes(Result<Vec<Outcome>, SubmitFailure>),
    /// A detached (`wait=false`) submission was admitted (here or by the leader).
    Admitted(Result<(), SubmitFailure>),
    /// A membership change applied at this log index.
    Membership(Result<u64, SubmitFailure>),
}

/// What one shard of a validator tells another shard of the same validator.
#[derive(Debug)]
pub enum LocalMessage {
    Receipts(ReceiptDelivery),
    /// Validator `node`'s replica of `destination` durably credited (in a snapshot) the
    /// receipts of the receiving (source) shard up to `up_to`.
    Credited {
        destination: ShardId,
        node: u64,
        up_to: u64,
    },
}

/// Who submitted: the node answers each kind in its own way.
pub enum Submitter<R> {
    /// A client of this validator waiting for the outcomes.
    Client(R),
    /// A client of this validator that wants to know only that the records were admitted.
    Detached(R),
    /// Forwarded by validator `node` (never forwarded again); `request` 0: nobody waits.
    Peer { node: u64, request: u64 },
}

/// The actions that do not wait, performed by the edge. None of them may block.
pub trait Effects {
    /// What the edge needs to answer a client (a channel, a client id).
    type Reply;
    /// Sends `message` to validator `to` (this shard's replica there).
    fn send(&mut self, to: u64, message: Outbound<'_>) -> Result<(), SendRefused>;
    fn reply(&mut self, to: Self::Reply, answer: Answer);
    /// Hands `message` to another shard of this validator; gives it back when that shard's
    /// queue is full (the node retries next turn, never waits: two shards waiting on each
    /// other's full queues would deadlock).
    fn to_shard(&mut self, destination: ShardId, message: LocalMessage)
        -> Result<(), LocalMessage>;
    /// Validator `node_id` is in this shard's configuration: make it reachable at `peer_addr`
    /// (the address its membership change carried; empty for a founding validator, which the
    /// edge knows from its command line). Called again with every reconciliation: idempotent.
    fn link(&mut self, node_id: u64, peer_addr: &[u8]);
    /// Validator `node_id` is no longer in this shard's configuration. The edge unlinks it
    /// only when no other shard sharing its transport still has it.
    fn unlink(&mut self, node_id: u64);
}

/// A ready cycle's writes: stage them (the snapshot first, then the entries and the hard
/// state) and call [`ShardNode::staged`] with `number`; once they are durable (in order with
/// the cycles before), call [`ShardNode::persisted`].
#[derive(Debug)]
pub struct Persist {
    pub number: u64,
    /// A snapshot received from the leader (the replica already restored its state from it).
    pub snapshot: Option<Snapshot>,
    pub entries: Vec<Entry>,
    pub hard_state: Option<HardState>,
    /// Whether raft requires an fdatasync for these writes.
    pub must_sync: bool,
}

impl Persist {
    pub fn has_writes(&self) -> bool {
        self.snapshot.is_some() || !self.entries.is_empty() || self.hard_state.is_some()
    }
}

/// The state at `index`, to save as the shard's snapshot (the log before it may go); then call
/// [`ShardNode::snapshot_saved`].
#[derive(Debug)]
pub struct LocalSnapshot {
    pub index: u64,
    pub term: u64,
    pub conf: ConfState,
    /// The state copied out; `StateImage::encode` gives the snapshot's bytes (the runtime
    /// archives it off the shard's core).
    pub image: StateImage,
}

/// What the node did, for metrics and for the simulator's coverage report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeCounters {
    pub forwarded: u64,
    pub forwards_served: u64,
    pub pieces_sent: u64,
    pub snapshots_sent_in_pieces: u64,
    pub messages_reassembled: u64,
    pub credits_announced: u64,
    pub receipts_pruned_to: u64,
    pub leadership_handovers: u64,
    /// Times a replica stalled at receipts its source had forgot and asked for a snapshot
    /// (or, as leader, handed leadership over to be able to ask).
    pub snapshots_requested: u64,
    /// Leadership hand-overs this replica declined because its apply waited at a marker.
    pub handovers_declined: u64,
    /// Vote requests a replica without any configuration (a joiner) did not answer.
    pub votes_declined: u64,
}

impl NodeCounters {
    /// Adds another node's counts (the pruning point is the furthest of the two).
    pub fn add(&mut self, other: &NodeCounters) {
        self.forwarded += other.forwarded;
        self.forwards_served += other.forwards_served;
        self.pieces_sent += other.pieces_sent;
        self.snapshots_sent_in_pieces += other.snapshots_sent_in_pieces;
        self.messages_reassembled += other.messages_reassembled;
        self.credits_announced += other.credits_announced;
        self.receipts_pruned_to = self.receipts_pruned_to.max(other.receipts_pruned_to);
        self.leadership_handovers += other.leadership_handovers;
        self.snapshots_requested += other.snapshots_requested;
        self.handovers_declined += other.handovers_declined;
        self.votes_declined += other.votes_declined;
    }
}

/// Who waits for a ticket's outcomes.
enum Waiter<R> {
    Client(R),
    Peer { node: u64, request: u64 },
}

/// One shard's driver logic; `R` is the edge's reply handle.
pub struct ShardNode<R> {
    config: NodeConfig,
    replica: ShardReplica,
    waiting: HashMap<u64, Waiter<R>>,
    forwards: forward::Forwards<R>,
    pieces: pieces::Pieces,
    credits: credits::Credits,
    /// A membership change this leader proposed: its log index and the operator's reply.
    membership: Option<(u64, R)>,
    /// Messages to other shards that found their queue full; retried every turn.
    undelivered: VecDeque<(ShardId, LocalMessage)>,
    last_snapshot_index: u64,
    /// The replica's `applied_bytes` when the last local snapshot was taken.
    snapshot_applied_bytes: u64,
    /// Counted as applied towards the first local snapshot only: shard `s` of `n` starts
    /// `(n - 1 - s) / n` of `snapshot_interval_bytes` ahead, so that shards under an even load
    /// take their snapshots in turn rather than all at once (each snapshot's file write and
    /// archive then share the disk and the cores with fewer others: docs/benchmarks.md).
    snapshot_head_start_bytes: u64,
    /// Credit watermarks of the local snapshot handed out and not yet saved.
    snapshot_watermarks: Option<Vec<(ShardId, u64)>>,
    last_handover_ms: Option<u64>,
    /// The last hand-over `spread_leadership` started: (to, at); and until when it leaves
    /// that voter alone after the hand-over did not take (the voter declined or could not win).
    spread_to: Option<(u64, u64)>,
    spread_backoff_until_ms: u64,
    /// Since when this leader's apply has waited at a marker (`None`: not waiting, or not
    /// leading).
    leader_blocked_since_ms: Option<u64>,
    /// Validators this shard asked the edge to link (its configuration's, but itself).
    linked: std::collections::BTreeSet<u64>,
    /// The monotonic clock at the latest tick or turn (deadlines of forwarded submissions).
    last_now_ms: u64,
    /// Ready cycles handed out and not yet durable, oldest first (at most
    /// `ready_cycles_in_flight_max`).
    in_flight: VecDeque<InFlightCycle>,
    counters: NodeCounters,
}

/// The head start of shard `shard` of `shards` towards its first local snapshot (see
/// `ShardNode::snapshot_head_start_bytes`): `(shards - 1 - shard) / shards` of the interval.
fn snapshot_head_start_bytes(interval_bytes: u64, shard: ShardId, shards: u32) -> u64 {
    let shards = u64::from(shards.max(1));
    let shard = u64::from(shard).min(shards - 1);
    interval_bytes / shards * (shards - 1 - shard)
}

impl<R> ShardNode<R> {
    pub fn new(config: NodeConfig, replica: ShardReplica) -> ShardNode<R> {
        assert!(config.raft_piece_bytes > 0, "pieces carry bytes");
        assert_eq!(config.node_id, replica.node_id());
        let last_snapshot_index = replica.state().applied_index();
        ShardNode {
            forwards: forward::Forwards::new(config.incarnation << 20),
            pieces: pieces::Pieces::default(),
            credits: credits::Credits::default(),
            waiting: HashMap::new(),
            membership: None,
            undelivered: VecDeque::new(),
            last_snapshot_index,
            snapshot_applied_bytes: 0,
            snapshot_head_start_bytes: snapshot_head_start_bytes(
                config.snapshot_interval_bytes,
                replica.shard(),
                replica.state().shard_count(),
            ),
            snapshot_watermarks: None,
            last_handover_ms: None,
            spread_to: None,
            spread_backoff_until_ms: 0,
            leader_blocked_since_ms: None,
            linked: std::collections::BTreeSet::new(),
            last_now_ms: 0,
            in_flight: VecDeque::new(),
            counters: NodeCounters::default(),
            config,
            replica,
        }
    }

    pub fn replica(&self) -> &ShardReplica {
        &self.replica
    }
    pub fn shard(&self) -> ShardId {
        self.replica.shard()
    }
    pub fn config(&self) -> &NodeConfig {
        &self.config
    }
    pub fn counters(&self) -> &NodeCounters {
        &self.counters
    }
    /// Whether a turn would do nothing: the edge may sleep until the next input or tick.
    pub fn is_idle(&self) -> bool {
        !self.replica.has_ready() && !self.replica.has_admitted()
    }
    /// Raft's election clock: ticks since it was last reset, and the timeout it runs to.
    pub fn election_clock(&self) -> (usize, usize) {
        let raft = &self.replica.raw_node().raft;
        (raft.election_elapsed, raft.randomized_election_timeout())
    }
    /// Replaces raft's randomized election timeout (within its configured range). raft-rs
    /// draws it from the thread's RNG at every reset; the simulator draws it from its seed
    /// instead, so that a run replays exactly and elections still break ties as raft intends.
    pub fn set_election_timeout(&mut self, ticks: usize) {
        self.replica
            .raw_node_mut()
            .raft
            .set_randomized_election_timeout(ticks);
    }
    /// Raft messages waiting for room in a peer's transport queue.
    pub fn queued_messages(&self) -> usize {
        self.pieces.queued()
    }
    /// Whether a ready cycle's writes are not yet durable.
    pub fn is_persisting(&self) -> bool {
        !self.in_flight.is_empty()
    }

    /// A message from this shard's replica on validator `from`. Credit watermarks are for the
    /// source shard: the edge routes them as [`LocalMessage::Credited`] instead.
    pub fn peer_message<E: Effects<Reply = R>>(
        &mut self,
        io: &mut E,
        from: u64,
        message: PeerMessage,
    ) {
        match message {
            PeerMessage::Raft(message) => self.step(*message),
            PeerMessage::RaftChunk {
                transfer,
                total,
                offset,
                data,
            } => {
                if let Some(message) = self.pieces.accept(
                    self.replica.shard(),
                    from,
                    (transfer, total, offset, &data),
                    self.config.raft_message_bytes_max,
                ) {
                    self.counters.messages_reassembled += 1;
                    self.step(message);
                }
            }
            PeerMessage::ForwardReply { request, reply } => self.forward_reply(io, request, reply),
            PeerMessage::Forward {
                request,
                records,
                valid,
            } => self.submit(
                io,
                &records,
                &valid,
                Submitter::Peer {
                    node: from,
                    request,
                },
            ),
            PeerMessage::Credited { .. } => {
                debug_assert!(
                    false,
                    "the edge routes credit watermarks to the source shard"
                );
            }
        }
    }

    fn step(&mut self, message: Message) {
        let vote = matches!(
            message.get_msg_type(),
            MessageType::MsgRequestVote | MessageType::MsgRequestPreVote
        );
        if vote
            && self
                .replica
                .raw_node()
                .raft
                .prs()
                .conf()
                .voters()
                .ids()
                .is_empty()
        {
            // No configuration yet: a validator that joins (or rejoins wiped, under a node id
            // it had before) and has not received the leader's snapshot. raft-rs would grant
            // any candidate its vote (an empty log is behind every log), and a removed voter
            // that never learnt its removal could then win a majority of its stale
            // configuration with it. It is in no group yet: it does not vote.
            self.counters.votes_declined += 1;
            return;
        }
        if message.get_msg_type() == MessageType::MsgTimeoutNow && self.replica.apply_blocked() {
            // A leadership hand-over to a replica whose apply waits at a marker: as leader it
            // could acknowledge nothing (and would hand over again). Declining is always safe:
            // the leader aborts the transfer after an election timeout and keeps leading.
            tracing::debug!(
                shard = self.replica.shard(),
                "apply is blocked: leadership hand-over declined"
            );
            self.counters.handovers_declined += 1;
            return;
        }
        if let Err(error) = self.replica.step(message) {
            tracing::debug!(shard = self.replica.shard(), %error, "raft message ignored");
        }
    }

    /// A message from another shard of this validator. Returns the buffer of a receipt
    /// delivery, emptied, with the shard that allocated it: the edge frees it on that shard's
    /// core.
    pub fn local_message(&mut self, message: LocalMessage) -> Option<(ShardId, Vec<Receipt>)> {
        match message {
            LocalMessage::Receipts(delivery) => {
                let source = delivery.source;
                Some((source, self.replica.receive_receipts(delivery)))
            }
            LocalMessage::Credited {
                destination,
                node,
                up_to,
            } => {
                self.credited(destination, node, up_to);
                None
            }
        }
    }

    /// A raft tick (the edge calls it every tick interval): elections and heartbeats,
    /// forwarded submissions that timed out, leadership hand-over, credit announcements.
    pub fn tick<E: Effects<Reply = R>>(&mut self, io: &mut E, now: Now) {
        self.last_now_ms = now.monotonic_ms;
        self.replica.tick();
        self.expire_forwards(io, now);
        self.fetch_snapshot_if_stalled(now);
        self.hand_over_if_blocked(now);
        self.spread_leadership(now);
        if self
            .credits
            .announce_due(now, self.config.credit_announce_interval_ms)
        {
            self.announce_credits(io, now);
        }
    }

    /// Proposes what was admitted and starts a ready cycle: applies what committed and is
    /// durable, sends what may go before the write, and returns the write to stage (or `None`:
    /// nothing to write). Only when [`ShardNode::can_start_turn`]. Then
    /// [`ShardNode::finish_turn`], whether or not a write is still pending.
    pub fn start_turn<E: Effects<Reply = R>>(
        &mut self,
        io: &mut E,
        now: Now,
    ) -> Result<Option<Persist>, ReplicaError> {
        assert!(
            self.can_start_turn(),
            "ready cycles in flight at their bound"
        );
        self.last_now_ms = now.monotonic_ms;
        self.replica.propose_admitted();
        let Some(mut work) = self.replica.ready(now.wall_ms)? else {
            return Ok(None);
        };
        // A leader's appends and heartbeats may go before its own write (raft counts its own
        // vote only once persisted); everything else waits for the write.
        let early = std::mem::take(&mut work.messages);
        self.send_raft(io, early);
        let has_writes = work.has_writes();
        self.in_flight.push_back(InFlightCycle {
            number: work.number,
            has_writes,
            snapshot_index: work.snapshot.as_ref().map(|s| s.get_metadata().index),
            after_write: std::mem::take(&mut work.persisted_messages),
        });
        if !has_writes {
            // Nothing to write: durable as soon as every cycle before it is.
            self.replica.staged(work.number);
            if self.in_flight.len() == 1 {
                self.persisted(io, work.number, now);
            }
            return Ok(None);
        }
        Ok(Some(Persist {
            number: work.number,
            snapshot: work.snapshot,
            entries: work.entries,
            hard_state: work.hard_state,
            must_sync: work.must_sync,
        }))
    }

    /// The rest of a turn: more pieces of large messages, membership events, answers, messages
    /// to other shards; returns a local snapshot to save when one is due.
    pub fn finish_turn<E: Effects<Reply = R>>(&mut self, io: &mut E) -> Option<LocalSnapshot> {
        self.pump_pieces(io);
        self.settle_membership(io);
        self.answer(io);
        self.deliver_local(io);
        self.local_snapshot_if_due()
    }

    /// The snapshot handed out by [`ShardNode::finish_turn`] is durable.
    pub fn snapshot_saved<E: Effects<Reply = R>>(&mut self, io: &mut E, index: u64, now: Now) {
        let watermarks = self
            .snapshot_watermarks
            .take()
            .expect("snapshot_saved without a snapshot");
        self.last_snapshot_index = index;
        // Our credits up to these watermarks are durable now: tell the sources here and on
        // every other validator (they forget receipts only up to what all validators report).
        self.credits.set_watermarks(watermarks);
        self.announce_credits(io, now);
        tracing::debug!(shard = self.replica.shard(), index, "snapshot saved");
    }

    /// Stopping: everyone still waiting hears so (what was acknowledged is durable already).
    pub fn shutdown<E: Effects<Reply = R>>(&mut self, io: &mut E) {
        for (_, waiter) in self.waiting.drain() {
            answer_waiter(io, waiter, Err(SubmitFailure::Stopped));
        }
        for reply in self.forwards.drain() {
            io.reply(reply, Answer::Outcomes(Err(SubmitFailure::Stopped)));
        }
        if let Some((_, reply)) = self.membership.take() {
            io.reply(reply, Answer::Membership(Err(SubmitFailure::Stopped)));
        }
    }

    /// Sends raft messages; a message too large for one transport message goes in pieces,
    /// queued per peer (see `pieces.rs`). A refused send is reported to raft so that it probes
    /// that peer (and retries a snapshot) instead of assuming delivery. A snapshot handed to the transport
    /// whole is reported delivered, as one sent in pieces is once its last piece went: should
    /// it be lost on the way, the follower rejects the next append and raft sends another —
    /// without the report, raft would wait for the follower forever.
    fn send_raft<E: Effects<Reply = R>>(&mut self, io: &mut E, messages: Vec<Message>) {
        let mut queued = false;
        for message in messages {
            let to = message.to;
            let is_snapshot = message.get_msg_type() == MessageType::MsgSnapshot;
            let bytes = protobuf::Message::compute_size(&message) as usize + 1;
            let large = bytes > self.config.raft_piece_bytes;
            if large || self.pieces.is_queued(to) {
                if self.pieces.queue(to, message, large) {
                    queued = true;
                    if large && is_snapshot {
                        self.counters.snapshots_sent_in_pieces += 1;
                    }
                } else {
                    self.not_sent(to, is_snapshot);
                }
                continue;
            }
            match io.send(to, Outbound::Raft(&message)) {
                Ok(()) => {
                    if is_snapshot {
                        self.replica.report_snapshot(to, true);
                    }
                }
                Err(SendRefused::Full) if !is_snapshot => {
                    // Keep raft's order: this and what follows wait for room.
                    if self.pieces.queue(to, message, false) {
                        queued = true;
                    } else {
                        self.not_sent(to, false);
                    }
                }
                Err(_) => self.not_sent(to, is_snapshot),
            }
        }
        if queued {
            self.pump_pieces(io);
        }
    }

    /// Raft hears that a message to `to` did not go.
    fn not_sent(&mut self, to: u64, is_snapshot: bool) {
        tracing::trace!(shard = self.replica.shard(), to, "raft message not sent");
        if is_snapshot {
            self.replica.report_snapshot(to, false);
        }
        self.replica.report_unreachable(to);
    }

    /// Answers the submissions decided (or lost) since the last turn.
    fn answer<E: Effects<Reply = R>>(&mut self, io: &mut E) {
        for (ticket, outcomes) in self.replica.take_completed() {
            if let Some(waiter) = self.waiting.remove(&ticket) {
                answer_waiter(io, waiter, Ok(outcomes));
            }
        }
        let shard = self.replica.shard();
        for ticket in self.replica.take_failed() {
            if let Some(waiter) = self.waiting.remove(&ticket) {
                answer_waiter(io, waiter, Err(SubmitFailure::Retry(shard)));
            }
        }
    }

    /// Hands receipts (and queued credit watermarks) to the other shards of this validator.
    fn deliver_local<E: Effects<Reply = R>>(&mut self, io: &mut E) {
        for delivery in self.replica.take_deliveries() {
            self.undelivered
                .push_back((delivery.destination, LocalMessage::Receipts(delivery)));
        }
        while let Some((destination, message)) = self.undelivered.pop_front() {
            if let Err(message) = io.to_shard(destination, message) {
                self.undelivered.push_front((destination, message));
                break;
            }
        }
    }

    /// The local snapshot due now, if any (every `snapshot_interval_entries` applied entries).
    fn local_snapshot_if_due(&mut self) -> Option<LocalSnapshot> {
        if self.snapshot_watermarks.is_some() {
            // The last one handed out is not saved yet (the edge archives it meanwhile).
            return None;
        }
        let state = self.replica.state();
        let applied = state.applied_index();
        let entries_due =
            applied >= self.last_snapshot_index + self.config.snapshot_interval_entries;
        let bytes_since = self
            .replica
            .applied_bytes()
            .saturating_sub(self.snapshot_applied_bytes);
        let bytes_due = bytes_since.saturating_add(self.snapshot_head_start_bytes)
            >= self.config.snapshot_interval_bytes;
        if !(entries_due || bytes_due) || self.replica.membership_ahead() {
            return None;
        }
        let raft = &self.replica.raw_node().raft;
        let term = raft.raft_log.term(applied).unwrap_or(0);
        if applied == 0 || term == 0 {
            return None;
        }
        let snapshot = LocalSnapshot {
            index: applied,
            term,
            conf: raft.prs().conf().to_conf_state(),
            image: capture_state(state),
        };
        self.snapshot_watermarks = Some(self.inbound_watermarks());
        self.snapshot_applied_bytes = self.replica.applied_bytes();
        self.snapshot_head_start_bytes = 0;
        Some(snapshot)
    }

    /// This (destination) shard's credit watermark per source shard, as the state holds it.
    fn inbound_watermarks(&self) -> Vec<(ShardId, u64)> {
        let state = self.replica.state();
        let shard = self.replica.shard();
        (0..state.shard_count())
            .filter(|&s| s != shard)
            .map(|s| (s, state.inbound_watermark(s)))
            .filter(|&(_, w)| w > 0)
            .collect()
    }

    /// The group's members (voters and learners), this node included.
    fn members(&self) -> Vec<u64> {
        self.replica
            .raw_node()
            .raft
            .prs()
            .iter()
            .map(|(&id, _)| id)
            .collect()
    }
}
/// Answers whoever waits for a ticket: the client here, or the validator that forwarded it.
fn answer_waiter<R, E: Effects<Reply = R>>(
    io: &mut E,
    waiter: Waiter<R>,
    result: Result<Vec<Outcome>, SubmitFailure>,
) {
    match waiter {
        Waiter::Client(reply) => io.reply(reply, Answer::Outcomes(result)),
        Waiter::Peer { node, request } => {
            let reply = match result {
                Ok(outcomes) => ForwardReply::Outcomes(outcomes),
                Err(failure) => ForwardReply::Refused(refusal_of(failure)),
            };
            let _ = io.send(
                node,
                Outbound::ForwardReply {
                    request,
                    reply: &reply,
                },
            );
        }
    }
}

#[cfg(test)]
mod tests;
