//! Genesis (a contract: docs/api.md): the chain id, the shard count and the initial
//! allocations, given once when a data directory is created.

use crate::record::Address;
use crate::shard::SHARDS_MAX;
use serde::{Deserialize, Deserializer};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Upper bound on genesis allocations (bounds start-up memory and time).
pub const GENESIS_ALLOCATIONS_MAX: usize = 10_000_000;

#[derive(Debug, thiserror::Error)]
pub enum GenesisError {
    #[error("genesis is not valid JSON of the expected shape: {0}")]
    Json(#[from] serde_json::Error),
    #[error("genesis allocation {index}: {message}")]
    Allocation { index: usize, message: String },
    #[error("genesis: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    pub address: Address,
    pub asset: u32,
    pub amount: u64,
}

/// A validated genesis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Genesis {
    pub chain_id: u32,
    /// `None` means "the node's core count", resolved when the data directory is created.
    pub shards: Option<u32>,
    /// Sorted by (address, asset), duplicates merged.
    pub allocations: Vec<Allocation>,
    /// Custodial accounts (gateway mode): the gateway that may move each one without its
    /// signature, from the allocations' `"controller": "gateway:NAME"`. Empty: none.
    pub controllers: BTreeMap<Address, String>,
}

/// The prefix of an allocation's `controller`: the only kind of controller there is.
pub const CONTROLLER_PREFIX: &str = "gateway:";
/// Longest gateway name (`[A-Za-z0-9._-]`).
pub const GATEWAY_NAME_BYTES_MAX: usize = 64;

/// Checks a gateway name: 1 to [`GATEWAY_NAME_BYTES_MAX`] characters of `[A-Za-z0-9._-]`.
pub fn check_gateway_name(name: &str) -> Result<(), String> {
    let fits = !name.is_empty()
        && name.len() <= GATEWAY_NAME_BYTES_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if fits {
        Ok(())
    } else {
        Err(format!(
            "gateway name {name:?} must be 1 to {GATEWAY_NAME_BYTES_MAX} characters of A-Z a-z 0-9 . _ -"
        ))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct GenesisJson {
    chain_id: u32,
    #[serde(default)]
    shards: Option<u32>,
    #[serde(default)]
    allocations: Vec<AllocationJson>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AllocationJson {
    address: String,
    #[serde(default)]
    asset: u32,
    #[serde(deserialize_with = "amount_from_number_or_string")]
    amount: u64,
    /// `"gateway:NAME"`: the account is custodial (gateway mode).
    #[serde(default)]
    controller: Option<String>,
}

/// Amounts may be JSON numbers or decimal strings (JavaScript clients cannot hold u64 exactly).
pub fn amount_from_number_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumberOrString {
        Number(u64),
        String(String),
    }
    match NumberOrString::deserialize(d).map_err(|_| {
        serde::de::Error::custom("amount must be a non-negative integer or a decimal string")
    })? {
        NumberOrString::Number(n) => Ok(n),
        NumberOrString::String(s) => parse_decimal_u64(&s).map_err(serde::de::Error::custom),
    }
}

/// Parses a decimal string of digits into a u64 with a clear error.
pub fn parse_decimal_u64(text: &str) -> Result<u64, String> {
    if text.is_empty() || text.len() > 20 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "amount {text:?} is not a decimal integer between 0 and 18446744073709551615"
        ));
    }
    text.parse::<u64>()
        .map_err(|_| format!("amount {text} does not fit in 64 bits"))
}

impl Genesis {
    pub fn from_json(text: &str) -> Result<Genesis, GenesisError> {
        let raw: GenesisJson = serde_json::from_str(text)?;
        if let Some(shards) = raw.shards {
            if shards == 0 || shards > SHARDS_MAX {
                return Err(GenesisError::Invalid(format!(
                    "shards is {shards}, it must be between 1 and {SHARDS_MAX}"
                )));
            }
        }
        if raw.allocations.len() > GENESIS_ALLOCATIONS_MAX {
            return Err(GenesisError::Invalid(format!(
                "{} allocations, more than the limit of {GENESIS_ALLOCATIONS_MAX}",
                raw.allocations.len()
            )));
        }
        let mut merged: BTreeMap<(Address, u32), u64> = BTreeMap::new();
        let mut supply: BTreeMap<u32, u64> = BTreeMap::new();
        let mut controllers: BTreeMap<Address, String> = BTreeMap::new();
        for (index, a) in raw.allocations.iter().enumerate() {
            let fail = |message: String| GenesisError::Allocation { index, message };
            let address = Address::from_hex(&a.address).map_err(fail)?;
            if let Some(controller) = &a.controller {
                let name = controller.strip_prefix(CONTROLLER_PREFIX).ok_or_else(|| {
                    fail(format!(
                        "controller {controller:?} must be \"{CONTROLLER_PREFIX}NAME\""
                    ))
                })?;
                check_gateway_name(name).map_err(fail)?;
                match controllers.get(&address) {
                    Some(known) if known != name => {
                        return Err(fail(format!(
                            "account {} is controlled by gateway {known:?} in an earlier \
                             allocation, not {name:?}",
                            address.to_hex()
                        )))
                    }
                    _ => {
                        controllers.insert(address, name.to_string());
                    }
                }
            }
            if a.amount == 0 {
                return Err(fail("amount must be greater than zero".into()));
            }
            let total = supply.entry(a.asset).or_insert(0);
            *total = total.checked_add(a.amount).ok_or_else(|| {
                fail(format!(
                    "total supply of asset {} exceeds 18446744073709551615",
                    a.asset
                ))
            })?;
            *merged.entry((address, a.asset)).or_insert(0) += a.amount;
        }
        Ok(Genesis {
            chain_id: raw.chain_id,
            shards: raw.shards,
            allocations: merged
                .into_iter()
                .map(|((address, asset), amount)| Allocation {
                    address,
                    asset,
                    amount,
                })
                .collect(),
            controllers,
        })
    }

    /// Assets that exist on this chain: those with a genesis allocation (sorted).
    pub fn assets(&self) -> Vec<u32> {
        let mut assets: Vec<u32> = self.allocations.iter().map(|a| a.asset).collect();
        assets.sort_unstable();
        assets.dedup();
        if assets.is_empty() {
            assets.push(0);
        }
        assets
    }

    /// Total supply per asset.
    pub fn supply(&self) -> BTreeMap<u32, u64> {
        let mut supply = BTreeMap::new();
        for a in &self.allocations {
            *supply.entry(a.asset).or_insert(0u64) += a.amount;
        }
        supply
    }

    /// Canonical JSON (shard count resolved): what a data directory stores and compares.
    pub fn to_canonical_json(&self, shards: u32) -> String {
        let allocations: Vec<serde_json::Value> = self
            .allocations
            .iter()
            .map(|a| {
                let mut allocation = serde_json::json!({
                    "address": a.address.to_hex(),
                    "asset": a.asset,
                    "amount": a.amount.to_string(),
                });
                // Only custodial accounts carry the key: a genesis without controllers keeps
                // the canonical form (and hash) it always had.
                if let Some(name) = self.controllers.get(&a.address) {
                    allocation["controller"] = format!("{CONTROLLER_PREFIX}{name}").into();
                }
                allocation
            })
            .collect();
        serde_json::to_string_pretty(&serde_json::json!({
            "chainId": self.chain_id,
            "shards": shards,
            "allocations": allocations,
        }))
        .expect("json")
    }

    /// SHA-256 of the canonical JSON: two geneses are the same chain iff their hashes match.
    pub fn hash(&self, shards: u32) -> [u8; 32] {
        Sha256::digest(self.to_canonical_json(shards).as_bytes()).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "0101010101010101010101010101010101010101010101010101010101010101";

    #[test]
    fn parses_the_contract_example() {
        let g = Genesis::from_json(&format!(
            r#"{{"chainId":7,"shards":2,"allocations":[{{"address":"{A}","asset":0,"amount":1000000000}},
               {{"address":"{A}","amount":"18446744073709551614","asset":3}}]}}"#
        ))
        .unwrap();
        assert_eq!(g.chain_id, 7);
        assert_eq!(g.shards, Some(2));
        assert_eq!(g.allocations.len(), 2);
        assert_eq!(g.assets(), vec![0, 3]);
        let again = Genesis::from_json(&g.to_canonical_json(2)).unwrap();
        assert_eq!(again, g);
        assert_eq!(again.hash(2), g.hash(2));
        assert_ne!(g.hash(2), g.hash(3));
    }

    #[test]
    fn rejects_bad_genesis_with_clear_errors() {
        let cases = [
            (r#"{"chainId":7,"bogus":1}"#.to_string(), "unknown field"),
            (r#"{"shards":2}"#.to_string(), "chainId"),
            (r#"{"chainId":7,"shards":0}"#.to_string(), "shards is 0"),
            (
                r#"{"chainId":7,"allocations":[{"address":"xyz","amount":1}]}"#.to_string(),
                "allocation 0",
            ),
            (
                format!(r#"{{"chainId":7,"allocations":[{{"address":"{A}","amount":0}}]}}"#),
                "greater than zero",
            ),
            (
                format!(r#"{{"chainId":7,"allocations":[{{"address":"{A}","amount":"-5"}}]}}"#),
                "decimal",
            ),
            (
                format!(
                    r#"{{"chainId":7,"allocations":[{{"address":"{A}","amount":"18446744073709551615"}},{{"address":"{A}","amount":1}}]}}"#
                ),
                "total supply",
            ),
            (
                format!(
                    r#"{{"chainId":7,"allocations":[{{"address":"{A}","amount":1,"controller":"acme"}}]}}"#
                ),
                "must be \"gateway:NAME\"",
            ),
            (
                format!(
                    r#"{{"chainId":7,"allocations":[{{"address":"{A}","amount":1,"controller":"gateway:a b"}}]}}"#
                ),
                "A-Z a-z 0-9",
            ),
            (
                format!(
                    r#"{{"chainId":7,"allocations":[{{"address":"{A}","amount":1,"controller":"gateway:x"}},{{"address":"{A}","asset":1,"amount":1,"controller":"gateway:y"}}]}}"#
                ),
                "controlled by gateway \"x\"",
            ),
        ];
        for (json, needle) in cases {
            let err = Genesis::from_json(&json).unwrap_err().to_string();
            assert!(err.contains(needle), "{json}: {err}");
        }
    }

    #[test]
    fn controllers_make_accounts_custodial_and_keep_the_canonical_form() {
        const B: &str = "0202020202020202020202020202020202020202020202020202020202020202";
        let plain = format!(r#"{{"chainId":7,"allocations":[{{"address":"{A}","amount":5}}]}}"#);
        let g = Genesis::from_json(&plain).unwrap();
        assert!(g.controllers.is_empty());
        assert!(
            !g.to_canonical_json(2).contains("controller"),
            "old chains keep their hash"
        );
        let custodial = format!(
            r#"{{"chainId":7,"allocations":[{{"address":"{A}","amount":5,"controller":"gateway:acme"}},
               {{"address":"{A}","asset":1,"amount":5}},{{"address":"{B}","amount":5}}]}}"#
        );
        let g = Genesis::from_json(&custodial).unwrap();
        let a = Address::from_hex(A).unwrap();
        assert_eq!(g.controllers.len(), 1);
        assert_eq!(g.controllers.get(&a).map(String::as_str), Some("acme"));
        let again = Genesis::from_json(&g.to_canonical_json(2)).unwrap();
        assert_eq!(again.controllers, g.controllers);
        assert_eq!(again.hash(2), g.hash(2));
        assert_ne!(g.hash(2), Genesis::from_json(&plain).unwrap().hash(2));
    }
}
