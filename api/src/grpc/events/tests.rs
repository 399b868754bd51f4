//! `StreamTransactionEvents` against a hub the test feeds, over a real HTTP/2 connection: a
//! tonic client on a tokio runtime of the test's own, the server (the ledger double, 2
//! shards) on a glommio executor.

use super::*;
use crate::events::{EventHub, RETAIN_BYTES_MIN};
use crate::http::listen::bind;
use crate::http::routes::tests::Fake;
use crate::http::server::{run, Listener};
use crate::http::HttpSettings;
use aurigraph_engine::record::{Record, Transfer};
use aurigraph_engine::ResultCode;
use std::net::SocketAddr;
use tonic::transport::Channel;
use tonic::Code;

type Client = v11::transaction_service_client::TransactionServiceClient<Channel>;

/// A server whose event hub the test holds.
struct Server {
    addr: SocketAddr,
    settings: HttpSettings,
    hub: Arc<EventHub>,
    /// Set once the test is done: the executor then ends.
    done: Arc<AtomicBool>,
    handle: glommio::ExecutorJoinHandle<()>,
}

impl Server {
    fn start() -> Server {
        let hub = Arc::new(EventHub::new(RETAIN_BYTES_MIN));
        let mut settings = HttpSettings::new("127.0.0.1:0".parse().unwrap());
        settings.events = Some(hub.clone());
        let done = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let inner = settings.clone();
        let executor_done = done.clone();
        let handle = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(1 << 20)
            .spawn(move || async move {
                let listener = bind(&inner).unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                run(0, listener, Fake::default(), inner, Listener::Primary).await;
                // The accept loop stops when the node drains; the core's other tasks (the
                // streams among them) run on, as on a node's cores until the engine stops.
                while !executor_done.load(Ordering::SeqCst) {
                    glommio::timer::sleep(Duration::from_millis(10)).await;
                }
            })
            .unwrap();
        Server {
            addr: rx.recv().unwrap(),
            settings,
            hub,
            done,
            handle,
        }
    }

    /// Drains the node and ends its executor; returns its hub.
    fn stop(self) -> Arc<EventHub> {
        self.settings.draining.store(true, Ordering::SeqCst);
        self.done.store(true, Ordering::SeqCst);
        self.handle.join().unwrap();
        self.hub
    }
}

/// Runs `test` with a client of the server at `addr`.
fn with_client<F: std::future::Future<Output = ()>>(
    addr: SocketAddr,
    test: impl FnOnce(Client) -> F,
) {
    crate::grpc::tests::with_channel(addr, |channel| test(Client::new(channel)));
}

fn record(from: u8, to: u8, nonce: u64) -> Record {
    Transfer {
        chain_id: 7,
        from: Address([from; 32]),
        to: Address([to; 32]),
        asset: 3,
        amount: 10 + nonce,
        nonce,
    }
    .with_signature(&[nonce as u8; 64])
}

fn entry(previous: u64, index: u64, records: &[Record]) -> Arc<AppliedEntry> {
    Arc::new(AppliedEntry {
        index,
        previous,
        data: if records.is_empty() {
            bytes::Bytes::new()
        } else {
            bytes::Bytes::from(aurigraph_engine::encode_batch(records))
        },
        results: vec![ResultCode::Ok; records.len()],
        balances: Vec::new(),
    })
}

fn request(account: &[u8], shards: &[u32], resume: &[(u32, u64)], start: i32) -> Req {
    Req {
        account: account.to_vec(),
        shards: shards.to_vec(),
        resume_after: resume
            .iter()
            .map(|&(shard, block_number)| v11::BlockPosition {
                shard,
                block_number,
            })
            .collect(),
        start,
    }
}

/// The next message's (shard, block, positions of its events), or its status.
async fn next(
    stream: &mut tonic::Streaming<v11::TransactionEvents>,
) -> Result<(u32, u64, Vec<u32>), Status> {
    let message = stream
        .message()
        .await?
        .expect("a stream of events never ends with OK");
    Ok((
        message.shard,
        message.block_number,
        message.events.iter().map(|e| e.position).collect(),
    ))
}

#[test]
fn requests_are_checked_with_clear_messages() {
    let of = |message: Req| Interest::of(&message, 4);
    let all = of(request(&[], &[], &[], 0)).unwrap();
    assert_eq!(
        all,
        Interest {
            account: None,
            shards: vec![0, 1, 2, 3],
            resume_after: vec![],
            start: Start::Latest
        }
    );
    let some = of(request(&[5; 32], &[3, 1, 3], &[(3, 17)], 2)).unwrap();
    assert_eq!(some.account, Some(Address([5; 32])));
    assert_eq!(
        (some.shards, some.resume_after, some.start),
        (vec![1, 3], vec![(3, 17)], Start::Earliest)
    );
    assert_eq!(of(request(&[], &[], &[], 1)).unwrap().start, Start::Latest);
    for (bad, says) in [
        (
            request(&[1; 31], &[], &[], 0),
            "account must be 32 bytes, not 31",
        ),
        (
            request(&[], &[4], &[], 0),
            "shards: no shard 4; this chain has 4 shards (0 to 3)",
        ),
        (request(&[], &[], &[(9, 1)], 0), "resume_after: no shard 9"),
        (
            request(&[], &[], &[(1, 1), (1, 2)], 0),
            "resume_after names shard 1 twice",
        ),
        (
            request(&[], &[0], &[(1, 1)], 0),
            "resume_after names shard 1, which shards does not select",
        ),
        (request(&[], &[], &[], 3), "start 3: not a StartFrom"),
        (request(&[], &[], &[], -1), "start -1: not a StartFrom"),
    ] {
        let status = of(bad).unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains(says), "{status:?}");
    }
}

#[test]
fn streams_matching_blocks_resumes_and_refuses_what_the_node_no_longer_holds() {
    let server = Server::start();
    let (addr, hub) = (server.addr, server.hub.clone());
    let (draining, in_flight) = (
        server.settings.draining.clone(),
        server.settings.in_flight.clone(),
    );
    // The node started from snapshots at 10 (shard 0) and 20 (shard 1).
    hub.take([
        (0, entry(10, 11, &[record(1, 2, 1), record(3, 4, 2)])),
        (1, entry(20, 21, &[record(5, 1, 3)])),
        (0, entry(11, 12, &[])),
        (
            0,
            entry(12, 13, &[record(3, 4, 4), record(2, 1, 5), record(6, 7, 6)]),
        ),
    ]);
    let feed = hub.clone();
    with_client(addr, |mut client| async move {
        // Every transfer from the oldest block held: each block's events, all fields.
        let mut all = client
            .stream_transaction_events(request(&[], &[], &[], v11::StartFrom::Earliest as i32))
            .await
            .unwrap()
            .into_inner();
        let first = all.message().await.unwrap().unwrap();
        assert_eq!(
            (first.shard, first.block_number, first.events.len()),
            (0, 11, 2)
        );
        let event = &first.events[1];
        let sent = record(3, 4, 2);
        assert_eq!(event.tx_hash, sent.tx_hash().0.to_vec());
        assert_eq!(
            (event.from.clone(), event.to.clone()),
            (vec![3; 32], vec![4; 32])
        );
        assert_eq!((event.asset, event.amount, event.nonce), (3, 12, 2));
        assert_eq!(
            (event.result, event.position),
            (v11::ResultCode::Ok as i32, 1)
        );
        assert_eq!(next(&mut all).await.unwrap(), (1, 21, vec![0]));
        assert_eq!(next(&mut all).await.unwrap(), (0, 13, vec![0, 1, 2]));

        // Account 1's transfers, sent or received; blocks without one are not sent.
        let mut mine = client
            .stream_transaction_events(request(&[1; 32], &[], &[], v11::StartFrom::Earliest as i32))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(next(&mut mine).await.unwrap(), (0, 11, vec![0]));
        assert_eq!(next(&mut mine).await.unwrap(), (1, 21, vec![0]));
        assert_eq!(next(&mut mine).await.unwrap(), (0, 13, vec![1]));

        // Resumed after block 11 of shard 0, shard 0 only: exactly what follows. Then a block
        // applied now reaches it and the stream from the start.
        let mut resumed = client
            .stream_transaction_events(request(&[], &[0], &[(0, 11)], 0))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(next(&mut resumed).await.unwrap(), (0, 13, vec![0, 1, 2]));
        feed.take([(0, entry(13, 14, &[record(9, 9, 7)]))]);
        assert_eq!(next(&mut resumed).await.unwrap(), (0, 14, vec![0]));
        assert_eq!(next(&mut all).await.unwrap(), (0, 14, vec![0]));

        // Older than the snapshot shard 1 started from.
        let status = client
            .stream_transaction_events(request(&[], &[], &[(1, 19)], 0))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
        assert!(
            status.message().contains("its blocks after 20 up to 21 (the node started from, or restored, a snapshot at that block)"),
            "{status:?}"
        );
        // Invalid requests are refused before the stream opens.
        let status = client
            .stream_transaction_events(request(&[], &[2], &[], 0))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert_eq!(
            status.metadata().get("aurigraph-error-code").unwrap(),
            "INVALID_REQUEST"
        );

        // Draining ends every stream open with UNAVAILABLE.
        draining.store(true, Ordering::SeqCst);
        for stream in [&mut all, &mut mine, &mut resumed] {
            let status = next(stream).await.unwrap_err();
            assert_eq!(status.code(), Code::Unavailable, "{status:?}");
            assert_eq!(
                status.metadata().get("aurigraph-error-code").unwrap(),
                "SHUTTING_DOWN"
            );
        }
    });
    let hub = server.stop();
    assert_eq!(hub.streams(), 0);
    // Every stream was counted in flight while it ran (a draining node waits for them).
    assert_eq!(in_flight.total(), 0);
}

#[test]
fn a_slow_stream_ends_with_resource_exhausted_and_a_cancelled_one_ends_its_task() {
    let server = Server::start();
    let (addr, hub) = (server.addr, server.hub.clone());
    let blocks = |from: u64, to: u64| -> Vec<(ShardId, Arc<AppliedEntry>)> {
        (from..=to)
            .map(|i| {
                let records: Vec<Record> = (0..1000).map(|n| record(1, 2, n)).collect();
                (0, entry(i - 1, i, &records))
            })
            .collect()
    };
    hub.take(blocks(1, 1));
    let hub = &hub;
    with_client(addr, |mut client| async move {
        let mut slow = client
            .stream_transaction_events(request(&[], &[0], &[], v11::StartFrom::Earliest as i32))
            .await
            .unwrap()
            .into_inner();
        let cancelled = client
            .stream_transaction_events(request(&[], &[1], &[], 0))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(next(&mut slow).await.unwrap().1, 1);
        assert_eq!(hub.streams(), 2);
        // 6 blocks of 1,000 transfers fit the window: 30 more evict what the stream has not
        // read. It gets what it already had, in order, then the status.
        hub.take(blocks(2, 31));
        let mut read = 1;
        let status = loop {
            match next(&mut slow).await {
                Ok((_, block, _)) => {
                    read += 1;
                    assert_eq!(block, read);
                }
                Err(status) => break status,
            }
        };
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        assert!(
            status
                .message()
                .contains("fell behind the node's event window"),
            "{status:?}"
        );
        let span = hub.span(0).unwrap();
        assert!(read < span.floor, "read {read}, window {span:?}");

        // The client goes away: the task sees it within a check interval and ends.
        drop(cancelled);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while hub.streams() > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "{} streams left",
                hub.streams()
            );
            // Lets the connection's task run (it sends the reset), then waits a little.
            tokio::task::yield_now().await;
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    server.stop();
}

#[test]
fn streams_end_with_unavailable_when_the_hub_closes() {
    let server = Server::start();
    let closing = server.hub.clone();
    let in_flight = server.settings.in_flight.clone();
    let addr = server.addr;
    with_client(addr, |mut client| async move {
        let mut stream = client
            .stream_transaction_events(request(&[], &[], &[], 0))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(in_flight.total(), 1);
        closing.close();
        let status = next(&mut stream).await.unwrap_err();
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    });
    let hub = server.stop();
    assert_eq!(hub.streams(), 0);
}

#[test]
fn a_shard_without_matches_gets_a_progress_message_once_a_second() {
    let mut told_at = Vec::new();
    // The first block of a shard starts its clock; the next ones within the interval are quiet.
    assert!(progress(&mut told_at, 3, 10).is_none());
    assert!(progress(&mut told_at, 3, 11).is_none());
    assert!(
        progress(&mut told_at, 0, 4).is_none(),
        "each shard has its own clock"
    );
    std::thread::sleep(PROGRESS_INTERVAL);
    let message = progress(&mut told_at, 3, 12).expect("a second without a message");
    assert_eq!((message.shard, message.block_number), (3, 12));
    assert!(message.events.is_empty());
    // A message sent restarts the shard's clock.
    told(&mut told_at, 3);
    assert!(progress(&mut told_at, 3, 13).is_none());
    assert!(
        progress(&mut told_at, 0, 5).is_some(),
        "shard 0's clock ran on"
    );
}
