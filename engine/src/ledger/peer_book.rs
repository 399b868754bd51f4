//! The shard group's record of node ids: each validator's peer address (from membership
//! changes) and the node ids removed from the group, which never come back. Membership, not
//! ledger: carried in snapshots, not part of the state hash.

use super::{ShardState, PEER_ADDRESSES_MAX, PEER_ADDRESS_BYTES_MAX};
use std::collections::BTreeMap;

impl ShardState {
    /// The group's record of node ids: id -> peer address bytes, as membership changes carried
    /// them, or empty for a node id removed from the group (what snapshots carry).
    pub fn peer_addresses(&self) -> &BTreeMap<u64, Vec<u8>> {
        &self.peer_addresses
    }

    /// `node_id`'s peer address, if a membership change carried one and it was not removed.
    pub fn peer_address(&self, node_id: u64) -> Option<&[u8]> {
        self.peer_addresses
            .get(&node_id)
            .filter(|addr| !addr.is_empty())
            .map(Vec::as_slice)
    }

    /// Whether `node_id` was removed from this group. A removed node id never comes back (as
    /// etcd refuses to reuse a removed member's id): messages its old incarnation sent can
    /// still be in flight (a TCP connection under a partition retransmits for minutes), and a
    /// leader would take an old append response for the new incarnation's progress — a
    /// heartbeat then commits past the new, empty log, or over entries it does not hold.
    pub fn node_removed(&self, node_id: u64) -> bool {
        self.peer_addresses
            .get(&node_id)
            .is_some_and(|addr| addr.is_empty())
    }

    /// Remembers (or replaces) `node_id`'s peer address; an empty `addr` marks it removed.
    /// Deterministic on every replica (it is called while applying the log): an address over
    /// `PEER_ADDRESS_BYTES_MAX` bytes, a new node id while `PEER_ADDRESSES_MAX` are
    /// remembered, or an address for a removed node id is refused (logged, nothing stored);
    /// check [`ShardState::peer_address_fits`] before proposing such a change.
    pub fn set_peer_address(&mut self, node_id: u64, addr: Vec<u8>) {
        if !self.peer_address_fits(node_id, &addr) || self.node_removed(node_id) {
            tracing::warn!(
                shard = self.shard,
                node_id,
                bytes = addr.len(),
                remembered = self.peer_addresses.len(),
                removed = self.node_removed(node_id),
                "peer address not remembered (over its bounds, or for a removed node id)"
            );
            return;
        }
        self.peer_addresses.insert(node_id, addr);
        assert!(self.peer_addresses.len() <= PEER_ADDRESSES_MAX);
    }

    /// Whether [`ShardState::set_peer_address`] would remember `addr` for `node_id`.
    pub fn peer_address_fits(&self, node_id: u64, addr: &[u8]) -> bool {
        addr.len() <= PEER_ADDRESS_BYTES_MAX
            && (self.peer_addresses.len() < PEER_ADDRESSES_MAX
                || self.peer_addresses.contains_key(&node_id))
    }

    /// Marks `node_id` removed from the group: its address is forgotten and the id is never
    /// added again ([`ShardState::node_removed`]).
    pub fn mark_node_removed(&mut self, node_id: u64) {
        if self.node_removed(node_id) {
            return;
        }
        self.set_peer_address(node_id, Vec::new());
    }
}
