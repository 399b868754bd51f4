//! Shard routing: which shard owns an address.
//!
//! `shard_of(address, S) = fnv1a64(address bytes) mod S`, where fnv1a64 is the 64-bit FNV-1a hash
//! (offset basis 0xcbf29ce484222325, prime 0x100000001b3) over the 32 address bytes. It is fixed by
//! the chain (clients may compute it to send each transfer to the right place), cheap, and spreads
//! Ed25519 public keys evenly. The number of shards `S` is fixed at genesis.

use crate::record::Address;

pub type ShardId = u32;

/// Upper bound on shards per chain (bounds per-shard tables such as cross-shard watermarks).
pub const SHARDS_MAX: u32 = 1024;

const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash = FNV_OFFSET_BASIS;
    for &b in bytes {
        hash ^= b as u64;
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash
}

/// The shard that owns `address` among `shard_count` shards.
pub fn shard_of(address: &Address, shard_count: u32) -> ShardId {
    assert!(shard_count >= 1 && shard_count <= SHARDS_MAX);
    (fnv1a64(&address.0) % shard_count as u64) as ShardId
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_reference_values() {
        // Published FNV-1a 64 test vectors.
        assert_eq!(fnv1a64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a64(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x85944171f73967e8);
    }

    #[test]
    fn spreads_addresses_evenly() {
        let shards = 4;
        let mut counts = [0u32; 4];
        for i in 0..4000u32 {
            let mut a = [0u8; 32];
            a[..4].copy_from_slice(&i.to_le_bytes());
            a[31] = 7;
            counts[shard_of(&Address(a), shards) as usize] += 1;
        }
        for c in counts {
            assert!((800..1200).contains(&c), "{counts:?}");
        }
        assert_eq!(shard_of(&Address([1; 32]), 1), 0);
    }
}
