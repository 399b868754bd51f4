//! An account's contribution to the state hash, computed from the account's fields in registers.
//!
//! The definition is the module docs' (`xxh3_128` of the canonical account bytes, seed 0); this
//! is the same function specialised to the two lengths an account with the native asset alone
//! has: 48 bytes (no balance) and 60 bytes (a native balance). Apply computes four
//! contributions per transfer (each side's before and after). Writing the canonical bytes to a
//! stack buffer and hashing it, as before, made each read of the hash stall on store
//! forwarding (XXH3 reads 8-byte words at offsets 28, 36, 44 and 52, each straddling two of the
//! buffer's stores): at 1M accounts that hash was a third of apply's profile, 40% of it on one
//! stalled load. Here the words are assembled with shifts, and the address's part is mixed
//! once per account per transfer (`AddressMix`). The tests pin the result to `xxh3_128` of the
//! canonical bytes.

use crate::record::Address;

/// XXH3's default secret, its first 64 bytes: the part inputs of at most 64 bytes use.
const SECRET: [u8; 64] = [
    0xb8, 0xfe, 0x6c, 0x39, 0x23, 0xa4, 0x4b, 0xbe, 0x7c, 0x01, 0x81, 0x2c, 0xf7, 0x21, 0xad, 0x1c,
    0xde, 0xd4, 0x6d, 0xe9, 0x83, 0x90, 0x97, 0xdb, 0x72, 0x40, 0xa4, 0xa4, 0xb7, 0xb3, 0x67, 0x1f,
    0xcb, 0x79, 0xe6, 0x4e, 0xcc, 0xc0, 0xe5, 0x78, 0x82, 0x5a, 0xd0, 0x7d, 0xcc, 0xff, 0x72, 0x21,
    0xb8, 0x08, 0x46, 0x74, 0xf7, 0x43, 0x24, 0x8e, 0xe0, 0x35, 0x90, 0xe6, 0x81, 0x3a, 0x26, 0x4c,
];
const PRIME64_1: u64 = 0x9E37_79B1_85EB_CA87;
const PRIME64_2: u64 = 0xC2B2_AE3D_27D4_EB4F;
const PRIME64_4: u64 = 0x85EB_CA77_C2B2_AE63;

/// Canonical bytes of an account with no balance: address ‖ nonce high ‖ nonce window.
const BYTES_NO_BALANCE: u64 = 48;
/// … and with a native balance: ‖ asset 0 (u32) ‖ balance (u64).
const BYTES_NATIVE: u64 = 60;

const fn secret(offset: usize) -> u64 {
    u64::from_le_bytes([
        SECRET[offset],
        SECRET[offset + 1],
        SECRET[offset + 2],
        SECRET[offset + 3],
        SECRET[offset + 4],
        SECRET[offset + 5],
        SECRET[offset + 6],
        SECRET[offset + 7],
    ])
}

#[inline(always)]
fn mul128_fold64(left: u64, right: u64) -> u64 {
    let product = left as u128 * right as u128;
    (product as u64) ^ ((product >> 64) as u64)
}

/// XXH3's `mix16B` with seed 0: two input words against the secret at `offset`.
#[inline(always)]
fn mix16(low: u64, high: u64, offset: usize) -> u64 {
    mul128_fold64(low ^ secret(offset), high ^ secret(offset + 8))
}

#[inline(always)]
fn avalanche(mut value: u64) -> u64 {
    value ^= value >> 37;
    value = value.wrapping_mul(0x1656_6791_9E37_79F9);
    value ^ (value >> 32)
}

/// XXH3-128's finish for inputs of 17 to 128 bytes (seed 0).
#[inline(always)]
fn finish(acc: (u64, u64), length: u64) -> u128 {
    let low = avalanche(acc.0.wrapping_add(acc.1));
    let high = 0u64.wrapping_sub(avalanche(
        acc.0
            .wrapping_mul(PRIME64_1)
            .wrapping_add(acc.1.wrapping_mul(PRIME64_4))
            .wrapping_add(length.wrapping_mul(PRIME64_2)),
    ));
    low as u128 | (high as u128) << 64
}

/// The parts of an account's contribution that depend on its address alone. Apply computes
/// them once per account it touches and uses them for the contribution before and after.
#[derive(Clone, Copy, Debug)]
pub(super) struct AddressMix {
    /// The address as four little-endian words; the last two are mixed once more in the
    /// 48-byte form, and the last one straddles into the 60-byte form's word at 28.
    a2: u64,
    a3: u64,
    /// `mix16` of words 0 and 1 with the secret at 0, of words 2 and 3 at 32: both forms have
    /// them.
    mixed01: u64,
    mixed23: u64,
    sum01: u64,
    sum23: u64,
}

impl AddressMix {
    #[inline]
    pub(super) fn new(address: &Address) -> AddressMix {
        let word = |i: usize| u64::from_le_bytes(address.0[8 * i..8 * i + 8].try_into().unwrap());
        let (a0, a1, a2, a3) = (word(0), word(1), word(2), word(3));
        AddressMix {
            a2,
            a3,
            mixed01: mix16(a0, a1, 0),
            mixed23: mix16(a2, a3, 32),
            sum01: a0.wrapping_add(a1),
            sum23: a2.wrapping_add(a3),
        }
    }
}

/// `xxh3_128` of the canonical bytes of an account that holds no asset but the native one:
/// address (as `mix`) ‖ nonce high ‖ nonce window, then asset 0 ‖ `native` when `native` is
/// not zero. XXH3-128 for 17 to 128 bytes runs two `mix32B` rounds, written out below with
/// their input words.
#[inline]
pub(super) fn native_only(
    mix: &AddressMix,
    nonce_high: u64,
    nonce_window: u64,
    native: u64,
) -> u128 {
    if native == 0 {
        // 48 bytes: bytes 16..32 with 16..32 (XXH3's `len - 32`), then 0..16 with 32..48.
        let mut low = BYTES_NO_BALANCE.wrapping_mul(PRIME64_1);
        let mut high = 0u64;
        low = low.wrapping_add(mix.mixed23) ^ mix.sum23;
        high = high.wrapping_add(mix16(mix.a2, mix.a3, 48)) ^ mix.sum23;
        low = low.wrapping_add(mix.mixed01) ^ nonce_high.wrapping_add(nonce_window);
        high = high.wrapping_add(mix16(nonce_high, nonce_window, 16)) ^ mix.sum01;
        return finish((low, high), BYTES_NO_BALANCE);
    }
    // 60 bytes: bytes 16..32 with 28..44, then 0..16 with 44..60. The words at 28, 36 and 44
    // straddle fields: (address end, nonce high), (nonce high, nonce window), (nonce window,
    // asset 0); the word at 52 is the balance.
    let at28 = (mix.a3 >> 32) | (nonce_high << 32);
    let at36 = (nonce_high >> 32) | (nonce_window << 32);
    let at44 = nonce_window >> 32;
    let mut low = BYTES_NATIVE.wrapping_mul(PRIME64_1);
    let mut high = 0u64;
    low = low.wrapping_add(mix.mixed23) ^ at28.wrapping_add(at36);
    high = high.wrapping_add(mix16(at28, at36, 48)) ^ mix.sum23;
    low = low.wrapping_add(mix.mixed01) ^ at44.wrapping_add(native);
    high = high.wrapping_add(mix16(at44, native, 16)) ^ mix.sum01;
    finish((low, high), BYTES_NATIVE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use xxhash_rust::xxh3::xxh3_128;

    fn canonical(address: &Address, nonce_high: u64, nonce_window: u64, native: u64) -> Vec<u8> {
        let mut bytes = address.0.to_vec();
        bytes.extend_from_slice(&nonce_high.to_le_bytes());
        bytes.extend_from_slice(&nonce_window.to_le_bytes());
        if native != 0 {
            bytes.extend_from_slice(&0u32.to_le_bytes());
            bytes.extend_from_slice(&native.to_le_bytes());
        }
        bytes
    }

    #[test]
    fn secret_is_xxh3_default_secret() {
        // The 48-byte form of an all-zero input reads exactly secret words 0..8.
        let zero = Address([0; 32]);
        assert_eq!(
            native_only(&AddressMix::new(&zero), 0, 0, 0),
            xxh3_128(&[0u8; 48])
        );
        assert_eq!(secret(0), 0xbe4b_a423_396c_feb8);
        assert_eq!(secret(56), 0x4c26_3a81_e690_35e0);
    }

    #[test]
    fn equals_xxh3_128_of_the_canonical_bytes() {
        let mut rng = StdRng::seed_from_u64(0x5eed);
        for round in 0..20_000 {
            let address = Address(rng.gen());
            // Small and extreme values too: the straddling words must carry every bit.
            let pick = |rng: &mut StdRng| match rng.gen_range(0..4) {
                0 => 0,
                1 => u64::MAX,
                2 => rng.gen_range(0..1000),
                _ => rng.gen(),
            };
            let (high, window, native) = (pick(&mut rng), pick(&mut rng), pick(&mut rng));
            let native = if round % 3 == 0 { 0 } else { native };
            assert_eq!(
                native_only(&AddressMix::new(&address), high, window, native),
                xxh3_128(&canonical(&address, high, window, native)),
                "round {round}"
            );
        }
    }
}
