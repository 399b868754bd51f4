//! Connection steering end to end: a connection from a source port of core `c`
//! (`aurigraph_wire::steering`) is accepted by core `c` of a real node, and a batch of that
//! core's shards sent over it reaches them without a message between cores (the node counts
//! the submissions each core sends to another core's shards); a batch of one shard sent to its
//! core is received straight into its own buffer and becomes the log entry.

use aurigraph_client::connector::Steer;
use aurigraph_client::http::Client;
use aurigraph_testkit::*;
use aurigraph_wire::batch::encode_batch;
use aurigraph_wire::record::address_of;
use aurigraph_wire::shard::shard_of;
use aurigraph_wire::steering::core_of_shard;
use bytes::Bytes;
use ed25519_dalek::SigningKey;
use std::time::Duration;

const CORES: usize = 2;
const SHARDS: u32 = 4;

/// Reads the node's metrics over one kept-alive connection (to core 0), so that reading them
/// opens no connection of its own after the first.
struct Scraper {
    runtime: tokio::runtime::Runtime,
    client: Client,
}

impl Scraper {
    fn new(node: &Node) -> Scraper {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let steer = Some(Steer {
            core: 0,
            cores: CORES,
        });
        let client = runtime.block_on(async {
            Client::with_steering(&node.http_url(), Duration::from_secs(20), 1, steer).unwrap()
        });
        Scraper { runtime, client }
    }

    /// The sum of a Prometheus family's samples whose labels include `label`.
    fn sum(&self, family: &str, label: &str) -> f64 {
        let text = self
            .runtime
            .block_on(self.client.get_bytes("/metrics", "text/plain", 16 << 20))
            .unwrap();
        String::from_utf8_lossy(&text)
            .lines()
            .filter(|l| l.starts_with(family) && l.contains(label))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Submissions (one per shard of a request) that the receiving core sent to another
    /// core's shard.
    fn cross_core_submissions(&self) -> f64 {
        self.sum("aurigraph_core_submissions_total", "to=\"other_core\"")
    }

    fn accepted(&self, core: usize) -> f64 {
        self.sum(
            "aurigraph_http_connections_accepted_total",
            &format!("core=\"{core}\""),
        )
    }
}

/// Sends transfers between the accounts of `senders` (all of one core's shards) over a new
/// connection steered to `core`; every result must be OK.
fn send_steered(node: &Node, core: usize, senders: &[&SigningKey], nonce: u64) {
    let records: Vec<_> = senders
        .iter()
        .enumerate()
        .map(|(i, key)| {
            let to = address_of(senders[(i + 1) % senders.len()]);
            transfer(key, to, 1, nonce)
        })
        .collect();
    post_steered(node, core, &records);
}

/// Posts `records` as one binary batch over a new connection steered to `core`; every result
/// must be OK.
fn post_steered(node: &Node, core: usize, records: &[aurigraph_wire::record::Record]) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let steer = Steer { core, cores: CORES };
        let client =
            Client::with_steering(&node.http_url(), Duration::from_secs(20), 1, Some(steer))
                .unwrap();
        let results = client
            .post_batch(
                "/api/v11/transactions/batch",
                Bytes::from(encode_batch(records)),
                records.len(),
                true,
            )
            .await
            .unwrap();
        assert!(results.iter().all(|r| r.code.is_ok()), "{results:?}");
    });
}

#[test]
fn a_steered_connection_lands_on_its_core_and_its_batch_stays_there() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(32);
    let node = Node::start(dir.path(), Some(&genesis(&keys, SHARDS)));
    let info = node.get("/api/v11/info").json();
    assert_eq!(
        (info["cores"].as_u64(), info["shards"].as_u64()),
        (Some(2), Some(4))
    );
    // The accounts of each core's shards (two at least each, with 32 accounts over 4 shards).
    let of_core = |core: usize| -> Vec<&SigningKey> {
        keys.iter()
            .filter(|k| core_of_shard(shard_of(&address_of(k), SHARDS), CORES) == core)
            .collect()
    };
    let scraper = Scraper::new(&node);
    scraper.accepted(0); // opens its connection
    let mut nonce = 1;
    for core in 0..CORES {
        let senders = of_core(core);
        assert!(
            senders.len() >= 2,
            "core {core} has {} accounts",
            senders.len()
        );
        // Steered to the core that owns the senders: nothing crosses cores.
        let before = (scraper.cross_core_submissions(), scraper.accepted(core));
        send_steered(&node, core, &senders, nonce);
        nonce += 1;
        assert_eq!(
            scraper.cross_core_submissions(),
            before.0,
            "a batch of core {core}'s shards sent to core {core} crossed cores"
        );
        assert_eq!(
            scraper.accepted(core),
            before.1 + 1.0,
            "core {core} accepted the connection"
        );
        // Steered to the other core: the same kind of batch must cross (the check can fail).
        let other = (core + 1) % CORES;
        let before = (scraper.cross_core_submissions(), scraper.accepted(other));
        send_steered(&node, other, &senders, nonce);
        nonce += 1;
        assert!(
            scraper.cross_core_submissions() > before.0,
            "a batch of core {core}'s shards sent to core {other} did not cross cores"
        );
        assert_eq!(scraper.accepted(other), before.1 + 1.0);
    }
    // A batch of one shard, sent to its core, is the log entry itself; sent to the other core,
    // its records are copied (it is not submitted whole).
    let shard = 1;
    let senders: Vec<&SigningKey> = keys
        .iter()
        .filter(|k| shard_of(&address_of(k), SHARDS) == shard)
        .collect();
    let per_sender = 70u64.div_ceil(senders.len() as u64);
    let receiver = address_of(&keys[0]);
    let batch = |first_nonce: u64| -> Vec<_> {
        let mut records = Vec::new();
        for n in 0..per_sender {
            for key in &senders {
                records.push(transfer(key, receiver, 1, first_nonce + n));
            }
        }
        records
    };
    let whole = |kind: &str| {
        scraper.sum(
            "aurigraph_shard_batches_submitted_whole_total",
            &format!("shard=\"{shard}\",as=\"{kind}\""),
        )
    };
    let home = core_of_shard(shard, CORES);
    // ...and its body was received straight from the socket into its own buffer.
    let direct = |core: usize| {
        scraper.sum(
            "aurigraph_http_bodies_read_direct_total",
            &format!("core=\"{core}\""),
        )
    };
    let before = (whole("entry"), whole("copied"), direct(home));
    post_steered(&node, home, &batch(100));
    assert_eq!(
        (whole("entry"), whole("copied"), direct(home)),
        (before.0 + 1.0, before.1, before.2 + 1.0)
    );
    post_steered(&node, (home + 1) % CORES, &batch(200));
    assert_eq!(
        (whole("entry"), whole("copied")),
        (before.0 + 1.0, before.1)
    );
}
