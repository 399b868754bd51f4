use super::*;
use aurigraph_engine::record::Transfer;
use std::time::Duration;

/// A transfer record from `from` to `to` (addresses of one repeated byte; the signature is
/// not checked here).
fn record(from: u8, to: u8, nonce: u64) -> Record {
    Transfer {
        chain_id: 7,
        from: Address([from; 32]),
        to: Address([to; 32]),
        asset: 0,
        amount: 10,
        nonce,
    }
    .with_signature(&[0; 64])
}

/// An applied entry at `index` after `previous`, holding `records` (none: an entry without
/// transfers), each OK.
fn entry(previous: u64, index: u64, records: &[Record]) -> Arc<AppliedEntry> {
    let data = if records.is_empty() {
        bytes::Bytes::new()
    } else {
        bytes::Bytes::from(aurigraph_engine::encode_batch(records))
    };
    Arc::new(AppliedEntry {
        index,
        previous,
        data,
        results: vec![ResultCode::Ok; records.len()],
        balances: Vec::new(),
    })
}

/// An entry of `n` transfers from 1 to 2.
fn block(previous: u64, index: u64, n: usize) -> Arc<AppliedEntry> {
    let records: Vec<Record> = (0..n as u64).map(|i| record(1, 2, i)).collect();
    entry(previous, index, &records)
}

fn hub(bytes_max: u64) -> Arc<EventHub> {
    Arc::new(EventHub::new(bytes_max))
}

fn check(hub: &EventHub) {
    hub.lock().check();
}

/// The block `next` returns, as (shard, index), or panics with what it returned.
fn next_block(subscription: &mut Subscription) -> (ShardId, u64) {
    match subscription.read() {
        Next::Block { shard, entry } => (shard, entry.index),
        other => panic!("expected a block, got {other:?}"),
    }
}

fn assert_wait(subscription: &mut Subscription) {
    match subscription.read() {
        Next::Wait => {}
        other => panic!("expected Wait, got {other:?}"),
    }
}

#[test]
fn holds_blocks_within_the_bound_and_evicts_the_oldest_first() {
    let hub = hub(RETAIN_BYTES_MIN);
    // ~168 KB a block, two shards taking turns: the bound holds 6 of them.
    let one = held_bytes(&block(0, 1, 1000));
    let fit = RETAIN_BYTES_MIN / one;
    assert_eq!(fit, 6);
    for i in 1..=10u64 {
        hub.take([(0, block(i - 1, i, 1000)), (1, block(i - 1, i, 1000))]);
        check(&hub);
        let (held, max) = hub.held_bytes();
        assert!(held <= max, "{held} > {max}");
    }
    // 20 arrived, 6 stay: the last 3 of each shard, the 14 oldest (of both shards) went.
    assert_eq!(hub.held_bytes().0, 6 * one);
    for shard in [0, 1] {
        let span = hub.span(shard).unwrap();
        assert_eq!((span.floor, span.newest), (7, 10), "shard {shard}");
    }
    // An entry larger than the whole bound stays alone (the newest always stays).
    hub.take([(0, block(10, 11, 7000))]);
    check(&hub);
    assert_eq!(hub.lock().order.len(), 1);
    assert_eq!(hub.span(1).unwrap().floor, 10);
}

#[test]
fn entries_without_transfers_move_the_newest_index_only() {
    let hub = hub(RETAIN_BYTES_MIN);
    hub.take([(3, entry(5, 6, &[])), (3, entry(6, 9, &[]))]);
    assert_eq!(hub.span(3).map(|s| (s.floor, s.newest)), Some((5, 9)));
    assert_eq!(hub.held_bytes().0, 0);
    let mut earliest = hub.subscribe(&[3], &[], Start::Earliest).unwrap();
    assert_wait(&mut earliest);
    // Nothing to stream: the position moved to the newest index.
    assert_eq!(earliest.after(3), Some(9));
    hub.take([(3, block(9, 10, 1))]);
    assert_eq!(next_block(&mut earliest), (3, 10));
    check(&hub);
}

#[test]
fn streams_blocks_in_order_per_shard_and_in_arrival_order_across_shards() {
    let hub = hub(RETAIN_BYTES_MIN);
    let mut all = hub.subscribe(&[0, 1, 2], &[], Start::Latest).unwrap();
    let mut one = hub.subscribe(&[1], &[], Start::Latest).unwrap();
    hub.take([
        (1, block(0, 1, 1)),
        (0, block(4, 5, 1)),
        (1, block(1, 2, 1)),
        (2, entry(0, 1, &[])),
        (0, block(5, 6, 1)),
    ]);
    let got: Vec<_> = (0..4).map(|_| next_block(&mut all)).collect();
    assert_eq!(got, [(1, 1), (0, 5), (1, 2), (0, 6)]);
    assert_wait(&mut all);
    assert_eq!(next_block(&mut one), (1, 1));
    assert_eq!(next_block(&mut one), (1, 2));
    assert_wait(&mut one);
    // Duplicates the tap never sends are ignored all the same.
    hub.take([(1, block(1, 2, 1))]);
    assert_wait(&mut one);
    check(&hub);
}

#[test]
fn latest_starts_from_now_earliest_from_the_oldest_held() {
    let hub = hub(RETAIN_BYTES_MIN);
    hub.take([(0, block(10, 11, 1)), (0, block(11, 12, 1))]);
    let mut latest = hub.subscribe(&[0], &[], Start::Latest).unwrap();
    let mut earliest = hub.subscribe(&[0], &[], Start::Earliest).unwrap();
    // A shard not seen yet: both start with its first entry.
    let mut unseen = hub.subscribe(&[5], &[], Start::Latest).unwrap();
    assert_wait(&mut latest);
    assert_eq!(next_block(&mut earliest), (0, 11));
    assert_eq!(next_block(&mut earliest), (0, 12));
    hub.take([(0, block(12, 13, 1)), (5, block(40, 41, 1))]);
    assert_eq!(next_block(&mut latest), (0, 13));
    assert_eq!(next_block(&mut earliest), (0, 13));
    assert_eq!(next_block(&mut unseen), (5, 41));
}

#[test]
fn resumes_right_after_a_block_and_refuses_what_it_no_longer_holds() {
    let hub = hub(RETAIN_BYTES_MIN);
    // The node started from a snapshot at 100: it holds shard 0's blocks after 100.
    hub.take((101..=105).map(|i| (0, block(i - 1, i, 1))));
    let mut resumed = hub.subscribe(&[0], &[(0, 102)], Start::Latest).unwrap();
    assert_eq!(next_block(&mut resumed), (0, 103));
    assert_eq!(next_block(&mut resumed), (0, 104));
    // Right after the snapshot: every block held.
    let mut from_floor = hub.subscribe(&[0], &[(0, 100)], Start::Latest).unwrap();
    assert_eq!(next_block(&mut from_floor), (0, 101));
    // Ahead of the node (another validator's position): waits for what follows it.
    let mut ahead = hub.subscribe(&[0], &[(0, 107)], Start::Latest).unwrap();
    assert_wait(&mut ahead);
    assert_eq!(ahead.after(0), Some(107));
    hub.take([
        (0, block(105, 106, 1)),
        (0, block(106, 107, 1)),
        (0, block(107, 108, 1)),
    ]);
    assert_eq!(next_block(&mut ahead), (0, 108));
    let refused = hub.subscribe(&[0], &[(0, 99)], Start::Latest);
    let span = hub.span(0).unwrap();
    assert_eq!(
        refused.err(),
        Some(Refused::OutOfRange {
            shard: 0,
            after: 99,
            span
        })
    );
    // A shard not seen yet: the position is checked against its first entry.
    let mut early = hub.subscribe(&[1], &[(1, 3)], Start::Latest).unwrap();
    hub.take([(1, block(9, 10, 1))]);
    match early.read() {
        Next::Behind(behind) => {
            assert_eq!((behind.shard, behind.after, behind.evicted), (1, 3, false));
            assert_eq!(behind.span.floor, 9);
        }
        other => panic!("expected Behind, got {other:?}"),
    }
}

#[test]
fn a_stream_that_falls_behind_the_window_is_told_so() {
    let hub = hub(RETAIN_BYTES_MIN);
    let mut slow = hub.subscribe(&[0], &[], Start::Latest).unwrap();
    hub.take([(0, block(0, 1, 1000))]);
    assert_eq!(next_block(&mut slow), (0, 1));
    // 6 blocks fit: the 7th evicts block 2, which the stream has not read.
    hub.take((2..=8).map(|i| (0, block(i - 1, i, 1000))));
    match slow.read() {
        Next::Behind(behind) => {
            assert_eq!((behind.shard, behind.after, behind.evicted), (0, 1, true));
            assert_eq!((behind.span.floor, behind.span.newest), (2, 8));
        }
        other => panic!("expected Behind, got {other:?}"),
    }
    // One that kept up is not.
    let mut quick = hub.subscribe(&[0], &[(0, 2)], Start::Latest).unwrap();
    assert_eq!(next_block(&mut quick), (0, 3));
    check(&hub);
}

#[test]
fn a_gap_drops_the_shard_s_blocks_and_ends_the_streams_behind_it() {
    let hub = hub(RETAIN_BYTES_MIN);
    hub.take([
        (0, block(0, 1, 1)),
        (0, block(1, 2, 1)),
        (1, block(0, 1, 1)),
    ]);
    let mut behind = hub.subscribe(&[0], &[(0, 1)], Start::Latest).unwrap();
    let mut caught_up = hub.subscribe(&[1], &[], Start::Latest).unwrap();
    // Shard 0 restored a snapshot at 50 (or the queue dropped 3 ..= 50).
    hub.take([(0, block(50, 51, 1))]);
    check(&hub);
    let span = hub.span(0).unwrap();
    assert_eq!((span.floor, span.newest), (50, 51));
    assert_eq!(hub.lock().shards[0].entries.len(), 1);
    match behind.read() {
        Next::Behind(b) => assert_eq!((b.shard, b.after, b.evicted), (0, 1, false)),
        other => panic!("expected Behind, got {other:?}"),
    }
    assert_wait(&mut caught_up);
    let mut after_gap = hub.subscribe(&[0], &[(0, 50)], Start::Latest).unwrap();
    assert_eq!(next_block(&mut after_gap), (0, 51));
}

#[test]
fn streams_are_bounded_and_counted_until_dropped() {
    let hub = hub(RETAIN_BYTES_MIN);
    let open: Vec<_> = (0..STREAMS_MAX)
        .map(|_| hub.subscribe(&[0], &[], Start::Latest).unwrap())
        .collect();
    assert_eq!(hub.streams(), STREAMS_MAX);
    assert_eq!(
        hub.subscribe(&[0], &[], Start::Latest).err(),
        Some(Refused::Streams { max: STREAMS_MAX })
    );
    assert_eq!(hub.streams(), STREAMS_MAX);
    drop(open);
    assert_eq!(hub.streams(), 0);
    // A refused resume gives its slot back too.
    hub.take([(0, block(10, 11, 1))]);
    assert!(hub.subscribe(&[0], &[(0, 1)], Start::Latest).is_err());
    assert_eq!(hub.streams(), 0);
}

#[test]
fn filters_by_account_and_keeps_each_transfer_s_place_in_the_block() {
    let records = [
        record(1, 2, 1),
        record(3, 4, 2),
        record(4, 1, 3),
        record(5, 6, 4),
    ];
    let mut applied = Arc::unwrap_or_clone(entry(0, 1, &records));
    applied.results[2] = ResultCode::InsufficientFunds;
    let places = |account: Option<&Address>| -> Vec<(u32, u64, ResultCode)> {
        matching(&applied, account)
            .map(|(place, record, result)| (place, record.nonce(), result))
            .collect()
    };
    assert_eq!(places(None).len(), 4);
    assert_eq!(
        places(Some(&Address([1; 32]))),
        [
            (0, 1, ResultCode::Ok),
            (2, 3, ResultCode::InsufficientFunds)
        ]
    );
    assert_eq!(
        places(Some(&Address([4; 32]))),
        [
            (1, 2, ResultCode::Ok),
            (2, 3, ResultCode::InsufficientFunds)
        ]
    );
    assert_eq!(places(Some(&Address([6; 32]))), [(3, 4, ResultCode::Ok)]);
    assert!(places(Some(&Address([7; 32]))).is_empty());
}

#[test]
fn wakes_a_stream_waiting_on_another_thread_and_closes_with_the_thread() {
    let (thread, tap) = EventHub::spawn(RETAIN_BYTES_MIN);
    // Never a reason for a shard to keep its log.
    assert_eq!(tap.written.get(0), u64::MAX);
    assert_eq!(tap.written.get(SHARDS_MAX - 1), u64::MAX);
    assert!(!tap.balances);
    let hub = thread.hub().clone();
    let mut subscription = hub.subscribe(&[2], &[], Start::Latest).unwrap();
    let (seen_tx, seen) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || loop {
        let next = match subscription.read() {
            Next::Wait => {
                let listener = subscription.listen();
                match subscription.read() {
                    Next::Wait => {
                        futures::executor::block_on(listener);
                        continue;
                    }
                    next => next,
                }
            }
            next => next,
        };
        match next {
            Next::Block { shard, entry } => seen_tx.send((shard, entry.index)).unwrap(),
            Next::Closed => return subscription,
            other => panic!("unexpected {other:?}"),
        }
    });
    let wait = Duration::from_secs(10);
    for i in 1..=3u64 {
        // Give the reader time to wait first: the wake-up is what is tested.
        std::thread::sleep(Duration::from_millis(20));
        tap.sender.send((2, block(i - 1, i, 1))).unwrap();
        assert_eq!(seen.recv_timeout(wait).unwrap(), (2, i));
    }
    // Another shard's blocks do not reach it.
    tap.sender.send((1, block(0, 1, 1))).unwrap();
    assert!(seen.recv_timeout(Duration::from_millis(100)).is_err());
    thread.stop();
    let subscription = reader.join().unwrap();
    assert_eq!(subscription.after(2), Some(3));
    drop(subscription);
    assert_eq!(hub.streams(), 0);
}

#[test]
fn the_thread_closes_the_hub_when_the_engine_drops_the_tap() {
    let (thread, tap) = EventHub::spawn(RETAIN_BYTES_MIN);
    let hub = thread.hub().clone();
    let mut subscription = hub.subscribe(&[0], &[], Start::Latest).unwrap();
    tap.sender.send((0, block(0, 1, 1))).unwrap();
    drop(tap);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    loop {
        match subscription.read() {
            Next::Block { entry, .. } => seen.push(entry.index),
            Next::Closed => break,
            Next::Wait => {
                assert!(std::time::Instant::now() < deadline, "never closed");
                std::thread::sleep(Duration::from_millis(5));
            }
            Next::Behind(behind) => panic!("unexpected {behind:?}"),
        }
    }
    // Closed at once: what was not read yet is not streamed once the node stops.
    assert!(seen.len() <= 1);
    drop(thread);
}

#[test]
fn the_retention_bound_is_checked_with_a_clear_error() {
    let bound =
        |value, memory_mib| checked_retain_bytes_max(value, memory_mib).map_err(|e| e.to_string());
    assert_eq!(bound(None, None), Ok(RETAIN_BYTES_DEFAULT));
    assert_eq!(bound(Some(RETAIN_BYTES_MIN), Some(1024)), Ok(1 << 20));
    for bad in [0, RETAIN_BYTES_MIN - 1, RETAIN_BYTES_LIMIT + 1] {
        let error = bound(Some(bad), None).unwrap_err();
        let says = format!(
            "grpc_events_retain_bytes_max {bad} (--grpc-events-retain-bytes-max): must be between"
        );
        assert!(error.contains(&says), "{error}");
    }
    let error = bound(Some(600 << 20), Some(1024)).unwrap_err();
    assert!(
        error.contains("more than half of this host's memory (536870912 bytes)"),
        "{error}"
    );
}
