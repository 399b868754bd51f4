//! Wire types of the HTTP API: the V11 JSON transfer, its validation into a [`Record`], the JSON
//! answers, and the compact binary results format.

use super::error::{ApiError, ErrorCode};
use aurigraph_engine::record::{Address, Record, Transfer, TxHash, SIGNATURE_BYTES};
use aurigraph_engine::replica::Outcome;
use aurigraph_engine::ResultCode;
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use std::fmt;

pub use aurigraph_wire::compact::{
    decode_compact_results, BATCH_MEDIA_TYPE, COMPACT_RESULT_BYTES, RESULTS_MEDIA_TYPE,
};

/// Encodes outcomes in the compact results format (see [`RESULTS_MEDIA_TYPE`]).
pub fn encode_compact_results(outcomes: &[Outcome]) -> Vec<u8> {
    aurigraph_wire::compact::encode_compact_results(outcomes.iter().map(|o| (o.result, o.block)))
}

/// A u64 given as a JSON number or as a decimal string (amounts and nonces: JavaScript clients
/// cannot represent every u64 as a number).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Integer<T>(pub T);

impl<'de> Deserialize<'de> for Integer<u64> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(IntegerVisitor(u64::MAX)).map(Integer)
    }
}

impl<'de> Deserialize<'de> for Integer<u32> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(IntegerVisitor(u32::MAX as u64))
            .map(|v| Integer(v as u32))
    }
}

/// Accepts a non-negative integer up to `.0`, as a number or a string of decimal digits.
struct IntegerVisitor(u64);

impl IntegerVisitor {
    fn check<E: de::Error>(&self, v: u64) -> Result<u64, E> {
        if v > self.0 {
            return Err(E::custom(format!(
                "{v} is larger than the maximum {}",
                self.0
            )));
        }
        Ok(v)
    }
}

impl Visitor<'_> for IntegerVisitor {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "a non-negative integer up to {} (a JSON number or a decimal string)",
            self.0
        )
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        self.check(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
        if v < 0 {
            return Err(E::custom(format!(
                "{v} is negative; expected {}",
                Expecting(&self)
            )));
        }
        self.check(v as u64)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<u64, E> {
        Err(E::custom(format!(
            "{v} is not an integer; expected {}",
            Expecting(&self)
        )))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<u64, E> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(E::custom(format!(
                "{s:?} is not a decimal integer; expected {}",
                Expecting(&self)
            )));
        }
        // Leading zeros are taken (as the API description's pattern says); the body limit
        // bounds how many.
        let significant = s.trim_start_matches('0');
        if significant.len() > 20 {
            return Err(E::custom(format!(
                "{s} is larger than the maximum {}",
                self.0
            )));
        }
        let v: u64 = match significant {
            "" => 0,
            digits => digits
                .parse()
                .map_err(|_| E::custom(format!("{s} is larger than the maximum {}", self.0)))?,
        };
        self.check(v)
    }
}

struct Expecting<'a>(&'a IntegerVisitor);

impl fmt::Display for Expecting<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        self.0.expecting(f)
    }
}

/// One transfer as V11 clients send it (`POST /api/v11/transactions`, and each element of a JSON
/// batch). Unknown fields are refused.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TransferJson {
    pub from_address: String,
    pub to_address: String,
    pub amount: Integer<u64>,
    #[serde(default)]
    pub asset: Option<Integer<u32>>,
    pub nonce: Integer<u64>,
    #[serde(default)]
    pub chain_id: Option<Integer<u32>>,
    pub signature: String,
    #[serde(default)]
    pub transaction_type: Option<String>,
}

/// `POST /api/v11/transactions/batch` in JSON.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchJson {
    pub transactions: Vec<TransferJson>,
}

impl TransferJson {
    /// Validates the fields and builds the record. `chain_id` is the node's own, used when the
    /// transfer names none. `index` (its place in a batch) prefixes field names in messages,
    /// e.g. `transactions[3].toAddress`.
    pub fn to_record(&self, chain_id: u32, index: Option<usize>) -> Result<Record, ApiError> {
        let at = || index.map_or(String::new(), |i| format!("transactions[{i}]."));
        if let Some(kind) = &self.transaction_type {
            if kind != "TRANSFER" {
                return Err(ApiError::invalid(format!(
                    "{}transactionType {kind:?} is not supported; the only type is \"TRANSFER\"",
                    at()
                )));
            }
        }
        let from = Address::from_hex(without_0x(&self.from_address)).map_err(|e| {
            ApiError::new(
                ErrorCode::InvalidAddress,
                format!("{}fromAddress: {e}", at()),
            )
        })?;
        let to = Address::from_hex(without_0x(&self.to_address)).map_err(|e| {
            ApiError::new(ErrorCode::InvalidAddress, format!("{}toAddress: {e}", at()))
        })?;
        let signature = parse_signature(without_0x(&self.signature)).map_err(|e| {
            ApiError::new(
                ErrorCode::InvalidSignature,
                format!("{}signature: {e}", at()),
            )
        })?;
        let transfer = Transfer {
            chain_id: self.chain_id.map_or(chain_id, |c| c.0),
            from,
            to,
            asset: self.asset.map_or(0, |a| a.0),
            amount: self.amount.0,
            nonce: self.nonce.0,
        };
        Ok(transfer.with_signature(&signature))
    }
}

/// Hex as V11 clients send it: with or without a `0x` prefix.
pub fn without_0x(text: &str) -> &str {
    text.strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .unwrap_or(text)
}

fn parse_signature(text: &str) -> Result<[u8; SIGNATURE_BYTES], String> {
    if text.len() != 2 * SIGNATURE_BYTES {
        return Err(format!(
            "a signature is {} hex characters, got {} characters",
            2 * SIGNATURE_BYTES,
            text.len()
        ));
    }
    let mut bytes = [0u8; SIGNATURE_BYTES];
    hex::decode_to_slice(text, &mut bytes).map_err(|e| format!("a signature must be hex: {e}"))?;
    Ok(bytes)
}

/// Parses a `txHash` path segment.
pub fn parse_tx_hash(text: &str) -> Result<TxHash, ApiError> {
    TxHash::from_hex(without_0x(text)).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidTxHash,
            e.replace("an address", "a transaction hash"),
        )
    })
}

/// Parses an `address` path segment.
pub fn parse_address(text: &str) -> Result<Address, ApiError> {
    Address::from_hex(without_0x(text)).map_err(|e| ApiError::new(ErrorCode::InvalidAddress, e))
}

/// `CONFIRMED` iff the result is `OK`; any other result is `REJECTED` (decided, not applied).
pub fn status_of(result: ResultCode) -> &'static str {
    if result.is_ok() {
        "CONFIRMED"
    } else {
        "REJECTED"
    }
}

/// `u128` hashes as 32 lowercase hex characters (big-endian digits, as `{:032x}` prints).
pub fn hex128(v: u128) -> String {
    format!("{v:032x}")
}

/// Milliseconds since the Unix epoch as ISO-8601 UTC with milliseconds, e.g.
/// `2024-05-01T12:00:00.123Z`.
pub fn iso8601_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        ms % 1000
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FROM: &str = "0101010101010101010101010101010101010101010101010101010101010101";
    const TO: &str = "0202020202020202020202020202020202020202020202020202020202020202";

    fn sig() -> String {
        "05".repeat(64)
    }

    fn transfer(extra: &str) -> String {
        format!(
            "{{\"fromAddress\":\"{FROM}\",\"toAddress\":\"{TO}\",\"amount\":10,\"nonce\":\"7\",\"signature\":\"{}\"{extra}}}",
            sig()
        )
    }

    fn parse(text: &str) -> Result<Record, ApiError> {
        let t: TransferJson = serde_json::from_str(text).map_err(|e| ApiError::from_json(&e))?;
        t.to_record(9, None)
    }

    #[test]
    fn parses_a_transfer_with_defaults() {
        let r = parse(&transfer("")).unwrap();
        let t = r.transfer();
        assert_eq!(t.chain_id, 9);
        assert_eq!(t.from, Address([1; 32]));
        assert_eq!(t.to, Address([2; 32]));
        assert_eq!((t.asset, t.amount, t.nonce), (0, 10, 7));
        assert_eq!(r.signature(), &[5u8; 64]);
        let r = parse(&transfer(
            ",\"asset\":\"3\",\"chainId\":4,\"transactionType\":\"TRANSFER\"",
        ))
        .unwrap();
        assert_eq!((r.asset(), r.chain_id()), (3, 4));
    }

    #[test]
    fn integers_are_numbers_or_decimal_strings() {
        let v: Integer<u64> = serde_json::from_str("18446744073709551615").unwrap();
        assert_eq!(v.0, u64::MAX);
        let v: Integer<u64> = serde_json::from_str("\"18446744073709551615\"").unwrap();
        assert_eq!(v.0, u64::MAX);
        let v: Integer<u64> = serde_json::from_str("0").unwrap();
        assert_eq!(v.0, 0);
        for (zeros, want) in [("\"000\"", 0), ("\"0000000000000000000000042\"", 42)] {
            assert_eq!(serde_json::from_str::<Integer<u64>>(zeros).unwrap().0, want);
        }
        let padded_max = "\"000000018446744073709551615\"";
        assert_eq!(
            serde_json::from_str::<Integer<u64>>(padded_max).unwrap().0,
            u64::MAX
        );
        for bad in [
            "-1",
            "1.5",
            "\"-1\"",
            "\"1e3\"",
            "\"\"",
            "\"18446744073709551616\"",
            "\"000118446744073709551616\"",
            "\"100000000000000000000000\"",
            "true",
            "null",
            "\" 1\"",
        ] {
            assert!(serde_json::from_str::<Integer<u64>>(bad).is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<Integer<u32>>("4294967296").is_err());
        assert_eq!(
            serde_json::from_str::<Integer<u32>>("4294967295")
                .unwrap()
                .0,
            u32::MAX
        );
    }

    #[test]
    fn validation_errors_have_precise_codes() {
        let e = parse(&transfer(",\"extra\":1")).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest);
        assert!(e.message.contains("unknown field `extra`"), "{}", e.message);
        let e = parse(&transfer(",\"transactionType\":\"MINT\"")).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest);
        assert!(e.message.contains("MINT"));
        let e = parse(&transfer("").replace(FROM, "abc")).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidAddress);
        assert!(e.message.starts_with("fromAddress"), "{}", e.message);
        let e = parse(&transfer("").replace(TO, &"zz".repeat(32))).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidAddress);
        assert!(e.message.starts_with("toAddress"));
        let e = parse(&transfer("").replace(&sig(), "00")).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidSignature);
        let e = parse(&transfer("").replace(&sig(), &"g".repeat(128))).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidSignature);
        let e = parse(&transfer("").replace("\"amount\":10", "\"amount\":-10")).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest);
        assert!(e.message.contains("negative"), "{}", e.message);
        let e = parse(&transfer("").replace("\"amount\":10,", "")).unwrap_err();
        assert!(
            e.message.contains("missing field `amount`"),
            "{}",
            e.message
        );
        let e = parse("{\"fromAddress\":").unwrap_err();
        assert_eq!(e.code, ErrorCode::MalformedJson);
    }

    #[test]
    fn compact_results_round_trip() {
        let outcomes = [
            Outcome {
                tx_hash: TxHash([1; 32]),
                result: ResultCode::Ok,
                shard: 0,
                block: 42,
            },
            Outcome {
                tx_hash: TxHash([2; 32]),
                result: ResultCode::NonceReplayed,
                shard: 1,
                block: u64::MAX,
            },
            Outcome {
                tx_hash: TxHash([3; 32]),
                result: ResultCode::BadSignature,
                shard: 1,
                block: 0,
            },
        ];
        let bytes = encode_compact_results(&outcomes);
        assert_eq!(bytes.len(), 27);
        assert_eq!(&bytes[..9], &[0, 42, 0, 0, 0, 0, 0, 0, 0]);
        let decoded = decode_compact_results(&bytes).unwrap();
        assert_eq!(decoded, vec![(0, 42), (3, u64::MAX), (1, 0)]);
        assert_eq!(decode_compact_results(&[]).unwrap(), vec![]);
        assert!(decode_compact_results(&bytes[..10])
            .unwrap_err()
            .to_string()
            .contains("multiple of 9"));
    }

    #[test]
    fn status_names() {
        assert_eq!(status_of(ResultCode::Ok), "CONFIRMED");
        assert_eq!(status_of(ResultCode::InsufficientFunds), "REJECTED");
    }

    #[test]
    fn path_values() {
        assert_eq!(parse_tx_hash(&"00".repeat(32)).unwrap(), TxHash([0; 32]));
        let e = parse_tx_hash("xyz").unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidTxHash);
        assert!(e.message.contains("transaction hash"), "{}", e.message);
        assert_eq!(
            parse_address("12").unwrap_err().code,
            ErrorCode::InvalidAddress
        );
    }

    #[test]
    fn formats_timestamps_and_hashes() {
        assert_eq!(iso8601_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601_ms(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(iso8601_ms(1_714_564_800_000), "2024-05-01T12:00:00.000Z");
        assert_eq!(iso8601_ms(4_102_444_799_999), "2099-12-31T23:59:59.999Z");
        assert_eq!(hex128(1), format!("{}1", "0".repeat(31)));
    }
}
