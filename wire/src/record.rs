//! The signed transfer record (a contract: docs/api.md).
//!
//! A record is 168 bytes: the 104-byte signed message followed by the 64-byte Ed25519 signature.
//! Integers are little-endian. Records are fixed-size so that batches can be validated once and
//! then read in place (zero-copy) by every later stage: verify, log, wire, apply.

use ed25519_dalek::{Signer, SigningKey};
use sha2::{Digest, Sha256};
use std::fmt;

/// Domain tag: ASCII `AURIGRAPH-TX-V1` followed by one zero byte.
pub const DOMAIN_TAG: [u8; 16] = *b"AURIGRAPH-TX-V1\0";
pub const MESSAGE_BYTES: usize = 104;
pub const SIGNATURE_BYTES: usize = 64;
pub const RECORD_BYTES: usize = MESSAGE_BYTES + SIGNATURE_BYTES;

const OFFSET_CHAIN_ID: usize = 16;
const OFFSET_FROM: usize = 20;
const OFFSET_TO: usize = 52;
const OFFSET_ASSET: usize = 84;
const OFFSET_AMOUNT: usize = 88;
const OFFSET_NONCE: usize = 96;

/// An account address: the account's Ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[repr(transparent)]
pub struct Address(pub [u8; 32]);

impl Address {
    /// Parses 64 hex characters (lower or upper case).
    pub fn from_hex(text: &str) -> Result<Address, String> {
        if text.len() != 64 {
            return Err(format!(
                "an address is 64 hex characters, got {} characters",
                text.len()
            ));
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes)
            .map_err(|e| format!("an address must be hex: {e}"))?;
        Ok(Address(bytes))
    }

    /// 64 lowercase hex characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({})", &self.to_hex()[..16])
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// The fields a client signs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transfer {
    pub chain_id: u32,
    pub from: Address,
    pub to: Address,
    pub asset: u32,
    pub amount: u64,
    pub nonce: u64,
}

impl Transfer {
    /// The exact 104 bytes that are signed.
    pub fn message(&self) -> [u8; MESSAGE_BYTES] {
        let mut m = [0u8; MESSAGE_BYTES];
        m[..16].copy_from_slice(&DOMAIN_TAG);
        m[OFFSET_CHAIN_ID..OFFSET_FROM].copy_from_slice(&self.chain_id.to_le_bytes());
        m[OFFSET_FROM..OFFSET_TO].copy_from_slice(&self.from.0);
        m[OFFSET_TO..OFFSET_ASSET].copy_from_slice(&self.to.0);
        m[OFFSET_ASSET..OFFSET_AMOUNT].copy_from_slice(&self.asset.to_le_bytes());
        m[OFFSET_AMOUNT..OFFSET_NONCE].copy_from_slice(&self.amount.to_le_bytes());
        m[OFFSET_NONCE..].copy_from_slice(&self.nonce.to_le_bytes());
        m
    }

    /// Signs with `key`; `self.from` must be `key`'s public key for the signature to verify.
    pub fn sign(&self, key: &SigningKey) -> Record {
        let message = self.message();
        let signature = key.sign(&message);
        Record::from_parts(&message, &signature.to_bytes())
    }

    /// Builds the record with an explicit signature (e.g. one that arrived as hex over JSON).
    pub fn with_signature(&self, signature: &[u8; SIGNATURE_BYTES]) -> Record {
        Record::from_parts(&self.message(), signature)
    }
}

/// One signed transfer as it travels: message ‖ signature, 168 bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(transparent)]
pub struct Record(pub [u8; RECORD_BYTES]);

impl fmt::Debug for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Record")
            .field("transfer", &self.transfer())
            .finish()
    }
}

impl Record {
    pub fn from_parts(message: &[u8; MESSAGE_BYTES], signature: &[u8; SIGNATURE_BYTES]) -> Record {
        let mut bytes = [0u8; RECORD_BYTES];
        bytes[..MESSAGE_BYTES].copy_from_slice(message);
        bytes[MESSAGE_BYTES..].copy_from_slice(signature);
        Record(bytes)
    }

    /// Views a 168-byte array as a record without copying.
    pub fn from_array_ref(bytes: &[u8; RECORD_BYTES]) -> &Record {
        // SAFETY: Record is repr(transparent) over [u8; RECORD_BYTES].
        unsafe { &*(bytes as *const [u8; RECORD_BYTES] as *const Record) }
    }

    pub fn message(&self) -> &[u8; MESSAGE_BYTES] {
        self.0[..MESSAGE_BYTES].try_into().expect("fixed size")
    }

    pub fn signature(&self) -> &[u8; SIGNATURE_BYTES] {
        self.0[MESSAGE_BYTES..].try_into().expect("fixed size")
    }

    pub fn has_domain_tag(&self) -> bool {
        self.0[..16] == DOMAIN_TAG
    }

    pub fn chain_id(&self) -> u32 {
        u32::from_le_bytes(self.0[OFFSET_CHAIN_ID..OFFSET_FROM].try_into().unwrap())
    }

    pub fn from_bytes(&self) -> &[u8; 32] {
        self.0[OFFSET_FROM..OFFSET_TO].try_into().unwrap()
    }

    pub fn from(&self) -> Address {
        Address(*self.from_bytes())
    }

    /// The sender's address viewed in place (no copy).
    pub fn from_bytes_as_address(&self) -> &Address {
        // SAFETY: Address is a plain [u8; 32] newtype with the same layout.
        unsafe { &*(self.0[OFFSET_FROM..OFFSET_TO].as_ptr() as *const Address) }
    }

    /// The receiver's address viewed in place (no copy).
    pub fn to_bytes_as_address(&self) -> &Address {
        // SAFETY: as above.
        unsafe { &*(self.0[OFFSET_TO..OFFSET_ASSET].as_ptr() as *const Address) }
    }

    pub fn to(&self) -> Address {
        Address(self.0[OFFSET_TO..OFFSET_ASSET].try_into().unwrap())
    }

    pub fn asset(&self) -> u32 {
        u32::from_le_bytes(self.0[OFFSET_ASSET..OFFSET_AMOUNT].try_into().unwrap())
    }

    pub fn amount(&self) -> u64 {
        u64::from_le_bytes(self.0[OFFSET_AMOUNT..OFFSET_NONCE].try_into().unwrap())
    }

    pub fn nonce(&self) -> u64 {
        u64::from_le_bytes(self.0[OFFSET_NONCE..MESSAGE_BYTES].try_into().unwrap())
    }

    pub fn transfer(&self) -> Transfer {
        Transfer {
            chain_id: self.chain_id(),
            from: self.from(),
            to: self.to(),
            asset: self.asset(),
            amount: self.amount(),
            nonce: self.nonce(),
        }
    }

    /// `txHash` = SHA-256(message ‖ signature), the contract's transaction identifier.
    pub fn tx_hash(&self) -> TxHash {
        TxHash(Sha256::digest(self.0).into())
    }
}

/// SHA-256 of the 168 record bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TxHash(pub [u8; 32]);

impl TxHash {
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(text: &str) -> Result<TxHash, String> {
        Address::from_hex(text).map(|a| TxHash(a.0))
    }
}

impl fmt::Debug for TxHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TxHash({})", &self.to_hex()[..16])
    }
}

impl fmt::Display for TxHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Address of a signing key.
pub fn address_of(key: &SigningKey) -> Address {
    Address(key.verifying_key().to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_layout_matches_the_contract() {
        let t = Transfer {
            chain_id: 7,
            from: Address([1; 32]),
            to: Address([2; 32]),
            asset: 3,
            amount: 0x0102030405060708,
            nonce: 9,
        };
        let m = t.message();
        assert_eq!(&m[..16], b"AURIGRAPH-TX-V1\0");
        assert_eq!(&m[16..20], &[7, 0, 0, 0]);
        assert_eq!(&m[20..52], &[1; 32]);
        assert_eq!(&m[52..84], &[2; 32]);
        assert_eq!(&m[84..88], &[3, 0, 0, 0]);
        assert_eq!(&m[88..96], &[8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(&m[96..104], &[9, 0, 0, 0, 0, 0, 0, 0]);
        let r = t.with_signature(&[5; 64]);
        assert_eq!(r.transfer(), t);
        assert!(r.has_domain_tag());
    }

    #[test]
    fn tx_hash_is_sha256_of_message_and_signature() {
        let key = SigningKey::from_bytes(&[42; 32]);
        let t = Transfer {
            chain_id: 7,
            from: address_of(&key),
            to: Address([2; 32]),
            asset: 0,
            amount: 10,
            nonce: 1,
        };
        let r = t.sign(&key);
        let mut h = Sha256::new();
        h.update(t.message());
        h.update(r.signature());
        let expect: [u8; 32] = h.finalize().into();
        assert_eq!(r.tx_hash().0, expect);
        assert_eq!(r.tx_hash().to_hex().len(), 64);
    }

    #[test]
    fn address_hex_errors_are_clear() {
        assert!(Address::from_hex("ab").unwrap_err().contains("64 hex"));
        assert!(Address::from_hex(&"zz".repeat(32))
            .unwrap_err()
            .contains("hex"));
        let a = Address([0xab; 32]);
        assert_eq!(Address::from_hex(&a.to_hex()).unwrap(), a);
        assert_eq!(Address::from_hex(&a.to_hex().to_uppercase()).unwrap(), a);
    }
}
