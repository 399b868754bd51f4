//! Writing answers: JSON and byte bodies, and the serialised outcomes of transfers.

use super::HttpResponse;
use crate::http::error::ApiError;
use crate::http::types::{iso8601_ms, status_of};
use aurigraph_engine::record::TxHash;
use aurigraph_engine::replica::Outcome;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde::Serialize;
use std::time::{SystemTime, UNIX_EPOCH};

/// A JSON answer.
pub fn json_response<T: Serialize + ?Sized>(status: StatusCode, body: &T) -> HttpResponse {
    match serde_json::to_vec(body) {
        Ok(bytes) => bytes_response(status, "application/json", bytes),
        Err(e) => ApiError::internal(format!("could not encode the answer: {e}")).into_response(),
    }
}

/// An answer of `content_type`.
pub fn bytes_response(
    status: StatusCode,
    content_type: &'static str,
    body: Vec<u8>,
) -> HttpResponse {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// Now, ISO-8601 UTC with milliseconds.
pub fn now_iso() -> String {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    iso8601_ms(ms)
}

/// A transaction hash serialised as 64 lowercase hex characters without allocating.
pub struct Hex32<'a>(pub &'a [u8; 32]);

impl Serialize for Hex32<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut out = [0u8; 64];
        hex::encode_to_slice(self.0, &mut out).map_err(serde::ser::Error::custom)?;
        s.serialize_str(std::str::from_utf8(&out).map_err(serde::ser::Error::custom)?)
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OutcomeOut<'a> {
    pub tx_hash: Hex32<'a>,
    pub status: &'static str,
    pub result: &'static str,
    pub shard: u32,
    /// The shard's log index that decided it; 0 when it was rejected before consensus.
    pub block_number: u64,
}

impl<'a> From<&'a Outcome> for OutcomeOut<'a> {
    fn from(o: &'a Outcome) -> OutcomeOut<'a> {
        OutcomeOut {
            tx_hash: Hex32(&o.tx_hash.0),
            status: status_of(o.result),
            result: o.result.as_str(),
            shard: o.shard,
            block_number: o.block,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingOut<'a> {
    pub tx_hash: Hex32<'a>,
    pub status: &'static str,
    pub shard: u32,
}

impl<'a> PendingOut<'a> {
    pub fn new(hash: &'a TxHash, shard: u32) -> PendingOut<'a> {
        PendingOut {
            tx_hash: Hex32(&hash.0),
            status: "PENDING",
            shard,
        }
    }
}

#[derive(Serialize)]
pub struct BatchOut<'a> {
    pub results: Vec<OutcomeOut<'a>>,
    pub accepted: usize,
    pub rejected: usize,
}

#[derive(Serialize)]
pub struct PendingBatchOut<'a> {
    pub results: Vec<PendingOut<'a>>,
    pub pending: usize,
}
