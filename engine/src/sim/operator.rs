//! The operator: membership changes proposed at the shards' leaders (add a learner, promote
//! it, remove a voter or a learner, several at once through joint consensus), validators
//! wiped once they left every group, and the repair of a validator whose WAL is damaged.
//!
//! The operator works towards a goal — the voters every shard's group should have — and
//! derives each step from the leader's configuration, as `aurigraph validators` does from
//! `GET /consensus/status`: a validator joins every group as a learner, is promoted once it has
//! caught up on every shard, and a voter leaves only while at least 3 voters remain. The goal
//! changes at random times (a spare replaces a voter, the group grows or shrinks), during chaos
//! and calm alike.
//!
//! Every answer is checked against what the log applied: `Ok(index)` means the entry at that
//! index (as committed everywhere) is this ConfChangeV2 and the proposer's configuration after
//! applying it contains the change; a refusal means the change was not appended.

use super::{Cluster, Input, Violation};
use crate::node::SubmitFailure;
use raft::eraftpb::{ConfChangeType, ConfChangeV2, ConfState, EntryType};
use rand::Rng;

/// The fewest voters the operator leaves in a group (a quorum stays reachable with one down).
const VOTERS_MIN: usize = 3;

/// A membership change handed to validator `v`'s replica of `shard`, waiting for its answer.
pub(super) struct MembershipRequest {
    shard: usize,
    v: usize,
    changes: Vec<(ConfChangeType, u64)>,
    /// The voters of the proposer's configuration when the operator sent it (to tell a
    /// voter's removal from a learner's).
    voters_before: Vec<u64>,
    /// The proposer's last log index when it took the request.
    pub(super) before: Option<u64>,
}

/// The peer address a membership change carries for validator `v`.
pub(super) fn peer_addr(v: usize) -> Vec<u8> {
    format!("10.0.0.{}:9100", v + 1).into_bytes()
}

fn change_name(t: ConfChangeType) -> &'static str {
    match t {
        ConfChangeType::AddNode => "add voter",
        ConfChangeType::AddLearnerNode => "add learner",
        ConfChangeType::RemoveNode => "remove",
    }
}

fn decode_changes(data: &[u8]) -> Option<Vec<(ConfChangeType, u64)>> {
    let mut cc = ConfChangeV2::default();
    protobuf::Message::merge_from_bytes(&mut cc, data).ok()?;
    Some(
        cc.get_changes()
            .iter()
            .map(|c| (c.get_change_type(), c.node_id))
            .collect(),
    )
}

impl Cluster {
    /// The validator (index) leading shard `s`: of those that think they lead, the one with
    /// the highest term.
    pub(super) fn leader(&self, s: usize) -> Option<usize> {
        (0..self.validators.len())
            .filter_map(|v| {
                let node = self.validators[v].shards[s].node.as_ref()?;
                node.replica()
                    .is_leader()
                    .then(|| (node.replica().term(), v))
            })
            .max()
            .map(|(_, v)| v)
    }

    /// Validator `v`'s configuration of shard `s` (as it applied it).
    pub(super) fn conf(&self, v: usize, s: usize) -> Option<ConfState> {
        let node = self.validators[v].shards[s].node.as_ref()?;
        Some(node.replica().raw_node().raft.prs().conf().to_conf_state())
    }

    /// The members (voters and learners, node ids) of shard `s`'s group as its leader sees
    /// them; `None` without a leader.
    pub(super) fn members(&self, s: usize) -> Option<Vec<u64>> {
        let cs = self.conf(self.leader(s)?, s)?;
        let mut ids: Vec<u64> = cs
            .voters
            .iter()
            .chain(&cs.voters_outgoing)
            .chain(&cs.learners)
            .chain(&cs.learners_next)
            .copied()
            .collect();
        ids.sort_unstable();
        ids.dedup();
        Some(ids)
    }

    /// Whether the operator has nothing left to do: every group has exactly the goal's voters
    /// and no learner, no change is outstanding, every validator that left was wiped and any
    /// repair is complete.
    pub(super) fn settled(&self) -> bool {
        if self.repairing.is_some() || self.pending.iter().any(Option::is_some) {
            return false;
        }
        let goal: Vec<u64> = self.goal.iter().copied().collect();
        for s in 0..self.config.shards as usize {
            let Some(cs) = self.leader(s).and_then(|l| self.conf(l, s)) else {
                return false;
            };
            let mut voters = cs.voters.clone();
            voters.sort_unstable();
            if voters != goal || !cs.voters_outgoing.is_empty() || !cs.learners.is_empty() {
                return false;
            }
        }
        (0..self.validators.len()).all(|v| {
            let validator = &self.validators[v];
            self.goal.contains(&self.id(v))
                || (!validator.was_member && !validator.broken && !validator.stopped)
        })
    }

    /// The operator's turn (every step): wipe validators that left every group, propose the
    /// next change on shards with none outstanding, and — while `active` — now and then move
    /// the goal.
    pub(super) fn operate(&mut self, active: bool) -> Result<(), Violation> {
        let shards = self.config.shards as usize;
        // Which validators are in some group (as its leader sees it).
        let mut members = Vec::new();
        let mut known = true;
        for s in 0..shards {
            match self.members(s) {
                Some(ids) => members.extend(ids),
                None => known = false,
            }
        }
        for &id in &members {
            if let Some(v) = self.index_of(id) {
                self.validators[v].was_member = true;
            }
        }
        if known {
            for v in 0..self.validators.len() {
                let id = self.id(v);
                if !self.goal.contains(&id)
                    && self.validators[v].was_member
                    && !members.contains(&id)
                    && (self.config.wipe_early || self.forgotten_everywhere(v, &members))
                {
                    self.wipe(v)?;
                }
            }
        }
        if let Some(v) = self.repairing {
            let id = self.id(v);
            let voter_everywhere = !self.validators[v].broken
                && (0..shards).all(|s| {
                    self.leader(s)
                        .and_then(|l| self.conf(l, s))
                        .is_some_and(|cs| cs.voters.contains(&id) && cs.voters_outgoing.is_empty())
                });
            if voter_everywhere {
                self.stats.repairs_completed += 1;
                self.repairing = None;
            }
        }
        // Keep the goal at the minimum size while a spare is at hand (after a repair took a
        // voter out).
        if self.goal.len() < VOTERS_MIN {
            if let Some(&spare) = self.spares().first() {
                self.goal.insert(self.id(spare));
            }
        }
        for s in 0..shards {
            if self.pending[s].is_none() && self.rng.gen_bool(0.05) {
                self.propose_next(s);
            }
        }
        // A bit flipped at a crash is found at the validator's next start; the flip was allowed
        // for the goal of its time (`maybe_flip_bit`: the repair can keep 3 voters). A goal
        // move before it is found could use that margin up — a spare joins, or a voter starts
        // leaving and stays a voter of the groups that cannot drop below 3 — and leave the
        // repair no spare (findings: seeds 736, 940).
        let flip_latent = self.validators.iter().any(|x| x.flipped.is_some());
        if active
            && self.config.membership_moves
            && !flip_latent
            && self.settled()
            && self.rng.gen_bool(0.0015)
        {
            self.move_goal();
        }
        Ok(())
    }

    /// Whether every member of every group is up and none of them still has `v` in its
    /// applied configuration: wiping `v` before that lets a replica that has
    /// not applied the removal yet — or a deposed leader that does not know it yet — count
    /// the fresh, empty `v` as the old one (finding F4).
    fn forgotten_everywhere(&self, v: usize, members: &[u64]) -> bool {
        let id = self.id(v);
        // A member whose recovery was refused (`broken`) never runs on its state again: it
        // comes back only wiped, by its repair. Waiting for it to be up would deadlock when
        // its repair needs `v` as the spare that keeps 3 voters.
        // (A member id that no validator has any more cannot be: a validator is wiped only
        // once no group has it.)
        members.iter().all(|&m| {
            self.index_of(m).is_none_or(|x| {
                let x = &self.validators[x];
                m == id || x.up || x.broken
            })
        }) && members.iter().filter(|&&m| m != id).all(|&m| {
            let Some(x) = self.index_of(m) else {
                return true;
            };
            (0..self.config.shards as usize).all(|s| {
                self.conf(x, s).is_none_or(|cs| {
                    !cs.voters.contains(&id)
                        && !cs.voters_outgoing.contains(&id)
                        && !cs.learners.contains(&id)
                        && !cs.learners_next.contains(&id)
                })
            })
        })
    }

    /// Validators outside the goal that may join: up, whole, and fresh (never a member since
    /// they were last wiped).
    fn spares(&self) -> Vec<usize> {
        (0..self.validators.len())
            .filter(|&v| {
                let validator = &self.validators[v];
                !self.goal.contains(&self.id(v))
                    && validator.up
                    && !validator.broken
                    && !validator.stopped
                    && !validator.was_member
            })
            .collect()
    }

    /// A new goal: a spare replaces a voter (half the time), or the group grows by a spare,
    /// or shrinks.
    fn move_goal(&mut self) {
        let spares = self.spares();
        let goal: Vec<u64> = self.goal.iter().copied().collect();
        let kind = self.rng.gen_range(0..4);
        if kind < 3 && !spares.is_empty() {
            let pick = self.rng.gen_range(0..spares.len());
            let spare = self.id(spares[pick]);
            if kind < 2 {
                let out = goal[self.rng.gen_range(0..goal.len())];
                self.goal.remove(&out);
            }
            self.goal.insert(spare);
        } else if goal.len() > VOTERS_MIN {
            let out = goal[self.rng.gen_range(0..goal.len())];
            self.goal.remove(&out);
        }
        let words: Vec<u64> = std::iter::once(10)
            .chain(self.goal.iter().copied())
            .collect();
        self.trace(&words);
    }

    /// Whether validator `id`, a learner, may be promoted: on every shard it is a member, the
    /// leader's progress says it made durable what the leader applied (give or take two
    /// entries: acknowledgements are sent only once written, as `aurigraph validators promote`
    /// judges by the leaders' progress), and its replica is not waiting for receipts — a voter
    /// that cannot apply could lead and acknowledge nothing. Judged by the learner's applied
    /// index instead, a learner whose snapshot was restored but not yet written was promoted,
    /// came back from a crash with no configuration (it does not vote: F16) and left a group of
    /// four with one voter down without a quorum (seed 500257).
    fn ready_to_promote(&self, id: u64) -> bool {
        let Some(v) = self.index_of(id) else {
            return false;
        };
        (0..self.config.shards as usize).all(|s| {
            let Some(leader) = self.leader(s) else {
                return false;
            };
            let in_group = self.members(s).is_some_and(|m| m.contains(&id));
            let Some(leader_node) = self.validators[leader].shards[s].node.as_ref() else {
                return false;
            };
            let leader_applied = leader_node.replica().state().applied_index();
            let durable = leader_node
                .replica()
                .raw_node()
                .raft
                .prs()
                .get(id)
                .map_or(0, |p| p.matched);
            in_group
                && durable + 2 >= leader_applied
                && self.validators[v].shards[s].node.as_ref().is_some_and(|n| {
                    n.replica().state().applied_index() + 2 >= leader_applied
                        && !n.replica().apply_blocked()
                })
        })
    }

    /// Proposes the next step towards the goal at shard `s`'s leader: learners for validators
    /// that should join, promotions of learners that caught up, removals of voters (at least
    /// 3 remain) and learners that should go; half the time all of them in one ConfChangeV2
    /// (joint consensus when there are several), otherwise the first.
    fn propose_next(&mut self, s: usize) {
        let Some(leader) = self.leader(s) else { return };
        let Some(cs) = self.conf(leader, s) else {
            return;
        };
        if !cs.voters_outgoing.is_empty() {
            return; // Joint: raft leaves it by itself.
        }
        let mut changes = Vec::new();
        for &id in &self.goal {
            let v = self.index_of(id).expect("the goal names validators");
            if !cs.voters.contains(&id)
                && !cs.learners.contains(&id)
                && self.validators[v].up
                && !self.validators[v].broken
            {
                changes.push((ConfChangeType::AddLearnerNode, id));
            }
        }
        let mut voters = cs.voters.len();
        for &id in &cs.learners {
            if self.goal.contains(&id) && self.ready_to_promote(id) {
                changes.push((ConfChangeType::AddNode, id));
                voters += 1;
            }
        }
        for &id in &cs.learners {
            if !self.goal.contains(&id) {
                changes.push((ConfChangeType::RemoveNode, id));
            }
        }
        for &id in &cs.voters {
            if !self.goal.contains(&id) && voters > VOTERS_MIN {
                changes.push((ConfChangeType::RemoveNode, id));
                voters -= 1;
            }
        }
        if changes.is_empty() {
            return;
        }
        if self.rng.gen_bool(0.4) {
            changes.truncate(1);
        }
        // F3: raft-rs keeps a leader that applied its own removal leading, and it panics at
        // the next acknowledgement; leadership moves (hand-over, elections) between the
        // proposal and its application, so any voter being removed may be the leader by then.
        // Unless `remove_leader` is set, the operator stops a voter before removing it (it is
        // leaving anyway) — only while every other voter is up and no validator is damaged, so
        // that the group keeps a quorum — and removes it once it is down.
        if !self.config.remove_leader {
            let mut stop = None;
            for &(kind, id) in &changes {
                let Some(x) = self.index_of(id) else { continue };
                if kind == ConfChangeType::RemoveNode
                    && cs.voters.contains(&id)
                    && self.validators[x].up
                {
                    stop = Some(x);
                }
            }
            if let Some(x) = stop {
                let others_up = cs.voters.iter().all(|&id| {
                    self.index_of(id).is_some_and(|o| {
                        let up = self.validators[o].up && !self.validators[o].broken;
                        o == x || up
                    })
                });
                if others_up && !self.validators.iter().any(|o| o.broken) {
                    self.trace(&[16, x as u64]);
                    self.stats.operator_stops += 1;
                    self.crash(x);
                    self.validators[x].stopped = true;
                }
                return;
            }
        }
        let client = self.request(leader, s, changes.clone());
        self.pending[s] = Some(client);
        // Now and then the operator repeats itself at once (the leader refuses: another change
        // is in progress), or sends the same change to a follower (refused: not the leader).
        if self.rng.gen_bool(0.1) {
            self.request(leader, s, changes.clone());
        }
        if self.rng.gen_bool(0.1) {
            let followers: Vec<usize> = (0..self.validators.len())
                .filter(|&v| v != leader && self.validators[v].up)
                .collect();
            if !followers.is_empty() {
                let v = followers[self.rng.gen_range(0..followers.len())];
                self.request(v, s, changes);
            }
        }
    }

    /// Hands a membership change to validator `v`'s replica of shard `s` (through its input
    /// queue, as the admin endpoint does); returns the reply handle.
    fn request(&mut self, v: usize, s: usize, changes: Vec<(ConfChangeType, u64)>) -> u64 {
        let client = self.next_client;
        self.next_client += 1;
        let mut words = vec![9, client, v as u64, s as u64];
        words.extend(changes.iter().map(|&(t, id)| ((t as u64) << 32) | id));
        self.trace(&words);
        self.requests.insert(
            client,
            MembershipRequest {
                shard: s,
                v,
                changes: changes.clone(),
                voters_before: self.conf(v, s).map(|cs| cs.voters).unwrap_or_default(),
                before: None,
            },
        );
        self.validators[v].shards[s]
            .inputs
            .push_back(Input::Membership { client, changes });
        client
    }

    /// Validator `v` went down: the requests it held are never answered.
    pub(super) fn forget_requests(&mut self, v: usize) {
        let lost: Vec<u64> = self
            .requests
            .iter()
            .filter(|(_, r)| r.v == v)
            .map(|(&c, _)| c)
            .collect();
        for client in lost {
            let request = self.requests.remove(&client).expect("listed");
            if self.pending[request.shard] == Some(client) {
                self.pending[request.shard] = None;
            }
            self.stats.membership_lost += 1;
        }
    }

    /// The answer to a membership change, checked against what the log applied.
    pub(super) fn membership_answer(
        &mut self,
        v: usize,
        s: usize,
        client: u64,
        result: Result<u64, SubmitFailure>,
    ) -> Result<(), Violation> {
        let Some(request) = self.requests.remove(&client) else {
            return Err(self.violation(format!(
                "validator {} shard {s}: membership answer {result:?} to unknown request {client}",
                v + 1
            )));
        };
        if self.pending[s] == Some(client) {
            self.pending[s] = None;
        }
        if request.v != v || request.shard != s {
            return Err(self.violation(format!(
                "membership request {client} answered by validator {} shard {s}",
                v + 1
            )));
        }
        match &result {
            Ok(index) => self.trace(&[11, client, *index]),
            Err(SubmitFailure::Retry(_)) => self.trace(&[12, client]),
            Err(_) => self.trace(&[13, client]),
        }
        let node = self.validators[v].shards[s]
            .node
            .as_ref()
            .expect("answers come from a node");
        let raft = &node.replica().raw_node().raft;
        match result {
            Ok(index) => {
                let entry = raft
                    .raft_log
                    .slice(index, index + 1, None, raft::GetEntriesContext::empty(false))
                    .ok()
                    .and_then(|mut e| e.pop())
                    .ok_or_else(|| {
                        self.violation(format!(
                            "membership change {:?} answered Ok({index}) on validator {} shard {s}, but the entry is not in its log",
                            request.changes,
                            v + 1
                        ))
                    })?;
                let applied = node.replica().state().applied_index();
                if entry.get_entry_type() != EntryType::EntryConfChangeV2
                    || decode_changes(&entry.data).as_deref() != Some(&request.changes[..])
                    || raft.raft_log.committed < index
                    || applied < index
                {
                    return Err(self.violation(format!(
                        "membership change {:?} answered Ok({index}) on validator {} shard {s}, but the entry there is {:?} {:?} (commit {}, applied {applied})",
                        request.changes,
                        v + 1,
                        entry.get_entry_type(),
                        decode_changes(&entry.data),
                        raft.raft_log.committed
                    )));
                }
                let cs = raft.prs().conf().to_conf_state();
                for &(kind, id) in &request.changes {
                    let holds = match kind {
                        ConfChangeType::AddNode => cs.voters.contains(&id),
                        ConfChangeType::AddLearnerNode => {
                            cs.learners.contains(&id) || cs.learners_next.contains(&id)
                        }
                        ConfChangeType::RemoveNode => {
                            !cs.voters.contains(&id)
                                && !cs.learners.contains(&id)
                                && !cs.learners_next.contains(&id)
                        }
                    };
                    if !holds {
                        return Err(self.violation(format!(
                            "membership change {:?} answered Ok({index}) on validator {} shard {s}, but its configuration after applying it is {cs:?} ({} {id} missing)",
                            request.changes,
                            v + 1,
                            change_name(kind)
                        )));
                    }
                }
                let seen = (entry.term, super::check::entry_hash(&entry));
                match self.committed[s].get(&index) {
                    Some(known) if *known != seen => {
                        return Err(self.violation(format!(
                            "membership change answered Ok({index}) on shard {s}, but the cluster committed another entry there"
                        )));
                    }
                    Some(_) => {}
                    None => {
                        self.committed[s].insert(index, seen);
                    }
                }
                if request.changes.len() > 1 {
                    self.stats.joint_changes += 1;
                }
                for &(kind, id) in &request.changes {
                    match kind {
                        ConfChangeType::AddNode => self.stats.voters_promoted += 1,
                        ConfChangeType::AddLearnerNode => self.stats.learners_added += 1,
                        ConfChangeType::RemoveNode if request.voters_before.contains(&id) => {
                            self.stats.voters_removed += 1
                        }
                        ConfChangeType::RemoveNode => self.stats.learners_removed += 1,
                    }
                }
                self.ok_changes.push((s, index, seen));
            }
            Err(SubmitFailure::Retry(_)) => {
                self.stats.membership_retry += 1;
            }
            Err(SubmitFailure::Rejected(_)) => {
                self.stats.membership_refused += 1;
                // Nothing of it may be in the log: raft appended no such change.
                let before = request.before.expect("fed before answered");
                let last = raft.raft_log.last_index();
                if last > before {
                    let entries = raft
                        .raft_log
                        .slice(
                            before + 1,
                            last + 1,
                            None,
                            raft::GetEntriesContext::empty(false),
                        )
                        .unwrap_or_default();
                    if entries.iter().any(|e| {
                        e.get_entry_type() == EntryType::EntryConfChangeV2
                            && decode_changes(&e.data).as_deref() == Some(&request.changes[..])
                    }) {
                        return Err(self.violation(format!(
                            "membership change {:?} was refused on validator {} shard {s}, but it is in the log after index {before}",
                            request.changes,
                            v + 1
                        )));
                    }
                }
            }
            Err(SubmitFailure::Stopped) => {
                return Err(self.violation("membership change answered Stopped".into()));
            }
        }
        Ok(())
    }

    /// Now and then, a crash during chaos also damaged a sealed WAL record of one of the
    /// validator's shards (one repair at a time, only on a voter of the goal, only while the
    /// repair can keep 3 voters and no validator is stopped on its way out).
    pub(super) fn maybe_flip_bit(&mut self, v: usize) {
        if !self.chaotic
            || !self.config.storage_faults
            || self.repairing.is_some()
            || self
                .validators
                .iter()
                .any(|x| x.broken || x.stopped || x.flipped.is_some())
            || !self.goal.contains(&self.id(v))
            || (self.goal.len() <= VOTERS_MIN && self.spares().is_empty())
            || !self.rng.gen_bool(0.25)
        {
            return;
        }
        let s = self.rng.gen_range(0..self.config.shards as usize);
        let rng = &mut self.rng;
        if let Some(offset) = self.validators[v].shards[s]
            .disk
            .flip_bit(|n| rng.gen_range(0..n))
        {
            self.validators[v].flipped = Some((s, offset));
            self.stats.bit_flips += 1;
            self.trace(&[14, v as u64, s as u64, offset]);
        }
    }

    /// Validator `v` cannot start (its WAL is damaged). The repair: take it out of the goal
    /// (a spare takes its place when fewer than 3 voters would remain), which removes it from
    /// every group; once it is in none, wipe it and add it back (a learner that catches up
    /// from the leaders' snapshots, then promoted).
    pub(super) fn start_repair(&mut self, v: usize) {
        self.repairing = Some(v);
        self.goal.remove(&self.id(v));
        if self.goal.len() < VOTERS_MIN {
            if let Some(&spare) = self.spares().first() {
                self.goal.insert(self.id(spare));
            }
        }
    }

    /// Validator `v` is in no group any more: wipe its disks (every shard) and start it again
    /// as a joiner. A validator under repair goes back into the goal.
    fn wipe(&mut self, v: usize) -> Result<(), Violation> {
        self.trace(&[15, v as u64]);
        if self.validators[v].up {
            self.validators[v].up = false;
            for slot in &mut self.validators[v].shards {
                if let Some(node) = slot.node.take() {
                    self.stats.node.add(node.counters());
                }
            }
            self.forget_requests(v);
        }
        // What the network still carries to `v` was sent to its old incarnation, on
        // connections that died with it (and that every member closed when it applied the
        // removal): it never reaches the fresh one (a heartbeat of a leader that still had the
        // old progress would carry a commit index beyond the empty log).
        self.net.retain(|m| m.to != v);
        let initial_voters = self.initial_voters(v, true);
        let slots = self.fresh_slots(&initial_voters);
        let validator = &mut self.validators[v];
        validator.shards = slots;
        validator.initial_voters = initial_voters;
        validator.broken = false;
        validator.stopped = false;
        validator.flipped = None;
        validator.was_member = false;
        validator.restart_at = None;
        // A wiped validator comes back under a new node id: its old one was removed from
        // every group, and a removed node id is never added again.
        validator.node_id = self.next_node_id;
        self.next_node_id += 1;
        self.stats.wiped += 1;
        self.start(v)?;
        if self.repairing == Some(v) {
            self.goal.insert(self.id(v));
        }
        Ok(())
    }
}
