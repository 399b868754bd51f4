//! Aurigraph randomness beacons: pulse verifiers, derivation of served secrets, the HTTPS
//! beacon client and (feature `fake-beacon`) a loopback fake beacon for tests.
//!
//! Every verifier here is a pure function over bytes: it parses what a beacon served, checks it
//! against a pinned trust anchor (a Twine chain CID, a NIST certificate) and either returns the
//! verified randomness together with its provenance, or a precise error saying what failed.
//! Nothing here performs I/O or reads the clock.
//!
//! - [`twine`]: CURBy-RNG pulses (Twine protocol v1).
//! - [`nist`]: NIST Randomness Beacon 2.0 pulses.
//! - [`curbyq`]: CURBy-Q rounds (the Bell-test-certified source) and the Bell experiment chain.
//! - [`derive`](mod@derive): bytes that are handed out as secrets (HKDF-SHA512 over OS CSPRNG bytes and the
//!   latest verified randomness) and the bounded cache of verified pulses.
//! - [`state`]: the latest verified randomness per configured source, read by the endpoints.
//! - [`source`]: source configuration, circuit breaker and the pure poll step of a client.
//! - [`client`]: the beacon client thread (HTTPS fetches feeding the poll step into the state).
//! - `fake` (feature `fake-beacon`): a loopback HTTPS fake beacon for tests.
#![forbid(unsafe_code)]

pub mod client;
pub mod curbyq;
pub mod dagjson;
pub mod derive;
#[cfg(feature = "fake-beacon")]
pub mod fake;
pub mod nist;
pub mod source;
pub mod state;
pub mod twine;

use serde::Serialize;

/// Which beacon a verified value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Source {
    /// CURBy-RNG, the University of Colorado beacon's hash-chained random pulses (Twine v1).
    CurbyRng,
    /// CURBy-Q, the Bell-test-certified rounds of the University of Colorado beacon.
    CurbyQ,
    /// NIST Randomness Beacon 2.0.
    Nist,
}

impl Source {
    /// Upper-snake-case name, as used in the HTTP API's `source` field.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::CurbyRng => "CURBY_RNG",
            Source::CurbyQ => "CURBY_Q",
            Source::Nist => "NIST",
        }
    }
}

/// Where a verified value comes from: enough for a third party to fetch and re-verify it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Provenance {
    /// The beacon.
    pub source: Source,
    /// The chain: a Twine chain CID, or `"nist-chain-<chainIndex>"` for NIST.
    pub chain: String,
    /// Pulse index within the chain (for CURBy-Q: the index of the randomness pulse).
    pub index: u64,
    /// Pulse identifier: the pulse CID (Twine) or the pulse URI (NIST).
    pub id: String,
    /// The pulse's own timestamp, as served (RFC 3339).
    pub timestamp: String,
}

/// A verified beacon output. The value is public by design: never use it alone as a secret
/// (see [`derive`](mod@derive)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifiedRandomness {
    /// The 64 verified random bytes.
    #[serde(with = "hex_bytes")]
    pub value: [u8; 64],
    /// Where they come from.
    pub provenance: Provenance,
}

impl VerifiedRandomness {
    /// Lowercase hex of the value.
    pub fn hex(&self) -> String {
        hex::encode(self.value)
    }
}

mod hex_bytes {
    pub fn serialize<S: serde::Serializer>(v: &[u8; 64], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }
}

/// `Some` when `bytes` is exactly 64 bytes long.
pub(crate) fn to_array64(bytes: &[u8]) -> Option<[u8; 64]> {
    bytes.try_into().ok()
}
