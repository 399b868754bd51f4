//! Aurigraph networking: the validator-to-validator transport (core-to-core TCP links on
//! glommio; see docs/transport.md).
#![forbid(unsafe_code)]

pub mod transport;
