//! The recent windows of a shard: what the log decided for the last transfers and the last
//! block headers, for lookups (`GET /transactions/{txHash}`, `GET /blocks/...`).
//!
//! The transfers window is a ring of decisions in log order and an index over it. The index is
//! an open-addressing table of 16-byte slots (a tag of the transfer's hash, its position in the
//! log of decisions), linear probing, at most half full, deletion by backward shift. Forgetting
//! the oldest decision is one probe into the index at a slot known in advance (the ring says
//! which hash goes next), so it is prefetched a few decisions ahead instead of missing the
//! cache once per transfer as a hash map's removal did; a recorded transfer's slot is
//! prefetched by apply the same way ([`ShardState::prefetch_decision`]).

use super::chunked::{ChunkedQueue, QueueImage};
use super::table::prefetch;
use super::{BlockHeader, Decision, ShardState, RECENT_BLOCKS_LIMIT, RECENT_TRANSACTIONS_LIMIT};
use crate::record::TxHash;
use crate::result::ResultCode;
use std::collections::VecDeque;
use std::hash::BuildHasher;

/// How many decisions ahead the slot of the one to forget is prefetched.
const EVICT_PREFETCH_DISTANCE: usize = 16;

/// One slot of the index: empty when `seq_plus_one` is 0.
#[derive(Clone, Copy, Default)]
struct Slot {
    /// The first 8 bytes of the transfer's hash (a filter: equal tags are confirmed against the
    /// ring's full hash).
    tag: u64,
    /// The decision's sequence number (its position in the log of decisions) plus one.
    seq_plus_one: u64,
}

/// The recent windows: what the log decided for the last transfers and the last block headers,
/// for lookups. A function of the applied log and the two bounds alone (decisions are recorded
/// as entries apply and the oldest are forgotten first), so replicas with the same bounds hold
/// the same windows; snapshots carry them. Not part of the state hash (derived from the log).
#[derive(Default)]
pub(super) struct RecentWindows {
    /// At most `transactions_max` distinct transfers, oldest first in `ring`.
    pub(super) transactions_max: usize,
    /// Chunked, so that a snapshot shares its full chunks instead of copying 262,144 decisions
    /// (12 MiB, about 30 ms) on the shard's core ([`ShardState::recent_decisions_image`]).
    ring: ChunkedQueue<(TxHash, Decision)>,
    /// The sequence number of the ring's front.
    first_seq: u64,
    /// Power-of-two length, at least twice `transactions_max + 1` (empty while the window is
    /// off).
    slots: Vec<Slot>,
    /// Seeded per process: where a hash lands is not for clients to choose.
    hasher: foldhash::fast::RandomState,
    /// At most `blocks_max` headers, heights increasing.
    pub(super) blocks_max: usize,
    pub(super) blocks: VecDeque<BlockHeader>,
}

/// Writes every slot of an empty `queue`'s capacity once and empties it again, so that its
/// pages fault in now rather than while it fills under load.
pub(crate) fn touch_capacity<T: Clone>(queue: &mut VecDeque<T>, placeholder: T) {
    assert!(queue.is_empty());
    let room = queue.capacity();
    queue.resize(room, placeholder);
    queue.clear();
}

fn tag_of(hash: &TxHash) -> u64 {
    u64::from_le_bytes(hash.0[..8].try_into().expect("32-byte hash"))
}

impl RecentWindows {
    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    fn home(&self, tag: u64) -> usize {
        self.hasher.hash_one(tag) as usize & self.mask()
    }

    /// The decision with sequence number `seq`, which the window holds.
    fn decision_at(&self, seq: u64) -> &(TxHash, Decision) {
        self.ring
            .get((seq - self.first_seq) as usize)
            .expect("the index points into the ring")
    }

    /// The sequence number of `hash`'s decision, if it is in the window.
    fn find(&self, hash: &TxHash) -> Option<u64> {
        if self.slots.is_empty() {
            return None;
        }
        let tag = tag_of(hash);
        let mut at = self.home(tag);
        loop {
            let slot = self.slots[at];
            if slot.seq_plus_one == 0 {
                return None;
            }
            let seq = slot.seq_plus_one - 1;
            if slot.tag == tag && self.decision_at(seq).0 == *hash {
                return Some(seq);
            }
            at = (at + 1) & self.mask();
        }
    }

    fn insert_slot(&mut self, tag: u64, seq: u64) {
        let mut at = self.home(tag);
        while self.slots[at].seq_plus_one != 0 {
            at = (at + 1) & self.mask();
        }
        self.slots[at] = Slot {
            tag,
            seq_plus_one: seq + 1,
        };
    }

    /// Removes the slot of decision `seq` (whose hash has tag `tag`), then shifts back the
    /// slots after it that probing would no longer reach.
    fn remove_slot(&mut self, tag: u64, seq: u64) {
        let mask = self.mask();
        let mut hole = self.home(tag);
        while self.slots[hole].seq_plus_one != seq + 1 {
            assert!(
                self.slots[hole].seq_plus_one != 0,
                "window ring and index agree"
            );
            hole = (hole + 1) & mask;
        }
        let mut at = (hole + 1) & mask;
        loop {
            let slot = self.slots[at];
            if slot.seq_plus_one == 0 {
                break;
            }
            // A slot may fill the hole when the hole lies on its probe path (from its home to
            // where it sits).
            let home = self.home(slot.tag);
            if (at.wrapping_sub(home) & mask) >= (at.wrapping_sub(hole) & mask) {
                self.slots[hole] = slot;
                hole = at;
            }
            at = (at + 1) & mask;
        }
        self.slots[hole] = Slot::default();
    }

    /// Forgets the oldest decisions beyond the bound and the oldest headers beyond theirs.
    pub(super) fn trim(&mut self) {
        while self.ring.len() > self.transactions_max {
            if let Some((ahead, _)) = self.ring.get(EVICT_PREFETCH_DISTANCE) {
                prefetch(&self.slots[self.home(tag_of(ahead))]);
            }
            let (old, _) = self.ring.pop_front().expect("non-empty");
            self.remove_slot(tag_of(&old), self.first_seq);
            self.first_seq += 1;
        }
        while self.blocks.len() > self.blocks_max {
            self.blocks.pop_front();
        }
    }

    /// Index slots for a bound: at most half full even while one decision over the bound
    /// waits to be trimmed (a full table would never end a probe).
    fn slots_for(transactions_max: usize) -> usize {
        if transactions_max == 0 {
            0
        } else {
            (2 * (transactions_max + 1)).next_power_of_two()
        }
    }

    /// Sizes the index for the bound and indexes the ring again.
    fn rebuild_index(&mut self) {
        let slots = Self::slots_for(self.transactions_max);
        // Written slot by slot (not zero-allocated) so that the pages fault in now.
        let mut fresh = Vec::with_capacity(slots);
        fresh.resize(slots, Slot::default());
        self.slots = fresh;
        let tags: Vec<u64> = self.ring.iter().map(|(hash, _)| tag_of(hash)).collect();
        for (i, tag) in tags.into_iter().enumerate() {
            self.insert_slot(tag, self.first_seq + i as u64);
        }
    }
}

impl ShardState {
    /// Appends a header to the blocks window (apply, or a snapshot's window in order).
    pub(super) fn push_recent_block(&mut self, header: BlockHeader) {
        assert_eq!(header.shard, self.shard);
        if let Some(last) = self.recent.blocks.back() {
            assert!(header.height > last.height, "block heights increase");
            assert_eq!(header.prev_hash, last.hash, "blocks chain");
        }
        self.recent.blocks.push_back(header);
        self.recent.trim();
    }

    /// Records what the log decided for transfer `hash` in entry `block` (call it for every
    /// transfer of an entry as it applies, in the entry's order). The first decision recorded
    /// stays while the transfer is in the window: a later one for the same signed transfer is
    /// only its resubmission refused by the nonce it already spent. The oldest transfer beyond
    /// the bound is forgotten.
    pub fn record_decision(&mut self, hash: TxHash, result: ResultCode, block: u64) {
        assert!(
            block >= 1 && block <= self.applied_index,
            "decided by an applied entry"
        );
        let recent = &mut self.recent;
        if recent.transactions_max == 0 {
            return;
        }
        if let Some((_, last)) = recent.ring.back() {
            assert!(block >= last.block, "decisions recorded in log order");
        }
        if recent.find(&hash).is_some() {
            return;
        }
        let seq = recent.first_seq + recent.ring.len() as u64;
        recent.insert_slot(tag_of(&hash), seq);
        recent.ring.push_back((hash, Decision { result, block }));
        recent.trim();
        debug_assert!(recent.ring.len() <= recent.transactions_max);
    }

    /// Hints that `hash` will be recorded or looked up soon (apply calls it some transfers
    /// ahead): its index slot is prefetched.
    pub fn prefetch_decision(&self, hash: &TxHash) {
        let recent = &self.recent;
        if !recent.slots.is_empty() {
            prefetch(&recent.slots[recent.home(tag_of(hash))]);
        }
    }

    /// What the log decided for transfer `hash`, if it is in the window.
    pub fn recent_decision(&self, hash: &TxHash) -> Option<Decision> {
        let seq = self.recent.find(hash)?;
        Some(self.recent.decision_at(seq).1)
    }

    /// The transfers window, oldest first.
    pub fn recent_decisions(&self) -> impl Iterator<Item = (&TxHash, Decision)> + '_ {
        self.recent.ring.iter().map(|(h, d)| (h, *d))
    }

    /// How many transfers the window holds.
    pub fn recent_decision_count(&self) -> usize {
        self.recent.ring.len()
    }

    /// The transfers window as it is now, for another thread (a snapshot): its full chunks
    /// shared, not copied.
    pub(crate) fn recent_decisions_image(&self) -> QueueImage<(TxHash, Decision)> {
        self.recent.ring.image()
    }

    /// The blocks window, heights increasing.
    pub fn recent_blocks(&self) -> &VecDeque<BlockHeader> {
        &self.recent.blocks
    }

    /// The windows' bounds: (transfers, block headers).
    pub fn recent_bounds(&self) -> (usize, usize) {
        (self.recent.transactions_max, self.recent.blocks_max)
    }

    /// Sets the windows' bounds (0 turns a window off); the oldest entries beyond them are
    /// forgotten at once. Every validator of a chain must use the same bounds for their windows
    /// to agree.
    pub fn set_recent_bounds(&mut self, transactions_max: usize, blocks_max: usize) {
        assert!(transactions_max <= RECENT_TRANSACTIONS_LIMIT);
        assert!(blocks_max <= RECENT_BLOCKS_LIMIT);
        let recent = &mut self.recent;
        recent.transactions_max = transactions_max;
        recent.blocks_max = blocks_max;
        recent.trim();
        if recent.slots.len() != RecentWindows::slots_for(transactions_max) {
            recent.rebuild_index();
        }
    }

    /// Allocates the recent windows at their bounds now, so that filling them never grows
    /// (copies) a large buffer on the hot path; the transfers window's chunks are also written
    /// once end to end, so that their pages fault in now and not under load (in a virtual
    /// machine a fault costs tens of microseconds: the first 16 batches of 1,000 transfers on a
    /// fresh node waited 500 ms for the 6,000 pages of a 262,144-transfer window). The index is
    /// written whole whenever it is sized (`set_recent_bounds`).
    pub fn reserve_recent(&mut self) {
        let recent = &mut self.recent;
        let more = recent.transactions_max.saturating_sub(recent.ring.len());
        // One more than the bound: `record_decision` appends before it trims.
        let placeholder = Decision {
            result: ResultCode::Ok,
            block: 0,
        };
        recent
            .ring
            .reserve_touched(more + 1, (TxHash([0; 32]), placeholder));
        let blocks = recent.blocks_max.saturating_sub(recent.blocks.len());
        recent.blocks.reserve(blocks + 1);
    }

    /// Restores the windows from a snapshot (checked by the decoder): bounds, then decisions
    /// oldest first, then headers in height order.
    pub(crate) fn restore_recent(
        &mut self,
        bounds: (usize, usize),
        decisions: impl IntoIterator<Item = (TxHash, Decision)>,
        blocks: impl IntoIterator<Item = BlockHeader>,
    ) {
        assert!(self.recent.ring.is_empty() && self.recent.blocks.is_empty());
        self.set_recent_bounds(bounds.0, bounds.1);
        for (hash, decision) in decisions {
            self.record_decision(hash, decision.result, decision.block);
        }
        for header in blocks {
            assert!(header.height <= self.applied_index);
            self.push_recent_block(header);
        }
    }
}
