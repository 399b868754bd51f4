//! `GET /transactions/{txHash}` and `/blocks` answer from the recent windows: a validator that
//! restarts from a snapshot, or installs one shipped by raft, must answer exactly as the
//! validator whose state it took (the windows are a function of the applied log and travel in
//! the snapshot).

use aurigraph_engine::genesis::Genesis;
use aurigraph_engine::ledger::ShardState;
use aurigraph_engine::record::{address_of, Address, Record, Transfer};
use aurigraph_engine::replica::{ReplicaConfig, ShardReplica, TxStatus};
use aurigraph_engine::result::ResultCode;
use aurigraph_engine::state_snapshot::{decode_state, encode_state};
use ed25519_dalek::SigningKey;
use raft::eraftpb::{ConfState, Message, MessageType, Snapshot, SnapshotMetadata};
use raft::storage::MemStorage;

mod support;
use support::{genesis_funding, ready_cycles, CHAIN};

const FUNDS: u64 = 1_000;

fn key() -> SigningKey {
    SigningKey::from_bytes(&[3; 32])
}

fn genesis() -> Genesis {
    genesis_funding(&key(), FUNDS)
}

fn transfer(amount: u64, nonce: u64) -> Record {
    Transfer {
        chain_id: CHAIN,
        from: address_of(&key()),
        to: Address([9; 32]),
        asset: 0,
        amount,
        nonce,
    }
    .sign(&key())
}

fn config(node_id: u64, voters: Vec<u64>) -> ReplicaConfig {
    let mut config = ReplicaConfig::new(node_id, 0);
    config.voters = voters;
    config.recent_transactions_max = 64;
    config.recent_blocks_max = 8;
    config
}

/// Ready cycles as the runtime runs them (`support::ready_cycles`).
fn cycles(replica: &mut ShardReplica, storage: &MemStorage, now_ms: u64) {
    ready_cycles(replica, storage, now_ms);
}

/// A single-validator leader that applied `batches` (one entry each), then its snapshot.
fn leader_with_history(batches: &[Vec<Record>]) -> (ShardReplica, MemStorage) {
    let storage = MemStorage::new();
    let state = ShardState::from_genesis(&genesis(), 0, 1);
    let mut replica = ShardReplica::new(config(1, vec![1]), storage.clone(), state).unwrap();
    cycles(&mut replica, &storage, 10);
    assert!(replica.is_leader());
    for (i, batch) in batches.iter().enumerate() {
        replica
            .submit_verified(batch, &vec![true; batch.len()])
            .unwrap();
        replica.propose_admitted();
        cycles(&mut replica, &storage, 100 + i as u64);
    }
    (replica, storage)
}

fn history() -> Vec<Vec<Record>> {
    vec![
        vec![transfer(10, 1), transfer(FUNDS * 2, 2)],
        vec![transfer(20, 3)],
        // Resubmissions: answered NONCE_REPLAYED, the transfers' statuses stay as decided.
        vec![transfer(10, 1), transfer(FUNDS * 2, 2)],
        vec![transfer(30, 4), transfer(0, 5)],
    ]
}

fn snapshot_of(replica: &ShardReplica, voters: Vec<u64>) -> Snapshot {
    let applied = replica.state().applied_index();
    let mut meta = SnapshotMetadata {
        index: applied,
        term: replica.term(),
        ..Default::default()
    };
    meta.set_conf_state(ConfState::from((voters, vec![])));
    let mut snapshot = Snapshot::default();
    snapshot.set_metadata(meta);
    snapshot.data = encode_state(replica.state()).into();
    snapshot
}

/// Every answer the two replicas give about `records` and the blocks up to `last` is the same.
fn assert_same_answers(a: &ShardReplica, b: &ShardReplica, records: &[Record], last: u64) {
    for r in records {
        assert_eq!(
            a.transaction(&r.tx_hash()),
            b.transaction(&r.tx_hash()),
            "nonce {}",
            r.nonce()
        );
    }
    for height in 0..=last + 1 {
        assert_eq!(a.block(height), b.block(height), "block {height}");
    }
    assert_eq!(a.latest_block(), b.latest_block());
}

fn decided(replica: &ShardReplica, record: &Record) -> (ResultCode, u64) {
    match replica.transaction(&record.tx_hash()) {
        Some(TxStatus::Decided(o)) => (o.result, o.block),
        other => panic!("nonce {}: {other:?}", record.nonce()),
    }
}

#[test]
fn a_validator_restarted_from_a_snapshot_answers_as_the_one_that_made_it() {
    let batches = history();
    let (leader, _) = leader_with_history(&batches);
    let records: Vec<Record> = batches.concat();
    // The leader's own answers: the first decision of each transfer stands.
    let (ok, first_block) = decided(&leader, &records[0]);
    assert_eq!(ok, ResultCode::Ok);
    let (funds, block) = decided(&leader, &records[1]);
    assert_eq!((funds, block), (ResultCode::InsufficientFunds, first_block));
    assert_eq!(decided(&leader, &records[5]).0, ResultCode::Ok);
    // ZERO_AMOUNT was refused before consensus: the leader's own status, in no log.
    assert_eq!(decided(&leader, &records[6]), (ResultCode::ZeroAmount, 0));

    // Another validator restarts from the leader's snapshot (as `ShardLog::open` hands it).
    let snapshot = snapshot_of(&leader, vec![1]);
    let storage = MemStorage::new();
    storage.wl().apply_snapshot(snapshot.clone()).unwrap();
    let state = decode_state(&snapshot.data).unwrap();
    let restarted = ShardReplica::new(config(1, vec![1]), storage, state).unwrap();
    let last = leader.state().applied_index();
    assert_same_answers(&leader, &restarted, &records[..6], last);
    assert!(restarted.latest_block().is_some());
    // What was never in the log is not in the snapshot.
    assert_eq!(restarted.transaction(&records[6].tx_hash()), None);
}

#[test]
fn a_follower_that_installs_a_snapshot_from_raft_answers_as_the_leader() {
    let batches = history();
    let (leader, _) = leader_with_history(&batches);
    let records: Vec<Record> = batches.concat();
    // A fresh follower of a two-validator group receives the leader's state through raft.
    let storage = MemStorage::new_with_conf_state((vec![1, 2], vec![]));
    let state = ShardState::from_genesis(&genesis(), 0, 1);
    let mut follower = ShardReplica::new(config(2, vec![1, 2]), storage.clone(), state).unwrap();
    let mut message = Message::default();
    message.set_msg_type(MessageType::MsgSnapshot);
    message.from = 1;
    message.to = 2;
    message.term = leader.term();
    message.set_snapshot(snapshot_of(&leader, vec![1, 2]));
    follower.step(message).unwrap();
    cycles(&mut follower, &storage, 500);
    let last = leader.state().applied_index();
    assert_eq!(follower.state().applied_index(), last);
    assert_eq!(follower.state().state_hash(), leader.state().state_hash());
    assert_same_answers(&leader, &follower, &records[..6], last);
}

#[test]
fn the_window_forgets_the_oldest_transfers_alike_on_every_replica() {
    // More transfers than the window holds (64): the oldest are forgotten, in log order.
    let batches: Vec<Vec<Record>> = (0..10u64)
        .map(|b| (1..=10u64).map(|i| transfer(1, b * 10 + i)).collect())
        .collect();
    let (leader, _) = leader_with_history(&batches);
    let records: Vec<Record> = batches.concat();
    let snapshot = snapshot_of(&leader, vec![1]);
    let storage = MemStorage::new();
    storage.wl().apply_snapshot(snapshot.clone()).unwrap();
    let restarted = ShardReplica::new(
        config(1, vec![1]),
        storage,
        decode_state(&snapshot.data).unwrap(),
    )
    .unwrap();
    for (i, r) in records.iter().enumerate() {
        let kept = i >= records.len() - 64;
        assert_eq!(
            leader.transaction(&r.tx_hash()).is_some(),
            kept,
            "transfer {i}"
        );
        assert_eq!(
            restarted.transaction(&r.tx_hash()),
            leader.transaction(&r.tx_hash())
        );
    }
    let last = leader.state().applied_index();
    let blocks = |r: &ShardReplica| (0..=last).filter(|&h| r.block(h).is_some()).count();
    assert_eq!(blocks(&leader), 8);
    assert_eq!(blocks(&restarted), 8);
    // A validator configured with a smaller window keeps the newest part of the same one.
    let mut small = config(1, vec![1]);
    small.recent_transactions_max = 5;
    small.recent_blocks_max = 2;
    let storage = MemStorage::new();
    storage.wl().apply_snapshot(snapshot.clone()).unwrap();
    let smaller = ShardReplica::new(small, storage, decode_state(&snapshot.data).unwrap()).unwrap();
    for r in &records[records.len() - 5..] {
        assert_eq!(
            smaller.transaction(&r.tx_hash()),
            leader.transaction(&r.tx_hash())
        );
    }
    assert_eq!(
        smaller.transaction(&records[records.len() - 6].tx_hash()),
        None
    );
    assert_eq!(smaller.latest_block(), leader.latest_block());
    assert_eq!(blocks(&smaller), 2);
}
