//! What the HTTP layer needs from the ledger, and its implementation by the engine.

use aurigraph_engine::ledger::Account;
use aurigraph_engine::node::BackupRefused;
use aurigraph_engine::record::{Address, Record, TxHash};
use aurigraph_engine::replica::{BlockHeader, Outcome, TxStatus};
use aurigraph_engine::runtime::{CoreCounters, GatewayId, ShardBackup, ShardCounters};
use aurigraph_engine::ConfChangeType;
use aurigraph_engine::{Engine, EngineError, ShardStatus, SubmitFailure};
use std::future::Future;
use std::sync::Arc;

/// What the HTTP layer needs from the ledger (implemented by [`Engine`]).
pub trait Backend: Clone + 'static {
    fn chain_id(&self) -> u32;
    fn shard_count(&self) -> u32;
    fn cores(&self) -> usize;
    fn assets(&self) -> Vec<u32>;
    /// The gateway named `name` (gateway mode), if the genesis gives it any account.
    fn gateway(&self, name: &str) -> Option<GatewayId>;
    /// Submits on behalf of `gateway` (authenticated), or of nobody (`None`): records whose
    /// source account the gateway controls need no signature.
    fn submit(
        &self,
        records: &[Record],
        gateway: Option<GatewayId>,
    ) -> impl Future<Output = Result<Vec<Outcome>, SubmitFailure>>;
    /// Submits a validated binary batch whole (see [`Engine::submit_archive_as`]).
    fn submit_archive(
        &self,
        archive: Vec<u8>,
        gateway: Option<GatewayId>,
    ) -> impl Future<Output = Result<Vec<Outcome>, SubmitFailure>>;
    fn submit_detached(
        &self,
        records: &[Record],
        gateway: Option<GatewayId>,
    ) -> impl Future<Output = Result<Vec<TxHash>, SubmitFailure>>;
    fn transaction(
        &self,
        hash: TxHash,
    ) -> impl Future<Output = Result<Option<TxStatus>, EngineError>>;
    fn account(
        &self,
        address: Address,
    ) -> impl Future<Output = Result<Option<Account>, EngineError>>;
    fn status(&self) -> impl Future<Output = Result<Vec<ShardStatus>, EngineError>>;
    fn block(
        &self,
        shard: u32,
        height: u64,
    ) -> impl Future<Output = Result<Option<BlockHeader>, EngineError>>;
    fn latest_blocks(&self) -> impl Future<Output = Result<Vec<BlockHeader>, EngineError>>;
    /// Proposes a membership change on the shards this validator leads (see
    /// [`Engine::change_membership`]).
    fn change_membership(
        &self,
        changes: Vec<(ConfChangeType, u64)>,
        peer_addr: Vec<u8>,
    ) -> impl Future<Output = Result<MembershipResults, EngineError>>;
    /// Running totals of every shard (WAL, snapshots, signatures), read without a message.
    fn shard_counters(&self) -> Arc<[ShardCounters]>;
    /// Running totals of every core (where its submissions went), read without a message.
    fn core_counters(&self) -> Arc<[CoreCounters]>;
    /// Every shard's state at its applied index, for a backup (see [`Engine::backup`]).
    fn backup(&self) -> impl Future<Output = Result<BackupParts, EngineError>>;
}

/// Each shard's part of a backup, or why it cannot be taken now.
pub type BackupParts = Vec<Result<ShardBackup, BackupRefused>>;

impl Backend for Engine {
    fn chain_id(&self) -> u32 {
        Engine::chain_id(self)
    }
    fn shard_count(&self) -> u32 {
        Engine::shard_count(self)
    }
    fn cores(&self) -> usize {
        Engine::cores(self)
    }
    fn assets(&self) -> Vec<u32> {
        Engine::assets(self).to_vec()
    }
    fn gateway(&self, name: &str) -> Option<GatewayId> {
        Engine::gateway(self, name)
    }
    fn submit(
        &self,
        records: &[Record],
        gateway: Option<GatewayId>,
    ) -> impl Future<Output = Result<Vec<Outcome>, SubmitFailure>> {
        Engine::submit_as(self, records, gateway)
    }
    fn submit_archive(
        &self,
        archive: Vec<u8>,
        gateway: Option<GatewayId>,
    ) -> impl Future<Output = Result<Vec<Outcome>, SubmitFailure>> {
        Engine::submit_archive_as(self, archive, gateway)
    }
    fn submit_detached(
        &self,
        records: &[Record],
        gateway: Option<GatewayId>,
    ) -> impl Future<Output = Result<Vec<TxHash>, SubmitFailure>> {
        Engine::submit_detached_as(self, records, gateway)
    }
    fn transaction(
        &self,
        hash: TxHash,
    ) -> impl Future<Output = Result<Option<TxStatus>, EngineError>> {
        Engine::transaction(self, hash)
    }
    fn account(
        &self,
        address: Address,
    ) -> impl Future<Output = Result<Option<Account>, EngineError>> {
        Engine::account(self, address)
    }
    fn status(&self) -> impl Future<Output = Result<Vec<ShardStatus>, EngineError>> {
        Engine::status(self)
    }
    fn block(
        &self,
        shard: u32,
        height: u64,
    ) -> impl Future<Output = Result<Option<BlockHeader>, EngineError>> {
        Engine::block(self, shard, height)
    }
    fn latest_blocks(&self) -> impl Future<Output = Result<Vec<BlockHeader>, EngineError>> {
        Engine::latest_blocks(self)
    }
    fn change_membership(
        &self,
        changes: Vec<(ConfChangeType, u64)>,
        peer_addr: Vec<u8>,
    ) -> impl Future<Output = Result<MembershipResults, EngineError>> {
        Engine::change_membership(self, changes, peer_addr)
    }
    fn backup(&self) -> impl Future<Output = Result<BackupParts, EngineError>> {
        Engine::backup(self)
    }
    fn shard_counters(&self) -> Arc<[ShardCounters]> {
        Engine::shard_counters(self).clone()
    }
    fn core_counters(&self) -> Arc<[CoreCounters]> {
        Engine::core_counters(self).clone()
    }
}

/// Per shard: the log index at which a membership change applied, or why not.
pub type MembershipResults = Vec<(u32, Result<u64, SubmitFailure>)>;
