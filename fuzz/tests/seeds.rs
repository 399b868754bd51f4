//! How the corpora's seed inputs were made: one valid input of each kind (the fuzzers grow the
//! corpora from them). Run on purpose, it rewrites the `seed-*` files:
//! `cargo test -p aurigraph-fuzz --test seeds -- --ignored`.

use aurigraph_api::http::types::TransferJson;
use aurigraph_engine::peering;
use aurigraph_net::transport::{encode_handshake, DataFrameEncoder, Handshake};
use aurigraph_wire::batch::BatchBuilder;
use aurigraph_wire::genesis::{Allocation, Genesis};
use aurigraph_wire::record::Address;
use std::path::Path;

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
}

#[test]
#[ignore = "writes the seed inputs into fuzz/corpus"]
fn write_seed_inputs() {
    let transfer = r#"{"fromAddress":"0x1111111111111111111111111111111111111111111111111111111111111111","toAddress":"2222222222222222222222222222222222222222222222222222222222222222","amount":"10","asset":0,"nonce":1,"chainId":7,"signature":"33333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333","transactionType":"TRANSFER"}"#;
    write("json_transfers", "one", transfer.as_bytes());
    write(
        "json_transfers",
        "batch",
        format!(r#"{{"transactions":[{transfer},{transfer}]}}"#).as_bytes(),
    );
    let record = serde_json::from_str::<TransferJson>(transfer)
        .unwrap()
        .to_record(7, None)
        .unwrap();
    let mut batch = BatchBuilder::with_capacity(2);
    batch.push(&record);
    batch.push(&record);
    write("binary_batch", "two", &batch.finish());

    let mut message = Vec::new();
    peering::encode_forward(9, &[record], &[true], &mut message);
    write("peer_message", "forward", &message);
    let mut credited = Vec::new();
    peering::encode_credited(1, 0, 42, &mut credited);
    write("peer_message", "credited", &credited);
    let mut chunk = Vec::new();
    peering::encode_raft_chunk(3, 100, 0, &[7; 20], &mut chunk);
    write("peer_message", "chunk", &chunk);

    let mut handshake = Vec::new();
    let hello = Handshake {
        chain_id: b"chain".to_vec(),
        node_id: 2,
        core: 0,
        cores: 2,
        shard_count: 2,
    };
    encode_handshake(&hello, &mut handshake).unwrap();
    write("peer_frame", "handshake", &handshake);
    let mut frame = DataFrameEncoder::new(1 << 16, 16);
    frame.push(1, &message).unwrap();
    frame.push(0, &credited).unwrap();
    write("peer_frame", "data", frame.finish());

    let genesis = Genesis {
        chain_id: 7,
        controllers: Default::default(),
        shards: Some(2),
        allocations: vec![Allocation {
            address: Address([0x11; 32]),
            asset: 0,
            amount: 1000,
        }],
    };
    let state = aurigraph_engine::ledger::ShardState::from_genesis(&genesis, 0, 2);
    write(
        "shard_state",
        "genesis",
        &aurigraph_engine::state_snapshot::encode_state(&state),
    );

    // The head is written in place, all of it, as the WAL writes it into its DMA buffer.
    let mut head = vec![0xa5u8; aurigraph_storage::record::SECTOR_BYTES];
    let body =
        vec![5u8; aurigraph_storage::record::BLOCK_BYTES - aurigraph_storage::record::SECTOR_BYTES];
    aurigraph_storage::record::encode_group_head(&mut head, 1, &body);
    write("wal_record", "group-head", &head);

    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../beacon/tests/fixtures/beacon");
    for name in [
        "bell_chain.json",
        "bell_pulse_88.json",
        "nist_pulse_chain1_54609.json",
    ] {
        write(
            "beacon_pulse",
            name,
            &std::fs::read(fixtures.join(name)).unwrap(),
        );
    }
}
