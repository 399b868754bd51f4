//! Aurigraph networking: randomness beacon verification (and, later, the beacon client).
#![forbid(unsafe_code)]

pub mod beacon;
pub mod transport;
