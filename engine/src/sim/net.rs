//! The simulated transport and the nodes' effects: what a node sends is encoded as on the
//! wire and travels with drops, delays, duplicates, partitions (two-sided, and one-way: A hears
//! B but B does not hear A), in order on each link (one
//! TCP connection per pair of validators and core, as the real transport); each peer's
//! queue takes a bounded number of messages per step (back-pressure: `SendRefused::Full`); a
//! crashed peer's link is down.

use super::{Cluster, Input, Violation};
use crate::node::{Answer, Effects, LocalMessage, SendRefused};
use crate::peering::Outbound;
use crate::shard::ShardId;
use rand::Rng;
use xxhash_rust::xxh3::xxh3_64;

/// A payload on the simulated network.
pub(super) struct InFlight {
    pub deliver_at: u64,
    pub seq: u64,
    pub from: usize,
    /// The sender's node id when it sent (a wiped validator comes back with a new one).
    pub from_id: u64,
    pub to: usize,
    pub shard: ShardId,
    pub payload: Vec<u8>,
}

/// What one node call asked for, performed by [`Cluster::flush`] once the call returned.
pub(super) struct SimIo {
    sends: Vec<(u64, Vec<u8>)>,
    replies: Vec<(u64, Answer)>,
    local: Vec<(ShardId, LocalMessage)>,
    /// Per peer node id: room left in its queue; `None`: the link is down. An id no validator
    /// has (any more) is down.
    room: Vec<(u64, Option<usize>)>,
    refused: u64,
}

impl Effects for SimIo {
    type Reply = u64;

    fn send(&mut self, to: u64, message: Outbound<'_>) -> Result<(), SendRefused> {
        let room = &mut self
            .room
            .iter_mut()
            .find(|(id, _)| *id == to)
            .ok_or(SendRefused::Down)?
            .1;
        match room {
            None => {
                self.refused += 1;
                Err(SendRefused::Down)
            }
            Some(0) => {
                self.refused += 1;
                Err(SendRefused::Full)
            }
            Some(n) => {
                *n -= 1;
                let mut payload = Vec::new();
                message.encode(&mut payload);
                self.sends.push((to, payload));
                Ok(())
            }
        }
    }

    fn reply(&mut self, to: u64, answer: Answer) {
        self.replies.push((to, answer));
    }

    fn to_shard(
        &mut self,
        destination: ShardId,
        message: LocalMessage,
    ) -> Result<(), LocalMessage> {
        self.local.push((destination, message));
        Ok(())
    }

    // Every validator is linked to every other for the whole run (raft sends only to the
    // group's members; a joiner is reachable before it joins, as one started with `--join`).
    fn link(&mut self, _node_id: u64, _peer_addr: &[u8]) {}
    fn unlink(&mut self, _node_id: u64) {}
}

impl Cluster {
    /// The effects of one call on validator `v`'s shard `s`: each peer's queue has room for
    /// `transport_queue_max` messages; a peer that is down refuses.
    pub(super) fn io(&self, v: usize, _s: usize) -> SimIo {
        let room = (0..self.validators.len())
            .map(|p| {
                let up = p != v && self.validators[p].up;
                (self.id(p), up.then_some(self.config.transport_queue_max))
            })
            .collect();
        SimIo {
            sends: Vec::new(),
            replies: Vec::new(),
            local: Vec::new(),
            room,
            refused: 0,
        }
    }

    /// Performs what a call on validator `v`'s shard `s` asked for.
    pub(super) fn flush(&mut self, v: usize, s: usize, io: SimIo) -> Result<(), Violation> {
        self.stats.transport_refused += io.refused;
        for (to, payload) in io.sends {
            let to = self
                .index_of(to)
                .expect("sends go only to validators that are up");
            self.send(v, s as ShardId, to, payload);
        }
        for (destination, message) in io.local {
            if let Some(node) = self.validators[v].shards[destination as usize]
                .node
                .as_mut()
            {
                node.local_message(message);
            }
        }
        for (client, answer) in io.replies {
            self.client_answer(v, s, client, answer)?;
        }
        Ok(())
    }

    fn send(&mut self, from: usize, shard: ShardId, to: usize, payload: Vec<u8>) {
        let copies = if self.rng.gen_bool(self.drop_p) {
            self.stats.dropped += 1;
            0
        } else if self.rng.gen_bool(self.dup_p) {
            self.stats.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            // A link is one TCP connection: what it carries arrives in order (a later message
            // is never delivered before an earlier one on the same link).
            let delay = self.rng.gen_range(0..=self.max_delay);
            let last = self.link_clock.entry((from, to, shard)).or_insert(0);
            *last = (*last).max(self.now + delay);
            let deliver_at = *last;
            self.next_seq += 1;
            self.trace(&[
                1,
                from as u64,
                to as u64,
                shard as u64,
                deliver_at,
                self.next_seq,
                xxh3_64(&payload),
            ]);
            self.net.push(InFlight {
                deliver_at,
                seq: self.next_seq,
                from,
                from_id: self.id(from),
                to,
                shard,
                payload: payload.clone(),
            });
        }
    }

    /// Hands what is due to the receivers' input queues (lost when the receiver is down or on
    /// the other side of a partition).
    pub(super) fn deliver_network(&mut self) {
        let now = self.now;
        let (mut due, rest): (Vec<InFlight>, Vec<InFlight>) = std::mem::take(&mut self.net)
            .into_iter()
            .partition(|m| m.deliver_at <= now);
        self.net = rest;
        due.sort_by_key(|m| (m.deliver_at, m.seq));
        for m in due {
            let reachable = self.validators[m.to].up
                && self.side[m.to] == self.side[m.from]
                && !self.one_way.contains(&(m.from, m.to));
            self.trace(&[2, m.seq, reachable as u64]);
            if reachable {
                self.validators[m.to].shards[m.shard as usize]
                    .inputs
                    .push_back(Input::Peer {
                        from: m.from_id,
                        payload: m.payload,
                    });
            } else {
                self.stats.dropped += 1;
            }
        }
    }

    pub(super) fn chaos(&mut self) {
        let n = self.validators.len();
        // Network quality changes now and then.
        if self.rng.gen_bool(0.01) {
            self.drop_p = [0.0, 0.02, 0.1, 0.3][self.rng.gen_range(0..4)];
            self.dup_p = [0.0, 0.02, 0.1][self.rng.gen_range(0..3)];
            self.max_delay = [2, 5, 20, 60][self.rng.gen_range(0..4)];
        }
        // Partitions and heals.
        if self.rng.gen_bool(0.003) {
            self.stats.partitions += 1;
            for v in 0..n {
                self.side[v] = self.rng.gen_range(0..2);
            }
        }
        if self.rng.gen_bool(0.004) {
            self.side = vec![0; n];
        }
        // One-way partitions: validator a stops hearing b while b still hears a.
        if self.config.one_way_partitions && self.rng.gen_bool(0.003) {
            let a = self.rng.gen_range(0..n);
            let b = (a + self.rng.gen_range(1..n)) % n;
            self.one_way.insert((b, a));
            self.stats.one_way_partitions += 1;
        }
        if self.rng.gen_bool(0.003) {
            self.one_way.clear();
        }
        // Crashes (keeping a majority of the group up most of the time) and restarts.
        let up = self
            .goal
            .iter()
            .filter(|&&id| self.index_of(id).is_some_and(|v| self.validators[v].up))
            .count();
        if self.rng.gen_bool(0.003) && up > self.goal.len() / 2 {
            let v = self.rng.gen_range(0..n);
            if self.validators[v].up {
                self.crash(v);
                self.validators[v].restart_at = Some(self.now + self.rng.gen_range(20..400));
            }
        }
    }

    /// A storage fault (EIO, ENOSPC): the validator fail-stops — every shard, exactly like a
    /// crash (what was not fsynced is lost) — and is restarted later.
    pub(super) fn fail_stop(&mut self, v: usize) {
        self.crash(v);
        self.validators[v].restart_at = Some(self.now + self.rng.gen_range(20..400));
    }

    /// Each validator's clock runs at its own rate, within ±`tick_drift_pct` %, and the rate
    /// changes now and then (chaos or not: clocks drift all the time).
    pub(super) fn drift_clocks(&mut self) {
        let base = self.config.tick_ms * 1000;
        let spread = base * self.config.tick_drift_pct / 100;
        for v in 0..self.validators.len() {
            if self.now > 0 && !self.rng.gen_bool(0.0005) {
                continue;
            }
            let period = self.rng.gen_range(base - spread..=base + spread);
            self.validators[v].tick_period_us = period;
            self.stats.tick_rate_changes += 1;
            let skew = period.abs_diff(base) * 1000 / base;
            self.stats.max_tick_skew_permille = self.stats.max_tick_skew_permille.max(skew);
        }
    }

    pub(super) fn heal(&mut self) -> Result<(), Violation> {
        self.side = vec![0; self.validators.len()];
        self.one_way.clear();
        self.drop_p = 0.0;
        self.dup_p = 0.0;
        self.max_delay = 3;
        for v in 0..self.validators.len() {
            if !self.validators[v].up && !self.validators[v].broken && !self.validators[v].stopped {
                self.start(v)?;
            }
        }
        Ok(())
    }
}
