//! Aurigraph ledger engine.
//!
//! - [`record`], [`batch`]: the signed transfer record (a contract) and binary batches (rkyv).
//! - [`verify`]: batched Ed25519 verification.
//! - [`ledger`]: one shard's deterministic state machine (no I/O).
//! - [`shard`]: which shard owns an address.
//! - [`genesis`]: the genesis contract.
//! - [`state_snapshot`]: a shard's state as an rkyv archive.

pub mod batch;
pub mod datadir;
pub mod genesis;
pub mod ledger;
pub mod peering;
pub mod record;
pub mod replica;
pub mod result;
pub mod runtime;
pub mod shard;
/// The deterministic cluster simulator (feature `sim`; tests enable it). See docs/simulator.md.
#[cfg(feature = "sim")]
pub mod sim;
pub mod state_snapshot;
pub mod verify;

pub use batch::{decode_batch, encode_batch, BatchBuilder, BatchError, BatchView};
pub use genesis::Genesis;
pub use ledger::{Account, Receipt, ShardState};
/// Membership change kinds (raft-rs), for [`Engine::change_membership`].
pub use raft::eraftpb::ConfChangeType;
pub use record::{Address, Record, Transfer, TxHash};
pub use replica::{BlockHeader, Outcome, TxStatus};
pub use result::ResultCode;
pub use runtime::{CoreService, Engine, EngineConfig, EngineError, ShardStatus, SubmitFailure};
pub use shard::{shard_of, ShardId};
