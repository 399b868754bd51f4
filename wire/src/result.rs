//! Result codes of the contract (docs/api.md). The string names are the wire contract.

use serde::{Serialize, Serializer};

/// Outcome of one transfer. Under `Ok` the balances changed; under `InsufficientFunds` only
/// the sender's nonce was spent (so the refused transfer can never apply later); under every
/// other code nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ResultCode {
    Ok = 0,
    BadSignature = 1,
    InsufficientFunds = 2,
    NonceReplayed = 3,
    NonceTooOld = 4,
    ZeroAmount = 5,
    SelfTransfer = 6,
    UnknownAsset = 7,
    WrongChain = 8,
    Malformed = 9,
}

impl ResultCode {
    pub const ALL: [ResultCode; 10] = [
        ResultCode::Ok,
        ResultCode::BadSignature,
        ResultCode::InsufficientFunds,
        ResultCode::NonceReplayed,
        ResultCode::NonceTooOld,
        ResultCode::ZeroAmount,
        ResultCode::SelfTransfer,
        ResultCode::UnknownAsset,
        ResultCode::WrongChain,
        ResultCode::Malformed,
    ];

    /// The contract name, e.g. `INSUFFICIENT_FUNDS`.
    pub fn as_str(self) -> &'static str {
        match self {
            ResultCode::Ok => "OK",
            ResultCode::BadSignature => "BAD_SIGNATURE",
            ResultCode::InsufficientFunds => "INSUFFICIENT_FUNDS",
            ResultCode::NonceReplayed => "NONCE_REPLAYED",
            ResultCode::NonceTooOld => "NONCE_TOO_OLD",
            ResultCode::ZeroAmount => "ZERO_AMOUNT",
            ResultCode::SelfTransfer => "SELF_TRANSFER",
            ResultCode::UnknownAsset => "UNKNOWN_ASSET",
            ResultCode::WrongChain => "WRONG_CHAIN",
            ResultCode::Malformed => "MALFORMED",
        }
    }

    pub fn from_u8(code: u8) -> Option<ResultCode> {
        ResultCode::ALL.get(code as usize).copied()
    }

    pub fn is_ok(self) -> bool {
        self == ResultCode::Ok
    }
}

impl std::fmt::Display for ResultCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ResultCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_through_u8() {
        for code in ResultCode::ALL {
            assert_eq!(ResultCode::from_u8(code as u8), Some(code));
        }
        assert_eq!(ResultCode::from_u8(200), None);
    }
}
