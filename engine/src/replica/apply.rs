//! Apply: committed entries in log order, tickets resolved with their outcomes, proposals
//! that did not make it failed (their clients retry).

use super::*;

/// How many transfers ahead apply prefetches the recent window's index slot of a decision it
/// will record.
const DECISION_PREFETCH_DISTANCE: usize = 16;

/// What a committed entry waits for before it can apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum MarkerWait {
    Ready,
    /// Receipts from a source shard that have not arrived yet (they will).
    Receipts,
    /// Receipts the source already forgot, or that never come (the source's replica on this
    /// validator left its group): only a snapshot of this shard gets past.
    Gap,
}

/// The membership change a committed entry carries (`None`: not a membership entry), as
/// raft-rs's `ConfChangeV2`, or why it does not decode.
pub(super) fn decode_membership(entry: &Entry) -> Option<Result<ConfChangeV2, String>> {
    match entry.get_entry_type() {
        EntryType::EntryNormal => None,
        EntryType::EntryConfChange => {
            let mut cc = ConfChange::default();
            Some(
                protobuf::Message::merge_from_bytes(&mut cc, &entry.data)
                    // raft-rs's own `into_v2` (its trait is not exported): one change.
                    .map(|()| conf_change_v2(&[(cc.get_change_type(), cc.node_id)], &cc.context))
                    .map_err(|e| e.to_string()),
            )
        }
        EntryType::EntryConfChangeV2 => {
            let mut cc = ConfChangeV2::default();
            Some(
                protobuf::Message::merge_from_bytes(&mut cc, &entry.data)
                    .map(|()| cc)
                    .map_err(|e| e.to_string()),
            )
        }
    }
}

impl ShardReplica {
    /// `now_ms` is the wall clock, used only for block timestamps (never in state).
    pub fn apply_committed(&mut self, entries: Vec<Entry>, now_ms: u64) {
        self.now_ms = now_ms;
        self.apply_queue.extend(entries);
        self.snapshot_wanted = false;
        while let Some(entry) = self.apply_queue.front() {
            match self.marker_wait(entry) {
                MarkerWait::Ready => {}
                MarkerWait::Receipts => break,
                MarkerWait::Gap => {
                    self.snapshot_wanted = true;
                    break;
                }
            }
            let entry = self.apply_queue.pop_front().expect("front exists");
            self.apply_entry(&entry);
        }
        for d in 0..self.state.shard_count() {
            self.queue_new_receipts(d);
        }
        self.note_leader();
    }

    /// Tells raft how far apply got (call after each Ready cycle); while apply waits at a
    /// marker, membership changes behind it apply to raft ahead (`apply_membership_ahead`).
    pub fn advance_apply(&mut self) {
        // raft-rs takes an applied index only up to what is committed and durable here: a
        // snapshot restored from the leader is applied before it is durable (told once it is).
        let log = &self.node.raft.raft_log;
        let applied = self
            .state
            .applied_index()
            .min(log.committed.min(log.persisted));
        if applied > log.applied {
            self.node.advance_apply_to(applied);
        }
        self.apply_membership_ahead();
    }

    /// Whether a committed entry can apply now: a marker needs every receipt it credits.
    pub(super) fn marker_wait(&self, entry: &Entry) -> MarkerWait {
        if entry.get_entry_type() != EntryType::EntryNormal
            || entry.data.is_empty()
            || entry.context.first() != Some(&ENTRY_KIND_MARKERS)
        {
            return MarkerWait::Ready;
        }
        let Some(markers) = parse_markers(&entry.data) else {
            return MarkerWait::Ready;
        };
        let mut wait = MarkerWait::Ready;
        for (source, up_to) in markers {
            if source == self.config.shard || source >= self.state.shard_count() {
                continue;
            }
            let watermark = self.state.inbound_watermark(source);
            if up_to <= watermark {
                continue;
            }
            let inbox = &self.inboxes[source as usize];
            if inbox.gap_through > watermark {
                // The source forgot receipts in (watermark, gap_through] before we saw them:
                // crediting up to `up_to` here would skip them. Never skip: stall.
                return MarkerWait::Gap;
            }
            if inbox.progress < up_to {
                if inbox.source_left {
                    // This validator left the source's group: its replica there applies
                    // nothing more. Waiting would stall for ever (a leader with it).
                    return MarkerWait::Gap;
                }
                wait = MarkerWait::Receipts;
            }
        }
        wait
    }

    pub(super) fn apply_entry(&mut self, entry: &Entry) {
        self.apply_entry_inner(entry);
        self.applied_bytes += entry.data.len() as u64;
        // Proposals of ours at or below this index that did not apply are lost: their clients
        // must retry (resubmitting is harmless).
        while let Some((&i, _)) = self.proposals.first_key_value() {
            if i > entry.index {
                break;
            }
            let (_, lost) = self.proposals.pop_first().expect("non-empty");
            for (ticket, slot, _) in lost.slots {
                self.fail_slot(ticket, slot);
            }
        }
    }

    pub(super) fn apply_entry_inner(&mut self, entry: &Entry) {
        let index = entry.index;
        match entry.get_entry_type() {
            EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => {
                let change = decode_membership(entry).expect("a membership entry");
                self.apply_membership(index, change);
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
                        if self.config.tap_applied {
                            let balances = if self.config.tap_balances {
                                self.balances_after(records, &results)
                            } else {
                                Vec::new()
                            };
                            self.tap(index, entry.data.clone(), results.clone(), balances);
                        }
                        hashes.clear();
                        match &slots {
                            // Our own proposal: hashed at admission.
                            Some(slots) => hashes.extend(slots.iter().map(|&(_, _, h)| h)),
                            None => hashes.extend(records.iter().map(Record::tx_hash)),
                        }
                        debug_assert!(hashes.iter().zip(records).all(|(h, r)| *h == r.tx_hash()));
                        for (i, &tx_hash) in hashes.iter().enumerate() {
                            if let Some(ahead) = hashes.get(i + DECISION_PREFETCH_DISTANCE) {
                                self.state.prefetch_decision(ahead);
                            }
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
                            for (i, (ticket, slot, _)) in slots.into_iter().enumerate() {
                                let outcome = Outcome {
                                    tx_hash: hashes[i],
                                    result: results[i],
                                    shard: self.config.shard,
                                    block: index,
                                };
                                self.resolve(ticket, slot, outcome);
                            }
                        }
                        self.push_transfers_block(entry, &hashes);
                        self.results = results;
                        self.hashes = hashes;
                    }
                    Err(error) => {
                        // Only a faulty proposer can commit this; every replica skips it alike.
                        tracing::warn!(shard = self.config.shard, index, %error, "malformed batch entry skipped");
                        if let Some(slots) = slots {
                            for (ticket, slot, _) in slots {
                                self.fail_slot(ticket, slot);
                            }
                        }
                        self.state.set_applied_index(index);
                    }
                }
            }
            ENTRY_KIND_MARKERS => {
                let mut credited = Vec::new();
                for (source, up_to) in parse_markers(&entry.data).unwrap_or_default() {
                    if source == self.config.shard || source >= self.state.shard_count() {
                        continue;
                    }
                    let inbox = &mut self.inboxes[source as usize];
                    if self.config.tap_applied && self.config.tap_balances {
                        // The accounts the marker credits (those above the watermark).
                        let watermark = self.state.inbound_watermark(source);
                        credited.extend(
                            inbox
                                .receipts
                                .iter()
                                .filter(|r| r.source_index > watermark && r.source_index <= up_to)
                                .map(|r| (r.to, r.asset)),
                        );
                    }
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
                self.push_block(entry);
                if !credited.is_empty() {
                    let balances = credited
                        .into_iter()
                        .map(|(address, asset)| self.balance_of(address, asset))
                        .collect();
                    self.tap(index, bytes::Bytes::new(), Vec::new(), balances);
                }
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

    /// The balances a transfer batch changed (each accepted transfer's sender, and its
    /// receiver when this shard holds it; another shard credits it through a receipt), after
    /// the batch applied, once per account and asset.
    fn balances_after(&self, records: &[Record], results: &[ResultCode]) -> Vec<AccountBalance> {
        let shard_count = self.state.shard_count();
        let mut changed = Vec::with_capacity(records.len() * 2);
        for (record, result) in records.iter().zip(results) {
            if *result != ResultCode::Ok {
                continue;
            }
            changed.push((record.from(), record.asset()));
            if shard_of(&record.to(), shard_count) == self.config.shard {
                changed.push((record.to(), record.asset()));
            }
        }
        changed.sort_unstable_by_key(|(address, asset)| (address.0, *asset));
        changed.dedup();
        changed
            .into_iter()
            .map(|(address, asset)| self.balance_of(address, asset))
            .collect()
    }

    fn balance_of(&self, address: Address, asset: u32) -> AccountBalance {
        let balance = self
            .state
            .account(&address)
            .map_or(0, |account| account.balance(asset));
        AccountBalance {
            address,
            asset,
            balance,
        }
    }

    pub(super) fn resolve(&mut self, ticket_id: u64, slot: u32, outcome: Outcome) {
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
    pub(super) fn fail_slot(&mut self, ticket_id: u64, _slot: u32) {
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
}
