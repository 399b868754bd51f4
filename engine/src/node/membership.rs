//! Membership and leadership: changes proposed on the leader and answered once applied, the
//! links that follow the group's membership, and leaders spread over the validators.

use super::{Answer, Effects, Now, ShardNode, SubmitFailure};
use crate::replica::{MembershipEvent, SubmitError};
use raft::eraftpb::ConfChangeType;

impl<R> ShardNode<R> {
    /// Proposes a membership change (on the leader); `reply` hears the log index once it
    /// applied here, or why not.
    pub fn change_membership<E: Effects<Reply = R>>(
        &mut self,
        io: &mut E,
        changes: &[(ConfChangeType, u64)],
        peer_addr: &[u8],
        reply: R,
    ) {
        let shard = self.replica.shard();
        if self.membership.is_some() {
            let failure = SubmitFailure::Rejected(SubmitError::Membership {
                shard,
                reason: "another membership change is in progress",
            });
            io.reply(reply, Answer::Membership(Err(failure)));
            return;
        }
        match self.replica.propose_membership(changes, peer_addr) {
            Ok(index) => self.membership = Some((index, reply)),
            Err(error) => io.reply(reply, Answer::Membership(Err(error.into()))),
        }
    }

    /// Applies membership changes to the links and answers a proposed change once it applied
    /// (or failed: leadership lost before it applied).
    pub(super) fn settle_membership<E: Effects<Reply = R>>(&mut self, io: &mut E) {
        for event in self.replica.take_membership_events() {
            match event {
                MembershipEvent::Joined { node_id, peer_addr } => {
                    if node_id != self.config.node_id && self.config.replicated {
                        io.link(node_id, &peer_addr);
                    }
                }
                MembershipEvent::Left { node_id } => {
                    if node_id != self.config.node_id && self.config.replicated {
                        io.unlink(node_id);
                    }
                }
            }
        }
        let Some(&(index, _)) = self.membership.as_ref() else {
            return;
        };
        let answer = if self.replica.state().applied_index() >= index {
            Ok(index)
        } else if !self.replica.is_leader() {
            Err(SubmitFailure::Retry(self.replica.shard()))
        } else {
            return;
        };
        let (_, reply) = self.membership.take().expect("checked");
        io.reply(reply, Answer::Membership(answer));
    }

    /// Leaders spread over the validators: shard `s` prefers the `s mod n`-th voter (by id).
    /// A leader that is not the preferred one hands over once the preferred voter's log has
    /// caught up with its own (a raft leadership transfer: no entry is lost, writes pause for
    /// about one round trip), at most once per `leader_transfer_interval_ms`.
    pub(super) fn spread_leadership(&mut self, now: Now) {
        if !self.config.replicated || !self.replica.is_leader() {
            return;
        }
        if self.last_handover_ms.is_some_and(|t| {
            now.monotonic_ms.saturating_sub(t) < self.config.leader_transfer_interval_ms
        }) {
            return;
        }
        let shard = self.replica.shard();
        let raft = &self.replica.raw_node().raft;
        let mut voters: Vec<u64> = raft.prs().conf().voters().ids().iter().collect();
        voters.sort_unstable();
        let preferred = voters[shard as usize % voters.len()];
        let last_index = raft.raft_log.last_index();
        let caught_up = raft
            .prs()
            .get(preferred)
            .is_some_and(|p| p.matched == last_index && p.recent_active);
        if preferred == self.config.node_id || !caught_up || raft.lead_transferee.is_some() {
            return;
        }
        tracing::info!(
            shard,
            to = preferred,
            "handing shard leadership to its preferred validator"
        );
        self.replica.raw_node_mut().transfer_leader(preferred);
        self.last_handover_ms = Some(now.monotonic_ms);
        self.counters.leadership_handovers += 1;
    }
}
