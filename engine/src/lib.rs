//! Aurigraph ledger engine.
//!
//! - [`record`], [`batch`], [`result`]: the wire contract (from `aurigraph-wire`): the signed
//!   transfer record, binary batches (rkyv), result codes.
//! - [`shard`], [`genesis`]: which shard owns an address; the genesis contract (from
//!   `aurigraph-wire`).
//! - [`verify`]: batched Ed25519 verification.
//! - [`ledger`]: one shard's deterministic state machine (no I/O).
//! - [`state_snapshot`]: a shard's state as an rkyv archive.
//! - [`replica`]: one shard's replica: raft-rs `RawNode` + the ledger, without I/O.
//! - [`node`]: `ShardNode`, the sans-I/O shard driver around the replica (admission,
//!   ready order, forwarding, credits and receipt pruning, snapshot pieces, membership).
//! - [`peering`]: the payloads shards of different validators exchange, as bytes.
//! - [`runtime`]: the thread-per-core runtime (glommio executors) that performs `ShardNode`'s
//!   actions: ingress, storage, transport, the [`Engine`] handle.
//! - [`datadir`]: the data directory and the genesis it was created with.
//! - `sim` (feature `sim`): the deterministic cluster simulator driving the same `ShardNode`.

pub mod backup;
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
pub use aurigraph_wire::{batch, genesis, record, result, shard, tokens};

pub use batch::{decode_batch, encode_batch, BatchBuilder, BatchError, BatchView};
pub use genesis::Genesis;
pub use ledger::{Account, Receipt, ShardState};
pub use node::{ShardStatus, SubmitFailure};
/// Membership change kinds (raft-rs), for [`Engine::change_membership`].
pub use raft::eraftpb::ConfChangeType;
pub use record::{Address, Record, Transfer, TxHash};
pub use replica::{BlockHeader, Outcome, TxStatus};
pub use result::ResultCode;
pub use runtime::{AppliedTap, CoreService, Engine, EngineConfig, EngineError, SinkWritten};
pub use shard::{shard_of, ShardId};
