//! The PostgreSQL archive against a real PostgreSQL server (started by the test, on a free
//! loopback port, in a temporary directory): migrations, binary COPY, the exactly-once cursor
//! across resends, a failed batch and a crash of the server.

use aurigraph_sinks::{ArchiveError, ArchivedTransfer, EntryBatch, PgArchive};
use aurigraph_testkit::postgres::PgServer;

fn transfer(seed: u64, amount: u64) -> ArchivedTransfer {
    let mut tx_hash = [0u8; 32];
    tx_hash[..8].copy_from_slice(&seed.to_le_bytes());
    ArchivedTransfer {
        tx_hash,
        from: [1; 32],
        to: [2; 32],
        asset: 0,
        amount,
        nonce: seed,
        result: "OK",
    }
}

/// Entries `indexes` of a shard, `per_entry` transfers each, hashes unique per (shard, index).
fn entries(shard: u32, indexes: std::ops::RangeInclusive<u64>, per_entry: u64) -> Vec<EntryBatch> {
    indexes
        .map(|index| {
            EntryBatch::transfers(
                index,
                (0..per_entry)
                    .map(|p| transfer(((shard as u64) << 48) | (index << 16) | p, index * 10 + p))
                    .collect(),
            )
        })
        .collect()
}

#[test]
fn batches_land_exactly_once_across_resends_failures_and_a_server_crash() {
    let server = PgServer::start();
    let mut archive = PgArchive::connect(&server.url()).unwrap();
    // Migrations apply once: a second sink connecting finds them done.
    drop(PgArchive::connect(&server.url()).unwrap());

    assert_eq!(archive.cursor(0).unwrap(), 0);
    assert_eq!(archive.append(0, &entries(0, 1..=3, 4)).unwrap().rows, 12);
    assert_eq!(archive.append(1, &entries(1, 1..=2, 5)).unwrap().rows, 10);
    assert_eq!(archive.cursor(0).unwrap(), 3);
    // Sent again after a restart, overlapping: only entries past the cursor are written.
    assert_eq!(archive.append(0, &entries(0, 2..=5, 4)).unwrap().rows, 8);
    assert_eq!(archive.cursor(0).unwrap(), 5);
    assert_eq!(archive.append(0, &entries(0, 1..=5, 4)).unwrap().rows, 0);
    assert_eq!(archive.transfer_count().unwrap(), 30);

    // A batch that fails half-way (a transfer already archived: the primary key) leaves
    // neither rows nor a moved cursor.
    let mut bad = entries(0, 6..=7, 4);
    bad[1].transfers[2] = entries(0, 1..=1, 4)[0].transfers[0].clone();
    assert!(matches!(
        archive.append(0, &bad),
        Err(ArchiveError::Postgres(_))
    ));
    assert_eq!(archive.cursor(0).unwrap(), 5);
    assert_eq!(archive.transfer_count().unwrap(), 30);
    // Out of order: refused before anything is sent.
    let mut backwards = entries(0, 6..=7, 1);
    backwards.reverse();
    assert!(matches!(
        archive.append(0, &backwards),
        Err(ArchiveError::OutOfOrder { .. })
    ));

    // The server crashes (no checkpoint) and comes back: what was committed is there, and
    // the sink resends from its cursor without a duplicate.
    server.crash();
    assert!(archive.append(0, &entries(0, 6..=6, 4)).is_err());
    server.start_again();
    let mut archive = PgArchive::connect(&server.url()).unwrap();
    assert_eq!(archive.cursor(0).unwrap(), 5);
    assert_eq!(archive.append(0, &entries(0, 1..=8, 4)).unwrap().rows, 12);
    assert_eq!(archive.transfer_count().unwrap(), 42);
    let per_shard: Vec<(i32, i64)> = archive
        .client()
        .query(
            "SELECT shard, count(*) FROM transfers GROUP BY shard ORDER BY shard",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(per_shard, vec![(0, 32), (1, 10)]);
}

#[test]
fn amounts_and_nonces_keep_all_64_bits() {
    let server = PgServer::start();
    let mut archive = PgArchive::connect(&server.url()).unwrap();
    let values = [
        0,
        1,
        9_999,
        10_000,
        10_001,
        100_000_000,
        123_456_789_012,
        u64::MAX,
    ];
    let batch: Vec<EntryBatch> = vec![EntryBatch::transfers(
        1,
        values
            .iter()
            .enumerate()
            .map(|(i, &v)| ArchivedTransfer {
                nonce: u64::MAX - v,
                ..transfer(i as u64, v)
            })
            .collect(),
    )];
    archive.append(0, &batch).unwrap();
    let rows: Vec<(String, String)> = archive
        .client()
        .query(
            "SELECT amount::text, nonce::text FROM transfers ORDER BY position",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let expected: Vec<(String, String)> = values
        .iter()
        .map(|v| (v.to_string(), (u64::MAX - v).to_string()))
        .collect();
    assert_eq!(rows, expected);
}
