//! Membership and leadership: changes proposed on the leader and answered once applied, the
//! links that follow the group's membership, and leaders spread over the validators.

use super::{Answer, Effects, Now, ShardNode, SubmitFailure};
use crate::replica::SubmitError;
use raft::eraftpb::ConfChangeType;

/// After a hand-over to the preferred voter did not take, leave it alone this many hand-over
/// intervals.
const SPREAD_BACKOFF_INTERVALS: u64 = 10;

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
        let me = self.config.node_id;
        let removes_me = changes
            .iter()
            .any(|&(change, id)| change == ConfChangeType::RemoveNode && id == me);
        if removes_me && self.replica.is_leader() {
            // raft-rs 0.7 keeps a leader that applied its own removal leading (it only stops
            // counting its own vote), so a removed validator would go on leading a group it is
            // not in. Hand leadership to a caught-up voter first; the operator's command goes
            // round and the new leader removes us.
            let failure = match self.caught_up_successor() {
                Some(successor) => {
                    tracing::info!(
                        shard,
                        to = successor,
                        "asked to remove this leader: handing leadership over first"
                    );
                    self.replica.raw_node_mut().transfer_leader(successor);
                    self.counters.leadership_handovers += 1;
                    SubmitFailure::Retry(shard)
                }
                None => SubmitFailure::Rejected(SubmitError::Membership {
                    shard,
                    reason: "this validator leads the shard and no other voter has caught up to \
                             take over; retry once one has",
                }),
            };
            io.reply(reply, Answer::Membership(Err(failure)));
            return;
        }
        match self.replica.propose_membership(changes, peer_addr) {
            Ok(index) => self.membership = Some((index, reply)),
            Err(error) => io.reply(reply, Answer::Membership(Err(error.into()))),
        }
    }

    /// Reconciles the links with the configuration (after open, every applied membership
    /// change and every installed snapshot) and answers a proposed change once it applied
    /// (or failed: leadership lost before it applied).
    pub(super) fn settle_membership<E: Effects<Reply = R>>(&mut self, io: &mut E) {
        if self.replica.take_membership_changed() && self.config.replicated {
            self.reconcile_links(io);
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

    /// Links to every validator of the configuration and unlinks those no longer in it. The
    /// edge counts links per shard: a validator is unlinked from a core's transport only when
    /// no shard on that core has it in its configuration.
    fn reconcile_links<E: Effects<Reply = R>>(&mut self, io: &mut E) {
        let wanted = self.replica.peers_to_link();
        let gone: Vec<u64> = self
            .linked
            .iter()
            .copied()
            .filter(|id| !wanted.iter().any(|(w, _)| w == id))
            .collect();
        for id in gone {
            io.unlink(id);
            self.linked.remove(&id);
            self.credits.forget_node(id);
        }
        for (id, addr) in wanted {
            io.link(id, &addr);
            self.linked.insert(id);
        }
    }

    /// A voter other than this leader whose log matches the leader's and that was heard from
    /// recently: one that can take leadership over at once (lowest id first).
    pub(super) fn caught_up_successor(&self) -> Option<u64> {
        let raft = &self.replica.raw_node().raft;
        let me = self.config.node_id;
        let last_index = raft.raft_log.last_index();
        let mut voters: Vec<u64> = raft.prs().conf().voters().ids().iter().collect();
        voters.sort_unstable();
        voters.into_iter().find(|&id| {
            id != me
                && raft
                    .prs()
                    .get(id)
                    .is_some_and(|p| p.matched == last_index && p.recent_active)
        })
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
        if let Some((to, _)) = self.spread_to.take() {
            // Still leading after handing over to `to`: the hand-over did not take (the voter
            // declined it — its apply is blocked — or lost the election). Leave it alone for a
            // while instead of pausing writes for a transfer every interval.
            if raft.lead_transferee.is_none() {
                self.spread_backoff_until_ms = now.monotonic_ms
                    + SPREAD_BACKOFF_INTERVALS * self.config.leader_transfer_interval_ms;
                tracing::debug!(shard, to, "leadership hand-over did not take: backing off");
            } else {
                self.spread_to = Some((to, now.monotonic_ms));
            }
        }
        if now.monotonic_ms < self.spread_backoff_until_ms {
            return;
        }
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
        self.spread_to = Some((preferred, now.monotonic_ms));
        self.last_handover_ms = Some(now.monotonic_ms);
        self.counters.leadership_handovers += 1;
    }
}
