//! The recent windows of a shard: what the log decided for the last transfers and the last
//! block headers, for lookups (`GET /transactions/{txHash}`, `GET /blocks/...`).

use super::{BlockHeader, Decision, ShardState, RECENT_BLOCKS_LIMIT, RECENT_TRANSACTIONS_LIMIT};
use crate::record::TxHash;
use crate::result::ResultCode;
use hashbrown::HashMap;
use std::collections::VecDeque;

/// The recent windows: what the log decided for the last transfers and the last block headers,
/// for lookups. A function of the applied log and the two bounds alone (decisions are recorded
/// as entries apply and the oldest are forgotten first), so replicas with the same bounds hold
/// the same windows; snapshots carry them. Not part of the state hash (derived from the log).
#[derive(Default)]
pub(super) struct RecentWindows {
    /// At most `transactions_max` distinct transfers, oldest first in `order`.
    pub(super) transactions_max: usize,
    pub(super) transactions: HashMap<TxHash, Decision, foldhash::fast::RandomState>,
    pub(super) order: VecDeque<TxHash>,
    /// At most `blocks_max` headers, heights increasing.
    pub(super) blocks_max: usize,
    pub(super) blocks: VecDeque<BlockHeader>,
}

/// Writes every slot of an empty `queue`'s capacity once and empties it again, so that its
/// pages fault in now rather than while it fills under load.
pub(crate) fn touch_capacity(queue: &mut VecDeque<TxHash>) {
    assert!(queue.is_empty());
    let room = queue.capacity();
    queue.resize(room, TxHash([0; 32]));
    queue.clear();
}

impl RecentWindows {
    pub(super) fn trim(&mut self) {
        while self.order.len() > self.transactions_max {
            let old = self.order.pop_front().expect("non-empty");
            let removed = self.transactions.remove(&old);
            assert!(removed.is_some(), "window order and map agree");
        }
        while self.blocks.len() > self.blocks_max {
            self.blocks.pop_front();
        }
        assert_eq!(self.order.len(), self.transactions.len());
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
        if self.recent.transactions_max == 0 {
            return;
        }
        if let Some(last) = self.recent.order.back() {
            let last_block = self.recent.transactions[last].block;
            assert!(block >= last_block, "decisions recorded in log order");
        }
        match self.recent.transactions.entry(hash) {
            hashbrown::hash_map::Entry::Occupied(_) => return,
            hashbrown::hash_map::Entry::Vacant(e) => {
                e.insert(Decision { result, block });
            }
        }
        self.recent.order.push_back(hash);
        self.recent.trim();
    }

    /// What the log decided for transfer `hash`, if it is in the window.
    pub fn recent_decision(&self, hash: &TxHash) -> Option<Decision> {
        self.recent.transactions.get(hash).copied()
    }

    /// The transfers window, oldest first.
    pub fn recent_decisions(&self) -> impl ExactSizeIterator<Item = (&TxHash, Decision)> + '_ {
        self.recent
            .order
            .iter()
            .map(|h| (h, self.recent.transactions[h]))
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
        self.recent.transactions_max = transactions_max;
        self.recent.blocks_max = blocks_max;
        self.recent.trim();
    }

    /// Allocates the recent windows at their bounds now, so that filling them never grows
    /// (rehashes, copies) a large table on the hot path; empty windows are also written once
    /// end to end, so that their pages fault in now and not under load (in a virtual machine a
    /// fault costs tens of microseconds: the first 16 batches of 1,000 transfers on a fresh
    /// node waited 500 ms for the 6,000 pages of a 262,144-transfer window).
    pub fn reserve_recent(&mut self) {
        let recent = &mut self.recent;
        let more = recent
            .transactions_max
            .saturating_sub(recent.transactions.len());
        // One more than the bound: `record_decision` inserts before it trims.
        recent.transactions.reserve(more + 1);
        recent.order.reserve(more + 1);
        let blocks = recent.blocks_max.saturating_sub(recent.blocks.len());
        recent.blocks.reserve(blocks + 1);
        if recent.order.is_empty() {
            let placeholder = Decision {
                result: ResultCode::Ok,
                block: 0,
            };
            let capacity = recent.transactions.capacity();
            for i in 0..capacity as u64 {
                let mut key = [0u8; 32];
                key[..8].copy_from_slice(&i.to_le_bytes());
                recent.transactions.insert(TxHash(key), placeholder);
            }
            // `clear` keeps the allocation and leaves no tombstones.
            recent.transactions.clear();
            touch_capacity(&mut recent.order);
        }
        assert!(recent.transactions.is_empty() || recent.order.len() == recent.transactions.len());
    }

    /// Restores the windows from a snapshot (checked by the decoder): bounds, then decisions
    /// oldest first, then headers in height order.
    pub(crate) fn restore_recent(
        &mut self,
        bounds: (usize, usize),
        decisions: impl IntoIterator<Item = (TxHash, Decision)>,
        blocks: impl IntoIterator<Item = BlockHeader>,
    ) {
        assert!(self.recent.order.is_empty() && self.recent.blocks.is_empty());
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
