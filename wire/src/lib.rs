//! The Aurigraph wire contract, in one place for the server, the client, the benchmark and the
//! tests (the contract itself: docs/api.md).
//!
//! - [`record`]: the signed transfer record (168 bytes).
//! - [`batch`]: binary batches of records (an rkyv archive).
//! - [`result`]: the result codes and their wire names.
//! - [`compact`]: the compact results format and the media types of the binary endpoints.
//! - [`genesis`]: the genesis file (chain id, shards, initial allocations).
//! - [`shard`]: which shard owns an address (clients may compute it).
//! - [`signature_backend`]: the arithmetic Ed25519 signatures are verified with here.
//! - [`steering`]: which core owns a shard, and which core accepts a connection.
//! - [`keyfile`]: the key file of `aurigraph keygen` (written by the node for a development chain).
//! - [`limits`]: the limits a client must respect.
//! - [`tokens`]: the tokens file (bearer tokens for gateway mode, kept as hashes).

pub mod batch;
pub mod compact;
pub mod genesis;
pub mod keyfile;
pub mod limits;
pub mod record;
pub mod result;
pub mod shard;
pub mod signature_backend;
pub mod steering;
pub mod tokens;

pub use batch::{
    decode_batch, encode_batch, BatchBuilder, BatchError, BatchView, BATCH_RECORDS_MAX,
};
pub use compact::{
    decode_compact_results, decode_compact_results_exact, encode_compact_results,
    CompactResultsError, BATCH_MEDIA_TYPE, COMPACT_RESULT_BYTES, RESULTS_MEDIA_TYPE,
};
pub use genesis::Genesis;
pub use record::{Address, Record, Transfer, TxHash};
pub use result::ResultCode;
pub use shard::{shard_of, ShardId};
