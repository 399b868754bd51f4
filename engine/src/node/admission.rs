//! Admission at the node: a verified submission goes to the replica; the submitter waits for
//! its outcomes, is told it was admitted, or learns why not (a follower forwards its client's
//! submission to the leader instead).

use super::{answer_waiter, Answer, Effects, ShardNode, SubmitFailure, Submitter, Waiter};
use crate::record::Record;
use crate::replica::{archived_records, SubmitError};

impl<R> ShardNode<R> {
    /// A submission whose signatures the edge verified (`valid[i]` for `records[i]`).
    pub fn submit<E: Effects<Reply = R>>(
        &mut self,
        io: &mut E,
        records: &[Record],
        valid: &[bool],
        from: Submitter<R>,
    ) {
        assert_eq!(records.len(), valid.len(), "the edge verifies every record");
        match self.replica.submit_verified(records, valid) {
            Ok(ticket) => self.admitted(io, ticket, from),
            Err(error) => self.not_admitted(io, error, records, valid, from),
        }
    }

    /// Like [`ShardNode::submit`] for a whole binary batch of this shard (`archive`, validated
    /// at the edge), which the replica may propose as the log entry itself
    /// ([`ShardReplica::submit_verified_archive`]). Returns whether it did: `Some(true)` the
    /// archive is an entry, `Some(false)` its records were copied, `None` it was not admitted.
    pub fn submit_archive<E: Effects<Reply = R>>(
        &mut self,
        io: &mut E,
        archive: Vec<u8>,
        valid: &[bool],
        from: Submitter<R>,
    ) -> Option<bool> {
        match self.replica.submit_verified_archive(archive, valid) {
            Ok((ticket, whole)) => {
                self.admitted(io, ticket, from);
                Some(whole)
            }
            Err((error, archive)) => {
                let records = archived_records(&archive);
                self.not_admitted(io, error, records, valid, from);
                None
            }
        }
    }

    /// A submission admitted as `ticket`: its submitter waits for the outcomes (or, detached,
    /// is told now).
    fn admitted<E: Effects<Reply = R>>(&mut self, io: &mut E, ticket: u64, from: Submitter<R>) {
        match from {
            Submitter::Client(reply) => {
                self.waiting.insert(ticket, Waiter::Client(reply));
            }
            Submitter::Detached(reply) => io.reply(reply, Answer::Admitted(Ok(()))),
            Submitter::Peer { node, request } => {
                self.counters.forwards_served += 1;
                if request != 0 {
                    self.waiting.insert(ticket, Waiter::Peer { node, request });
                }
            }
        }
    }

    /// A submission the replica refused: a client's goes to the leader if another validator
    /// leads; otherwise the submitter learns why.
    fn not_admitted<E: Effects<Reply = R>>(
        &mut self,
        io: &mut E,
        error: SubmitError,
        records: &[Record],
        valid: &[bool],
        from: Submitter<R>,
    ) {
        match error {
            SubmitError::NotLeader {
                leader: Some(leader),
                ..
            } if self.config.replicated
                && leader != self.config.node_id
                && !matches!(from, Submitter::Peer { .. }) =>
            {
                self.forward(io, leader, records, valid, from)
            }
            error => self.refuse(io, from, error.into()),
        }
    }

    /// Refuses a submission in the way its submitter expects.
    pub(super) fn refuse<E: Effects<Reply = R>>(
        &mut self,
        io: &mut E,
        from: Submitter<R>,
        failure: SubmitFailure,
    ) {
        match from {
            Submitter::Client(reply) => io.reply(reply, Answer::Outcomes(Err(failure))),
            Submitter::Detached(reply) => io.reply(reply, Answer::Admitted(Err(failure))),
            Submitter::Peer { node, request } => {
                if request != 0 {
                    answer_waiter(io, Waiter::Peer { node, request }, Err(failure));
                }
            }
        }
    }
}
