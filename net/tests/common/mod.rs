//! What the transport's test suites share: the chain they run and a peer's handshake frame.

use aurigraph_net::transport::{encode_handshake, Handshake};

pub const CHAIN: &[u8] = b"aurigraph-test";
pub const SHARDS: u32 = 4;

/// The handshake frame node `node_id` of [`CHAIN`] sends (core 0 of 1).
pub fn handshake_as(node_id: u64) -> Vec<u8> {
    let mut out = Vec::new();
    encode_handshake(
        &Handshake {
            chain_id: CHAIN.to_vec(),
            node_id,
            core: 0,
            cores: 1,
            shard_count: SHARDS,
        },
        &mut out,
    )
    .unwrap();
    out
}
