//! Forwarding: a follower sends its client's submission to the shard's leader and answers the
//! client when the leader's reply comes back (or the forward times out, or the leader changes).

use super::{Answer, Effects, Now, ShardNode, SubmitFailure, Submitter};
use crate::peering::{ForwardRefusal, ForwardReply, Outbound};
use crate::record::Record;
use crate::replica::SubmitError;
use crate::shard::ShardId;
use std::collections::HashMap;

/// Submissions this follower forwarded and waits on, by request id.
pub(super) struct Forwards<R> {
    /// request -> (client, deadline in monotonic ms, the leader it went to, records).
    waiting: HashMap<u64, (R, u64, u64, usize)>,
    next_request: u64,
}

impl<R> Forwards<R> {
    pub(super) fn new(first_request: u64) -> Forwards<R> {
        Forwards {
            waiting: HashMap::new(),
            next_request: first_request,
        }
    }

    pub(super) fn drain(&mut self) -> impl Iterator<Item = R> + '_ {
        self.waiting.drain().map(|(_, (reply, _, _, _))| reply)
    }
}

impl<R> ShardNode<R> {
    /// Sends a client's submission to the shard's leader on another validator. A waiting
    /// client hears the leader's answer later (or the timeout's); a detached one hears at once
    /// that it went. When it cannot go, the client hears that this validator does not lead.
    pub(super) fn forward<E: Effects<Reply = R>>(
        &mut self,
        io: &mut E,
        leader: u64,
        records: &[Record],
        valid: &[bool],
        from: Submitter<R>,
    ) {
        let shard = self.replica.shard();
        let waits = matches!(from, Submitter::Client(_));
        if waits && self.forwards.waiting.len() >= self.config.forwards_pending_max {
            let overloaded = SubmitFailure::Rejected(SubmitError::Overloaded(shard));
            return self.refuse(io, from, overloaded);
        }
        let request = if waits {
            self.forwards.next_request += 1;
            self.forwards.next_request
        } else {
            0
        };
        let sent = io.send(
            leader,
            Outbound::Forward {
                request,
                records,
                valid,
            },
        );
        if sent.is_err() {
            tracing::debug!(shard, leader, "could not forward to the leader");
            let not_leader = SubmitFailure::Rejected(SubmitError::NotLeader {
                shard,
                leader: Some(leader),
            });
            return self.refuse(io, from, not_leader);
        }
        self.counters.forwarded += 1;
        match from {
            Submitter::Client(reply) => {
                let deadline = self.last_now_ms + self.config.forward_timeout_ms;
                self.forwards
                    .waiting
                    .insert(request, (reply, deadline, leader, records.len()));
            }
            Submitter::Detached(reply) => io.reply(reply, Answer::Admitted(Ok(()))),
            Submitter::Peer { .. } => unreachable!("forwarded submissions are not forwarded"),
        }
    }

    /// The leader's answer to a forwarded submission.
    pub(super) fn forward_reply<E: Effects<Reply = R>>(
        &mut self,
        io: &mut E,
        request: u64,
        reply: ForwardReply,
    ) {
        let Some((client, _, _, records)) = self.forwards.waiting.remove(&request) else {
            return;
        };
        let shard = self.replica.shard();
        let answer = match reply {
            ForwardReply::Outcomes(outcomes) if outcomes.len() == records => Ok(outcomes),
            // Not an answer to this request (a faulty peer): the client retries.
            ForwardReply::Outcomes(_) => Err(SubmitFailure::Retry(shard)),
            ForwardReply::Refused(refusal) => Err(failure_of(shard, refusal)),
        };
        io.reply(client, Answer::Outcomes(answer));
    }

    /// Forwarded submissions whose leader did not answer in time, or is not the leader any
    /// more (it may have died with them): the client retries at once (the transfer may still
    /// commit; resubmitting it is harmless).
    pub(super) fn expire_forwards<E: Effects<Reply = R>>(&mut self, io: &mut E, now: Now) {
        if self.forwards.waiting.is_empty() {
            return;
        }
        let shard = self.replica.shard();
        let leader = self.replica.leader_id();
        let mut expired: Vec<u64> = self
            .forwards
            .waiting
            .iter()
            .filter(|(_, (_, deadline, to, _))| {
                *deadline <= now.monotonic_ms || leader != Some(*to)
            })
            .map(|(&request, _)| request)
            .collect();
        // Answer in request order: the simulator replays a seed exactly.
        expired.sort_unstable();
        for request in expired {
            if let Some((client, _, _, _)) = self.forwards.waiting.remove(&request) {
                io.reply(client, Answer::Outcomes(Err(SubmitFailure::Retry(shard))));
            }
        }
    }
}

/// What a forwarding follower hears for a failure on the leader.
pub fn refusal_of(failure: SubmitFailure) -> ForwardRefusal {
    match failure {
        SubmitFailure::Rejected(SubmitError::NotLeader { leader, .. }) => {
            ForwardRefusal::NotLeader(leader)
        }
        SubmitFailure::Rejected(SubmitError::Overloaded(_) | SubmitError::Membership { .. }) => {
            ForwardRefusal::Overloaded
        }
        SubmitFailure::Retry(_) => ForwardRefusal::Retry,
        SubmitFailure::Stopped => ForwardRefusal::Stopped,
    }
}

/// The client's failure for a refusal the leader sent back.
pub fn failure_of(shard: ShardId, refusal: ForwardRefusal) -> SubmitFailure {
    match refusal {
        ForwardRefusal::Retry | ForwardRefusal::Stopped => SubmitFailure::Retry(shard),
        ForwardRefusal::NotLeader(leader) => {
            SubmitFailure::Rejected(SubmitError::NotLeader { shard, leader })
        }
        ForwardRefusal::Overloaded => SubmitFailure::Rejected(SubmitError::Overloaded(shard)),
    }
}
