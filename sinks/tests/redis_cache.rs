//! The Redis cache against a real `redis-server` (started by the test on a free loopback port,
//! in a temporary directory): statuses with a TTL, latest balances, the stream, the
//! exactly-once cursor across resends, two writers at once, gaps, and a restart of the server.

use aurigraph_engine::replica::AccountBalance;
use aurigraph_engine::Address;
use aurigraph_sinks::{ArchivedTransfer, EntryBatch, Gap, RedisCache, RedisOptions};
use aurigraph_testkit::redis::RedisServer;
use redis::Commands;

fn transfer(seed: u64, result: &'static str) -> ArchivedTransfer {
    let mut tx_hash = [0u8; 32];
    tx_hash[..8].copy_from_slice(&seed.to_le_bytes());
    ArchivedTransfer {
        tx_hash,
        from: [1; 32],
        to: [2; 32],
        asset: 0,
        amount: seed,
        nonce: seed,
        result,
    }
}

/// Entries `indexes` of a shard, `per_entry` transfers each (hashes unique per shard and
/// index), each setting the sender's balance to the index.
fn entries(shard: u32, indexes: std::ops::RangeInclusive<u64>, per_entry: u64) -> Vec<EntryBatch> {
    indexes
        .map(|index| {
            let mut entry = EntryBatch::transfers(
                index,
                (0..per_entry)
                    .map(|p| transfer(((shard as u64) << 48) | (index << 16) | p, "OK"))
                    .collect(),
            );
            entry.balances.push(AccountBalance {
                address: Address([shard as u8 + 1; 32]),
                asset: 0,
                balance: index,
            });
            entry
        })
        .collect()
}

fn stream_len(connection: &mut redis::Connection) -> u64 {
    redis::cmd("XLEN")
        .arg("test:transfers")
        .query(connection)
        .unwrap()
}

fn options() -> RedisOptions {
    RedisOptions {
        prefix: "test".into(),
        stream_len_max: 100_000,
        status_ttl_s: 600,
    }
}

#[test]
fn entries_land_exactly_once_across_resends_two_writers_and_a_server_restart() {
    let mut server = RedisServer::start();
    let mut cache = RedisCache::connect(&server.url(), options()).unwrap();
    let mut look = redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap();

    assert_eq!(cache.cursor(0).unwrap(), 0);
    assert_eq!(cache.append(0, &entries(0, 1..=3, 4)).unwrap().rows, 12);
    assert_eq!(cache.append(1, &entries(1, 1..=2, 5)).unwrap().rows, 10);
    assert_eq!(cache.cursor(0).unwrap(), 3);
    // Sent again, overlapping: only entries past the cursor are written.
    assert_eq!(cache.append(0, &entries(0, 2..=5, 4)).unwrap().rows, 8);
    assert_eq!(cache.append(0, &entries(0, 1..=5, 4)).unwrap().rows, 0);
    assert_eq!(stream_len(&mut look), 30);

    // A status: the API's names, with the TTL.
    let hash = hex::encode(entries(0, 5..=5, 4)[0].transfers[3].tx_hash);
    let status: String = look.get(format!("test:tx:{hash}")).unwrap();
    assert!(status.contains(r#""status":"CONFIRMED""#), "{status}");
    assert!(
        status.contains(r#""blockNumber":5,"position":3"#),
        "{status}"
    );
    let ttl: i64 = look.ttl(format!("test:tx:{hash}")).unwrap();
    assert!((1..=600).contains(&ttl), "ttl {ttl}");
    // The latest balance wins.
    let balance: u64 = look
        .hget(format!("test:balance:{}", hex::encode([1u8; 32])), 0)
        .unwrap();
    assert_eq!(balance, 5);
    // The stream's fields.
    let first: redis::Value = redis::cmd("XRANGE")
        .arg("test:transfers")
        .arg("-")
        .arg("+")
        .arg("COUNT")
        .arg(1)
        .query(&mut look)
        .unwrap();
    let text = format!("{first:?}");
    for field in ["txHash", "amount", "result", "shard", "block", "position"] {
        assert!(text.contains(field), "{field} in {text}");
    }

    // Two writers of the same entries at once (two validators' sinks): each entry once.
    let url = server.url();
    let writers: Vec<_> = (0..2)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                let mut cache = RedisCache::connect(&url, options()).unwrap();
                (6..=40)
                    .map(|i| cache.append(0, &entries(0, i..=i, 3)).unwrap().rows)
                    .sum::<u64>()
            })
        })
        .collect();
    let written: u64 = writers.into_iter().map(|w| w.join().unwrap()).sum();
    assert_eq!(written, 35 * 3);
    assert_eq!(stream_len(&mut look), 30 + 105);
    assert_eq!(cache.cursor(0).unwrap(), 40);

    // A chain with entries missing: written, and the gap reported.
    let mut broken = entries(0, 41..=41, 1);
    broken.extend(entries(0, 45..=45, 1));
    let appended = cache.append(0, &broken).unwrap();
    assert_eq!(appended.rows, 2);
    assert_eq!(
        appended.gaps,
        [Gap {
            shard: 0,
            after: 41,
            up_to: 44
        }]
    );

    // The server stops: writes fail (and are retried by the runner); after it starts again
    // everything it acknowledged is there and the resend adds only what is new.
    server.stop();
    assert!(cache.append(0, &entries(0, 46..=47, 2)).is_err());
    server.start_again();
    let mut cache = RedisCache::connect(&server.url(), options()).unwrap();
    assert_eq!(cache.cursor(0).unwrap(), 45);
    assert_eq!(cache.append(0, &entries(0, 40..=47, 2)).unwrap().rows, 4);
    let mut look = redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap();
    assert_eq!(stream_len(&mut look), 135 + 2 + 4);
}
