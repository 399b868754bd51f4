//! The streaming RPCs of grpc.rs: SubmitStream (in order, cancelled mid-way) and
//! StreamTransactionEvents (filters, LATEST, resuming across restarts, a slow consumer).

use crate::support::*;
use aurigraph_proto::v11::{
    self, BlockPosition, GetTransactionRequest, InfoRequest, ResultCode, StartFrom,
    StreamTransactionEventsRequest, TransactionStatus,
};
use aurigraph_testkit::{genesis, keys, transfer, Node};
use aurigraph_wire::record::{address_of, Address, Record};
use aurigraph_wire::shard::shard_of;
use ed25519_dalek::SigningKey;
use std::collections::{BTreeMap, HashMap, HashSet};
use tonic::Code;

#[test]
fn submit_stream_answers_every_batch_in_order_by_request_id() {
    let dir = tempfile::tempdir().unwrap();
    // Up to 16 batches of a stream are decided at once: at most two of one key.
    let keys = keys(8);
    let node = Node::start(dir.path(), Some(&genesis(&keys, SHARDS)));
    runtime().block_on(async {
        let mut c = Clients::connect(&node.grpc_url()).await;
        let mut nonces = vec![0; keys.len()];
        let batches = batches(&keys, &mut nonces, 24, 10);
        // Half as messages, half as binary batches; one refused transfer in batch 5.
        let mut requests: Vec<v11::SubmitBatchRequest> = batches
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let body = if i % 2 == 0 { messages(b) } else { binary(b) };
                v11::SubmitBatchRequest {
                    request_id: 1000 + i as u64,
                    ..body
                }
            })
            .collect();
        requests[5] = v11::SubmitBatchRequest {
            request_id: 1005,
            ..messages(&[batches[5][0], batches[5][0]])
        };
        let sent = requests.len();
        let mut answers =
            c.tx.submit_stream(futures::stream::iter(requests))
                .await
                .unwrap()
                .into_inner();
        let mut ids = Vec::new();
        while let Some(answer) = tokio::time::timeout(WAIT, answers.message())
            .await
            .unwrap()
            .unwrap()
        {
            let i = (answer.request_id - 1000) as usize;
            ids.push(answer.request_id);
            if i == 5 {
                let results: Vec<_> = answer.outcomes.iter().map(|o| o.result).collect();
                assert_eq!(results, [ok(), Some(ResultCode::NonceReplayed as i32)]);
            } else {
                assert_all_ok(&answer, &batches[i]);
            }
        }
        let expected: Vec<u64> = (0..sent as u64).map(|i| 1000 + i).collect();
        assert_eq!(ids, expected, "every batch answered once, in order");
    });
}

/// A node whose shards hold transfers from every key: returns their (shard, block) by txHash.
async fn committed(
    c: &mut Clients,
    keys: &[SigningKey],
    nonces: &mut [u64],
    n: usize,
) -> HashMap<[u8; 32], (u32, u64)> {
    let mut all = HashMap::new();
    for batch in batches(keys, nonces, n, 10) {
        all.extend(submit_ok(&mut c.tx, &batch).await);
    }
    all
}

#[test]
fn event_streams_filter_by_account_and_shard_and_start_latest() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(6);
    let node = Node::start(dir.path(), Some(&genesis(&keys, SHARDS)));
    let shard_of_key = |k: &SigningKey| shard_of(&address_of(k), SHARDS);
    assert!(
        keys.iter().any(|k| shard_of_key(k) == 0) && keys.iter().any(|k| shard_of_key(k) == 1),
        "the test keys cover both shards"
    );
    let records: Vec<Record> = {
        let mut nonces = vec![0; keys.len()];
        batches(&keys, &mut nonces, 12, 10).concat()
    };
    let by_hash: HashMap<[u8; 32], Record> = records.iter().map(|r| (r.tx_hash().0, *r)).collect();
    runtime().block_on(async {
        let mut c = Clients::connect(&node.grpc_url()).await;
        let mut blocks = HashMap::new();
        for batch in records.chunks(10) {
            blocks.extend(submit_ok(&mut c.tx, batch).await);
        }
        // Filtered by account (sent or received), from the earliest block held.
        let account = address_of(&keys[2]);
        let wanted = |f: &dyn Fn(&Record) -> bool| -> HashSet<[u8; 32]> {
            records
                .iter()
                .filter(|r| f(r))
                .map(|r| r.tx_hash().0)
                .collect()
        };
        let of_account = wanted(&|r| r.from() == account || r.to() == account);
        let in_shard_1 = wanted(&|r| shard_of(&r.from(), SHARDS) == 1);
        for (request, expected) in [
            (
                StreamTransactionEventsRequest {
                    account: account.0.to_vec(),
                    ..events_request(StartFrom::Earliest)
                },
                &of_account,
            ),
            (
                StreamTransactionEventsRequest {
                    shards: vec![1],
                    ..events_request(StartFrom::Earliest)
                },
                &in_shard_1,
            ),
        ] {
            let mut stream =
                c.tx.stream_transaction_events(request.clone())
                    .await
                    .unwrap()
                    .into_inner();
            let mut seen = Seen::default();
            seen.read_until(&mut stream, |s| s.has_all(expected.iter()))
                .await;
            let events = seen.events();
            let got: HashSet<[u8; 32]> = events.iter().map(|(h, _)| *h).collect();
            assert_eq!(got.len(), events.len(), "no event twice ({request:?})");
            assert_eq!(
                &got, expected,
                "exactly the matching transfers ({request:?})"
            );
            for block in &seen.blocks {
                assert!(!block.events.is_empty(), "a message per block with a match");
                for e in &block.events {
                    let r = by_hash[e.tx_hash.as_slice()];
                    assert_eq!(
                        (e.from.as_slice(), e.to.as_slice()),
                        (&r.from().0[..], &r.to().0[..])
                    );
                    assert_eq!((e.asset, e.amount, e.nonce), (0, r.amount(), r.nonce()));
                    assert_eq!(e.result, ResultCode::Ok as i32);
                    assert_eq!(
                        blocks[e.tx_hash.as_slice()],
                        (block.shard, block.block_number)
                    );
                }
            }
        }

        // From the latest block: nothing applied before the stream opened.
        let mut stream =
            c.tx.stream_transaction_events(events_request(StartFrom::Latest))
                .await
                .unwrap()
                .into_inner();
        let load = tokio::spawn({
            let mut tx = c.tx.clone();
            let keys = keys.clone();
            async move {
                for nonce in 1_000u64.. {
                    let r = transfer(&keys[0], address_of(&keys[1]), 1, nonce);
                    submit_ok(&mut tx, &[r]).await;
                }
            }
        });
        let mut seen = Seen::default();
        seen.read_until(&mut stream, |s| !s.blocks.is_empty()).await;
        load.abort();
        let (hash, _) = seen.events()[0];
        assert!(
            !by_hash.contains_key(&hash),
            "an event of a transfer applied before the stream"
        );
    });
}

#[test]
fn an_event_stream_resumes_after_restarts_without_gaps_or_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(4);
    let mut node = Node::start(dir.path(), Some(&genesis(&keys, SHARDS)));
    let rt = runtime();
    let mut nonces = vec![0; keys.len()];
    let mut all = HashMap::new();
    let mut seen = Seen::default();
    // Round 1: read part of what committed, then SIGKILL. Round 2: read everything, then
    // SIGTERM. Round 3: read everything.
    for round in 0..3 {
        rt.block_on(async {
            let mut c = Clients::connect(&node.grpc_url()).await;
            all.extend(committed(&mut c, &keys, &mut nonces, 8).await);
            let resume_after: Vec<BlockPosition> = seen
                .positions()
                .into_iter()
                .map(|(shard, block_number)| BlockPosition {
                    shard,
                    block_number,
                })
                .collect();
            let request = StreamTransactionEventsRequest {
                resume_after,
                ..events_request(StartFrom::Earliest)
            };
            let mut stream =
                c.tx.stream_transaction_events(request)
                    .await
                    .unwrap()
                    .into_inner();
            if round == 0 {
                let half = all.len() / 2;
                seen.read_until(&mut stream, |s| s.events().len() >= half)
                    .await;
            } else {
                seen.read_until(&mut stream, |s| s.has_all(all.keys()))
                    .await;
            }
        });
        match round {
            0 => node.kill9(),
            1 => assert_eq!(node.terminate(), Some(0), "{}", node.log_text()),
            _ => break,
        }
        node.restart();
    }
    // Every committed transfer exactly once, at the block its submission was told; each
    // shard's blocks in increasing order across the three streams.
    let events = seen.events();
    let mut once = HashSet::new();
    for (hash, at) in &events {
        assert!(once.insert(*hash), "an event twice: {}", hex::encode(hash));
        assert_eq!(
            all.get(hash),
            Some(at),
            "an event of no committed transfer, or at another block"
        );
    }
    assert_eq!(
        once.len(),
        all.len(),
        "every committed transfer has its event"
    );
    let mut last: BTreeMap<u32, u64> = BTreeMap::new();
    for b in &seen.blocks {
        let before = last.insert(b.shard, b.block_number).unwrap_or(0);
        assert!(
            b.block_number > before,
            "shard {}: block {} after {before}",
            b.shard,
            b.block_number
        );
    }
}

#[test]
fn a_cancelled_submit_stream_commits_each_acknowledged_transfer_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    // Up to 16 batches of a stream are decided at once: never two of one key.
    let keys = keys(16);
    let node = Node::start(dir.path(), Some(&genesis(&keys, SHARDS)));
    let sink = Address([0x5a; 32]);
    let mut nonces = vec![0; keys.len()];
    let batches: Vec<Vec<Record>> = (0..48)
        .map(|i| {
            let k = i % keys.len();
            (0..25)
                .map(|_| {
                    nonces[k] += 1;
                    transfer(&keys[k], sink, 1, nonces[k])
                })
                .collect()
        })
        .collect();
    runtime().block_on(async {
        let mut c = Clients::connect(&node.grpc_url()).await;
        let requests: Vec<_> = batches
            .iter()
            .enumerate()
            .map(|(i, b)| v11::SubmitBatchRequest {
                request_id: i as u64,
                ..binary(b)
            })
            .collect();
        let mut answers =
            c.tx.submit_stream(futures::stream::iter(requests))
                .await
                .unwrap()
                .into_inner();
        let mut acknowledged = Vec::new();
        for (i, batch) in batches.iter().enumerate().take(4) {
            let answer = tokio::time::timeout(WAIT, answers.message())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            assert_eq!(answer.request_id, i as u64);
            assert_all_ok(&answer, batch);
            acknowledged.extend_from_slice(batch);
        }
        drop(answers); // the client goes away with batches in flight

        // Wait until nothing is PENDING; each transfer is decided OK, or was never admitted.
        let mut c = Clients::connect(&node.grpc_url()).await;
        let mut confirmed = HashSet::new();
        let deadline = std::time::Instant::now() + WAIT;
        for r in batches.iter().flatten() {
            loop {
                let request = GetTransactionRequest {
                    tx_hash: r.tx_hash().0.to_vec(),
                };
                match c.tx.get_transaction(request).await {
                    Err(s) if s.code() == Code::NotFound => break,
                    Err(s) => panic!("{s:?}"),
                    Ok(answer) => {
                        let o = answer.into_inner().outcome.unwrap();
                        if o.status == TransactionStatus::Confirmed as i32 {
                            confirmed.insert(r.tx_hash().0);
                            break;
                        }
                        assert_eq!(o.status, TransactionStatus::Pending as i32, "{o:?}");
                    }
                }
                assert!(std::time::Instant::now() < deadline, "still PENDING");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
        for r in &acknowledged {
            assert!(
                confirmed.contains(&r.tx_hash().0),
                "an acknowledged transfer is not committed"
            );
        }
        // Applied once each: the sink holds one unit per committed transfer.
        wait_balance(&mut c.accounts, &sink, confirmed.len() as u64).await;
        // A new stream on the same node works.
        let next: Vec<Record> = (0..5)
            .map(|n| transfer(&keys[0], sink, 1, 10_000 + n))
            .collect();
        let mut answers =
            c.tx.submit_stream(futures::stream::iter([binary(&next)]))
                .await
                .unwrap()
                .into_inner();
        assert_all_ok(&answers.message().await.unwrap().unwrap(), &next);
    });
}

#[test]
fn a_slow_event_consumer_is_ended_with_resource_exhausted() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(4);
    let node = Node::start_with_args(
        dir.path(),
        Some(&genesis(&keys, SHARDS)),
        aurigraph_testkit::free_port(),
        &["--grpc-events-retain-bytes-max", "1048576"],
    );
    runtime().block_on(async {
        // The stream on a connection of its own with small HTTP/2 windows, so that unread
        // events stay on the node; the load on another connection.
        let endpoint = tonic::transport::Endpoint::from_shared(node.grpc_url())
            .unwrap()
            .initial_stream_window_size(65_535)
            .initial_connection_window_size(65_535);
        let mut slow = v11::transaction_service_client::TransactionServiceClient::new(
            channel_with(endpoint).await,
        );
        let mut stream = slow
            .stream_transaction_events(events_request(StartFrom::Latest))
            .await
            .unwrap()
            .into_inner();
        let mut c = Clients::connect(&node.grpc_url()).await;
        let mut nonces = vec![0; keys.len()];
        // 30,000 transfers: about 5 MB of blocks, several times the node's event window (1 MiB,
        // the least it takes) plus what the stream's channel and HTTP/2 buffers hold.
        let mut sent = 0;
        for batch in batches(&keys, &mut nonces, 120, 250) {
            sent += submit_ok(&mut c.tx, &batch).await.len();
        }
        // Now read: what the node kept, then the end.
        let mut delivered = 0;
        let status = loop {
            match tokio::time::timeout(WAIT, stream.message())
                .await
                .expect("the stream ends")
            {
                Ok(Some(block)) => delivered += block.events.len(),
                Ok(None) => panic!("the stream ended OK after {delivered} of {sent} events"),
                Err(status) => break status,
            }
        };
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        assert!(delivered < sent, "{delivered} of {sent} delivered");
        // The node and its other streams go on.
        let info = c.node.info(InfoRequest {}).await.unwrap().into_inner();
        assert_eq!(info.chain_id, 7);
        let r = transfer(&keys[0], address_of(&keys[1]), 1, nonces[0] + 1);
        submit_ok(&mut c.tx, &[r]).await;
    });
}
