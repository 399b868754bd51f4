//! Secret bytes from verified beacon randomness, and the bounded cache of verified pulses.
//!
//! A beacon's output is public by design: anyone can fetch the same pulse. Bytes handed out as
//! keys, seeds or nonces are therefore never the public value itself but
//!
//! ```text
//! OKM = HKDF-SHA512(salt = "aurigraph/beacon-derive/v1",
//!                   IKM  = 64 bytes from the OS CSPRNG || latest verified beacon value (64 bytes),
//!                   info = purpose label)
//! ```
//!
//! so they are as unpredictable as the OS CSPRNG even to someone who knows the pulse, and no
//! worse than the beacon should the local generator be weak. With no verified pulse the IKM is
//! the CSPRNG bytes alone (the caller marks such output `LOCAL_FALLBACK`, `verified: false`).
//! The IKM is zeroized after use.

use super::nist::NistPulse;
use super::twine::TwinePulse;
use super::VerifiedRandomness;
use hkdf::Hkdf;
use rand::{CryptoRng, RngCore};
use sha2::Sha512;
use std::collections::VecDeque;
use zeroize::Zeroize;

/// HKDF salt (domain separation for this construction).
pub const DERIVE_SALT: &[u8] = b"aurigraph/beacon-derive/v1";
/// The most bytes one derivation yields (HKDF-SHA512: 255 * 64).
pub const MAX_DERIVED_LEN: usize = 255 * 64;

/// Purpose labels (HKDF `info`) used by the node.
pub mod purpose {
    /// `random-bytes`.
    pub const RANDOM_BYTES: &[u8] = b"aurigraph/random-bytes";
    /// `transaction-nonce`.
    pub const TRANSACTION_NONCE: &[u8] = b"aurigraph/transaction-nonce";
    /// `crypto-seed`.
    pub const CRYPTO_SEED: &[u8] = b"aurigraph/crypto-seed";
}

/// Why a derivation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeriveError {
    /// Requested length is 0 or above [`MAX_DERIVED_LEN`].
    #[error("requested {0} bytes, allowed 1..={MAX_DERIVED_LEN}")]
    BadLength(usize),
}

/// Derive `len` secret bytes for `purpose` from the OS CSPRNG mixed with `beacon` (if any).
pub fn derive_secret(
    beacon: Option<&VerifiedRandomness>,
    purpose: &[u8],
    len: usize,
) -> Result<Vec<u8>, DeriveError> {
    derive_secret_with(&mut rand::rngs::OsRng, beacon, purpose, len)
}

/// [`derive_secret`] with an injectable CSPRNG (tests; the node uses the OS generator).
pub fn derive_secret_with<R: RngCore + CryptoRng>(
    rng: &mut R,
    beacon: Option<&VerifiedRandomness>,
    purpose: &[u8],
    len: usize,
) -> Result<Vec<u8>, DeriveError> {
    if len == 0 || len > MAX_DERIVED_LEN {
        return Err(DeriveError::BadLength(len));
    }
    let mut ikm = [0u8; 128];
    rng.fill_bytes(&mut ikm[..64]);
    let ikm_len = match beacon {
        Some(b) => {
            ikm[64..].copy_from_slice(&b.value);
            128
        }
        None => 64,
    };
    let hk = Hkdf::<Sha512>::new(Some(DERIVE_SALT), &ikm[..ikm_len]);
    ikm.zeroize();
    let mut out = vec![0u8; len];
    hk.expand(purpose, &mut out)
        .expect("length checked against the HKDF-SHA512 bound");
    Ok(out)
}

/// A verified pulse that can be kept in a [`PulseCache`].
pub trait Indexed {
    /// Position of the pulse in its chain.
    fn index(&self) -> u64;
}

impl Indexed for TwinePulse {
    fn index(&self) -> u64 {
        TwinePulse::index(self)
    }
}

impl Indexed for NistPulse {
    fn index(&self) -> u64 {
        self.pulse_index()
    }
}

/// Why a pulse was not cached.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CacheError {
    /// The pulse is not newer than the latest cached one.
    #[error("pulse {index} is not newer than the cached pulse {latest}")]
    NotNewer {
        /// Index offered.
        index: u64,
        /// Latest cached index.
        latest: u64,
    },
}

/// Bounded cache of verified pulses of one chain, oldest evicted first. It keeps the latest
/// pulse (the `prev` needed for the next precommitment check) and the randomness that may be
/// served. An anchor pulse (verified, but without a predecessor to check its precommitment
/// against) is kept as `prev` only, never served as randomness.
#[derive(Debug, Clone)]
pub struct PulseCache<P> {
    capacity: usize,
    entries: VecDeque<(P, Option<VerifiedRandomness>)>,
}

impl<P: Indexed> PulseCache<P> {
    /// A cache holding at most `capacity` pulses (at least 1).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        PulseCache {
            capacity,
            entries: VecDeque::with_capacity(capacity),
        }
    }

    fn push(&mut self, pulse: P, r: Option<VerifiedRandomness>) -> Result<(), CacheError> {
        if let Some(latest) = self.latest_pulse() {
            if pulse.index() <= latest.index() {
                return Err(CacheError::NotNewer {
                    index: pulse.index(),
                    latest: latest.index(),
                });
            }
        }
        if self.entries.len() == self.capacity {
            self.entries.pop_front();
        }
        self.entries.push_back((pulse, r));
        Ok(())
    }

    /// Keep a verified pulse as the chain anchor (the `prev` for the next pulse), not servable.
    pub fn insert_anchor(&mut self, pulse: P) -> Result<(), CacheError> {
        self.push(pulse, None)
    }

    /// Keep a fully verified pulse and its randomness.
    pub fn insert(&mut self, pulse: P, randomness: VerifiedRandomness) -> Result<(), CacheError> {
        self.push(pulse, Some(randomness))
    }

    /// The latest pulse: the `prev` for verifying the next one.
    pub fn latest_pulse(&self) -> Option<&P> {
        self.entries.back().map(|(p, _)| p)
    }

    /// The latest servable verified randomness.
    pub fn latest_randomness(&self) -> Option<&VerifiedRandomness> {
        self.entries.iter().rev().find_map(|(_, r)| r.as_ref())
    }

    /// The cached pulse with this index, if still held.
    pub fn get(&self, index: u64) -> Option<(&P, Option<&VerifiedRandomness>)> {
        self.entries
            .iter()
            .find(|(p, _)| p.index() == index)
            .map(|(p, r)| (p, r.as_ref()))
    }

    /// Number of cached pulses.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The capacity bound.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Provenance, Source};

    /// A fixed "CSPRNG" so that the construction is tested deterministically.
    struct Fixed(u8);
    impl RngCore for Fixed {
        fn next_u32(&mut self) -> u32 {
            u32::from(self.0)
        }
        fn next_u64(&mut self) -> u64 {
            u64::from(self.0)
        }
        fn fill_bytes(&mut self, d: &mut [u8]) {
            d.fill(self.0)
        }
        fn try_fill_bytes(&mut self, d: &mut [u8]) -> Result<(), rand::Error> {
            d.fill(self.0);
            Ok(())
        }
    }
    impl CryptoRng for Fixed {}

    fn vr(byte: u8, index: u64) -> VerifiedRandomness {
        VerifiedRandomness {
            value: [byte; 64],
            provenance: Provenance {
                source: Source::CurbyRng,
                chain: "c".into(),
                index,
                id: format!("p{index}"),
                timestamp: String::new(),
            },
        }
    }

    #[test]
    fn construction_is_hkdf_sha512_over_csprng_and_beacon() {
        let b = vr(0xAB, 1);
        let got = derive_secret_with(&mut Fixed(7), Some(&b), purpose::CRYPTO_SEED, 32).unwrap();
        let mut ikm = vec![7u8; 64];
        ikm.extend_from_slice(&[0xAB; 64]);
        let mut want = [0u8; 32];
        Hkdf::<Sha512>::new(Some(DERIVE_SALT), &ikm)
            .expand(purpose::CRYPTO_SEED, &mut want)
            .unwrap();
        assert_eq!(got, want);
        // Fallback: CSPRNG bytes alone.
        let fb = derive_secret_with(&mut Fixed(7), None, purpose::CRYPTO_SEED, 32).unwrap();
        let mut want = [0u8; 32];
        Hkdf::<Sha512>::new(Some(DERIVE_SALT), &[7u8; 64])
            .expand(purpose::CRYPTO_SEED, &mut want)
            .unwrap();
        assert_eq!(fb, want);
    }

    #[test]
    fn output_depends_on_every_input_and_is_not_the_public_value() {
        let b = vr(0xAB, 1);
        let base = derive_secret_with(&mut Fixed(7), Some(&b), purpose::RANDOM_BYTES, 64).unwrap();
        assert_ne!(base, b.value.to_vec());
        assert_ne!(
            base,
            derive_secret_with(&mut Fixed(8), Some(&b), purpose::RANDOM_BYTES, 64).unwrap()
        );
        assert_ne!(
            base,
            derive_secret_with(&mut Fixed(7), Some(&vr(0xAC, 1)), purpose::RANDOM_BYTES, 64)
                .unwrap()
        );
        assert_ne!(
            base,
            derive_secret_with(&mut Fixed(7), Some(&b), purpose::TRANSACTION_NONCE, 64).unwrap()
        );
        assert_ne!(
            base,
            derive_secret_with(&mut Fixed(7), None, purpose::RANDOM_BYTES, 64).unwrap()
        );
        // Same public pulse, real OS CSPRNG: two draws differ.
        assert_ne!(
            derive_secret(Some(&b), purpose::RANDOM_BYTES, 32).unwrap(),
            derive_secret(Some(&b), purpose::RANDOM_BYTES, 32).unwrap()
        );
    }

    #[test]
    fn length_bounds() {
        assert_eq!(derive_secret(None, b"x", 0), Err(DeriveError::BadLength(0)));
        assert_eq!(
            derive_secret(None, b"x", MAX_DERIVED_LEN + 1),
            Err(DeriveError::BadLength(MAX_DERIVED_LEN + 1))
        );
        assert_eq!(
            derive_secret(None, b"x", MAX_DERIVED_LEN).unwrap().len(),
            MAX_DERIVED_LEN
        );
        assert_eq!(derive_secret(None, b"x", 1024).unwrap().len(), 1024);
    }

    #[derive(Debug, Clone, PartialEq)]
    struct P(u64);
    impl Indexed for P {
        fn index(&self) -> u64 {
            self.0
        }
    }

    #[test]
    fn cache_respects_its_bound_and_order() {
        let mut c = PulseCache::new(3);
        assert!(c.is_empty() && c.latest_pulse().is_none() && c.latest_randomness().is_none());
        c.insert_anchor(P(10)).unwrap();
        assert_eq!(c.latest_pulse(), Some(&P(10)));
        assert!(c.latest_randomness().is_none(), "an anchor is never served");
        for i in 11..20 {
            c.insert(P(i), vr(i as u8, i)).unwrap();
            assert!(c.len() <= 3);
        }
        assert_eq!(c.len(), 3);
        assert_eq!(c.capacity(), 3);
        assert_eq!(c.latest_pulse(), Some(&P(19)));
        assert_eq!(c.latest_randomness().unwrap().provenance.index, 19);
        assert!(c.get(16).is_none() && c.get(17).is_some());
        assert_eq!(
            c.insert(P(19), vr(0, 19)),
            Err(CacheError::NotNewer {
                index: 19,
                latest: 19
            })
        );
        assert_eq!(
            c.insert(P(5), vr(0, 5)),
            Err(CacheError::NotNewer {
                index: 5,
                latest: 19
            })
        );
        assert_eq!(PulseCache::<P>::new(0).capacity(), 1);
    }

    #[test]
    fn cache_with_real_pulses() {
        use crate::twine::{self, tests::fixture, TwineChain};
        let chain =
            TwineChain::verify(&fixture("curby_rng_chain.json"), twine::CURBY_RNG_CHAIN_CID)
                .unwrap();
        let mut c = PulseCache::new(2);
        c.insert_anchor(
            twine::verify_pulse(&chain, &fixture("curby_rng_pulse_534322.json")).unwrap(),
        )
        .unwrap();
        let (p, r) = twine::verify_rng_pulse(
            &chain,
            &fixture("curby_rng_pulse_534323.json"),
            c.latest_pulse().unwrap(),
        )
        .unwrap();
        c.insert(p, r).unwrap();
        assert_eq!(c.latest_randomness().unwrap().provenance.index, 534323);
    }
}
