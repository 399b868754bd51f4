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

use crate::batch::{decode_batch, BatchBuilder, BATCH_RECORDS_MAX};
use crate::ledger::{precheck, Receipt, ShardState};
use crate::record::{Record, TxHash};
use crate::result::ResultCode;
use crate::shard::{shard_of, ShardId};
use crate::verify::SignatureVerifier;
use raft::eraftpb::{ConfChange, ConfChangeV2, Entry, EntryType};
use raft::storage::MemStorage;
use raft::{Config, RawNode, StateRole};
use std::collections::{HashMap, VecDeque};

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
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    #[error("this validator does not lead shard {shard} (leader: {leader:?})")]
    NotLeader { shard: ShardId, leader: Option<u64> },
    #[error("shard {0} is overloaded: too many transfers waiting for consensus")]
    Overloaded(ShardId),
}

/// Bounds and timing of one replica.
#[derive(Clone, Debug)]
pub struct ReplicaConfig {
    pub node_id: u64,
    pub shard: ShardId,
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

/// The replica of one shard on one validator.
pub struct ShardReplica {
    config: ReplicaConfig,
    node: RawNode<MemStorage>,
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
    /// Proposal id -> (ticket, slot) per record, in batch order.
    proposals: HashMap<u64, Vec<(u64, u32)>>,
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
    /// snapshot or genesis). A fresh single-voter group campaigns at once.
    pub fn new(
        config: ReplicaConfig,
        storage: MemStorage,
        state: ShardState,
    ) -> Result<ShardReplica, raft::Error> {
        assert!(config.entry_records_max >= 1 && config.entry_records_max <= BATCH_RECORDS_MAX);
        assert_eq!(config.shard, state.shard());
        let raft_config = Config {
            id: config.node_id,
            election_tick: config.election_tick,
            heartbeat_tick: config.heartbeat_tick,
            applied: state.applied_index(),
            max_size_per_msg: config.max_size_per_msg_bytes,
            max_inflight_msgs: config.max_inflight_msgs,
            check_quorum: true,
            pre_vote: true,
            ..Default::default()
        };
        raft_config.validate()?;
        let node = RawNode::new(&raft_config, storage, &raft_logger())?;
        let shard_count = state.shard_count() as usize;
        let mut replica = ShardReplica {
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
            proposals: HashMap::new(),
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
    pub fn raw_node(&self) -> &RawNode<MemStorage> {
        &self.node
    }
    pub fn raw_node_mut(&mut self) -> &mut RawNode<MemStorage> {
        &mut self.node
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
            Ok(()) => {
                self.proposals.insert(proposal, taken);
            }
            Err(error) => {
                // Lost leadership between admission and proposal: tell the clients.
                tracing::debug!(shard = self.config.shard, %error, "proposal dropped");
                for (ticket, slot) in taken {
                    self.fail_slot(ticket, slot);
                }
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
        let index = entry.index;
        match entry.get_entry_type() {
            EntryType::EntryConfChange => {
                let mut cc = ConfChange::default();
                if protobuf::Message::merge_from_bytes(&mut cc, &entry.data).is_ok() {
                    if let Ok(cs) = self.node.apply_conf_change(&cc) {
                        self.node.mut_store().wl().set_conf_state(cs);
                    }
                }
                self.state.set_applied_index(index);
                return;
            }
            EntryType::EntryConfChangeV2 => {
                let mut cc = ConfChangeV2::default();
                if protobuf::Message::merge_from_bytes(&mut cc, &entry.data).is_ok() {
                    if let Ok(cs) = self.node.apply_conf_change(&cc) {
                        self.node.mut_store().wl().set_conf_state(cs);
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
        let (kind, proposer, proposal) = parse_context(&entry.context);
        let mine = proposer == self.config.node_id;
        match kind {
            ENTRY_KIND_TRANSFERS => {
                let slots = if mine {
                    self.proposals.remove(&proposal)
                } else {
                    None
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
