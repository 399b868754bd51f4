//! The media types of the binary endpoints and the compact results format.

use crate::result::ResultCode;

/// Media type of the binary batch (request body of `POST /api/v11/transactions/batch`), see
/// [`crate::batch`].
pub const BATCH_MEDIA_TYPE: &str = "application/vnd.aurigraph.batch";

/// Media type of the compact results (answer body, on `Accept: application/vnd.aurigraph.results`).
///
/// # Compact results format
///
/// The answer to a batch of `N` transfers is exactly `9 * N` bytes, one 9-byte entry per
/// transfer in request order, nothing before or after:
///
/// | offset | size | field |
/// |---|---|---|
/// | 9i | 1 | result code of transfer `i` as `u8` ([`ResultCode`]: 0 `OK`, 1 `BAD_SIGNATURE`, 2 `INSUFFICIENT_FUNDS`, 3 `NONCE_REPLAYED`, 4 `NONCE_TOO_OLD`, 5 `ZERO_AMOUNT`, 6 `SELF_TRANSFER`, 7 `UNKNOWN_ASSET`, 8 `WRONG_CHAIN`, 9 `MALFORMED`; more may be added) |
/// | 9i + 1 | 8 | block number (the shard's log index that decided it), u64 little-endian; 0 when rejected before consensus |
///
/// The shard of transfer `i` is `shard_of(from)`, and its `txHash` is SHA-256 of its 168 record
/// bytes: clients that need them compute them. Only for waited submissions (status 200); errors
/// keep the JSON error shape, and `?wait=false` answers JSON.
pub const RESULTS_MEDIA_TYPE: &str = "application/vnd.aurigraph.results";

/// Bytes per transfer in the compact results format.
pub const COMPACT_RESULT_BYTES: usize = 9;

/// A compact results body that cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompactResultsError {
    /// The length is not a whole number of entries.
    #[error("compact results are 9 bytes per transfer, got {bytes} bytes (not a multiple of 9)")]
    Length { bytes: usize },
    /// The body holds another number of entries than the request had transfers.
    #[error(
        "compact reply is {bytes} bytes, expected {} ({expected} results of {COMPACT_RESULT_BYTES} bytes)",
        expected * COMPACT_RESULT_BYTES
    )]
    Count { bytes: usize, expected: usize },
}

/// Appends one transfer's entry (its result code and the block that decided it).
pub fn push_compact_result(out: &mut Vec<u8>, code: ResultCode, block: u64) {
    out.push(code as u8);
    out.extend_from_slice(&block.to_le_bytes());
}

/// Encodes `(result code, block)` per transfer, in request order, in the compact results format
/// (see [`RESULTS_MEDIA_TYPE`]).
pub fn encode_compact_results<I>(results: I) -> Vec<u8>
where
    I: IntoIterator<Item = (ResultCode, u64)>,
    I::IntoIter: ExactSizeIterator,
{
    let results = results.into_iter();
    let mut out = Vec::with_capacity(results.len() * COMPACT_RESULT_BYTES);
    for (code, block) in results {
        push_compact_result(&mut out, code, block);
    }
    out
}

/// Decodes the compact results format (see [`RESULTS_MEDIA_TYPE`]): `(result code, block)` per
/// transfer, in request order. Codes are returned raw ([`ResultCode::from_u8`] names the known
/// ones) so that a client keeps working when codes are added.
pub fn decode_compact_results(bytes: &[u8]) -> Result<Vec<(u8, u64)>, CompactResultsError> {
    if !bytes.len().is_multiple_of(COMPACT_RESULT_BYTES) {
        return Err(CompactResultsError::Length { bytes: bytes.len() });
    }
    Ok(bytes
        .chunks_exact(COMPACT_RESULT_BYTES)
        .map(|c| {
            (
                c[0],
                u64::from_le_bytes(c[1..].try_into().expect("8 bytes")),
            )
        })
        .collect())
}

/// Decodes a compact reply to a batch of `expected` transfers (any other length is an error).
pub fn decode_compact_results_exact(
    bytes: &[u8],
    expected: usize,
) -> Result<Vec<(u8, u64)>, CompactResultsError> {
    if bytes.len() != expected * COMPACT_RESULT_BYTES {
        return Err(CompactResultsError::Count {
            bytes: bytes.len(),
            expected,
        });
    }
    decode_compact_results(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let bytes = encode_compact_results([
            (ResultCode::Ok, 42),
            (ResultCode::NonceReplayed, u64::MAX),
            (ResultCode::BadSignature, 0),
        ]);
        assert_eq!(bytes.len(), 3 * COMPACT_RESULT_BYTES);
        assert_eq!(&bytes[..9], &[0, 42, 0, 0, 0, 0, 0, 0, 0]);
        let decoded = decode_compact_results(&bytes).unwrap();
        assert_eq!(decoded, vec![(0, 42), (3, u64::MAX), (1, 0)]);
        assert_eq!(decode_compact_results_exact(&bytes, 3).unwrap(), decoded);
        assert_eq!(decode_compact_results(&[]).unwrap(), vec![]);
        assert!(decode_compact_results(&bytes[..10])
            .unwrap_err()
            .to_string()
            .contains("multiple of 9"));
        let err = decode_compact_results_exact(&bytes, 2).unwrap_err();
        assert_eq!(
            err,
            CompactResultsError::Count {
                bytes: 27,
                expected: 2
            }
        );
        assert!(err.to_string().contains("expected 18"), "{err}");
    }
}
