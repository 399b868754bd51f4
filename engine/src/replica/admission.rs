//! Admission and proposal: verified submissions become tickets, admitted records become
//! batch entries (at most `entry_records_max` records each), receipts become marker entries.

use super::*;

/// The fewest records a submitted batch archive must hold to become a log entry of its own
/// ([`ShardReplica::submit_verified_archive`]); smaller ones are copied into the shared entry,
/// so that small requests do not make the log a string of small entries.
pub const ARCHIVE_ENTRY_RECORDS_MIN: usize = 64;

/// The records of a batch archive validated where it entered the process (the edge), read in
/// place without validating it again.
pub fn archived_records(archive: &[u8]) -> &[Record] {
    crate::batch::records_of_validated(archive)
}

impl ShardReplica {
    /// Takes a submission whose signatures the I/O edge already verified (`valid[i]` for
    /// `records[i]`; the runtime verifies on the shard's core while the previous group commit
    /// is in flight). Stateless checks reject at once, then invalid signatures are answered
    /// `BAD_SIGNATURE`; the rest waits for [`ShardReplica::propose_admitted`]. Returns the
    /// ticket whose outcomes will appear in [`ShardReplica::take_completed`].
    pub fn submit_verified(
        &mut self,
        records: &[Record],
        valid: &[bool],
    ) -> Result<u64, SubmitError> {
        assert_eq!(records.len(), valid.len(), "one verdict per record");
        self.admit(records, valid, None)
    }

    /// Like [`ShardReplica::submit_verified`] for a submission that is a whole binary batch of
    /// this shard (`archive`: a batch archive the edge validated, `aurigraph_wire::batch`).
    /// When every record is admitted and the batch is a fitting entry (at least
    /// [`ARCHIVE_ENTRY_RECORDS_MIN`] records and at most `entry_records_max`), the archive itself
    /// becomes the log entry: its records are not copied. Otherwise the admitted ones are copied
    /// into the entry being built, as for any submission. Returns the ticket and whether the
    /// archive is an entry; a refused submission gives the archive back.
    pub fn submit_verified_archive(
        &mut self,
        archive: Vec<u8>,
        valid: &[bool],
    ) -> Result<(u64, bool), (SubmitError, Vec<u8>)> {
        let records = archived_records(&archive);
        assert_eq!(records.len(), valid.len(), "one verdict per record");
        let fits =
            (ARCHIVE_ENTRY_RECORDS_MIN..=self.config.entry_records_max).contains(&records.len());
        if !fits {
            return match self.admit(records, valid, None) {
                Ok(ticket) => Ok((ticket, false)),
                Err(error) => Err((error, archive)),
            };
        }
        let mut slots = Vec::with_capacity(records.len());
        let ticket = match self.admit(records, valid, Some(&mut slots)) {
            Ok(ticket) => ticket,
            Err(error) => return Err((error, archive)),
        };
        if slots.len() == records.len() {
            // Entries go to the log in admission order: the one being built goes first.
            if !self.builder.is_empty() {
                self.finish_entry();
            }
            self.built.push((archive, slots));
            return Ok((ticket, true));
        }
        let admitted = slots.len();
        for (i, (ticket, slot, hash)) in slots.into_iter().enumerate() {
            let record = &records[slot as usize];
            self.build(ticket, slot, record, hash, admitted - i);
        }
        Ok((ticket, false))
    }

    /// Admits what passes the stateless checks and the signature verdicts, answers the rest at
    /// once. Each admitted record is copied into the entry being built, or, with `deferred`,
    /// only listed there (in order) for the caller to place.
    fn admit(
        &mut self,
        records: &[Record],
        valid: &[bool],
        mut deferred: Option<&mut Vec<Slot>>,
    ) -> Result<u64, SubmitError> {
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
            let stateless = match stateless {
                Ok(()) if !valid[slot] => Err(ResultCode::BadSignature),
                other => other,
            };
            match stateless {
                Err(code) => ticket.outcomes[slot] = Some(self.rejected(record, code)),
                Ok(()) => {
                    let hash = record.tx_hash();
                    match deferred.as_deref_mut() {
                        Some(slots) => slots.push((ticket_id, slot as u32, hash)),
                        None => {
                            let remaining = records.len() - slot;
                            self.build(ticket_id, slot as u32, record, hash, remaining);
                        }
                    }
                    ticket.missing += 1;
                    let shard = self.config.shard;
                    self.remember(hash, TxStatus::Pending { shard });
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

    /// Copies an admitted record into the entry being built (`remaining`: this submission's
    /// records from this one on). An entry's buffer is sized on its first record for twice the
    /// last entry's records, or for the rest of the submission if more: under a steady load an
    /// entry fills between half and all of it, so its records are copied once, whatever number
    /// of submissions fill it; it grows (a copy) when the load rises, and a buffer less than half
    /// used is given back at its own size (`BatchBuilder::finish`, a copy of a small entry).
    fn build(&mut self, ticket: u64, slot: u32, record: &Record, hash: TxHash, remaining: usize) {
        if self.builder.is_empty() {
            self.builder
                .reserve_records((2 * self.entry_records_last).max(remaining));
        }
        self.builder.push(record);
        self.building.push((ticket, slot, hash));
        if self.builder.is_full() {
            self.finish_entry();
        }
    }

    /// Moves the entry being built to those waiting for the next turn.
    fn finish_entry(&mut self) {
        self.entry_records_last = self.builder.len();
        let data = self.builder.finish();
        let slots = std::mem::take(&mut self.building);
        self.built.push((data, slots));
    }

    pub(super) fn rejected(&mut self, record: &Record, code: ResultCode) -> Outcome {
        let outcome = Outcome {
            tx_hash: record.tx_hash(),
            result: code,
            shard: self.config.shard,
            block: 0,
        };
        self.remember(outcome.tx_hash, TxStatus::Decided(outcome));
        outcome
    }

    /// Records a transfer's status. A decision of the log (`Decided` with a block: apply calls
    /// this for every transfer of an entry, in order) goes to the state's window, the same on
    /// every replica and carried by snapshots (`ShardState::record_decision`). Anything else
    /// (PENDING on this leader, a rejection before consensus) is this validator's own and goes
    /// to its local window, bounded by `recent_transactions_max`, oldest forgotten first.
    pub(super) fn remember(&mut self, hash: TxHash, status: TxStatus) {
        if let TxStatus::Decided(outcome) = status {
            if outcome.block > 0 {
                assert_eq!(outcome.tx_hash, hash);
                self.state
                    .record_decision(hash, outcome.result, outcome.block);
                // Its local status (PENDING) is superseded.
                self.recent_transactions.remove(&hash);
                return;
            }
        }
        if self.config.recent_transactions_max == 0 {
            return;
        }
        // The log's decision stands: a resubmission of a decided transfer is not PENDING.
        if self.state.recent_decision(&hash).is_some() {
            return;
        }
        if self.recent_transactions.insert(hash, status).is_none() {
            self.recent_order.push_back(hash);
            while self.recent_order.len() > self.config.recent_transactions_max {
                let old = self.recent_order.pop_front().expect("non-empty");
                self.recent_transactions.remove(&old);
            }
        }
        assert!(self.recent_transactions.len() <= self.recent_order.len());
    }

    /// A transfer's status: the log's decision while it is in the state's window (every
    /// validator answers alike), else this validator's own status, if any.
    pub fn transaction(&self, hash: &TxHash) -> Option<TxStatus> {
        if let Some(decision) = self.state.recent_decision(hash) {
            return Some(TxStatus::Decided(Outcome {
                tx_hash: *hash,
                result: decision.result,
                shard: self.config.shard,
                block: decision.block,
            }));
        }
        self.recent_transactions.get(hash).copied()
    }

    /// A block header, if it is in the recent window.
    pub fn block(&self, height: u64) -> Option<BlockHeader> {
        let blocks = self.state.recent_blocks();
        let first = blocks.front()?.height;
        if height < first {
            return None;
        }
        // Heights are increasing but not contiguous (raft's own entries are not blocks).
        blocks
            .binary_search_by_key(&height, |b| b.height)
            .ok()
            .map(|i| blocks[i])
    }

    pub fn latest_block(&self) -> Option<BlockHeader> {
        self.state.recent_blocks().back().copied()
    }

    /// Chains the block of an applied entry other than transfers (its data is the payload).
    pub(super) fn push_block(&mut self, entry: &Entry) {
        self.state
            .record_block(entry.index, entry.term, [&entry.data[..]], 0, self.now_ms);
    }

    /// Chains the block of an applied entry of transfers (their hashes are the payload).
    pub(super) fn push_transfers_block(&mut self, entry: &Entry, hashes: &[TxHash]) {
        let payload = hashes.iter().map(|h| &h.0[..]);
        self.state.record_block(
            entry.index,
            entry.term,
            payload,
            hashes.len() as u32,
            self.now_ms,
        );
    }

    /// Proposes what [`ShardReplica::submit_verified`] admitted as entries of at most
    /// `entry_records_max` records, then markers for receipts that arrived from other shards.
    pub fn propose_admitted(&mut self) {
        if !self.builder.is_empty() {
            self.finish_entry();
        }
        let mut built = std::mem::take(&mut self.built);
        for (data, slots) in built.drain(..) {
            self.propose_batch(data, slots);
        }
        // Keep the allocation for the next turn.
        if self.built.is_empty() {
            self.built = built;
        }
        self.propose_markers();
    }

    pub(super) fn propose_batch(&mut self, data: Vec<u8>, taken: Vec<Slot>) {
        let proposal = self.next_proposal;
        self.next_proposal += 1;
        let context = entry_context(ENTRY_KIND_TRANSFERS, self.config.node_id, proposal);
        match self.node.propose(context.to_vec(), data) {
            Ok(()) => self.track_proposal(taken),
            Err(error) => {
                // Lost leadership between admission and proposal: tell the clients.
                tracing::debug!(shard = self.config.shard, %error, "proposal dropped");
                for (ticket, slot, _) in taken {
                    self.fail_slot(ticket, slot);
                }
            }
        }
    }

    /// Remembers where the entry just proposed sits in the log (raft appends it at once).
    pub(super) fn track_proposal(&mut self, slots: Vec<Slot>) {
        let index = self.node.raft.raft_log.last_index();
        let term = self.node.raft.term;
        if let Some(old) = self
            .proposals
            .insert(index, PendingProposal { term, slots })
        {
            // Our earlier proposal at this index was overwritten by a later leader.
            for (ticket, slot, _) in old.slots {
                self.fail_slot(ticket, slot);
            }
        }
    }

    pub(super) fn propose_markers(&mut self) {
        if !self.is_leader() {
            return;
        }
        let mut payload = Vec::new();
        let mut count = 0u32;
        for (source, inbox) in self.inboxes.iter_mut().enumerate() {
            let floor = inbox
                .proposed_up_to
                .max(self.state.inbound_watermark(source as ShardId));
            // A leader with a hole in its receipts (see `Inbox::gap_through`) could not apply
            // its own marker; it hands leadership over instead (`ShardNode::tick`).
            let hole = inbox.gap_through > self.state.inbound_watermark(source as ShardId);
            if inbox.progress > floor && !inbox.receipts.is_empty() && !hole {
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
}

/// The order queue of this validator's own statuses (`recent_transactions`): with
/// `preallocate_recent`, allocated for its bound and touched once, so that it never grows (a
/// copy of up to 8 MB) or first-touches fresh pages while the shard serves.
pub(super) fn recent_order_queue(config: &ReplicaConfig) -> VecDeque<TxHash> {
    if !config.preallocate_recent {
        return VecDeque::new();
    }
    // One more than the bound: `remember` pushes before it trims.
    let mut queue = VecDeque::with_capacity(config.recent_transactions_max + 1);
    crate::ledger::touch_capacity(&mut queue, TxHash([0; 32]));
    queue
}
