//! Batched Ed25519 verification of records.
//!
//! Signatures are checked in chunks with ed25519-dalek's batch verification (one multiscalar
//! multiplication per chunk). When a chunk fails, each of its signatures is verified on its own to
//! find the culprits, so the outcome per record is the one-by-one outcome: for every input that is
//! not deliberately crafted with small-order components (which batch equations may treat
//! differently from single verification) the two agree, and a property test checks it.

use crate::record::Record;
use ed25519_dalek::{Signature, Verifier as _, VerifyingKey};

/// Signatures per batch equation. Larger chunks amortise more (measured here: 256 verifies about
/// a fifth more signatures per second than 64, with AVX2 or AVX-512 IFMA), but a failure costs a
/// one-by-one pass over the chunk, so the chunk bounds what one bad signature can cost.
pub const VERIFY_CHUNK_DEFAULT: usize = 256;

/// Decompressed public keys kept per verifier. Decompressing a key (a field exponentiation, about
/// 3 µs here) costs a quarter (AVX2) to a third (AVX-512 IFMA) of a batched verification of the
/// signature, and senders repeat, so the stage keeps the keys it decompressed. Bounded: when
/// full, the cache is cleared and refills (an epoch, not an LRU: no bookkeeping on the hot
/// path).
pub const KEY_CACHE_ENTRIES_MAX: usize = 16_384;

/// Reusable verification stage (keeps its scratch vectors and key cache between calls).
#[derive(Debug)]
pub struct SignatureVerifier {
    key_cache: hashbrown::HashMap<[u8; 32], VerifyingKey, foldhash::fast::RandomState>,
    key_cache_hits: u64,
    key_cache_misses: u64,
    chunk_records_max: usize,
    keys: Vec<VerifyingKey>,
    signatures: Vec<Signature>,
    positions: Vec<usize>,
}

impl Default for SignatureVerifier {
    fn default() -> Self {
        SignatureVerifier::new(VERIFY_CHUNK_DEFAULT)
    }
}

impl SignatureVerifier {
    pub fn new(chunk_records_max: usize) -> SignatureVerifier {
        assert!(chunk_records_max >= 1);
        SignatureVerifier {
            key_cache: Default::default(),
            key_cache_hits: 0,
            key_cache_misses: 0,
            chunk_records_max,
            keys: Vec::with_capacity(chunk_records_max),
            signatures: Vec::with_capacity(chunk_records_max),
            positions: Vec::with_capacity(chunk_records_max),
        }
    }

    /// (hits, misses) of the decompressed-key cache since creation.
    pub fn key_cache_stats(&self) -> (u64, u64) {
        (self.key_cache_hits, self.key_cache_misses)
    }

    fn key(&mut self, bytes: &[u8; 32]) -> Option<VerifyingKey> {
        if let Some(key) = self.key_cache.get(bytes) {
            self.key_cache_hits += 1;
            return Some(*key);
        }
        self.key_cache_misses += 1;
        // A `from` that is not a point on the curve can never verify (and is not cached).
        let key = VerifyingKey::from_bytes(bytes).ok()?;
        if self.key_cache.len() >= KEY_CACHE_ENTRIES_MAX {
            self.key_cache.clear();
        }
        self.key_cache.insert(*bytes, key);
        Some(key)
    }

    /// Verifies every record; `valid[i]` tells whether record `i`'s signature is valid for its
    /// `from` key over its 104-byte message. Returns the number of valid signatures.
    pub fn verify(&mut self, records: &[Record], valid: &mut Vec<bool>) -> usize {
        valid.clear();
        valid.resize(records.len(), false);
        let mut valid_count = 0;
        for (chunk_index, chunk) in records.chunks(self.chunk_records_max).enumerate() {
            let base = chunk_index * self.chunk_records_max;
            valid_count += self.verify_chunk(chunk, &mut valid[base..base + chunk.len()]);
        }
        valid_count
    }

    fn verify_chunk(&mut self, chunk: &[Record], valid: &mut [bool]) -> usize {
        self.keys.clear();
        self.signatures.clear();
        self.positions.clear();
        for (i, record) in chunk.iter().enumerate() {
            if let Some(key) = self.key(record.from_bytes()) {
                self.keys.push(key);
                self.signatures
                    .push(Signature::from_bytes(record.signature()));
                self.positions.push(i);
            }
        }
        if self.positions.is_empty() {
            return 0;
        }
        let messages: Vec<&[u8]> = self
            .positions
            .iter()
            .map(|&i| &chunk[i].message()[..])
            .collect();
        if ed25519_dalek::verify_batch(&messages, &self.signatures, &self.keys).is_ok() {
            for &i in &self.positions {
                valid[i] = true;
            }
            return self.positions.len();
        }
        // Find the culprits one by one.
        let mut count = 0;
        for (slot, &i) in self.positions.iter().enumerate() {
            let ok = self.keys[slot]
                .verify(messages[slot], &self.signatures[slot])
                .is_ok();
            valid[i] = ok;
            count += ok as usize;
        }
        count
    }
}

/// One-by-one reference verification of a single record.
pub fn verify_one(record: &Record) -> bool {
    match VerifyingKey::from_bytes(record.from_bytes()) {
        Ok(key) => key
            .verify(record.message(), &Signature::from_bytes(record.signature()))
            .is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{address_of, Address, Transfer};
    use ed25519_dalek::SigningKey;
    use proptest::prelude::*;

    fn signed(seed: u8, nonce: u64) -> Record {
        let key = SigningKey::from_bytes(&[seed; 32]);
        Transfer {
            chain_id: 7,
            from: address_of(&key),
            to: Address([9; 32]),
            asset: 0,
            amount: 5,
            nonce,
        }
        .sign(&key)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn batch_results_equal_one_by_one(
            corrupt in proptest::collection::vec((any::<bool>(), 0usize..168, 1u8..=255), 1..40),
            chunk in 1usize..16,
        ) {
            let records: Vec<Record> = corrupt
                .iter()
                .enumerate()
                .map(|(i, &(flip, at, mask))| {
                    let mut r = signed(i as u8, i as u64);
                    if flip {
                        r.0[at] ^= mask;
                    }
                    r
                })
                .collect();
            let mut verifier = SignatureVerifier::new(chunk);
            let mut valid = Vec::new();
            let count = verifier.verify(&records, &mut valid);
            let expected: Vec<bool> = records.iter().map(verify_one).collect();
            prop_assert_eq!(&valid, &expected);
            prop_assert_eq!(count, expected.iter().filter(|v| **v).count());
        }
    }

    #[test]
    fn all_valid_and_invalid_key() {
        let mut records: Vec<Record> = (0..10).map(|i| signed(i, i as u64)).collect();
        let mut v = SignatureVerifier::new(4);
        let mut valid = Vec::new();
        assert_eq!(v.verify(&records, &mut valid), 10);
        // A `from` that does not decompress to a point.
        records[3].0[20..52].copy_from_slice(&[0xff; 32]);
        assert_eq!(v.verify(&records, &mut valid), 9);
        assert!(!valid[3]);
    }
}
