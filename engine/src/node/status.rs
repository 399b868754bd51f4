//! A shard's consensus and state figures, as the node knows them.

use super::ShardNode;
use crate::shard::ShardId;
use raft::StateRole;

/// A shard's consensus and state figures, for operators and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardStatus {
    pub shard: ShardId,
    pub core: usize,
    pub role: &'static str,
    pub term: u64,
    pub leader_id: Option<u64>,
    pub commit_index: u64,
    pub applied_index: u64,
    pub last_index: u64,
    pub state_hash: u128,
    /// Hash of the accounts alone: equal across a restart even though the applied index moves.
    pub accounts_hash: u128,
    pub accounts: usize,
    pub leader_changes: u64,
    pub pending_records: usize,
    /// Commands waiting in the shard's channels (submissions, queries, receipts).
    pub queued_commands: usize,
    /// Voters of the shard's raft group (this node included).
    pub voters: usize,
    /// Their node ids, ascending.
    pub voter_ids: Vec<u64>,
    /// Learners (receive the log, do not vote), ascending.
    pub learner_ids: Vec<u64>,
    /// On the leader: `(peer, match index)` for every voter (this node included); empty on a
    /// follower.
    pub peer_matched: Vec<(u64, u64)>,
    /// The peer transport of this shard's core (none for a single validator): its counters and
    /// whether each peer's outbound link is up. The same for every shard of one core.
    pub transport: Option<aurigraph_net::transport::TransportCounters>,
    pub peer_links: Vec<(u64, bool)>,
    /// On the leader: `(peer, entries behind the leader's last index)` for every voter, this
    /// node included (0 lag); empty on a follower, which does not track its peers.
    pub peer_lag: Vec<(u64, u64)>,
}

impl<R> ShardNode<R> {
    /// The figures the node knows; the edge fills in `core`, `queued_commands`, `transport`
    /// and `peer_links` (see [`ShardNode::peers`]).
    pub fn status(&self) -> ShardStatus {
        let replica = &self.replica;
        let raft = &replica.raw_node().raft;
        let last_index = raft.raft_log.last_index();
        let mut peer_matched: Vec<(u64, u64)> = if raft.state == StateRole::Leader {
            raft.prs().iter().map(|(&id, p)| (id, p.matched)).collect()
        } else {
            Vec::new()
        };
        peer_matched.sort_unstable();
        let peer_lag = peer_matched
            .iter()
            .map(|&(id, matched)| (id, last_index.saturating_sub(matched)))
            .collect();
        let mut voter_ids: Vec<u64> = raft.prs().conf().voters().ids().iter().collect();
        voter_ids.sort_unstable();
        let state = replica.state();
        ShardStatus {
            shard: replica.shard(),
            core: 0,
            role: match raft.state {
                StateRole::Leader => "LEADER",
                StateRole::Follower => "FOLLOWER",
                StateRole::Candidate => "CANDIDATE",
                StateRole::PreCandidate => "PRE_CANDIDATE",
            },
            term: raft.term,
            leader_id: replica.leader_id(),
            commit_index: raft.raft_log.committed,
            applied_index: state.applied_index(),
            last_index,
            state_hash: state.state_hash(),
            accounts_hash: state.accounts_hash(),
            accounts: state.account_count(),
            leader_changes: replica.leader_changes(),
            pending_records: replica.pending_records(),
            queued_commands: 0,
            transport: None,
            peer_links: Vec::new(),
            voters: voter_ids.len(),
            voter_ids,
            learner_ids: replica.learners(),
            peer_matched,
            peer_lag,
        }
    }

    /// The other validators of the group (voters and learners), ascending: the links a
    /// replicated shard needs.
    pub fn peers(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self
            .members()
            .into_iter()
            .filter(|&id| id != self.config.node_id)
            .collect();
        ids.sort_unstable();
        ids
    }
}
