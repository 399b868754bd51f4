//! A submitted binary batch of one shard becomes the log entry itself when every record is
//! admitted (its bytes are not copied), and is copied into the shared entry otherwise; the
//! outcomes are the same either way.

use aurigraph_engine::batch::encode_batch;
use aurigraph_engine::ledger::ShardState;
use aurigraph_engine::record::{address_of, Address, Record, Transfer};
use aurigraph_engine::replica::{
    archived_records, ReplicaConfig, ShardReplica, TxStatus, ARCHIVE_ENTRY_RECORDS_MIN,
};
use aurigraph_engine::result::ResultCode;
use ed25519_dalek::SigningKey;
use raft::storage::MemStorage;

mod support;
use support::{genesis_funding, ready_cycles as cycles, CHAIN};

const FUNDS: u64 = 1_000_000;

fn key() -> SigningKey {
    SigningKey::from_bytes(&[5; 32])
}

/// Transfers of 1 with nonces `nonces`.
fn transfers(nonces: std::ops::Range<u64>) -> Vec<Record> {
    nonces
        .map(|nonce| {
            Transfer {
                chain_id: CHAIN,
                from: address_of(&key()),
                to: Address([9; 32]),
                asset: 0,
                amount: 1,
                nonce,
            }
            .sign(&key())
        })
        .collect()
}

/// A single-validator leader and the storage its writes go to.
fn leader() -> (ShardReplica, MemStorage) {
    let storage = MemStorage::new();
    let state = ShardState::from_genesis(&genesis_funding(&key(), FUNDS), 0, 1);
    let mut config = ReplicaConfig::new(1, 0);
    config.voters = vec![1];
    let mut replica = ShardReplica::new(config, storage.clone(), state).unwrap();
    cycles(&mut replica, &storage, 10);
    assert!(replica.is_leader());
    (replica, storage)
}

fn decided(replica: &ShardReplica, record: &Record) -> ResultCode {
    match replica.transaction(&record.tx_hash()) {
        Some(TxStatus::Decided(o)) => o.result,
        other => panic!("nonce {}: {other:?}", record.nonce()),
    }
}

#[test]
fn an_admitted_archive_is_the_entry_itself() {
    let (mut replica, storage) = leader();
    let records = transfers(1..101);
    let archive = encode_batch(&records);
    let bytes_at = archive.as_ptr();
    let expected = archive.clone();
    let (_, whole) = replica
        .submit_verified_archive(archive, &[true; 100])
        .unwrap();
    assert!(whole);
    replica.propose_admitted();
    let entries = cycles(&mut replica, &storage, 100);
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].data.as_ref(), expected.as_slice());
    assert_eq!(
        entries[0].data.as_ptr(),
        bytes_at,
        "the log holds the submitted bytes, not a copy"
    );
    assert!(records
        .iter()
        .all(|r| decided(&replica, r) == ResultCode::Ok));
}

#[test]
fn an_archive_with_a_rejected_record_is_copied_without_it() {
    let (mut replica, storage) = leader();
    let records = transfers(1..101);
    let mut valid = vec![true; 100];
    valid[40] = false;
    let archive = encode_batch(&records);
    let bytes_at = archive.as_ptr();
    let (_, whole) = replica.submit_verified_archive(archive, &valid).unwrap();
    assert!(!whole);
    replica.propose_admitted();
    let entries = cycles(&mut replica, &storage, 100);
    assert_eq!(entries.len(), 1);
    assert_ne!(entries[0].data.as_ptr(), bytes_at);
    let logged = archived_records(&entries[0].data);
    let expected: Vec<Record> = records
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != 40)
        .map(|(_, r)| *r)
        .collect();
    assert_eq!(logged, expected.as_slice());
    assert_eq!(decided(&replica, &records[40]), ResultCode::BadSignature);
    assert_eq!(decided(&replica, &records[41]), ResultCode::Ok);
}

#[test]
fn small_archives_share_an_entry_and_entries_keep_admission_order() {
    let (mut replica, storage) = leader();
    let small = transfers(1..(ARCHIVE_ENTRY_RECORDS_MIN as u64));
    let large = transfers(100..200);
    // A small archive and a plain submission are copied into the entry being built; the
    // large archive that follows goes after that entry, whole.
    let (_, whole) = replica
        .submit_verified_archive(encode_batch(&small[..10]), &[true; 10])
        .unwrap();
    assert!(!whole, "too small for an entry of its own");
    replica
        .submit_verified(&small[10..], &vec![true; small.len() - 10])
        .unwrap();
    let archive = encode_batch(&large);
    let bytes_at = archive.as_ptr();
    replica
        .submit_verified_archive(archive, &[true; 100])
        .unwrap();
    replica.propose_admitted();
    let entries = cycles(&mut replica, &storage, 100);
    assert_eq!(entries.len(), 2);
    assert_eq!(archived_records(&entries[0].data), small.as_slice());
    assert_eq!(entries[1].data.as_ptr(), bytes_at);
    assert!(small
        .iter()
        .chain(&large)
        .all(|r| decided(&replica, r) == ResultCode::Ok));
}
