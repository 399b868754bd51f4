//! NIST Randomness Beacon 2.0 pulse verification.
//!
//! Checks, in order:
//! 1. the pulse's `certificateId` equals SHA-512 of the pinned certificate's DER;
//! 2. the signed message M is rebuilt from the served fields (below) and `signatureValue` is a valid
//!    RSASSA-PKCS1-v1_5 / SHA-512 signature over M with the pinned certificate's RSA key;
//! 3. `outputValue` = SHA-512(M || signatureValue);
//! 4. given the verified previous pulse: same chain, consecutive `pulseIndex`,
//!    `listValues[type=previous].value` = previous `outputValue`, and the previous
//!    `precommitmentValue` = SHA-512(`localRandomValue`).
//!
//! M, with L(x) = 4-byte big-endian length then x, and every hex field decoded to its raw bytes
//! (this is what makes M 813 bytes for pulse 54610): L(uri), L(version), cipherSuite u32,
//! period u32, L(certificateId), chainIndex u64, pulseIndex u64, L(timeStamp),
//! L(localRandomValue), L(external.sourceId), external.statusCode u32, L(external.value),
//! L(value) for each listValue in the order served, L(precommitmentValue), statusCode u32.
//!
//! Not checked: the certificate's validity period and issuer chain (the certificate is pinned;
//! the fixture's expired in 2019), the pulse timestamp against a clock, `statusCode` semantics
//! (reported, not interpreted), and the hour/day/month/year list values (signed, but the pulses
//! they name are not fetched).

use super::{Provenance, Source, VerifiedRandomness};
use der::{DecodePem, Encode};
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::pkcs8::DecodePublicKey;
use rsa::signature::Verifier;
use rsa::RsaPublicKey;
use serde::Deserialize;
use sha2::{Digest, Sha512};
use x509_cert::Certificate;

/// Why a NIST pulse (or certificate) was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NistError {
    /// The body is not JSON of the expected shape (or is truncated).
    #[error("not a NIST 2.0 pulse: {0}")]
    Malformed(String),
    /// A hex field does not decode.
    #[error("field {0} is not hex")]
    BadHex(&'static str),
    /// The pinned certificate does not parse or holds no RSA key.
    #[error("bad certificate: {0}")]
    BadCertificate(String),
    /// The pulse names a different certificate than the pinned one.
    #[error("certificate mismatch: pulse names {found}, pinned is {expected}")]
    CertificateMismatch {
        /// SHA-512 of the pinned certificate's DER.
        expected: String,
        /// `certificateId` of the pulse.
        found: String,
    },
    /// `cipherSuite` other than 0 (SHA-512 + RSA PKCS#1 v1.5).
    #[error("unsupported cipherSuite {0}")]
    UnsupportedCipherSuite(u32),
    /// The signature does not verify over the rebuilt message.
    #[error("RSA signature does not verify over the signed message")]
    BadSignature,
    /// `outputValue` is not SHA-512(M || signature).
    #[error("outputValue is not SHA-512(message || signature)")]
    OutputValueMismatch,
    /// No `listValues` entry of type `previous` (needed for chaining).
    #[error("no listValues entry of type previous")]
    MissingPrevious,
    /// The previous pulse is on another chain.
    #[error("chain mismatch: previous pulse is on chain {previous}, this one on {chain}")]
    ChainMismatch {
        /// chainIndex of the previous pulse.
        previous: u64,
        /// chainIndex of this pulse.
        chain: u64,
    },
    /// The pulse index does not follow the previous pulse's.
    #[error("pulse index {index} does not follow previous index {previous}")]
    IndexNotConsecutive {
        /// pulseIndex of the previous pulse.
        previous: u64,
        /// pulseIndex of this pulse.
        index: u64,
    },
    /// `listValues[previous]` differs from the previous pulse's `outputValue`.
    #[error("previous-output mismatch: listValues[previous] is not the previous outputValue")]
    PreviousOutputMismatch,
    /// SHA-512(`localRandomValue`) differs from the previous pulse's `precommitmentValue`.
    #[error("precommitment mismatch: localRandomValue does not open the previous precommitment")]
    PrecommitmentMismatch,
}

/// A pinned NIST signing certificate.
#[derive(Debug, Clone)]
pub struct NistCertificate {
    id: [u8; 64],
    key: RsaPublicKey,
}

impl NistCertificate {
    /// Parse a PEM certificate; its id is SHA-512 of its DER encoding.
    pub fn from_pem(pem: &[u8]) -> Result<Self, NistError> {
        let cert =
            Certificate::from_pem(pem).map_err(|e| NistError::BadCertificate(e.to_string()))?;
        let der = cert
            .to_der()
            .map_err(|e| NistError::BadCertificate(e.to_string()))?;
        let spki = cert
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .map_err(|e| NistError::BadCertificate(e.to_string()))?;
        let key = RsaPublicKey::from_public_key_der(&spki)
            .map_err(|e| NistError::BadCertificate(format!("not an RSA key: {e}")))?;
        Ok(NistCertificate {
            id: Sha512::digest(&der).into(),
            key,
        })
    }

    /// The certificateId (SHA-512 of the DER).
    pub fn id(&self) -> [u8; 64] {
        self.id
    }
}

#[derive(Deserialize)]
struct Envelope {
    pulse: RawPulse,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawPulse {
    uri: String,
    version: String,
    cipher_suite: u32,
    period: u32,
    certificate_id: String,
    chain_index: u64,
    pulse_index: u64,
    time_stamp: String,
    local_random_value: String,
    external: RawExternal,
    list_values: Vec<RawListValue>,
    precommitment_value: String,
    status_code: u32,
    signature_value: String,
    output_value: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawExternal {
    source_id: String,
    status_code: u32,
    value: String,
}

#[derive(Deserialize)]
struct RawListValue {
    #[serde(rename = "type")]
    kind: String,
    value: String,
}

/// A NIST pulse whose signature and outputValue verified against a pinned certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NistPulse {
    uri: String,
    chain_index: u64,
    pulse_index: u64,
    time_stamp: String,
    status_code: u32,
    local_random_value: Vec<u8>,
    previous_output: Option<[u8; 64]>,
    precommitment: Vec<u8>,
    output: [u8; 64],
    message_len: usize,
}

impl NistPulse {
    /// Pulse URI.
    pub fn uri(&self) -> &str {
        &self.uri
    }
    /// chainIndex.
    pub fn chain_index(&self) -> u64 {
        self.chain_index
    }
    /// pulseIndex.
    pub fn pulse_index(&self) -> u64 {
        self.pulse_index
    }
    /// timeStamp as served.
    pub fn time_stamp(&self) -> &str {
        &self.time_stamp
    }
    /// statusCode as served (0 = regular; reported, not interpreted).
    pub fn status_code(&self) -> u32 {
        self.status_code
    }
    /// The verified outputValue.
    pub fn output_value(&self) -> [u8; 64] {
        self.output
    }
    /// Length of the signed message M.
    pub fn message_len(&self) -> usize {
        self.message_len
    }

    /// The verified outputValue with its provenance.
    pub fn randomness(&self) -> VerifiedRandomness {
        VerifiedRandomness {
            value: self.output,
            provenance: Provenance {
                source: Source::Nist,
                chain: format!("nist-chain-{}", self.chain_index),
                index: self.pulse_index,
                id: self.uri.clone(),
                timestamp: self.time_stamp.clone(),
            },
        }
    }
}

fn unhex(s: &str, field: &'static str) -> Result<Vec<u8>, NistError> {
    hex::decode(s).map_err(|_| NistError::BadHex(field))
}

fn put_bytes(m: &mut Vec<u8>, b: &[u8]) {
    m.extend_from_slice(&(b.len() as u32).to_be_bytes());
    m.extend_from_slice(b);
}

/// Verify one pulse (as served by `pulse/last` or `chain/{c}/pulse/{p}`, `{"pulse": {...}}`)
/// against the pinned certificate: certificateId, signature, outputValue. No chaining.
pub fn verify_pulse(cert: &NistCertificate, json: &[u8]) -> Result<NistPulse, NistError> {
    let p = serde_json::from_slice::<Envelope>(json)
        .map_err(|e| NistError::Malformed(e.to_string()))?
        .pulse;
    let cert_id = unhex(&p.certificate_id, "certificateId")?;
    if cert_id != cert.id {
        return Err(NistError::CertificateMismatch {
            expected: hex::encode(cert.id),
            found: p.certificate_id.to_lowercase(),
        });
    }
    if p.cipher_suite != 0 {
        return Err(NistError::UnsupportedCipherSuite(p.cipher_suite));
    }
    let local = unhex(&p.local_random_value, "localRandomValue")?;
    let precommitment = unhex(&p.precommitment_value, "precommitmentValue")?;

    let mut m = Vec::with_capacity(1024);
    put_bytes(&mut m, p.uri.as_bytes());
    put_bytes(&mut m, p.version.as_bytes());
    m.extend_from_slice(&p.cipher_suite.to_be_bytes());
    m.extend_from_slice(&p.period.to_be_bytes());
    put_bytes(&mut m, &cert_id);
    m.extend_from_slice(&p.chain_index.to_be_bytes());
    m.extend_from_slice(&p.pulse_index.to_be_bytes());
    put_bytes(&mut m, p.time_stamp.as_bytes());
    put_bytes(&mut m, &local);
    put_bytes(&mut m, &unhex(&p.external.source_id, "external.sourceId")?);
    m.extend_from_slice(&p.external.status_code.to_be_bytes());
    put_bytes(&mut m, &unhex(&p.external.value, "external.value")?);
    let mut previous_output = None;
    for lv in &p.list_values {
        let v = unhex(&lv.value, "listValues.value")?;
        if lv.kind == "previous" && previous_output.is_none() {
            previous_output = super::to_array64(&v);
        }
        put_bytes(&mut m, &v);
    }
    put_bytes(&mut m, &precommitment);
    m.extend_from_slice(&p.status_code.to_be_bytes());

    let sig_bytes = unhex(&p.signature_value, "signatureValue")?;
    let sig = Signature::try_from(sig_bytes.as_slice()).map_err(|_| NistError::BadSignature)?;
    VerifyingKey::<Sha512>::new(cert.key.clone())
        .verify(&m, &sig)
        .map_err(|_| NistError::BadSignature)?;

    let output: [u8; 64] = Sha512::new()
        .chain_update(&m)
        .chain_update(&sig_bytes)
        .finalize()
        .into();
    if unhex(&p.output_value, "outputValue")? != output {
        return Err(NistError::OutputValueMismatch);
    }
    Ok(NistPulse {
        uri: p.uri,
        chain_index: p.chain_index,
        pulse_index: p.pulse_index,
        time_stamp: p.time_stamp,
        status_code: p.status_code,
        local_random_value: local,
        previous_output,
        precommitment,
        output,
        message_len: m.len(),
    })
}

/// Check that `pulse` directly follows the verified `prev`: same chain, consecutive index,
/// `previous` list value and precommitment.
pub fn check_follows(pulse: &NistPulse, prev: &NistPulse) -> Result<(), NistError> {
    if prev.chain_index != pulse.chain_index {
        return Err(NistError::ChainMismatch {
            previous: prev.chain_index,
            chain: pulse.chain_index,
        });
    }
    if prev.pulse_index.checked_add(1) != Some(pulse.pulse_index) {
        return Err(NistError::IndexNotConsecutive {
            previous: prev.pulse_index,
            index: pulse.pulse_index,
        });
    }
    match pulse.previous_output {
        None => return Err(NistError::MissingPrevious),
        Some(v) if v != prev.output => return Err(NistError::PreviousOutputMismatch),
        Some(_) => {}
    }
    if Sha512::digest(&pulse.local_random_value).as_slice() != prev.precommitment.as_slice() {
        return Err(NistError::PrecommitmentMismatch);
    }
    Ok(())
}

/// Verify `pulse` against the pinned certificate and, when given, chain it to the verified
/// previous pulse.
pub fn verify_nist(
    cert: &NistCertificate,
    json: &[u8],
    prev: Option<&NistPulse>,
) -> Result<NistPulse, NistError> {
    let pulse = verify_pulse(cert, json)?;
    if let Some(prev) = prev {
        check_follows(&pulse, prev)?;
    }
    Ok(pulse)
}

#[cfg(test)]
mod tests;
