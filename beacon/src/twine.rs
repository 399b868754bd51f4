//! CURBy-RNG pulse verification (Twine protocol v1).
//!
//! A Twine v1 record (chain or pulse) is served as DAG-JSON `{"cid": {"/": CID}, "data":
//! {"content": ..., "signature": JWS}}`. Verification, in order:
//!
//! 1. the record's CID is CIDv1, codec dag-cbor (0x71), multihash sha3-512 (0x14, 64 bytes), and
//!    equals the CID recomputed as SHA3-512 over the DAG-CBOR encoding of `{content, signature}`;
//! 2. a chain record's CID equals the pinned chain CID (the trust anchor, which commits to the
//!    key); a pulse's `content.chain` equals that chain's CID;
//! 3. `signature` is a compact JWS with header `{"alg":"RS256"}` whose payload is
//!    `0x14 0x40 || SHA3-512(DAG-CBOR(content))` and whose RSASSA-PKCS1-v1_5/SHA-256 signature over
//!    `header.payload` verifies with the chain's RSA key (the chain record is self-signed the same
//!    way);
//! 4. for a CURBy-RNG pulse N given the verified pulse N-1: `index` is consecutive,
//!    `links[0]` = CID(N-1), and `SHA3-512(salt[N] XOR digest(CID[N-1]))` = `pre[N-1]` (compared
//!    as the full multihash `0x14 0x40 || digest`);
//! 5. the randomness of pulse N is the 64-byte SHA3-512 digest inside its CID.
//!
//! Not checked: mixins (cross-links to other chains) are parsed but the pulses they name are not
//! fetched or verified; links other than `links[0]` (the skip-list) are not followed; the pulse
//! timestamp is reported, not compared with a clock.

use super::dagjson::{self, DagJsonError};
use super::{Provenance, Source, VerifiedRandomness};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ipld_core::cid::multihash::Multihash;
use ipld_core::cid::{Cid, Version};
use ipld_core::ipld::Ipld;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::signature::Verifier;
use rsa::{BigUint, RsaPublicKey};
use sha2::Sha256;
use sha3::{Digest, Sha3_512};
use std::collections::BTreeMap;

/// Chain CID of CURBy-RNG (University of Colorado), the default pin.
pub const CURBY_RNG_CHAIN_CID: &str = "bafyriqci6f3st2mg7gq733ho4zvvth32zpy2mtiylixwmhoz6d627eo3jfpmbxepe54u2zdvymonq5sp3armtm4rodxsynsirr5g3xsbd3q4s";

/// Multicodec code of DAG-CBOR.
pub const DAG_CBOR: u64 = 0x71;
/// Multihash code of SHA3-512.
pub const SHA3_512: u64 = 0x14;

/// Why a Twine v1 record was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TwineError {
    /// The body is not JSON at all (or truncated).
    #[error("not JSON: {0}")]
    NotJson(String),
    /// JSON, but not valid DAG-JSON.
    #[error("invalid DAG-JSON: {0}")]
    DagJson(#[from] DagJsonError),
    /// A required field is missing or has the wrong type.
    #[error("malformed Twine record: {0}")]
    Malformed(String),
    /// The CID is not CIDv1 / dag-cbor / sha3-512 (64 bytes).
    #[error("unsupported CID {cid}: {reason}")]
    UnsupportedCid {
        /// The CID as served.
        cid: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The served CID does not match the DAG-CBOR encoding of `{content, signature}`.
    #[error("CID mismatch: served {served}, computed {computed}")]
    CidMismatch {
        /// CID as served.
        served: String,
        /// CID recomputed from the content.
        computed: String,
    },
    /// The record belongs to a different chain than the pinned one.
    #[error("wrong chain: expected {expected}, found {found}")]
    WrongChain {
        /// The pinned chain CID.
        expected: String,
        /// The chain CID found.
        found: String,
    },
    /// The chain's JWK is not a usable RSA key.
    #[error("bad chain key: {0}")]
    BadKey(String),
    /// The signature is not a compact JWS.
    #[error("malformed JWS: {0}")]
    MalformedJws(String),
    /// The JWS header names an algorithm other than RS256 (or is otherwise unacceptable).
    #[error("unsupported JWS header: {0}")]
    UnsupportedJwsHeader(String),
    /// The JWS payload is not `0x14 0x40 || SHA3-512(DAG-CBOR(content))`.
    #[error("JWS payload does not commit to the content")]
    SignaturePayloadMismatch,
    /// The RSA signature does not verify with the chain's key.
    #[error("RSA signature does not verify with the chain key")]
    BadSignature,
    /// Pulse N's index is not pulse N-1's index + 1.
    #[error("pulse index {index} does not follow previous index {previous}")]
    IndexNotConsecutive {
        /// Index of the previous pulse.
        previous: u64,
        /// Index of this pulse.
        index: u64,
    },
    /// `links[0]` of pulse N is not the CID of pulse N-1.
    #[error("broken link: links[0] is {found}, previous pulse is {expected}")]
    BrokenLink {
        /// CID of the previous pulse.
        expected: String,
        /// `links[0]` as found (or "none").
        found: String,
    },
    /// `SHA3-512(salt[N] XOR digest(CID[N-1]))` differs from `pre[N-1]`.
    #[error("precommitment mismatch: salt does not open the previous pulse's precommitment")]
    PrecommitmentMismatch,
}

/// A verified Twine v1 chain record: its CID equals the pin and it is self-signed with its key.
#[derive(Debug, Clone)]
pub struct TwineChain {
    cid: Cid,
    key: RsaPublicKey,
    name: Option<String>,
    specification: Option<String>,
}

impl TwineChain {
    /// Verify a chain record (as served by `GET /chains/{chainCid}`) against a pinned chain CID.
    pub fn verify(json: &[u8], pinned_cid: &str) -> Result<Self, TwineError> {
        let pinned = parse_cid(pinned_cid)?;
        let rec = Record::parse(json)?;
        if rec.cid != pinned {
            return Err(TwineError::WrongChain {
                expected: pinned.to_string(),
                found: rec.cid.to_string(),
            });
        }
        let content = rec.content_map()?;
        let key = match content.get("key") {
            Some(Ipld::Map(jwk)) => rsa_key_from_jwk(jwk)?,
            _ => return Err(TwineError::Malformed("chain content.key missing".into())),
        };
        verify_jws(&key, &rec.signature, &rec.content)?;
        let meta = match content.get("meta") {
            Some(Ipld::Map(m)) => Some(m),
            _ => None,
        };
        Ok(TwineChain {
            cid: rec.cid,
            key,
            name: meta.and_then(|m| string(m.get("name"))),
            specification: string(content.get("specification")),
        })
    }

    /// The chain CID.
    pub fn cid(&self) -> &Cid {
        &self.cid
    }
    /// `meta.name`, e.g. `CURBy-RNG`.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
    /// `specification`, e.g. `twine/1.0.x/rng/1.0.x`.
    pub fn specification(&self) -> Option<&str> {
        self.specification.as_deref()
    }
}

/// A pulse whose CID, chain and signature have been verified against a [`TwineChain`]. Only
/// obtainable through [`verify_pulse`] / [`verify_rng_pulse`].
#[derive(Debug, Clone, PartialEq)]
pub struct TwinePulse {
    cid: Cid,
    chain: Cid,
    index: u64,
    links: Vec<Cid>,
    mixins: Vec<(Cid, Cid)>,
    payload: BTreeMap<String, Ipld>,
}

impl TwinePulse {
    /// The pulse CID.
    pub fn cid(&self) -> &Cid {
        &self.cid
    }
    /// The chain CID.
    pub fn chain(&self) -> &Cid {
        &self.chain
    }
    /// Pulse index.
    pub fn index(&self) -> u64 {
        self.index
    }
    /// `links` (`links[0]` is the previous pulse).
    pub fn links(&self) -> &[Cid] {
        &self.links
    }
    /// `mixins` as (chain, value) pairs. Not verified beyond being signed by this chain.
    pub fn mixins(&self) -> &[(Cid, Cid)] {
        &self.mixins
    }
    /// The payload map.
    pub fn payload(&self) -> &BTreeMap<String, Ipld> {
        &self.payload
    }
    /// `payload.timestamp`, when present.
    pub fn timestamp(&self) -> Option<&str> {
        match self.payload.get("timestamp") {
            Some(Ipld::String(s)) => Some(s),
            _ => None,
        }
    }
    /// The 64-byte SHA3-512 digest inside the CID: the pulse's randomness.
    pub fn cid_digest(&self) -> [u8; 64] {
        cid_digest(&self.cid)
    }

    pub(crate) fn provenance(&self, source: Source) -> Provenance {
        Provenance {
            source,
            chain: self.chain.to_string(),
            index: self.index,
            id: self.cid.to_string(),
            timestamp: self.timestamp().unwrap_or_default().to_string(),
        }
    }
}

/// Verify a pulse's CID, its chain and its signature (steps 1-3). This alone does not yield
/// beacon randomness; use [`verify_rng_pulse`] with the previous pulse for that.
pub fn verify_pulse(chain: &TwineChain, json: &[u8]) -> Result<TwinePulse, TwineError> {
    verify_pulse_value(chain, &parse_json(json)?)
}

/// [`verify_pulse`] over an already parsed JSON value (e.g. one element of a served array).
pub fn verify_pulse_value(
    chain: &TwineChain,
    json: &serde_json::Value,
) -> Result<TwinePulse, TwineError> {
    let rec = Record::from_value(json)?;
    let content = rec.content_map()?;
    let pulse_chain = match content.get("chain") {
        Some(Ipld::Link(c)) => *c,
        _ => return Err(TwineError::Malformed("content.chain is not a link".into())),
    };
    if pulse_chain != chain.cid {
        return Err(TwineError::WrongChain {
            expected: chain.cid.to_string(),
            found: pulse_chain.to_string(),
        });
    }
    let index = match content.get("index") {
        Some(Ipld::Integer(i)) => u64::try_from(*i)
            .map_err(|_| TwineError::Malformed("content.index out of range".into()))?,
        _ => {
            return Err(TwineError::Malformed(
                "content.index is not an integer".into(),
            ))
        }
    };
    let links = match content.get("links") {
        Some(Ipld::List(l)) => l
            .iter()
            .map(|x| match x {
                Ipld::Link(c) => Ok(*c),
                _ => Err(TwineError::Malformed(
                    "content.links holds a non-link".into(),
                )),
            })
            .collect::<Result<Vec<_>, _>>()?,
        _ => return Err(TwineError::Malformed("content.links is not a list".into())),
    };
    let mixins = match content.get("mixins") {
        Some(Ipld::List(l)) => l
            .iter()
            .map(|m| match m {
                Ipld::Map(m) => match (m.get("chain"), m.get("value")) {
                    (Some(Ipld::Link(c)), Some(Ipld::Link(v))) => Ok((*c, *v)),
                    _ => Err(TwineError::Malformed(
                        "mixin without chain/value links".into(),
                    )),
                },
                _ => Err(TwineError::Malformed("mixin is not a map".into())),
            })
            .collect::<Result<Vec<_>, _>>()?,
        _ => return Err(TwineError::Malformed("content.mixins is not a list".into())),
    };
    let payload = match content.get("payload") {
        Some(Ipld::Map(p)) => p.clone(),
        _ => return Err(TwineError::Malformed("content.payload is not a map".into())),
    };
    verify_jws(&chain.key, &rec.signature, &rec.content)?;
    Ok(TwinePulse {
        cid: rec.cid,
        chain: pulse_chain,
        index,
        links,
        mixins,
        payload,
    })
}

/// Check that `pulse` directly follows `prev` on the same chain: consecutive index and
/// `links[0]` = CID(prev).
pub fn check_follows(pulse: &TwinePulse, prev: &TwinePulse) -> Result<(), TwineError> {
    if prev.chain != pulse.chain {
        return Err(TwineError::WrongChain {
            expected: pulse.chain.to_string(),
            found: prev.chain.to_string(),
        });
    }
    if prev.index.checked_add(1) != Some(pulse.index) {
        return Err(TwineError::IndexNotConsecutive {
            previous: prev.index,
            index: pulse.index,
        });
    }
    match pulse.links.first() {
        Some(l) if *l == prev.cid => Ok(()),
        found => Err(TwineError::BrokenLink {
            expected: prev.cid.to_string(),
            found: found.map_or_else(|| "none".to_string(), |c| c.to_string()),
        }),
    }
}

/// Verify CURBy-RNG pulse N given the verified pulse N-1 (steps 1-5): returns pulse N (usable as
/// the next `prev`) and its randomness.
pub fn verify_rng_pulse(
    chain: &TwineChain,
    json: &[u8],
    prev: &TwinePulse,
) -> Result<(TwinePulse, VerifiedRandomness), TwineError> {
    let pulse = verify_pulse(chain, json)?;
    check_follows(&pulse, prev)?;
    let salt = payload_bytes(&pulse, "salt")?;
    let pre = payload_bytes(prev, "pre")?;
    let prev_digest = prev.cid_digest();
    if salt.len() != prev_digest.len() {
        return Err(TwineError::Malformed(format!(
            "payload.salt is {} bytes, expected 64",
            salt.len()
        )));
    }
    let xored: Vec<u8> = salt
        .iter()
        .zip(prev_digest.iter())
        .map(|(a, b)| a ^ b)
        .collect();
    let opened = sha3_multihash(&xored);
    if opened.as_slice() != pre {
        return Err(TwineError::PrecommitmentMismatch);
    }
    let value = pulse.cid_digest();
    let provenance = pulse.provenance(Source::CurbyRng);
    Ok((pulse, VerifiedRandomness { value, provenance }))
}

/// Convenience: verify the chain against `pinned_cid`, the previous pulse, then the pulse.
pub fn verify_curby_rng(
    chain_json: &[u8],
    pinned_cid: &str,
    prev_json: &[u8],
    pulse_json: &[u8],
) -> Result<VerifiedRandomness, TwineError> {
    let chain = TwineChain::verify(chain_json, pinned_cid)?;
    let prev = verify_pulse(&chain, prev_json)?;
    verify_rng_pulse(&chain, pulse_json, &prev).map(|(_, r)| r)
}

/// The CIDv1 (dag-cbor, sha3-512) of a Twine record's `data` (`{content, signature}`).
pub fn compute_cid(data: &Ipld) -> Cid {
    let bytes = serde_ipld_dagcbor::to_vec(data).expect("IPLD data model always encodes");
    let mh =
        Multihash::<64>::wrap(SHA3_512, &Sha3_512::digest(&bytes)).expect("64-byte digest fits");
    Cid::new_v1(DAG_CBOR, mh)
}

/// `0x14 0x40 || SHA3-512(bytes)`.
pub(crate) fn sha3_multihash(bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![SHA3_512 as u8, 64];
    out.extend_from_slice(&Sha3_512::digest(bytes));
    out
}

fn cid_digest(cid: &Cid) -> [u8; 64] {
    super::to_array64(cid.hash().digest()).expect("CIDs are checked to hold 64-byte digests")
}

pub(crate) fn payload_bytes<'a>(pulse: &'a TwinePulse, key: &str) -> Result<&'a [u8], TwineError> {
    match pulse.payload.get(key) {
        Some(Ipld::Bytes(b)) => Ok(b),
        _ => Err(TwineError::Malformed(format!(
            "pulse {} payload.{key} is not bytes",
            pulse.index
        ))),
    }
}

fn parse_json(json: &[u8]) -> Result<serde_json::Value, TwineError> {
    serde_json::from_slice(json).map_err(|e| TwineError::NotJson(e.to_string()))
}

fn string(v: Option<&Ipld>) -> Option<String> {
    match v {
        Some(Ipld::String(s)) => Some(s.clone()),
        _ => None,
    }
}

fn parse_cid(s: &str) -> Result<Cid, TwineError> {
    let cid = Cid::try_from(s).map_err(|_| TwineError::UnsupportedCid {
        cid: s.to_string(),
        reason: "not a CID",
    })?;
    check_cid_form(&cid)?;
    Ok(cid)
}

fn check_cid_form(cid: &Cid) -> Result<(), TwineError> {
    let err = |reason| TwineError::UnsupportedCid {
        cid: cid.to_string(),
        reason,
    };
    if cid.version() != Version::V1 {
        return Err(err("not CIDv1"));
    }
    if cid.codec() != DAG_CBOR {
        return Err(err("codec is not dag-cbor"));
    }
    if cid.hash().code() != SHA3_512 || cid.hash().size() != 64 {
        return Err(err("multihash is not sha3-512"));
    }
    Ok(())
}

/// A CID-checked record: `{cid, data: {content, signature}}`.
struct Record {
    cid: Cid,
    content: Ipld,
    signature: String,
}

impl Record {
    fn parse(json: &[u8]) -> Result<Self, TwineError> {
        Self::from_value(&parse_json(json)?)
    }

    fn from_value(v: &serde_json::Value) -> Result<Self, TwineError> {
        let obj = v
            .as_object()
            .ok_or_else(|| TwineError::Malformed("top level is not an object".into()))?;
        let cid = match obj.get("cid").map(dagjson::to_ipld).transpose()? {
            Some(Ipld::Link(c)) => c,
            _ => return Err(TwineError::Malformed("cid is not a link".into())),
        };
        check_cid_form(&cid)?;
        let data = obj
            .get("data")
            .ok_or_else(|| TwineError::Malformed("data missing".into()))
            .and_then(|d| Ok(dagjson::to_ipld(d)?))?;
        let Ipld::Map(map) = &data else {
            return Err(TwineError::Malformed("data is not a map".into()));
        };
        if map.len() != 2 {
            return Err(TwineError::Malformed(
                "data must hold exactly content and signature".into(),
            ));
        }
        let (Some(content @ Ipld::Map(_)), Some(Ipld::String(signature))) =
            (map.get("content"), map.get("signature"))
        else {
            return Err(TwineError::Malformed(
                "data.content must be a map and data.signature a string".into(),
            ));
        };
        let computed = compute_cid(&data);
        if computed != cid {
            return Err(TwineError::CidMismatch {
                served: cid.to_string(),
                computed: computed.to_string(),
            });
        }
        Ok(Record {
            cid,
            content: content.clone(),
            signature: signature.clone(),
        })
    }

    fn content_map(&self) -> Result<&BTreeMap<String, Ipld>, TwineError> {
        match &self.content {
            Ipld::Map(m) => Ok(m),
            _ => Err(TwineError::Malformed("content is not a map".into())),
        }
    }
}

fn rsa_key_from_jwk(jwk: &BTreeMap<String, Ipld>) -> Result<RsaPublicKey, TwineError> {
    let field = |k: &str| match jwk.get(k) {
        Some(Ipld::String(s)) => Ok(s.as_str()),
        _ => Err(TwineError::BadKey(format!("JWK field {k} missing"))),
    };
    if field("kty")? != "RSA" {
        return Err(TwineError::BadKey("kty is not RSA".into()));
    }
    if let Ok(alg) = field("alg") {
        if alg != "RS256" {
            return Err(TwineError::BadKey(format!("alg {alg} is not RS256")));
        }
    }
    let num = |k: &str| -> Result<BigUint, TwineError> {
        let b = URL_SAFE_NO_PAD
            .decode(field(k)?)
            .map_err(|e| TwineError::BadKey(format!("JWK {k}: {e}")))?;
        Ok(BigUint::from_bytes_be(&b))
    };
    RsaPublicKey::new(num("n")?, num("e")?).map_err(|e| TwineError::BadKey(e.to_string()))
}

fn verify_jws(key: &RsaPublicKey, jws: &str, content: &Ipld) -> Result<(), TwineError> {
    let mut parts = jws.split('.');
    let (Some(h64), Some(p64), Some(s64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TwineError::MalformedJws(
            "not three dot-separated parts".into(),
        ));
    };
    let b64 = |s: &str, what: &str| {
        URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|e| TwineError::MalformedJws(format!("{what}: {e}")))
    };
    let header: serde_json::Value = serde_json::from_slice(&b64(h64, "header")?)
        .map_err(|e| TwineError::MalformedJws(format!("header: {e}")))?;
    let header = header
        .as_object()
        .ok_or_else(|| TwineError::MalformedJws("header is not an object".into()))?;
    if header.get("alg").and_then(|a| a.as_str()) != Some("RS256") {
        return Err(TwineError::UnsupportedJwsHeader(format!(
            "alg {:?}",
            header.get("alg")
        )));
    }
    if header.contains_key("crit") {
        return Err(TwineError::UnsupportedJwsHeader("crit present".into()));
    }
    let payload = b64(p64, "payload")?;
    let content_bytes =
        serde_ipld_dagcbor::to_vec(content).expect("IPLD data model always encodes");
    if payload != sha3_multihash(&content_bytes) {
        return Err(TwineError::SignaturePayloadMismatch);
    }
    let sig = Signature::try_from(b64(s64, "signature")?.as_slice())
        .map_err(|_| TwineError::BadSignature)?;
    let signing_input = &jws.as_bytes()[..h64.len() + 1 + p64.len()];
    VerifyingKey::<Sha256>::new(key.clone())
        .verify(signing_input, &sig)
        .map_err(|_| TwineError::BadSignature)
}

#[cfg(test)]
pub(crate) mod tests;
