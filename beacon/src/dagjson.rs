//! Strict conversion of DAG-JSON (as served by a Twine v1 store) into the IPLD data model.
//!
//! DAG-JSON conventions handled: `{"/": "<cid>"}` is a link, `{"/": {"bytes": "<base64>"}}` is a
//! byte string (standard alphabet, no padding), a number with a fraction or exponent is a float,
//! any other number an integer. A map whose only key is `/` but that fits neither form is
//! rejected, as DAG-JSON reserves it.
//!
//! Floats must parse to exactly the f64 the beacon encoded, or the recomputed CID differs: this
//! crate enables serde_json's `float_roundtrip` feature for that (the default parser may be off by
//! one ULP, which broke the CURBy-Q request pulse's CID).

use base64::Engine;
use ipld_core::cid::Cid;
use ipld_core::ipld::Ipld;
use serde_json::Value;
use std::collections::BTreeMap;

/// Why a JSON value is not valid DAG-JSON.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DagJsonError {
    /// `{"/": "..."}` whose string is not a CID.
    #[error("invalid CID link {0:?}: {1}")]
    BadLink(String, String),
    /// `{"/": {"bytes": "..."}}` whose string is not unpadded standard base64.
    #[error("invalid DAG-JSON bytes: {0}")]
    BadBytes(String),
    /// A map using the reserved `/` key in an unknown way.
    #[error("reserved DAG-JSON key \"/\" used in an unknown form")]
    ReservedKey,
    /// A number that fits neither i128 nor a finite f64.
    #[error("unrepresentable number {0}")]
    BadNumber(String),
}

/// Convert a parsed JSON value into IPLD following DAG-JSON rules.
pub fn to_ipld(v: &Value) -> Result<Ipld, DagJsonError> {
    Ok(match v {
        Value::Null => Ipld::Null,
        Value::Bool(b) => Ipld::Bool(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Ipld::Integer(i as i128)
            } else if let Some(u) = n.as_u64() {
                Ipld::Integer(u as i128)
            } else {
                match n.as_f64() {
                    Some(f) if f.is_finite() => Ipld::Float(f),
                    _ => return Err(DagJsonError::BadNumber(n.to_string())),
                }
            }
        }
        Value::String(s) => Ipld::String(s.clone()),
        Value::Array(a) => Ipld::List(a.iter().map(to_ipld).collect::<Result<_, _>>()?),
        Value::Object(m) => {
            if let Some(slash) = m.get("/") {
                if m.len() != 1 {
                    return Err(DagJsonError::ReservedKey);
                }
                return match slash {
                    Value::String(s) => Cid::try_from(s.as_str())
                        .map(Ipld::Link)
                        .map_err(|e| DagJsonError::BadLink(s.clone(), e.to_string())),
                    Value::Object(inner) if inner.len() == 1 => match inner.get("bytes") {
                        Some(Value::String(b)) => base64::engine::general_purpose::STANDARD_NO_PAD
                            .decode(b)
                            .map(Ipld::Bytes)
                            .map_err(|e| DagJsonError::BadBytes(e.to_string())),
                        _ => Err(DagJsonError::ReservedKey),
                    },
                    _ => Err(DagJsonError::ReservedKey),
                };
            }
            let mut out = BTreeMap::new();
            for (k, v) in m {
                out.insert(k.clone(), to_ipld(v)?);
            }
            Ipld::Map(out)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn links_bytes_numbers() {
        let v = json!({
            "l": {"/": "bafyriqci6f3st2mg7gq733ho4zvvth32zpy2mtiylixwmhoz6d627eo3jfpmbxepe54u2zdvymonq5sp3armtm4rodxsynsirr5g3xsbd3q4s"},
            "b": {"/": {"bytes": "AAEC"}},
            "i": 3, "f": 0.5, "n": -2
        });
        let Ipld::Map(m) = to_ipld(&v).unwrap() else {
            panic!()
        };
        assert!(matches!(m["l"], Ipld::Link(_)));
        assert_eq!(m["b"], Ipld::Bytes(vec![0, 1, 2]));
        assert_eq!(m["i"], Ipld::Integer(3));
        assert_eq!(m["f"], Ipld::Float(0.5));
        assert_eq!(m["n"], Ipld::Integer(-2));
    }

    /// CIDs of pulses with float payloads (CURBy-Q requests) only match when floats parse
    /// exactly: this needs serde_json's `float_roundtrip` feature.
    #[test]
    fn floats_parse_exactly() {
        for s in [
            "0.02588813317054728",
            "1.0842021724855042e-20",
            "0.9999999999999982",
            "1.0000000000001128",
            "0.8901463959005033",
        ] {
            let v: Value = serde_json::from_str(s).unwrap();
            assert_eq!(
                to_ipld(&v).unwrap(),
                Ipld::Float(s.parse::<f64>().unwrap()),
                "{s}"
            );
        }
    }

    #[test]
    fn reserved_key_misuse_rejected() {
        assert_eq!(to_ipld(&json!({"/": 1})), Err(DagJsonError::ReservedKey));
        assert_eq!(
            to_ipld(&json!({"/": "x", "a": 1})),
            Err(DagJsonError::ReservedKey)
        );
        assert!(matches!(
            to_ipld(&json!({"/": "notacid"})),
            Err(DagJsonError::BadLink(..))
        ));
        assert!(matches!(
            to_ipld(&json!({"/": {"bytes": "@@"}})),
            Err(DagJsonError::BadBytes(_))
        ));
    }
}
