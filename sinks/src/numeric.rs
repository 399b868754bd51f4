//! `u64` as PostgreSQL `NUMERIC` in the binary format (amounts and nonces are unsigned 64-bit:
//! `BIGINT` would not hold the top half).

use postgres::types::{to_sql_checked, IsNull, ToSql, Type};

/// A `u64` written as `NUMERIC`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Numeric(pub u64);

impl ToSql for Numeric {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        // Base-10000 digits, most significant first; `weight` is the power of 10000 of the
        // first one. Trailing zero digits are dropped, as PostgreSQL itself does.
        let mut digits = Vec::with_capacity(5);
        let mut n = self.0;
        while n > 0 {
            digits.push((n % 10_000) as i16);
            n /= 10_000;
        }
        digits.reverse();
        let weight = digits.len() as i16 - 1;
        while digits.last() == Some(&0) {
            digits.pop();
        }
        out.extend_from_slice(&(digits.len() as i16).to_be_bytes());
        out.extend_from_slice(&(if digits.is_empty() { 0 } else { weight }).to_be_bytes());
        out.extend_from_slice(&0u16.to_be_bytes()); // sign: positive
        out.extend_from_slice(&0u16.to_be_bytes()); // display scale: integers
        for d in digits {
            out.extend_from_slice(&d.to_be_bytes());
        }
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::NUMERIC
    }

    to_sql_checked!();
}
