//! The limits a client must respect (the server's defaults; a node's configuration may change
//! the body size limit).

pub use crate::batch::BATCH_RECORDS_MAX;
pub use crate::genesis::GENESIS_ALLOCATIONS_MAX;
pub use crate::record::RECORD_BYTES;
pub use crate::shard::SHARDS_MAX;

/// Default request body limit of a node: 16 MiB (a full binary batch of 65,536 records is
/// 11 MiB). Larger bodies get 413 `PAYLOAD_TOO_LARGE`.
pub const BODY_BYTES_MAX: usize = 16 << 20;

/// The smallest body limit a node may be configured with.
pub const BODY_BYTES_MAX_MIN: usize = 1024;

/// Transfers per batch request (binary or JSON); more get 413 `TOO_MANY_TRANSFERS`.
pub const BATCH_TRANSFERS_MAX: usize = BATCH_RECORDS_MAX;

/// Bytes of a binary batch of `records` records (`168 * records + 12`, see [`crate::batch`]).
pub const fn batch_bytes(records: usize) -> usize {
    RECORD_BYTES * records + 12
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_batch_fits_the_default_body_limit() {
        assert!(batch_bytes(BATCH_RECORDS_MAX) <= BODY_BYTES_MAX);
        let mut b = crate::batch::BatchBuilder::with_capacity(1);
        b.push(&crate::record::Record([0; RECORD_BYTES]));
        assert_eq!(b.finish().len(), batch_bytes(1));
    }
}
