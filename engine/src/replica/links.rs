//! What crosses shards and validators: receipts in and out, credit pruning, membership
//! changes, progress announcements, leadership bookkeeping.

use super::apply::decode_membership;
use super::*;
use crate::ledger::{PEER_ADDRESSES_MAX, PEER_ADDRESS_BYTES_MAX};

/// A raft-rs `ConfChangeV2` of `changes`, with `context` (an added validator's peer
/// address). Several changes go through joint consensus, left automatically; none is the
/// leave of a joint configuration.
pub(crate) fn conf_change_v2(changes: &[(ConfChangeType, u64)], context: &[u8]) -> ConfChangeV2 {
    let mut cc = ConfChangeV2::default();
    for &(change_type, node_id) in changes {
        let mut single = ConfChangeSingle::default();
        single.set_change_type(change_type);
        single.node_id = node_id;
        cc.mut_changes().push(single);
    }
    cc.set_transition(ConfChangeTransition::Auto);
    cc.context = context.to_vec().into();
    cc
}

impl ShardReplica {
    /// Receipts shipped by another shard's replica on this validator.
    /// Returns the delivery's receipt buffer, emptied: the edge frees it where it was
    /// allocated (the source shard's core).
    pub fn receive_receipts(&mut self, mut delivery: ReceiptDelivery) -> Vec<Receipt> {
        assert_eq!(delivery.destination, self.config.shard);
        let watermark = self.state.inbound_watermark(delivery.source);
        let inbox = &mut self.inboxes[delivery.source as usize];
        let floor = inbox.progress.max(watermark);
        if delivery.pruned_through > floor {
            // Receipts in (floor, pruned_through] were forgotten before this replica saw them
            // (its validator was not in the source's group then): remember the hole, so that
            // no marker credits across it (`marker_wait`).
            inbox.gap_through = inbox.gap_through.max(delivery.pruned_through);
        }
        for receipt in delivery.receipts.drain(..) {
            if receipt.source_index > floor {
                inbox.receipts.push_back(receipt);
            }
        }
        inbox.progress = inbox.progress.max(delivery.up_to);
        inbox.source_left = delivery.source_left;
        delivery.receipts
    }

    /// The destination durably credited receipts up to `up_to`: forget them.
    pub fn receipts_credited(&mut self, destination: ShardId, up_to: u64) {
        let before = self.state.outbox(destination).len();
        self.state.prune_outbox(destination, up_to);
        let pruned = before - self.state.outbox(destination).len();
        self.delivered_len[destination as usize] -= pruned;
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
        let adds = |change| {
            matches!(
                change,
                ConfChangeType::AddNode | ConfChangeType::AddLearnerNode
            )
        };
        if changes
            .iter()
            .any(|&(change, id)| adds(change) && self.state.node_removed(id))
        {
            return Err(SubmitError::Membership {
                shard,
                reason: "that node id was removed from this group and is never added again \
                         (its old incarnation's messages may still be in flight): start the \
                         validator with a new node id",
            });
        }
        // Every node id the change names is remembered (its address, or that it was removed).
        let book = self.state.peer_addresses();
        let mut new_ids: Vec<u64> = changes
            .iter()
            .map(|&(_, id)| id)
            .filter(|id| !book.contains_key(id))
            .collect();
        new_ids.sort_unstable();
        new_ids.dedup();
        if book.len() + new_ids.len() > PEER_ADDRESSES_MAX
            || peer_addr.len() > PEER_ADDRESS_BYTES_MAX
        {
            return Err(SubmitError::Membership {
                shard,
                reason: "the group's record of node ids is full, or the peer address is too \
                         long (docs/operations.md names both bounds)",
            });
        }
        let cc = conf_change_v2(changes, peer_addr);
        // raft-rs does not refuse a conf change it will not take: it appends an empty entry in
        // its place, which applies like any other. Refuse here what it would refuse, so that
        // the operator hears it instead of a false "applied".
        if self.node.raft.has_pending_conf() {
            return Err(SubmitError::Membership {
                shard,
                reason: "an earlier membership change, or the entries of a just-elected leader, \
                         are not applied yet; retry shortly",
            });
        }
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
        // What raft appended: the change, or the empty entry of a refusal (joint-state rules).
        let appended = self
            .node
            .raft
            .raft_log
            .entries(index, None, raft::GetEntriesContext::empty(false))
            .ok()
            .and_then(|entries| entries.first().map(Entry::get_entry_type));
        if appended != Some(EntryType::EntryConfChangeV2) {
            return Err(SubmitError::Membership {
                shard,
                reason: "raft refused the change: a joint configuration must be left first \
                         (see the node log)",
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

    /// Applies a committed membership change: raft's configuration, the peer address book
    /// (an added validator's address travels in the change's context) and an event for the
    /// edge. A change raft cannot apply stops this replica (see [`ReplicaError::Membership`]).
    /// Applies the committed membership change at `index`, in log order with the ledger: the
    /// group's record of addresses and removed ids (ledger state), and raft's configuration
    /// unless [`ShardReplica::apply_membership_ahead`] already changed it.
    pub(super) fn apply_membership(&mut self, index: u64, change: Result<ConfChangeV2, String>) {
        let configured =
            index <= self.membership_ahead_to || self.change_configuration(index, &change);
        if let (true, Ok(cc)) = (configured, &change) {
            self.record_membership(cc);
        }
        self.state.set_applied_index(index);
    }

    /// raft's side of a committed membership change: its configuration (what it counts votes
    /// and acknowledgements with). `false` when raft-rs cannot apply it: the replica stops.
    fn change_configuration(&mut self, index: u64, change: &Result<ConfChangeV2, String>) -> bool {
        let applied = change
            .clone()
            .and_then(|cc| self.node.apply_conf_change(&cc).map_err(|e| e.to_string()));
        match applied {
            Ok(cs) => {
                self.node.mut_store().mem.wl().set_conf_state(cs);
                self.membership_changed = true;
                self.step_down_if_removed();
                true
            }
            Err(message) => {
                tracing::error!(shard = self.config.shard, index, %message, "membership change cannot be applied: replica stops");
                self.fatal.get_or_insert(ReplicaError::Membership {
                    shard: self.config.shard,
                    index,
                    message,
                });
                false
            }
        }
    }

    /// Apply waits at a marker, and committed membership changes wait behind it: raft-rs
    /// refuses to campaign while a committed change is unapplied, so a replica holding the
    /// group's longest log could never campaign, nor vote for a shorter log, while its
    /// receipts do not come — with a voter down no one could be elected (seed 917863). raft's
    /// configuration depends on the log alone, never on the ledger: apply those changes to
    /// raft now, in log order, and report raft's applied index up to the last of them (raft-rs
    /// reads its applied index only to find unapplied changes, to leave a joint configuration
    /// and in its checks before a change is proposed). The ledger's part (addresses, removed
    /// ids) still applies in order with the entry. While raft's configuration is ahead of the
    /// ledger no snapshot is made (it would pair the state with a later configuration); after
    /// a restart raft starts again from the snapshot's configuration and the ledger's applied
    /// index, and the changes are applied again, ahead or in order.
    pub(super) fn apply_membership_ahead(&mut self) {
        let log = &self.node.raft.raft_log;
        if self.apply_queue.is_empty() || log.unstable_snapshot().is_some() {
            return;
        }
        // raft-rs's bound on its applied index.
        let limit = log.committed.min(log.persisted);
        let ahead: Vec<(u64, Result<ConfChangeV2, String>)> = self
            .apply_queue
            .iter()
            .filter(|e| e.index > self.membership_ahead_to && e.index <= limit)
            .filter_map(|e| decode_membership(e).map(|change| (e.index, change)))
            .collect();
        for (index, change) in ahead {
            if !self.change_configuration(index, &change) {
                return;
            }
            tracing::info!(
                shard = self.config.shard,
                index,
                applied = self.state.applied_index(),
                "membership change applied to raft ahead of a marker that waits"
            );
            self.membership_ahead_to = index;
        }
        if self.membership_ahead_to > self.node.raft.raft_log.applied {
            self.node.advance_apply_to(self.membership_ahead_to);
        }
    }

    /// Whether raft's configuration is ahead of the ledger's applied index (see
    /// [`ShardReplica::apply_membership_ahead`]): no snapshot pairs the two now.
    pub fn membership_ahead(&self) -> bool {
        self.membership_ahead_to > self.state.applied_index()
    }

    /// raft-rs answers a (pre-)vote it refuses with its commit index, and a candidate that
    /// learns from it of committed entries commits them, and stops campaigning if they hold
    /// a membership change (`maybe_commit_by_vote`): that is how a candidate still in a joint
    /// configuration hears that the group left it. But raft drops the refusal unread when it
    /// carries an older term than the candidate's. A validator removed from the group keeps
    /// an old term — it hears of no election (pre-votes do not move terms) — while it may be
    /// the one that knows the leave committed: with a voter down, a candidate under the joint
    /// configuration then needs the removed validator's vote, which it refuses to a shorter
    /// log, and nobody is ever elected. A commit index and its entry's term are facts that do
    /// not go stale (log matching: an entry of that term at that index here means the same
    /// prefix, which is committed), so a candidate takes them from a refusal of any term,
    /// exactly as raft would from a current one.
    pub(super) fn learn_commit_from_stale_refusal(&mut self, message: &Message) {
        let refusal = matches!(
            message.get_msg_type(),
            MessageType::MsgRequestVoteResponse | MessageType::MsgRequestPreVoteResponse
        ) && message.reject;
        let raft = &mut self.node.raft;
        let candidate = matches!(raft.state, StateRole::Candidate | StateRole::PreCandidate);
        if !refusal || !candidate || message.term >= raft.term || message.commit_term == 0 {
            return;
        }
        let committed_before = raft.raft_log.committed;
        if !raft
            .raft_log
            .maybe_commit(message.commit, message.commit_term)
        {
            return;
        }
        let committed = raft.raft_log.committed;
        tracing::info!(
            shard = self.config.shard,
            from = message.from,
            committed,
            "commit index learnt from a refused vote of an older term"
        );
        let entries = raft
            .raft_log
            .slice(
                committed_before + 1,
                committed + 1,
                None,
                GetEntriesContext::empty(false),
            )
            .expect("committed entries are in the log");
        // As raft does: a candidate that learns of committed membership changes stops
        // campaigning until it has applied them, and campaigns under the new configuration.
        if entries
            .iter()
            .any(|entry| entry.get_entry_type() != EntryType::EntryNormal)
        {
            let term = raft.term;
            raft.become_follower(term, raft::INVALID_ID);
        }
    }

    /// raft-rs 0.7 leaves a leader that applied its own removal in the leader state (its
    /// `post_conf_change` has a "TODO: step down") with its own progress gone: it would go on
    /// leading a group it is not in and panic at the next append response. A leader that is
    /// no voter of the configuration it applied (neither incoming nor outgoing) steps down
    /// here; the remaining voters elect a leader within the election timeout. (Asked to
    /// remove itself, a leader hands over first — `ShardNode::change_membership` — but
    /// leadership can move between a removal's proposal and its apply.)
    fn step_down_if_removed(&mut self) {
        let me = self.config.node_id;
        let raft = &mut self.node.raft;
        if raft.state == StateRole::Leader && !raft.prs().conf().voters().contains(me) {
            tracing::info!(
                shard = self.config.shard,
                "this leader applied its own removal: stepping down"
            );
            let term = raft.term;
            raft.become_follower(term, raft::INVALID_ID);
        }
    }

    /// The ledger's record of a membership change: the address an added validator came with,
    /// the ids removed (never added again).
    fn record_membership(&mut self, cc: &ConfChangeV2) {
        for change in cc.get_changes() {
            let node_id = change.node_id;
            match change.get_change_type() {
                ConfChangeType::AddNode | ConfChangeType::AddLearnerNode => {
                    // A promotion may come without an address: keep the one the validator
                    // joined with.
                    if !cc.context.is_empty() {
                        self.state.set_peer_address(node_id, cc.context.to_vec());
                    }
                }
                ConfChangeType::RemoveNode => self.state.mark_node_removed(node_id),
            }
        }
        self.membership_changed = true;
    }

    /// Whether the configuration changed (a membership change applied, or a snapshot was
    /// installed) since the last call: the edge reconciles its links then.
    pub fn take_membership_changed(&mut self) -> bool {
        std::mem::take(&mut self.membership_changed)
    }

    /// Every other validator this replica must reach: all ids of its configuration —
    /// incoming and outgoing voters (a removed voter still counts while the joint
    /// configuration lasts) and learners — with the address the log gave each, if any
    /// (founding validators have theirs from the command line).
    pub fn peers_to_link(&self) -> Vec<(u64, Vec<u8>)> {
        let conf = self.node.raft.prs().conf().to_conf_state();
        let mut ids: Vec<u64> = conf
            .get_voters()
            .iter()
            .chain(conf.get_voters_outgoing())
            .chain(conf.get_learners())
            .chain(conf.get_learners_next())
            .copied()
            .filter(|&id| id != self.config.node_id)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids.into_iter()
            .map(|id| (id, self.state.peer_address(id).unwrap_or_default().to_vec()))
            .collect()
    }

    /// Whether this replica applied a configuration without this validator (it was removed
    /// from the group): it learns of no further entries. A joiner that has no configuration
    /// yet has not left.
    pub fn left_group(&self) -> bool {
        let conf = self.node.raft.prs().conf().to_conf_state();
        let me = self.config.node_id;
        let members = || {
            conf.voters
                .iter()
                .chain(&conf.voters_outgoing)
                .chain(&conf.learners)
                .chain(&conf.learners_next)
        };
        members().next().is_some() && !members().any(|&id| id == me)
    }

    /// Whether this replica left its group and has applied everything it will: a replica
    /// whose apply waits at a marker may have applied its removal to raft ahead of entries it
    /// has yet to apply (`apply_membership_ahead`), which still produce receipts.
    fn left_for_good(&self) -> bool {
        self.left_group() && self.apply_queue.is_empty()
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
        let source_left = self.left_for_good();
        for d in 0..self.state.shard_count() {
            if d == self.config.shard || self.delivered_up_to[d as usize] >= applied {
                continue;
            }
            self.delivered_up_to[d as usize] = applied;
            self.deliveries.push(ReceiptDelivery {
                source: self.config.shard,
                destination: d,
                up_to: applied,
                pruned_through: self.state.outbox_pruned_through(d),
                source_left,
                receipts: Vec::new(),
            });
        }
    }

    pub(super) fn queue_new_receipts(&mut self, destination: ShardId) {
        if destination == self.config.shard {
            return;
        }
        let outbox = self.state.outbox(destination);
        let already = self.delivered_len[destination as usize];
        if outbox.len() == already {
            return;
        }
        let receipts: Vec<Receipt> = outbox.iter_from(already).copied().collect();
        self.delivered_len[destination as usize] = outbox.len();
        self.delivered_up_to[destination as usize] = self.state.applied_index();
        self.deliveries.push(ReceiptDelivery {
            source: self.config.shard,
            destination,
            up_to: self.state.applied_index(),
            pruned_through: self.state.outbox_pruned_through(destination),
            source_left: self.left_for_good(),
            receipts,
        });
    }

    pub(super) fn note_leader(&mut self) {
        let leader = self.node.raft.leader_id;
        let term = self.node.raft.term;
        // A new term of leadership, even by the same validator (a newly elected leader's commit
        // index can be behind ours); a change of leader counts only when the validator
        // differs.
        if leader != 0 && (leader, term) != self.last_leadership {
            if leader != self.last_leadership.0 {
                self.leader_changes += 1;
            }
            self.last_leadership = (leader, term);
            if leader != self.config.node_id {
                // Markers proposed as leader may be lost; the next leader re-proposes.
                for inbox in &mut self.inboxes {
                    inbox.proposed_up_to = 0;
                }
                // raft-rs keeps a follower's snapshot request across a change of leader, and
                // the follower then refuses every append. A new leader may not have committed
                // as far as the request (its commit index can lag a follower's) and may need
                // this follower's acknowledgement to get there: both would wait for ever
                // (seed 702359). Take appends from the new leader; a replica that still needs
                // a snapshot asks again once its whole log is committed.
                self.node.raft.pending_request_snapshot = raft::INVALID_INDEX;
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
        self.builder.clear();
        self.building.clear();
        self.built.clear();
    }
}
