//! Aurigraph ledger engine.
//!
//! - [`record`], [`batch`], [`result`]: the wire contract (from `aurigraph-wire`): the signed
//!   transfer record, binary batches (rkyv), result codes.
//! - [`verify`]: batched Ed25519 verification.
//! - [`ledger`]: one shard's deterministic state machine (no I/O).
//! - [`shard`], [`genesis`]: which shard owns an address; the genesis contract (from
//!   `aurigraph-wire`).
//! - [`state_snapshot`]: a shard's state as an rkyv archive.

pub mod datadir;
pub mod ledger;
pub mod node;
pub mod peering;
pub mod replica;
pub mod runtime;
/// The deterministic cluster simulator (feature `sim`; tests enable it). See docs/simulator.md.
#[cfg(feature = "sim")]
pub mod sim;
pub mod state_snapshot;
pub mod verify;

/// The wire contract (records, batches, result codes, genesis, shard routing), re-exported from
/// `aurigraph-wire`.
pub use aurigraph_wire::{batch, genesis, record, result, shard};

pub use batch::{decode_batch, encode_batch, BatchBuilder, BatchError, BatchView};
pub use genesis::Genesis;
pub use ledger::{Account, Receipt, ShardState};
/// Membership change kinds (raft-rs), for [`Engine::change_membership`].
pub use raft::eraftpb::ConfChangeType;
pub use record::{Address, Record, Transfer, TxHash};
pub use replica::{BlockHeader, Outcome, TxStatus};
pub use result::ResultCode;
pub use node::{ShardStatus, SubmitFailure};
pub use runtime::{CoreService, Engine, EngineConfig, EngineError};
pub use shard::{shard_of, ShardId};
