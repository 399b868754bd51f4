//! The invariants, checked after every step (and at the end of a run).

use super::{Cluster, Violation};
use crate::ledger::ShardState;
use crate::result::ResultCode;
use crate::shard::ShardId;
use raft::Storage;
use xxhash_rust::xxh3::xxh3_128;

pub(super) fn entry_hash(e: &raft::eraftpb::Entry) -> u128 {
    let mut bytes = Vec::with_capacity(e.data.len() + e.context.len() + 8);
    bytes.extend_from_slice(&(e.get_entry_type() as u32).to_le_bytes());
    bytes.extend_from_slice(&e.context);
    bytes.extend_from_slice(&e.data);
    xxh3_128(&bytes)
}

impl Cluster {
    /// Whether the operator is done and every member of every group (as its leader sees it)
    /// has applied all that any of them committed, with nothing in flight.
    pub(super) fn caught_up(&self) -> bool {
        if !self.settled() {
            return false;
        }
        for s in 0..self.config.shards as usize {
            let Some(members) = self.members(s) else {
                return false;
            };
            let max_commit = self
                .validators
                .iter()
                .map(|v| {
                    v.shards[s]
                        .node
                        .as_ref()
                        .map_or(0, |n| n.replica().commit_index())
                })
                .max()
                .unwrap_or(0);
            for id in members {
                let Some(v) = self.index_of(id) else {
                    return false;
                };
                let slot = &self.validators[v].shards[s];
                let Some(r) = slot.node.as_ref().map(|n| n.replica()) else {
                    return false;
                };
                if r.state().applied_index() < max_commit
                    || slot.node.as_ref().is_some_and(|n| n.is_persisting())
                {
                    return false;
                }
            }
        }
        self.net.is_empty()
    }

    /// Invariants after every step.
    pub(super) fn check(&mut self) -> Result<(), Violation> {
        for v in 0..self.validators.len() {
            if !self.validators[v].up {
                continue;
            }
            for s in 0..self.config.shards as usize {
                // Committed prefixes agree: same term and data at each index.
                let slot = &self.validators[v].shards[s];
                let replica = slot.node.as_ref().expect("up").replica();
                let store = replica.raw_node().store();
                let commit = replica.commit_index();
                let first = store.first_index().expect("infallible");
                let last = store.last_index().expect("infallible");
                let from = (slot.checked + 1).max(first);
                let to = commit.min(last);
                if from <= to {
                    let entries = store
                        .entries(from, to + 1, None, raft::GetEntriesContext::empty(false))
                        .map_err(|e| {
                            self.violation(format!("committed entries unreadable: {e}"))
                        })?;
                    for e in &entries {
                        let seen = (e.term, entry_hash(e));
                        match self.committed[s].get(&e.index) {
                            Some(known) if *known != seen => {
                                return Err(self.violation(format!(
                                    "committed prefixes disagree: shard {s} index {} on validator {}: term {} vs {}",
                                    e.index,
                                    v + 1,
                                    seen.0,
                                    known.0
                                )));
                            }
                            Some(_) => {}
                            None => {
                                self.committed[s].insert(e.index, seen);
                            }
                        }
                    }
                }
                let checked = to.max(slot.checked);
                // The operator never takes a group below 3 voters (old and new configuration
                // of a joint one alike), as every leader applied it. (A joiner holds the
                // configuration it started with until the leader's snapshot or log reaches
                // it, which is not the group's.)
                if replica.is_leader() {
                    let cs = replica.raw_node().raft.prs().conf().to_conf_state();
                    if cs.voters.len() < 3
                        || (!cs.voters_outgoing.is_empty() && cs.voters_outgoing.len() < 3)
                    {
                        return Err(self.violation(format!(
                            "shard {s}: validator {} applied a configuration with fewer than 3 voters: {cs:?}",
                            v + 1
                        )));
                    }
                }
                // Replicas at the same applied index have equal state hashes.
                let state = replica.state();
                let (applied, hash) = (state.applied_index(), state.state_hash());
                match self.hashes[s].get(&applied) {
                    Some(&known) if known != hash => {
                        return Err(self.violation(format!(
                            "state hashes differ: shard {s} applied {applied} on validator {}",
                            v + 1
                        )));
                    }
                    Some(_) => {}
                    None => {
                        self.hashes[s].insert(applied, hash);
                    }
                }
                self.validators[v].shards[s].checked = checked;
            }
            self.check_supply(v)?;
        }
        self.resolve_acked()?;
        // Acknowledged transfers are in the committed log at the index they were acked with.
        for a in &self.acked {
            let Some(entry) = a.entry else { continue };
            if let Some(known) = self.committed[a.shard as usize].get(&a.block) {
                if *known != entry {
                    return Err(self.violation(format!(
                        "acknowledged transfer lost: shard {} index {} holds another entry",
                        a.shard, a.block
                    )));
                }
            }
        }
        if self.now.is_multiple_of(100) {
            self.check_acked_applied()?;
        }
        Ok(())
    }

    /// Finds the committed entry of each acknowledged transfer not yet seen (a forwarded
    /// submission is answered by a follower whose log may still lag): the first replica that
    /// has committed that index must hold the transfer there.
    fn resolve_acked(&mut self) -> Result<(), Violation> {
        for i in 0..self.acked.len() {
            if self.acked[i].entry.is_some() {
                continue;
            }
            let (shard, block, tx_hash) = {
                let a = &self.acked[i];
                (a.shard as usize, a.block, a.tx_hash)
            };
            for validator in &self.validators {
                let Some(replica) = validator.shards[shard].node.as_ref().map(|n| n.replica())
                else {
                    continue;
                };
                let store = replica.raw_node().store();
                let first = store.first_index().expect("infallible");
                // Committed and durable here (a committed entry may still wait in raft's
                // unstable log while this replica's writes are in flight).
                let log = &replica.raw_node().raft.raft_log;
                if log.committed.min(log.persisted) < block || block < first {
                    continue;
                }
                let entries = store
                    .entries(
                        block,
                        block + 1,
                        None,
                        raft::GetEntriesContext::empty(false),
                    )
                    .map_err(|e| self.violation(format!("acked entry unreadable: {e}")))?;
                let entry = &entries[0];
                let holds = crate::decode_batch(&entry.data)
                    .map(|b| b.records().iter().any(|r| r.tx_hash() == tx_hash))
                    .unwrap_or(false);
                if !holds {
                    return Err(self.violation(format!(
                        "acked transfer not in its entry {block} on shard {shard}"
                    )));
                }
                self.acked[i].entry = Some((entry.term, entry_hash(entry)));
                break;
            }
        }
        Ok(())
    }

    /// Every acknowledged OK transfer consumed its nonce on every replica that applied it.
    fn check_acked_applied(&self) -> Result<(), Violation> {
        for a in &self.acked {
            if a.result != ResultCode::Ok {
                continue;
            }
            for (v, validator) in self.validators.iter().enumerate() {
                let Some(r) = validator.shards[a.shard as usize]
                    .node
                    .as_ref()
                    .map(|n| n.replica())
                else {
                    continue;
                };
                if r.state().applied_index() < a.block {
                    continue;
                }
                let consumed = r
                    .state()
                    .account(&a.from)
                    .is_some_and(|acc| acc.check_nonce(a.nonce).is_err());
                if !consumed {
                    return Err(self.violation(format!(
                        "acknowledged transfer (nonce {}) missing from validator {}'s shard {} at applied {}",
                        a.nonce,
                        v + 1,
                        a.shard,
                        r.state().applied_index()
                    )));
                }
            }
        }
        Ok(())
    }

    /// Supply per asset on one validator: balances plus receipts in flight. Checked when the
    /// validator's shards form a consistent cut: no destination credited beyond what its
    /// source here has applied (a snapshot from another validator can briefly break that),
    /// and no source here has forgotten receipts its destination here has not credited (a
    /// validator that was not in the source's group when they were pruned: the other
    /// validators hold them, and the destination stalls until a snapshot credits past them —
    /// crediting across the hole would make the cut consistent again and show the shortfall).
    fn check_supply(&self, v: usize) -> Result<(), Violation> {
        let shards = &self.validators[v].shards;
        let states: Vec<&ShardState> = shards
            .iter()
            .map(|slot| slot.node.as_ref().expect("up").replica().state())
            .collect();
        for d in 0..states.len() {
            for s in 0..states.len() {
                if s != d && states[d].inbound_watermark(s as ShardId) > states[s].applied_index() {
                    return Ok(());
                }
                if s != d
                    && states[s].outbox_pruned_through(d as ShardId)
                        > states[d].inbound_watermark(s as ShardId)
                {
                    return Ok(());
                }
            }
        }
        // A joiner whose first snapshot arrived on one shard and not yet on another: the source's
        // outbox is pruned by watermarks its genesis destination does not have yet.
        if states.iter().any(|st| st.applied_index() == 0)
            && states.iter().any(|st| st.applied_index() > 0)
        {
            return Ok(());
        }
        for (&asset, &amount) in &self.supply {
            let mut total = 0u128;
            for (s, state) in states.iter().enumerate() {
                total += state.supply_held(asset);
                total += state.supply_in_flight(asset, |d| {
                    states[d as usize].inbound_watermark(s as ShardId)
                });
            }
            if total != amount as u128 {
                let cut: Vec<String> = states
                    .iter()
                    .enumerate()
                    .map(|(s, st)| {
                        let marks: Vec<(u64, u64)> = (0..states.len() as ShardId)
                            .map(|o| (st.inbound_watermark(o), st.outbox_pruned_through(o)))
                            .collect();
                        format!(
                            "shard {s}: applied {} (inbound watermark, outbox pruned through) per shard {marks:?}, outbox lengths {:?}",
                            st.applied_index(),
                            (0..states.len() as ShardId)
                                .map(|o| st.outbox(o).len())
                                .collect::<Vec<_>>()
                        )
                    })
                    .collect();
                return Err(self.violation(format!(
                    "supply of asset {asset} on validator {} is {total}, genesis says {amount} (started with voters {:?}); {}",
                    v + 1,
                    self.validators[v].initial_voters,
                    cut.join("; ")
                )));
            }
        }
        Ok(())
    }

    /// At the end every member of a group has the same applied index and state hash.
    pub(super) fn check_final(&self) -> Result<(), Violation> {
        self.check_acked_applied()?;
        for s in 0..self.config.shards as usize {
            let members = self.members(s).unwrap_or_default();
            let hashes: Vec<(u64, u64, u128)> = members
                .iter()
                .map(|&id| {
                    let v = self.index_of(id).expect("members are validators");
                    let st = self.validators[v].shards[s]
                        .node
                        .as_ref()
                        .expect("up")
                        .replica()
                        .state();
                    (id, st.applied_index(), st.state_hash())
                })
                .collect();
            if hashes.len() < 3
                || hashes
                    .iter()
                    .any(|h| (h.1, h.2) != (hashes[0].1, hashes[0].2))
            {
                return Err(
                    self.violation(format!("shard {s}: members differ at the end: {hashes:?}"))
                );
            }
        }
        Ok(())
    }
}

impl Cluster {
    /// One line per replica of shard `s` (for violation reports).
    pub(super) fn describe(&self, s: usize) -> String {
        let mut out = format!("network: {} in flight; ", self.net.len());
        for (v, validator) in self.validators.iter().enumerate() {
            let Some(node) = &validator.shards[s].node else {
                out.push_str(&format!(
                    "[node {} (validator {}): down{}] ",
                    validator.node_id,
                    v + 1,
                    if validator.broken { ", broken" } else { "" }
                ));
                continue;
            };
            let st = node.status();
            let raft = &node.replica().raw_node().raft;
            out.push_str(&format!(
                "[node {} (validator {}): {} term {} vote {} elapsed {}/{} transferee {:?} persisting {} queued {} leader {:?} commit {} applied {} last {} pending {} blocked {} voters {:?}/{:?} learners {:?}] ",
                validator.node_id,
                v + 1,
                st.role,
                st.term,
                raft.vote,
                raft.election_elapsed,
                raft.randomized_election_timeout(),
                raft.lead_transferee,
                node.is_persisting(),
                node.queued_messages(),
                st.leader_id,
                st.commit_index,
                st.applied_index,
                st.last_index,
                st.pending_records,
                node.replica().apply_blocked(),
                raft.prs().conf().to_conf_state().voters,
                raft.prs().conf().to_conf_state().voters_outgoing,
                raft.prs().conf().to_conf_state().learners
            ));
            if node.replica().is_leader() {
                let mut progress: Vec<String> = raft
                    .prs()
                    .iter()
                    .map(|(id, pr)| {
                        format!(
                            "{id}:{:?} match {} next {} paused {} pending_snapshot {} active {}",
                            pr.state,
                            pr.matched,
                            pr.next_idx,
                            pr.is_paused(),
                            pr.pending_snapshot,
                            pr.recent_active
                        )
                    })
                    .collect();
                progress.sort();
                out.push_str(&format!("(progress {progress:?}) "));
            }
            if node.replica().apply_blocked() {
                // The marker it waits at: (source shard, up to), and who proposed it.
                let next = st.applied_index + 1;
                let waits = raft
                    .raft_log
                    .slice(next, next + 1, None, raft::GetEntriesContext::empty(false))
                    .ok()
                    .and_then(|e| e.first().cloned())
                    .map(|e| {
                        let (_, proposer, _) = crate::replica::parse_context(&e.context);
                        (proposer, crate::replica::parse_markers(&e.data))
                    });
                out.push_str(&format!("(waits at {next}: {waits:?}) "));
            }
        }
        out
    }
}
