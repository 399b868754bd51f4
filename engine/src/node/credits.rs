//! Credit watermarks and receipt pruning.
//!
//! A destination shard tells the source shards, here and on every other validator, up to
//! which source index it has durably credited receipts (in a snapshot). A source shard
//! forgets receipts only up to the minimum every member of its group reported (members that
//! never reported count as 0), so a new or silent validator holds pruning back, never forward.

use super::{Effects, LocalMessage, Now, ShardNode};
use crate::peering::Outbound;
use crate::shard::ShardId;
use std::collections::HashMap;

#[derive(Default)]
pub(super) struct Credits {
    /// Durable credit watermarks of this (destination) shard's last snapshot, per source.
    watermarks: Vec<(ShardId, u64)>,
    last_announce_ms: u64,
    /// Watermarks reported for receipts of this (source) shard, by (destination, validator).
    reported: HashMap<(ShardId, u64), u64>,
}

impl Credits {
    pub(super) fn set_watermarks(&mut self, watermarks: Vec<(ShardId, u64)>) {
        self.watermarks = watermarks;
    }

    /// `node` left this shard's configuration: forget what it reported. Should the same node
    /// id be added again (a wiped validator re-added), it counts as 0 until its new
    /// incarnation reports — the old incarnation's watermark says nothing about the new one.
    pub(super) fn forget_node(&mut self, node: u64) {
        self.reported.retain(|&(_, id), _| id != node);
    }

    pub(super) fn announce_due(&self, now: Now, interval_ms: u64) -> bool {
        !self.watermarks.is_empty()
            && now.monotonic_ms.saturating_sub(self.last_announce_ms) >= interval_ms
    }
}

impl<R> ShardNode<R> {
    /// Sends this validator's durable credit watermarks of this (destination) shard to the
    /// source shards: locally through their queues, to the other validators over the
    /// transport (their edge hands them to the source shard). Repeated every
    /// `credit_announce_interval_ms`, so a lost message or a restarted peer only delays pruning.
    pub(super) fn announce_credits<E: Effects<Reply = R>>(&mut self, io: &mut E, now: Now) {
        let shard = self.replica.shard();
        let node = self.config.node_id;
        for &(source, up_to) in &self.credits.watermarks {
            let message = LocalMessage::Credited {
                destination: shard,
                node,
                up_to,
            };
            self.undelivered.push_back((source, message));
        }
        if self.config.replicated {
            for peer in self.members().into_iter().filter(|&id| id != node) {
                for &(source, up_to) in &self.credits.watermarks {
                    let credited = Outbound::Credited {
                        destination: shard,
                        source,
                        up_to,
                    };
                    let _ = io.send(peer, credited);
                }
            }
        }
        self.counters.credits_announced += 1;
        self.credits.last_announce_ms = now.monotonic_ms;
    }

    /// Validator `node`'s credit watermark for receipts of this (source) shard: forget the
    /// receipts every member of this shard's group has durably credited.
    pub(super) fn credited(&mut self, destination: ShardId, node: u64, up_to: u64) {
        let known = self
            .credits
            .reported
            .entry((destination, node))
            .or_insert(0);
        *known = (*known).max(up_to);
        // This validator counts even while it is not (yet) in this group's configuration (a
        // joiner before its snapshot, or a removed validator): its own destination replica
        // reads receipts from this replica's outbox.
        let mut counted = self.members();
        counted.push(self.config.node_id);
        counted.sort_unstable();
        counted.dedup();
        let safe = counted
            .into_iter()
            .map(|id| {
                self.credits
                    .reported
                    .get(&(destination, id))
                    .copied()
                    .unwrap_or(0)
            })
            .min()
            .unwrap_or(0);
        if safe > 0 {
            self.replica.receipts_credited(destination, safe);
            self.counters.receipts_pruned_to = self.counters.receipts_pruned_to.max(safe);
        }
    }
}

impl<R> ShardNode<R> {
    /// Apply waits at receipts the source shard forgot before this replica saw them (this
    /// validator joined the destination's group before the source's): skipping them would
    /// lose credits, so the replica asks the shard's leader for a snapshot that credits past
    /// them. raft-rs refuses a second request while one is pending, and a leader cannot ask:
    /// a stalled leader hands leadership to a caught-up voter and asks once it follows.
    pub(super) fn fetch_snapshot_if_stalled(&mut self, now: Now) {
        if !self.replica.wants_snapshot() || !self.config.replicated {
            return;
        }
        let shard = self.replica.shard();
        if !self.replica.is_leader() {
            // raft-rs asks for a snapshot at this replica's last index and refuses appends
            // until one arrives; a leader can make one only once it committed that far. With
            // an uncommitted tail the leader may need this replica's acknowledgement to get
            // there (a group of three with a voter down): both would wait for ever. Keep
            // appending until the whole log is committed, then ask.
            let log = &self.replica.raw_node().raft.raft_log;
            if log.last_index() > log.committed {
                return;
            }
            if self.replica.raw_node_mut().request_snapshot().is_ok() {
                tracing::info!(
                    shard,
                    "receipts were pruned before this replica saw them: snapshot requested"
                );
                self.counters.snapshots_requested += 1;
            }
            return;
        }
        if self.replica.raw_node().raft.lead_transferee.is_some() {
            return;
        }
        let successor = self.caught_up_successor();
        if let Some(successor) = successor {
            tracing::info!(
                shard,
                to = successor,
                "stalled at receipts this validator cannot get: handing leadership over to fetch a snapshot"
            );
            self.replica.raw_node_mut().transfer_leader(successor);
            self.last_handover_ms = Some(now.monotonic_ms);
            self.counters.snapshots_requested += 1;
        }
    }

    /// A leader whose apply waits at a marker acknowledges nothing: its shard stalls while it
    /// waits. Receipts normally arrive within a round trip; when they have not for a
    /// hand-over interval (this validator's replica of the source may have been removed from
    /// that group without learning it, so it applies nothing more and cannot say it left),
    /// the leader hands over to a caught-up voter, which has applied past the marker or will
    /// on its own receipts.
    pub(super) fn hand_over_if_blocked(&mut self, now: Now) {
        if !self.config.replicated || !self.replica.is_leader() || !self.replica.apply_blocked() {
            self.leader_blocked_since_ms = None;
            return;
        }
        let since = *self.leader_blocked_since_ms.get_or_insert(now.monotonic_ms);
        let interval = self.config.leader_transfer_interval_ms;
        if now.monotonic_ms.saturating_sub(since) < interval
            || self
                .last_handover_ms
                .is_some_and(|t| now.monotonic_ms.saturating_sub(t) < interval)
            || self.replica.raw_node().raft.lead_transferee.is_some()
        {
            return;
        }
        if let Some(successor) = self.caught_up_successor() {
            tracing::info!(
                shard = self.replica.shard(),
                to = successor,
                "apply waited at receipts for a hand-over interval: handing leadership over"
            );
            self.replica.raw_node_mut().transfer_leader(successor);
            self.last_handover_ms = Some(now.monotonic_ms);
            self.leader_blocked_since_ms = None;
            self.counters.leadership_handovers += 1;
        }
    }
}
