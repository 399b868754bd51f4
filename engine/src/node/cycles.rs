//! The ready cycles a shard has handed out and that are not yet durable (raft-rs's
//! asynchronous append): how many may be in flight, and what becomes of them when the edge
//! says they are staged and, later, durable.

use super::{Effects, Now, ShardNode};
use raft::eraftpb::Message;

/// A ready cycle handed out and not yet durable.
#[derive(Debug)]
pub(super) struct InFlightCycle {
    pub(super) number: u64,
    /// Whether it has writes (one without is durable once every cycle before it is).
    pub(super) has_writes: bool,
    /// The index of the leader's snapshot it installs.
    pub(super) snapshot_index: Option<u64>,
    /// Messages that must wait until it is durable.
    pub(super) after_write: Vec<Message>,
}

impl<R> ShardNode<R> {
    /// Whether [`ShardNode::start_turn`] may be called: fewer cycles in flight than the bound,
    /// and none at all when the next cycle restores a snapshot from the leader (written before
    /// anything after it, so nothing may be pending before it either).
    pub fn can_start_turn(&self) -> bool {
        let bound = if self.replica.has_snapshot_to_restore()
            || self
                .in_flight
                .back()
                .is_some_and(|c| c.snapshot_index.is_some())
        {
            1
        } else {
            self.config.ready_cycles_in_flight_max
        };
        self.in_flight.len() < bound
    }

    /// The writes of ready cycle `number` are staged (readable from the storage): raft takes
    /// input again. Call before any other input.
    pub fn staged(&mut self, number: u64) {
        assert_eq!(
            self.in_flight.back().map(|c| c.number),
            Some(number),
            "staged the ready cycle handed out last"
        );
        self.replica.staged(number);
    }

    /// The writes of every ready cycle up to `number` are durable.
    pub fn persisted<E: Effects<Reply = R>>(&mut self, io: &mut E, number: u64, now: Now) {
        let mut last = None;
        // Cycles without writes behind the durable ones are durable with them.
        while let Some(cycle) = self.in_flight.front() {
            if cycle.number > number && cycle.has_writes {
                break;
            }
            let cycle = self.in_flight.pop_front().expect("front exists");
            if let Some(index) = cycle.snapshot_index {
                // A leader's snapshot is installed and durable: its credits count as this
                // validator's, and the log before it is gone.
                self.last_snapshot_index = index;
                self.snapshot_applied_bytes = self.replica.applied_bytes();
                self.snapshot_head_start_bytes = 0;
                tracing::info!(
                    shard = self.replica.shard(),
                    index,
                    "caught up from the leader's snapshot: installed"
                );
                self.credits.set_watermarks(self.inbound_watermarks());
                self.announce_credits(io, now);
            }
            self.send_raft(io, cycle.after_write);
            last = Some(cycle.number);
        }
        let last = last.expect("persisted without a write in flight");
        self.replica.persisted(last);
    }
}
