//! A shard's state as an rkyv archive: what snapshots store and what catch-up ships.
//!
//! Accounts are written in address order, so the same state always archives to the same bytes.
//! Loading validates the archive with rkyv's checked access before a single field is trusted.
//!
//! # Versions
//! - 2 (written now): version 1's fields, then the sections that are not ledger state but must
//!   survive a restart: how far each outbox was pruned (a delivery carries it, see
//!   `replica::ReceiptDelivery::pruned_through`; at most the applied index, below every receipt
//!   still held), the peer address book (node id ascending,
//!   bounded by `PEER_ADDRESSES_MAX` entries of `PEER_ADDRESS_BYTES_MAX` bytes), and the recent
//!   windows (`ShardState::record_decision`, `ShardState::record_block`): each window's bound,
//!   then its entries oldest first (at most the bound, itself at most `RECENT_TRANSACTIONS_LIMIT`
//!   / `RECENT_BLOCKS_LIMIT`). Decode checks every entry against the state: result codes, blocks
//!   decided at or below the applied index in log order, no transfer twice, block heights
//!   increasing and chained, the newest block's hash the state's.
//! - 1: still read (a data directory written before the upgrade); its missing sections load
//!   empty.

use crate::ledger::chunked::{ChunkedQueue, QueueImage};
use crate::ledger::{
    Account, BlockHeader, Decision, Receipt, ShardState, ASSETS_MAX, PEER_ADDRESSES_MAX,
    PEER_ADDRESS_BYTES_MAX, RECENT_BLOCKS_LIMIT, RECENT_TRANSACTIONS_LIMIT,
};
use crate::record::{Address, TxHash};
use crate::result::ResultCode;
use crate::shard::SHARDS_MAX;
use rkyv::{Archive, Serialize};

#[derive(Archive, Serialize)]
struct StateArchive {
    format_version: u32,
    shard: u32,
    shard_count: u32,
    chain_id: u32,
    applied_index: u64,
    assets: Vec<u32>,
    accounts: Vec<AccountArchive>,
    inbound_watermark: Vec<u64>,
    outbox: Vec<Vec<ReceiptArchive>>,
    block_hash: [u8; 32],
    /// Per destination: how far the outbox was pruned (`ShardState::outbox_pruned_through`).
    outbox_pruned_through: Vec<u64>,
    peer_addresses: Vec<PeerArchive>,
    recent_transactions_max: u64,
    recent_transactions: Vec<DecisionArchive>,
    recent_blocks_max: u64,
    recent_blocks: Vec<BlockArchive>,
}

#[derive(Archive, Serialize)]
struct DecisionArchive {
    tx_hash: [u8; 32],
    result: u8,
    block: u64,
}

#[derive(Archive, Serialize)]
struct BlockArchive {
    height: u64,
    hash: [u8; 32],
    prev_hash: [u8; 32],
    tx_count: u32,
    term: u64,
    state_hash: [u8; 16],
    timestamp_ms: u64,
}

#[derive(Archive, Serialize)]
struct PeerArchive {
    node_id: u64,
    addr: Vec<u8>,
}

/// The archive as format version 1 wrote it (read only; tests write one).
#[cfg_attr(not(test), allow(dead_code))]
#[derive(Archive, Serialize)]
struct StateArchiveV1 {
    format_version: u32,
    shard: u32,
    shard_count: u32,
    chain_id: u32,
    applied_index: u64,
    assets: Vec<u32>,
    accounts: Vec<AccountArchive>,
    inbound_watermark: Vec<u64>,
    outbox: Vec<Vec<ReceiptArchive>>,
    block_hash: [u8; 32],
}

#[derive(Archive, Serialize)]
struct AccountArchive {
    address: [u8; 32],
    nonce_high: u64,
    nonce_window: u64,
    native: u64,
    others: Vec<(u32, u64)>,
}

#[derive(Archive, Serialize)]
struct ReceiptArchive {
    source_index: u64,
    to: [u8; 32],
    asset: u32,
    amount: u64,
}

const FORMAT_VERSION: u32 = 2;
const FORMAT_VERSION_V1: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum StateSnapshotError {
    #[error("state archive failed validation: {0}")]
    Archive(String),
    #[error("state archive is invalid: {0}")]
    Invalid(String),
}

/// Archives the shard's state.
pub fn encode_state(state: &ShardState) -> Vec<u8> {
    capture_state(state).encode()
}

/// A shard's state copied out for its snapshot and not archived yet. Taking it is one copy of
/// the accounts on the shard's core (the outboxes and the recent transfers are shared, not
/// copied); archiving it (`StateImage::encode`: sorting the accounts, rkyv) is most of a
/// snapshot's cost and can run on another thread.
pub struct StateImage {
    /// Everything but the outboxes, copied.
    archive: StateArchive,
    /// The outboxes, one per destination shard: their full chunks shared, not copied (they
    /// can hold millions of receipts); turned into `archive.outbox` by `encode`.
    outbox: Vec<QueueImage<Receipt>>,
    /// The recent transfers window, shared the same way; turned into
    /// `archive.recent_transactions` by `encode`.
    recent_transactions: QueueImage<(TxHash, Decision)>,
}

impl StateImage {
    /// The snapshot's bytes: the same as `encode_state` of the state it was taken from.
    pub fn encode(mut self) -> Vec<u8> {
        // Sorted, so that identical states archive identically.
        self.archive.accounts.sort_unstable_by_key(|a| a.address);
        self.archive.outbox = self
            .outbox
            .iter()
            .map(|queue| {
                queue
                    .iter()
                    .map(|r| ReceiptArchive {
                        source_index: r.source_index,
                        to: r.to.0,
                        asset: r.asset,
                        amount: r.amount,
                    })
                    .collect()
            })
            .collect();
        self.archive.recent_transactions = self
            .recent_transactions
            .iter()
            .map(|(hash, d)| DecisionArchive {
                tx_hash: hash.0,
                result: d.result as u8,
                block: d.block,
            })
            .collect();
        rkyv::to_bytes::<rkyv::rancor::Error>(&self.archive)
            .expect("archiving to memory cannot fail")
            .into_vec()
    }
}

impl std::fmt::Debug for StateImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateImage")
            .field("applied_index", &self.archive.applied_index)
            .field("accounts", &self.archive.accounts.len())
            .finish()
    }
}

/// Copies `state` out for a snapshot (see [`StateImage`]).
pub fn capture_state(state: &ShardState) -> StateImage {
    let accounts = state
        .accounts()
        .map(|(address, a)| AccountArchive {
            address: address.0,
            nonce_high: a.nonce_high,
            nonce_window: a.nonce_window,
            native: a.native,
            others: a.others.as_deref().cloned().unwrap_or_default(),
        })
        .collect();
    let archive = StateArchive {
        format_version: FORMAT_VERSION,
        shard: state.shard(),
        shard_count: state.shard_count(),
        chain_id: state.chain_id(),
        applied_index: state.applied_index(),
        assets: state.assets().to_vec(),
        accounts,
        inbound_watermark: (0..state.shard_count())
            .map(|s| state.inbound_watermark(s))
            .collect(),
        // Filled by `encode`, off the shard's core, from `StateImage::outbox`.
        outbox: Vec::new(),
        block_hash: state.block_hash(),
        outbox_pruned_through: (0..state.shard_count())
            .map(|d| state.outbox_pruned_through(d))
            .collect(),
        peer_addresses: state
            .peer_addresses()
            .iter()
            .map(|(&node_id, addr)| PeerArchive {
                node_id,
                addr: addr.clone(),
            })
            .collect(),
        recent_transactions_max: state.recent_bounds().0 as u64,
        // Filled by `encode`, off the shard's core, from `StateImage::recent_transactions`.
        recent_transactions: Vec::new(),
        recent_blocks_max: state.recent_bounds().1 as u64,
        recent_blocks: state
            .recent_blocks()
            .iter()
            .map(|b| BlockArchive {
                height: b.height,
                hash: b.hash,
                prev_hash: b.prev_hash,
                tx_count: b.tx_count,
                term: b.term,
                state_hash: b.state_hash.to_le_bytes(),
                timestamp_ms: b.timestamp_ms,
            })
            .collect(),
    };
    StateImage {
        archive,
        outbox: (0..state.shard_count())
            .map(|d| state.outbox(d).image())
            .collect(),
        recent_transactions: state.recent_decisions_image(),
    }
}

/// Validates and loads an archived shard state (format version 2, or 1).
pub fn decode_state(bytes: &[u8]) -> Result<ShardState, StateSnapshotError> {
    let a = match rkyv::access::<ArchivedStateArchive, rkyv::rancor::Error>(bytes) {
        Ok(a) => a,
        Err(error) => {
            // Not a version 2 archive: perhaps one written by version 1.
            return match rkyv::access::<ArchivedStateArchiveV1, rkyv::rancor::Error>(bytes) {
                Ok(v1) => decode_v1(v1),
                Err(_) => Err(StateSnapshotError::Archive(error.to_string())),
            };
        }
    };
    let invalid = |m: String| Err(StateSnapshotError::Invalid(m));
    if a.format_version.to_native() != FORMAT_VERSION {
        return invalid(format!(
            "format version {} (expected {FORMAT_VERSION})",
            a.format_version.to_native()
        ));
    }
    let core = Core {
        shard: a.shard.to_native(),
        shard_count: a.shard_count.to_native(),
        chain_id: a.chain_id.to_native(),
        applied_index: a.applied_index.to_native(),
        assets: &a.assets,
        accounts: &a.accounts,
        inbound_watermark: &a.inbound_watermark,
        outbox: &a.outbox,
        block_hash: a.block_hash,
    };
    let mut state = core.load()?;
    let pruned: Vec<u64> = a
        .outbox_pruned_through
        .iter()
        .map(|p| p.to_native())
        .collect();
    if pruned.len() != state.shard_count() as usize {
        return invalid(format!(
            "{} outbox pruning points for {} shards",
            pruned.len(),
            state.shard_count()
        ));
    }
    for (d, &through) in pruned.iter().enumerate() {
        if through > state.applied_index() {
            return invalid(format!(
                "outbox to shard {d} pruned through {through}, beyond the applied index {}",
                state.applied_index()
            ));
        }
        if state
            .outbox(d as u32)
            .front()
            .is_some_and(|r| r.source_index <= through)
        {
            return invalid(format!(
                "outbox to shard {d} holds a receipt at or below its pruning point {through}"
            ));
        }
    }
    state.set_outbox_pruned_through(pruned);
    if a.peer_addresses.len() > PEER_ADDRESSES_MAX {
        return invalid(format!(
            "{} peer addresses (at most {PEER_ADDRESSES_MAX})",
            a.peer_addresses.len()
        ));
    }
    let mut previous: Option<u64> = None;
    for peer in a.peer_addresses.iter() {
        let node_id = peer.node_id.to_native();
        if previous.is_some_and(|p| p >= node_id) {
            return invalid("peer addresses are not in ascending node id order".into());
        }
        previous = Some(node_id);
        if peer.addr.len() > PEER_ADDRESS_BYTES_MAX {
            return invalid(format!(
                "peer address of node {node_id} has {} bytes (at most {PEER_ADDRESS_BYTES_MAX})",
                peer.addr.len()
            ));
        }
        assert!(state.peer_address_fits(node_id, &peer.addr));
        state.set_peer_address(node_id, peer.addr.to_vec());
    }
    assert_eq!(state.peer_addresses().len(), a.peer_addresses.len());
    decode_recent(&mut state, a)?;
    Ok(state)
}

/// The recent windows' section, checked entry by entry against the loaded state.
fn decode_recent(
    state: &mut ShardState,
    a: &ArchivedStateArchive,
) -> Result<(), StateSnapshotError> {
    let invalid = |m: String| Err(StateSnapshotError::Invalid(m));
    let transactions_max = a.recent_transactions_max.to_native();
    let blocks_max = a.recent_blocks_max.to_native();
    if transactions_max > RECENT_TRANSACTIONS_LIMIT as u64
        || a.recent_transactions.len() as u64 > transactions_max
    {
        return invalid(format!(
            "{} recent transfers, bound {transactions_max} (at most {RECENT_TRANSACTIONS_LIMIT})",
            a.recent_transactions.len()
        ));
    }
    if blocks_max > RECENT_BLOCKS_LIMIT as u64 || a.recent_blocks.len() as u64 > blocks_max {
        return invalid(format!(
            "{} recent blocks, bound {blocks_max} (at most {RECENT_BLOCKS_LIMIT})",
            a.recent_blocks.len()
        ));
    }
    let applied = state.applied_index();
    let mut seen = std::collections::HashSet::with_capacity(a.recent_transactions.len());
    let mut previous_block = 1u64;
    let mut decisions = Vec::with_capacity(a.recent_transactions.len());
    for d in a.recent_transactions.iter() {
        let Some(result) = ResultCode::from_u8(d.result) else {
            return invalid(format!("recent transfer with result code {}", d.result));
        };
        let block = d.block.to_native();
        if block < previous_block || block > applied {
            return invalid(format!(
                "recent transfer decided at block {block}: not in log order or past the applied index {applied}"
            ));
        }
        previous_block = block;
        if !seen.insert(d.tx_hash) {
            return invalid("a transfer appears twice in the recent window".into());
        }
        decisions.push((TxHash(d.tx_hash), Decision { result, block }));
    }
    let mut blocks: Vec<BlockHeader> = Vec::with_capacity(a.recent_blocks.len());
    for b in a.recent_blocks.iter() {
        let header = BlockHeader {
            shard: state.shard(),
            height: b.height.to_native(),
            hash: b.hash,
            prev_hash: b.prev_hash,
            tx_count: b.tx_count.to_native(),
            term: b.term.to_native(),
            state_hash: u128::from_le_bytes(b.state_hash),
            timestamp_ms: b.timestamp_ms.to_native(),
        };
        let chained = blocks
            .last()
            .is_none_or(|last| header.height > last.height && header.prev_hash == last.hash);
        if header.height == 0 || header.height > applied || !chained {
            return invalid(format!(
                "recent block at height {}: not chained in height order up to the applied index {applied}",
                header.height
            ));
        }
        blocks.push(header);
    }
    if blocks.last().is_some_and(|b| b.hash != state.block_hash()) {
        return invalid("the newest recent block is not the state's last block".into());
    }
    let (count, block_count) = (decisions.len(), blocks.len());
    state.restore_recent(
        (transactions_max as usize, blocks_max as usize),
        decisions,
        blocks,
    );
    assert_eq!(state.recent_decision_count(), count);
    assert_eq!(state.recent_blocks().len(), block_count);
    Ok(())
}

fn decode_v1(a: &ArchivedStateArchiveV1) -> Result<ShardState, StateSnapshotError> {
    if a.format_version.to_native() != FORMAT_VERSION_V1 {
        return Err(StateSnapshotError::Invalid(format!(
            "format version {} (expected {FORMAT_VERSION} or {FORMAT_VERSION_V1})",
            a.format_version.to_native()
        )));
    }
    Core {
        shard: a.shard.to_native(),
        shard_count: a.shard_count.to_native(),
        chain_id: a.chain_id.to_native(),
        applied_index: a.applied_index.to_native(),
        assets: &a.assets,
        accounts: &a.accounts,
        inbound_watermark: &a.inbound_watermark,
        outbox: &a.outbox,
        block_hash: a.block_hash,
    }
    .load()
}

/// The ledger fields every version carries, as archived.
struct Core<'a> {
    shard: u32,
    shard_count: u32,
    chain_id: u32,
    applied_index: u64,
    assets: &'a rkyv::vec::ArchivedVec<rkyv::Archived<u32>>,
    accounts: &'a rkyv::vec::ArchivedVec<ArchivedAccountArchive>,
    inbound_watermark: &'a rkyv::vec::ArchivedVec<rkyv::Archived<u64>>,
    outbox: &'a rkyv::vec::ArchivedVec<rkyv::vec::ArchivedVec<ArchivedReceiptArchive>>,
    block_hash: [u8; 32],
}

impl Core<'_> {
    fn load(self) -> Result<ShardState, StateSnapshotError> {
        let invalid = |m: String| Err(StateSnapshotError::Invalid(m));
        let (shard, shard_count) = (self.shard, self.shard_count);
        if shard_count == 0 || shard_count > SHARDS_MAX || shard >= shard_count {
            return invalid(format!("shard {shard} of {shard_count}"));
        }
        if self.inbound_watermark.len() != shard_count as usize
            || self.outbox.len() != shard_count as usize
        {
            return invalid("per-shard tables do not match the shard count".into());
        }
        let assets: Vec<u32> = self.assets.iter().map(|x| x.to_native()).collect();
        if assets.is_empty() || assets.len() > ASSETS_MAX || !assets.windows(2).all(|w| w[0] < w[1])
        {
            return invalid(format!(
                "asset list must be non-empty, sorted and at most {ASSETS_MAX} long"
            ));
        }
        let accounts = self.accounts.iter().map(|acc| {
            let others: Vec<(u32, u64)> = acc
                .others
                .iter()
                .map(|e| (e.0.to_native(), e.1.to_native()))
                .collect();
            (
                Address(acc.address),
                Account {
                    nonce_high: acc.nonce_high.to_native(),
                    nonce_window: acc.nonce_window.to_native(),
                    native: acc.native.to_native(),
                    others: (!others.is_empty()).then(|| Box::new(others)),
                },
            )
        });
        let outbox: Vec<ChunkedQueue<Receipt>> = self
            .outbox
            .iter()
            .map(|q| {
                q.iter()
                    .map(|r| Receipt {
                        source_index: r.source_index.to_native(),
                        to: Address(r.to),
                        asset: r.asset.to_native(),
                        amount: r.amount.to_native(),
                    })
                    .collect()
            })
            .collect();
        Ok(ShardState::from_parts(
            shard,
            shard_count,
            self.chain_id,
            assets,
            self.applied_index,
            accounts,
            self.inbound_watermark
                .iter()
                .map(|w| w.to_native())
                .collect(),
            outbox,
            self.block_hash,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> ShardState {
        ShardState::empty(0, 2, 7, vec![0, 5])
    }

    #[test]
    fn preallocated_windows_start_empty_and_keep_their_bound() {
        let mut s = state();
        s.set_recent_bounds(100, 4);
        s.reserve_recent();
        assert_eq!(
            s.recent_decision_count(),
            0,
            "the pre-faulting placeholders are gone"
        );
        for i in 0..150u8 {
            s.set_applied_index(u64::from(i) + 1);
            s.record_decision(TxHash([i; 32]), ResultCode::Ok, u64::from(i) + 1);
        }
        assert_eq!(s.recent_decision_count(), 100);
        assert!(
            s.recent_decision(&TxHash([0; 32])).is_none(),
            "oldest forgotten"
        );
        assert!(s.recent_decision(&TxHash([149; 32])).is_some());
        // A window restored with decisions is left as it is.
        let mut again = decode_state(&encode_state(&s)).unwrap();
        again.set_recent_bounds(100, 4);
        again.reserve_recent();
        assert_eq!(again.recent_decision_count(), 100);
    }

    fn archive_of(state: &ShardState) -> StateArchive {
        // The encoder's own output, taken apart again, so that a test can spoil one field.
        let bytes = encode_state(state);
        let a = rkyv::access::<ArchivedStateArchive, rkyv::rancor::Error>(&bytes).unwrap();
        StateArchive {
            format_version: a.format_version.to_native(),
            shard: a.shard.to_native(),
            shard_count: a.shard_count.to_native(),
            chain_id: a.chain_id.to_native(),
            applied_index: a.applied_index.to_native(),
            assets: a.assets.iter().map(|x| x.to_native()).collect(),
            accounts: Vec::new(),
            inbound_watermark: a.inbound_watermark.iter().map(|x| x.to_native()).collect(),
            outbox: a.outbox.iter().map(|_| Vec::new()).collect(),
            block_hash: a.block_hash,
            outbox_pruned_through: a
                .outbox_pruned_through
                .iter()
                .map(|x| x.to_native())
                .collect(),
            peer_addresses: a
                .peer_addresses
                .iter()
                .map(|p| PeerArchive {
                    node_id: p.node_id.to_native(),
                    addr: p.addr.to_vec(),
                })
                .collect(),
            recent_transactions_max: a.recent_transactions_max.to_native(),
            recent_transactions: a
                .recent_transactions
                .iter()
                .map(|d| DecisionArchive {
                    tx_hash: d.tx_hash,
                    result: d.result,
                    block: d.block.to_native(),
                })
                .collect(),
            recent_blocks_max: a.recent_blocks_max.to_native(),
            recent_blocks: a
                .recent_blocks
                .iter()
                .map(|b| BlockArchive {
                    height: b.height.to_native(),
                    hash: b.hash,
                    prev_hash: b.prev_hash,
                    tx_count: b.tx_count.to_native(),
                    term: b.term.to_native(),
                    state_hash: b.state_hash,
                    timestamp_ms: b.timestamp_ms.to_native(),
                })
                .collect(),
        }
    }

    fn bytes_of(archive: &StateArchive) -> Vec<u8> {
        rkyv::to_bytes::<rkyv::rancor::Error>(archive)
            .unwrap()
            .into_vec()
    }

    #[test]
    fn peer_addresses_and_removed_node_ids_survive_a_round_trip_outside_the_state_hash() {
        let mut s = state();
        let hash = s.state_hash();
        s.set_peer_address(3, b"10.0.0.3:7000".to_vec());
        s.set_peer_address(1, b"10.0.0.1:7000".to_vec());
        s.set_peer_address(2, b"10.0.0.2:7000".to_vec());
        s.mark_node_removed(2);
        s.mark_node_removed(5);
        assert_eq!(s.state_hash(), hash, "membership is not ledger state");
        let bytes = encode_state(&s);
        let restored = decode_state(&bytes).unwrap();
        assert_eq!(restored.peer_addresses(), s.peer_addresses());
        assert_eq!(restored.peer_address(1), Some(&b"10.0.0.1:7000"[..]));
        assert_eq!(restored.peer_address(2), None);
        assert!(restored.node_removed(2) && restored.node_removed(5));
        assert!(!restored.node_removed(1) && !restored.node_removed(4));
        // A removed node id gets no address again.
        let mut again = decode_state(&bytes).unwrap();
        again.set_peer_address(2, b"10.0.0.2:7000".to_vec());
        assert!(again.node_removed(2));
        assert_eq!(encode_state(&restored), bytes);
    }

    #[test]
    fn outbox_pruning_points_survive_a_round_trip_and_are_checked() {
        let mut s = state();
        s.set_applied_index(40);
        s.prune_outbox(1, 30);
        let restored = decode_state(&encode_state(&s)).unwrap();
        assert_eq!(restored.outbox_pruned_through(1), 30);
        assert_eq!(restored.outbox_pruned_through(0), 0);
        assert_eq!(restored.state_hash(), s.state_hash());
        let mut archive = archive_of(&s);
        archive.outbox_pruned_through = vec![0, 41];
        let error = decode_state(&bytes_of(&archive)).unwrap_err().to_string();
        assert!(error.contains("beyond the applied index"), "{error}");
        archive.outbox_pruned_through = vec![0];
        let error = decode_state(&bytes_of(&archive)).unwrap_err().to_string();
        assert!(error.contains("pruning points"), "{error}");
    }

    #[test]
    fn credits_reported_beyond_the_applied_index_prune_only_what_exists() {
        // A lagging replica hears the other validators' higher credit reports: it must not
        // forget receipts it has not produced yet (its next snapshot would hold receipts
        // below its pruning point, and not load).
        let mut s = state();
        s.set_applied_index(10);
        s.prune_outbox(1, 20);
        assert_eq!(s.outbox_pruned_through(1), 10);
        let restored = decode_state(&encode_state(&s)).unwrap();
        assert_eq!(restored.outbox_pruned_through(1), 10);
    }

    #[test]
    fn peer_addresses_over_their_bounds_are_refused() {
        let mut s = state();
        s.set_peer_address(1, vec![b'a'; PEER_ADDRESS_BYTES_MAX + 1]);
        assert!(s.peer_addresses().is_empty());
        for id in 0..PEER_ADDRESSES_MAX as u64 {
            s.set_peer_address(id, vec![b'a'; PEER_ADDRESS_BYTES_MAX]);
        }
        s.set_peer_address(u64::MAX, b"x".to_vec());
        assert_eq!(s.peer_addresses().len(), PEER_ADDRESSES_MAX);
        assert!(!s.peer_addresses().contains_key(&u64::MAX));
        // Replacing a remembered one is still possible at the bound.
        s.set_peer_address(0, b"y".to_vec());
        assert_eq!(s.peer_addresses()[&0], b"y".to_vec());
        assert!(decode_state(&encode_state(&s)).is_ok());

        let mut archive = archive_of(&state());
        archive.peer_addresses = vec![PeerArchive {
            node_id: 1,
            addr: vec![0; PEER_ADDRESS_BYTES_MAX + 1],
        }];
        let error = decode_state(&bytes_of(&archive)).unwrap_err().to_string();
        assert!(error.contains("peer address of node 1"), "{error}");
        archive.peer_addresses = (0..=PEER_ADDRESSES_MAX as u64)
            .map(|node_id| PeerArchive {
                node_id,
                addr: Vec::new(),
            })
            .collect();
        let error = decode_state(&bytes_of(&archive)).unwrap_err().to_string();
        assert!(error.contains("peer addresses (at most"), "{error}");
        archive.peer_addresses = [2, 1]
            .map(|node_id| PeerArchive {
                node_id,
                addr: Vec::new(),
            })
            .into();
        let error = decode_state(&bytes_of(&archive)).unwrap_err().to_string();
        assert!(error.contains("ascending node id"), "{error}");
    }

    /// A shard with recent windows: three blocks (two of transfers, one empty of them).
    fn state_with_windows() -> ShardState {
        let mut s = state();
        s.set_recent_bounds(4, 2);
        for (height, hashes) in [(1u64, &[1u8, 2][..]), (2, &[3][..]), (4, &[4, 5][..])] {
            s.set_applied_index(height);
            for &h in hashes {
                s.record_decision(TxHash([h; 32]), ResultCode::InsufficientFunds, height);
            }
            s.record_block(
                height,
                1,
                [&[height as u8][..]],
                hashes.len() as u32,
                1_000 + height,
            );
        }
        s
    }

    #[test]
    fn recent_windows_survive_a_round_trip_and_keep_their_bounds() {
        let s = state_with_windows();
        assert_eq!(
            s.recent_decision_count(),
            4,
            "the oldest transfer forgotten"
        );
        assert!(s.recent_decision(&TxHash([1; 32])).is_none());
        assert_eq!(
            s.recent_blocks()
                .iter()
                .map(|b| b.height)
                .collect::<Vec<_>>(),
            vec![2, 4]
        );
        let bytes = encode_state(&s);
        let restored = decode_state(&bytes).unwrap();
        assert_eq!(restored.recent_bounds(), (4, 2));
        assert!(restored.recent_decisions().eq(s.recent_decisions()));
        assert_eq!(restored.recent_blocks(), s.recent_blocks());
        assert_eq!(restored.state_hash(), s.state_hash());
        assert_eq!(encode_state(&restored), bytes);
    }

    #[test]
    fn recent_windows_that_the_log_could_not_have_made_are_refused() {
        let good = state_with_windows();
        let check = |spoil: &dyn Fn(&mut StateArchive), expected: &str| {
            let mut archive = archive_of(&good);
            assert!(decode_state(&bytes_of(&archive)).is_ok());
            spoil(&mut archive);
            let error = decode_state(&bytes_of(&archive)).unwrap_err().to_string();
            assert!(error.contains(expected), "{expected}: {error}");
        };
        check(
            &|a| a.recent_transactions_max = 3,
            "4 recent transfers, bound 3",
        );
        check(
            &|a| a.recent_transactions_max = RECENT_TRANSACTIONS_LIMIT as u64 + 1,
            "recent transfers, bound",
        );
        check(&|a| a.recent_blocks_max = 1, "2 recent blocks, bound 1");
        check(&|a| a.recent_transactions[1].result = 10, "result code 10");
        check(&|a| a.recent_transactions[0].block = 4, "not in log order");
        check(
            &|a| a.recent_transactions[3].block = 5,
            "past the applied index",
        );
        check(&|a| a.recent_transactions[3].block = 0, "not in log order");
        check(
            &|a| a.recent_transactions[3].tx_hash = a.recent_transactions[2].tx_hash,
            "appears twice",
        );
        check(&|a| a.recent_blocks[1].prev_hash = [0; 32], "not chained");
        check(&|a| a.recent_blocks[1].height = 2, "not chained");
        check(
            &|a| a.recent_blocks[1].height = 5,
            "up to the applied index 4",
        );
        check(
            &|a| {
                a.recent_blocks.pop();
            },
            "not the state's last block",
        );
    }

    #[test]
    fn a_version_1_archive_still_loads_and_other_versions_are_named() {
        let s = ShardState::empty(1, 2, 7, vec![0]);
        let v1 = StateArchiveV1 {
            format_version: FORMAT_VERSION_V1,
            shard: 1,
            shard_count: 2,
            chain_id: 7,
            applied_index: 0,
            assets: vec![0],
            accounts: Vec::new(),
            inbound_watermark: vec![0, 0],
            outbox: vec![Vec::new(), Vec::new()],
            block_hash: [0; 32],
        };
        let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(&v1)
            .unwrap()
            .into_vec();
        let loaded = decode_state(&bytes).unwrap();
        assert_eq!(loaded.state_hash(), s.state_hash());
        assert!(loaded.peer_addresses().is_empty());

        let mut archive = archive_of(&s);
        archive.format_version = 3;
        let error = decode_state(&bytes_of(&archive)).unwrap_err().to_string();
        assert!(error.contains("format version 3"), "{error}");
    }
}
