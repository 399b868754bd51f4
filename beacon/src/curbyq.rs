//! CURBy-Q rounds: the Bell-test-certified output of the University of Colorado beacon.
//!
//! A round is served as a JSON array of three Twine v1 pulses of the CURBy-Q chain, stages
//! `request`, `precommit`, `randomness`, all with the same `payload.round`. What is checked:
//!
//! 1. each pulse is a valid Twine v1 pulse of the pinned CURBy-Q chain (CID, chain, RS256 JWS,
//!    see [`super::twine`]);
//! 2. stages come in the order request → precommit → randomness, with one round number, and each
//!    pulse directly follows the previous one (consecutive index, `links[0]`);
//! 3. `dataHash` is the same in the precommit and randomness pulses; when the params text is
//!    given, SHA3-512(params text) equals `paramsHash` and the params' fields agree with the
//!    request's `parameters` and the precommit's `seedLength`; when the data text is given,
//!    SHA3-512(data text) equals `dataHash`;
//! 4. `randomness` holds `nBitsOut / 8` bytes (64): the round's output;
//! 5. when the Bell experiment chain and its response pulse are given: the pulse is a valid Twine
//!    v1 pulse of the pinned Bell chain, of type `result`, its `ref` is the request pulse, its
//!    `dataHash` equals the round's, and the precommit pulse mixes it in (it existed before the
//!    precommitment).
//!
//! Not checked: the randomness extractor itself (recomputing the output needs the raw Bell-test
//! data and the seed and an implementation of the extractor); the seed (taken per the precommit's
//! `rule` from `seedChain`, whose pulse is not fetched); the statistical certification
//! (`pefs`, `entropy`, `nBitsThreshold`) and the Bell pulse's spacelike-separation figures,
//! which are reported as signed by the beacon but not re-derived. The `isQuantum` flag of the
//! request is reported as served (it is `false` in the round-42 fixture).

use super::twine::{self, TwineChain, TwineError, TwinePulse};
use super::{Provenance, Source, VerifiedRandomness};
use ipld_core::cid::Cid;
use ipld_core::ipld::Ipld;
use sha3::{Digest, Sha3_512};

/// Chain CID of CURBy-Q (University of Colorado).
pub const CURBY_Q_CHAIN_CID: &str = "bafyriqhijw5soalbtppuwwjbskfiriqy6swa5qd5trgbzx4nypnu7mp7iyhx7m2iin2nxnglmngvjgirzb7bvlisxq3uygoik7ozbybxnftiw";
/// Chain CID of the NIST Bell experiment status chain that CURBy-Q rounds reference.
pub const BELL_CHAIN_CID: &str = "bafyriqe3zxf5g4ifgqhea5zozxpdcfi5qcpkfpogtxzbizmmuxdjuzuq44a2cifbr7xplo4kcfsdz2c5pxfxektavrqxxb3nvbmclxz7qiz6e";

const STAGES: [&str; 3] = ["request", "precommit", "randomness"];

/// Why a CURBy-Q round was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CurbyQError {
    /// The round body is not a JSON array of three pulses.
    #[error("not a CURBy-Q round: {0}")]
    NotRound(String),
    /// One of the round's pulses fails Twine verification (or does not follow its predecessor).
    #[error("{stage} pulse: {source}")]
    Pulse {
        /// The stage of the pulse.
        stage: &'static str,
        /// What failed.
        #[source]
        source: TwineError,
    },
    /// A pulse's `payload.stage` is not the expected one.
    #[error("pulse {position} has stage {found:?}, expected {expected}")]
    Stage {
        /// Position in the array.
        position: usize,
        /// Expected stage.
        expected: &'static str,
        /// Stage found.
        found: String,
    },
    /// The pulses disagree on `payload.round`.
    #[error("round number mismatch: {0} vs {1}")]
    RoundMismatch(u64, u64),
    /// A required payload field is missing or has the wrong type.
    #[error("{stage} pulse: payload.{field} missing or malformed")]
    Field {
        /// The stage of the pulse.
        stage: &'static str,
        /// The field.
        field: &'static str,
    },
    /// precommit and randomness pulses name different `dataHash` values.
    #[error("dataHash differs between precommit and randomness pulses")]
    DataHashInconsistent,
    /// SHA3-512 of the params text is not `paramsHash`.
    #[error("paramsHash mismatch: SHA3-512 of the params text is not the signed paramsHash")]
    ParamsHashMismatch,
    /// The params text disagrees with the signed request parameters.
    #[error("params text disagrees with the signed request on {0}")]
    ParamsMismatch(String),
    /// SHA3-512 of the data text is not `dataHash`.
    #[error("dataHash mismatch: SHA3-512 of the data text is not the signed dataHash")]
    DataHashMismatch,
    /// `randomness` does not hold `nBitsOut / 8` = 64 bytes.
    #[error("randomness is {0} bytes, expected 64 (nBitsOut / 8)")]
    RandomnessLength(usize),
    /// The Bell chain record or pulse fails Twine verification.
    #[error("Bell experiment pulse: {0}")]
    Bell(#[source] TwineError),
    /// The Bell pulse is not a `result` referencing this round's request.
    #[error("Bell pulse does not answer this round: {0}")]
    BellMismatch(&'static str),
}

/// What a Bell experiment response pulse says about the round.
#[derive(Debug, Clone, PartialEq)]
pub struct BellResponse {
    /// CID of the Bell pulse.
    pub cid: Cid,
    /// Its index on the Bell chain.
    pub index: u64,
    /// `payload.status` as served (0 = ok; reported, not interpreted).
    pub status: Option<i128>,
    /// `payload.timestamp`.
    pub timestamp: Option<String>,
}

/// A verified CURBy-Q round.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedRound {
    /// The round number.
    pub round: u64,
    /// The request, precommit and randomness pulses.
    pub pulses: [TwinePulse; 3],
    /// The round's output (the `randomness` bytes of the randomness pulse).
    pub randomness: VerifiedRandomness,
    /// `dataHash` (SHA3-512 of the Bell-test data).
    pub data_hash: Vec<u8>,
    /// `paramsHash` (SHA3-512 of the params text).
    pub params_hash: Vec<u8>,
    /// The request's `parameters.isQuantum`, as served.
    pub is_quantum: Option<bool>,
    /// Whether the params text was given and checked.
    pub params_checked: bool,
    /// Whether the data text was given and checked.
    pub data_checked: bool,
    /// The Bell response, when the Bell chain and pulse were given and checked.
    pub bell: Option<BellResponse>,
}

/// The optional extra material for [`verify_round`].
#[derive(Debug, Clone, Copy, Default)]
pub struct RoundExtras<'a> {
    /// Bell chain record JSON and its pinned CID, and the Bell response pulse JSON.
    pub bell: Option<(&'a [u8], &'a str, &'a [u8])>,
    /// The params text whose SHA3-512 is `paramsHash`.
    pub params: Option<&'a [u8]>,
    /// The data text whose SHA3-512 is `dataHash`.
    pub data: Option<&'a [u8]>,
}

fn field<'a>(
    p: &'a TwinePulse,
    stage: &'static str,
    f: &'static str,
) -> Result<&'a Ipld, CurbyQError> {
    p.payload()
        .get(f)
        .ok_or(CurbyQError::Field { stage, field: f })
}

fn hex_field(p: &TwinePulse, stage: &'static str, f: &'static str) -> Result<Vec<u8>, CurbyQError> {
    match field(p, stage, f)? {
        Ipld::String(s) => hex::decode(s).map_err(|_| CurbyQError::Field { stage, field: f }),
        _ => Err(CurbyQError::Field { stage, field: f }),
    }
}

/// Verify a CURBy-Q round against the verified CURBy-Q chain.
pub fn verify_round(
    chain: &TwineChain,
    round_json: &[u8],
    extras: RoundExtras<'_>,
) -> Result<VerifiedRound, CurbyQError> {
    let v: serde_json::Value =
        serde_json::from_slice(round_json).map_err(|e| CurbyQError::NotRound(e.to_string()))?;
    let arr = v
        .as_array()
        .filter(|a| a.len() == 3)
        .ok_or_else(|| CurbyQError::NotRound("expected an array of 3 pulses".into()))?;

    let mut pulses = Vec::with_capacity(3);
    let mut round = None;
    for (i, (rec, stage)) in arr.iter().zip(STAGES).enumerate() {
        let p = twine::verify_pulse_value(chain, rec)
            .map_err(|source| CurbyQError::Pulse { stage, source })?;
        match field(&p, stage, "stage")? {
            Ipld::String(s) if s == stage => {}
            other => {
                return Err(CurbyQError::Stage {
                    position: i,
                    expected: stage,
                    found: match other {
                        Ipld::String(s) => s.clone(),
                        o => format!("{o:?}"),
                    },
                })
            }
        }
        let r = match field(&p, stage, "round")? {
            Ipld::Integer(r) => u64::try_from(*r).map_err(|_| CurbyQError::Field {
                stage,
                field: "round",
            })?,
            _ => {
                return Err(CurbyQError::Field {
                    stage,
                    field: "round",
                })
            }
        };
        match round {
            Some(r0) if r0 != r => return Err(CurbyQError::RoundMismatch(r0, r)),
            _ => round = Some(r),
        }
        if let Some(prev) = pulses.last() {
            twine::check_follows(&p, prev)
                .map_err(|source| CurbyQError::Pulse { stage, source })?;
        }
        pulses.push(p);
    }
    let [request, precommit, randp]: [TwinePulse; 3] =
        pulses.try_into().expect("three pulses were pushed");
    let round = round.expect("three pulses were checked");

    let data_hash = hex_field(&precommit, "precommit", "dataHash")?;
    if hex_field(&randp, "randomness", "dataHash")? != data_hash {
        return Err(CurbyQError::DataHashInconsistent);
    }
    let params_hash = hex_field(&randp, "randomness", "paramsHash")?;
    let value = match field(&randp, "randomness", "randomness")? {
        Ipld::Bytes(b) => super::to_array64(b).ok_or(CurbyQError::RandomnessLength(b.len()))?,
        _ => {
            return Err(CurbyQError::Field {
                stage: "randomness",
                field: "randomness",
            })
        }
    };
    let parameters = match field(&request, "request", "parameters")? {
        Ipld::Map(m) => m,
        _ => {
            return Err(CurbyQError::Field {
                stage: "request",
                field: "parameters",
            })
        }
    };
    if let Some(Ipld::Integer(bits)) = parameters.get("nBitsOut") {
        if *bits != 512 {
            return Err(CurbyQError::RandomnessLength((*bits / 8) as usize));
        }
    }
    let is_quantum = match parameters.get("isQuantum") {
        Some(Ipld::Bool(b)) => Some(*b),
        _ => None,
    };

    if let Some(params) = extras.params {
        if Sha3_512::digest(params).as_slice() != params_hash.as_slice() {
            return Err(CurbyQError::ParamsHashMismatch);
        }
        let pv: serde_json::Value = serde_json::from_slice(params)
            .map_err(|e| CurbyQError::ParamsMismatch(format!("params text is not JSON: {e}")))?;
        let Ok(Ipld::Map(pm)) = super::dagjson::to_ipld(&pv) else {
            return Err(CurbyQError::ParamsMismatch(
                "params text is not an object".into(),
            ));
        };
        for (k, v) in parameters {
            if pm.get(k) != Some(v) {
                return Err(CurbyQError::ParamsMismatch(k.clone()));
            }
        }
        if let Some(sl) = precommit.payload().get("seedLength") {
            if pm.get("seedLength") != Some(sl) {
                return Err(CurbyQError::ParamsMismatch("seedLength".into()));
            }
        }
    }
    if let Some(data) = extras.data {
        if Sha3_512::digest(data).as_slice() != data_hash.as_slice() {
            return Err(CurbyQError::DataHashMismatch);
        }
    }

    let bell = match extras.bell {
        None => None,
        Some((chain_json, pin, pulse_json)) => {
            let bchain = TwineChain::verify(chain_json, pin).map_err(CurbyQError::Bell)?;
            let bp = twine::verify_pulse(&bchain, pulse_json).map_err(CurbyQError::Bell)?;
            if bp.payload().get("type") != Some(&Ipld::String("result".into())) {
                return Err(CurbyQError::BellMismatch("not of type result"));
            }
            if bp.payload().get("ref") != Some(&Ipld::Link(*request.cid())) {
                return Err(CurbyQError::BellMismatch("ref is not the request pulse"));
            }
            let bell_hash = match bp.payload().get("dataHash") {
                Some(Ipld::String(s)) => hex::decode(s).ok(),
                _ => None,
            };
            if bell_hash.as_deref() != Some(data_hash.as_slice()) {
                return Err(CurbyQError::BellMismatch(
                    "dataHash differs from the round's",
                ));
            }
            if !precommit
                .mixins()
                .iter()
                .any(|(c, v)| c == bchain.cid() && v == bp.cid())
            {
                return Err(CurbyQError::BellMismatch(
                    "the precommit pulse does not mix in the Bell pulse",
                ));
            }
            Some(BellResponse {
                cid: *bp.cid(),
                index: bp.index(),
                status: match bp.payload().get("status") {
                    Some(Ipld::Integer(s)) => Some(*s),
                    _ => None,
                },
                timestamp: bp.timestamp().map(str::to_string),
            })
        }
    };

    let provenance: Provenance = randp.provenance(Source::CurbyQ);
    Ok(VerifiedRound {
        round,
        randomness: VerifiedRandomness { value, provenance },
        data_hash,
        params_hash,
        is_quantum,
        params_checked: extras.params.is_some(),
        data_checked: extras.data.is_some(),
        bell,
        pulses: [request, precommit, randp],
    })
}

#[cfg(test)]
mod tests;
