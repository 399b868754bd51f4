//! Loopback tests of the validator transport: real glommio executors in their own threads,
//! real TCP on 127.0.0.1, ports chosen by the kernel. Every wait has a deadline well under 20 s.

mod common;
use aurigraph_net::transport::{
    decode_frame, DataFrameEncoder, Frame, Handshake, InboundBatch, Limits, SendError, Transport,
    TransportConfig, TransportCounters, FRAME_BYTES_MAX,
};
use common::{handshake_as, CHAIN, SHARDS};
use glommio::timer::{sleep, timeout};
use glommio::{LocalExecutorBuilder, Placement};
use std::collections::HashMap;
use std::future::{poll_fn, Future};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream as StdTcpStream};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc};
use std::task::Poll;
use std::time::{Duration, Instant};

const TEST_TIMEOUT: Duration = Duration::from_secs(15);

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn config(node: u64, listen: SocketAddr) -> TransportConfig {
    let mut c = TransportConfig::new(CHAIN, node, 0, 1, SHARDS, listen);
    c.backoff_min_ms = 10;
    c.backoff_max_ms = 200;
    c.connect_timeout_ms = 500;
    c.handshake_timeout_ms = 1_000;
    c
}

/// Runs `f` on a fresh glommio executor in its own thread. io_memory is small: the locked
/// memory limit here is 8 MiB and several executors run at once.
fn spawn_node<T, F, Fut>(name: &str, f: F) -> glommio::ExecutorJoinHandle<T>
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
{
    LocalExecutorBuilder::new(Placement::Unbound)
        .name(name)
        .io_memory(1 << 20)
        .spawn(f)
        .expect("executor")
}

async fn yield_now() {
    let mut yielded = false;
    poll_fn(|cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await
}

async fn wait_until(deadline: Instant, what: &str, mut cond: impl FnMut() -> bool) {
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        sleep(Duration::from_millis(2)).await;
    }
}

/// The next batch, or `None` if none arrives before `deadline`.
async fn recv_until(t: &Transport, deadline: Instant) -> Option<InboundBatch> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return t.try_recv();
    }
    timeout(left, async { Ok(t.recv().await) })
        .await
        .ok()
        .flatten()
}

/// A test message: sequence number, then filler whose length varies with it.
fn encode_msg(buf: &mut Vec<u8>, seq: u64, filler: usize) {
    buf.clear();
    buf.extend_from_slice(&seq.to_le_bytes());
    buf.resize(8 + filler, (seq % 251) as u8);
}

fn decode_msg(payload: &[u8]) -> u64 {
    let seq = u64::from_le_bytes(payload[..8].try_into().unwrap());
    assert!(
        payload[8..].iter().all(|&b| b == (seq % 251) as u8),
        "payload of message {seq} corrupted"
    );
    seq
}

#[test]
fn three_validators_exchange_thousands_in_order() {
    const N: u64 = 5_000;
    let ids = [1u64, 2, 3];
    let (addr_tx, addr_rx) = mpsc::channel::<(u64, SocketAddr)>();
    let done = Arc::new(AtomicUsize::new(0));
    let mut peer_txs = Vec::new();
    let mut handles = Vec::new();
    for &id in &ids {
        let (peers_tx, peers_rx) = mpsc::channel::<Vec<(u64, SocketAddr)>>();
        peer_txs.push(peers_tx);
        let addr_tx = addr_tx.clone();
        let done = Arc::clone(&done);
        handles.push(spawn_node(&format!("node-{id}"), move || async move {
            let deadline = Instant::now() + TEST_TIMEOUT;
            let t = Rc::new(Transport::bind(config(id, any_port())).unwrap());
            addr_tx.send((id, t.local_addr())).unwrap();
            let peers = peers_rx.recv().unwrap();
            let others: Vec<u64> = peers.iter().map(|p| p.0).filter(|&p| p != id).collect();
            for &(p, addr) in &peers {
                if p != id {
                    t.add_peer(p, addr).unwrap();
                }
            }
            wait_until(deadline, "outbound links", || {
                others.iter().all(|&p| t.is_connected(p))
            })
            .await;

            let started = Instant::now();
            let sender = {
                let t = Rc::clone(&t);
                let others = others.clone();
                glommio::spawn_local(async move {
                    let mut buf = Vec::with_capacity(512);
                    let mut full = 0u64;
                    for seq in 0..N {
                        for &p in &others {
                            encode_msg(&mut buf, seq, (seq % 300) as usize);
                            loop {
                                match t.send(p, (seq % u64::from(SHARDS)) as u32, &buf) {
                                    Ok(()) => break,
                                    Err(SendError::Full(_)) => {
                                        full += 1;
                                        sleep(Duration::from_millis(1)).await;
                                    }
                                    Err(e) => panic!("node {id}: send {seq} to {p}: {e}"),
                                }
                            }
                        }
                        // Let the writers run now and then, so frames carry batches of
                        // messages rather than all of them at once.
                        if seq % 100 == 99 {
                            yield_now().await;
                        }
                    }
                    full
                })
            };

            let mut next: HashMap<u64, u64> = others.iter().map(|&p| (p, 0)).collect();
            let mut frames = 0u64;
            while next.values().any(|&n| n < N) {
                let batch = recv_until(&t, deadline)
                    .await
                    .unwrap_or_else(|| panic!("node {id}: timed out, progress {next:?}"));
                frames += 1;
                let expected = next.get_mut(&batch.from_node()).expect("known sender");
                for m in batch.messages() {
                    let seq = decode_msg(m.payload);
                    assert_eq!(
                        seq,
                        *expected,
                        "node {id}: out of order from {}",
                        batch.from_node()
                    );
                    assert_eq!(u64::from(m.shard), seq % u64::from(SHARDS));
                    *expected += 1;
                }
            }
            let full = sender.await;
            let elapsed = started.elapsed();
            done.fetch_add(1, SeqCst);
            wait_until(deadline, "all nodes done", || {
                done.load(SeqCst) == ids.len()
            })
            .await;
            let counters = t.counters();
            Rc::try_unwrap(t).ok().unwrap().shutdown().await;
            (id, frames, full, counters, elapsed)
        }));
    }
    let addrs: Vec<(u64, SocketAddr)> = (0..ids.len()).map(|_| addr_rx.recv().unwrap()).collect();
    for tx in &peer_txs {
        tx.send(addrs.clone()).unwrap();
    }
    for h in handles {
        let (id, frames, full, c, elapsed) = h.join().unwrap();
        eprintln!(
            "node {id}: sent {} and received {} messages in {elapsed:?} ({:.0} received/s), \
             {frames} batches received, {full} sends answered Full, {c:?}",
            c.messages_sent,
            c.messages_received,
            c.messages_received as f64 / elapsed.as_secs_f64()
        );
        assert_eq!(c.messages_received, 2 * N);
        assert_eq!(c.messages_sent, 2 * N);
        assert_eq!(c.decode_errors, 0);
        assert_eq!(c.queue_full_drops, full);
        assert_eq!(c.disconnected_drops, 0);
        assert_eq!(c.reconnects, 0);
        // Batching: far fewer frames than messages.
        assert!(c.frames_sent < c.messages_sent / 4, "no batching: {c:?}");
    }
}

/// A sender that emits an increasing sequence to one peer every millisecond until stopped.
/// Sequence numbers are consumed whether or not `send` accepts them, so a receiver sees gaps
/// across outages but a strictly increasing sequence on every link.
async fn paced_sender(t: Rc<Transport>, to: u64, stop: Arc<AtomicBool>, deadline: Instant) -> u64 {
    let mut buf = Vec::new();
    let mut seq = 0u64;
    let mut accepted = 0u64;
    while !stop.load(SeqCst) {
        assert!(Instant::now() < deadline, "sender never stopped");
        encode_msg(&mut buf, seq, 32);
        if t.send(to, 0, &buf).is_ok() {
            accepted += 1;
        }
        seq += 1;
        sleep(Duration::from_millis(1)).await;
    }
    accepted
}

/// Receives from `from` until `count` messages arrived; checks they increase strictly and
/// exceed `after`. Returns the last sequence number.
async fn receive_increasing(t: &Transport, from: u64, count: usize, after: Option<u64>) -> u64 {
    let deadline = Instant::now() + TEST_TIMEOUT;
    let mut last = after;
    let mut got = 0;
    while got < count {
        let batch = recv_until(t, deadline)
            .await
            .unwrap_or_else(|| panic!("timed out after {got} of {count} messages"));
        assert_eq!(batch.from_node(), from);
        for m in batch.messages() {
            let seq = decode_msg(m.payload);
            if let Some(l) = last {
                assert!(seq > l, "sequence went from {l} to {seq}");
            }
            last = Some(seq);
            got += 1;
        }
    }
    last.unwrap()
}

#[test]
fn restarted_peer_is_reconnected_and_later_messages_arrive() {
    let stop = Arc::new(AtomicBool::new(false));
    let (a_addr_tx, a_addr_rx) = mpsc::channel();
    let (b_addr_tx, b_addr_rx) = mpsc::channel::<SocketAddr>();

    let a = {
        let stop = Arc::clone(&stop);
        spawn_node("node-1", move || async move {
            let deadline = Instant::now() + TEST_TIMEOUT;
            let t = Rc::new(Transport::bind(config(1, any_port())).unwrap());
            a_addr_tx.send(t.local_addr()).unwrap();
            t.add_peer(2, b_addr_rx.recv().unwrap()).unwrap();
            let accepted = paced_sender(Rc::clone(&t), 2, stop, deadline).await;
            let c = t.counters();
            Rc::try_unwrap(t).ok().unwrap().shutdown().await;
            (accepted, c)
        })
    };

    // First life of node 2.
    let a_addr: SocketAddr = {
        let (tx, rx) = mpsc::channel();
        let b1 = spawn_node("node-2a", move || async move {
            let t = Transport::bind(config(2, any_port())).unwrap();
            tx.send(t.local_addr()).unwrap();
            let a_addr = a_addr_rx.recv().unwrap();
            t.add_peer(1, a_addr).unwrap();
            let last = receive_increasing(&t, 1, 200, None).await;
            let addr = t.local_addr();
            t.shutdown().await;
            (last, addr, a_addr)
        });
        b_addr_tx.send(rx.recv().unwrap()).unwrap();
        let (last, b_addr, a_addr) = b1.join().unwrap();
        eprintln!("first life received up to {last}, restarting on {b_addr}");

        // Second life, same address, while node 1 keeps sending.
        let b2 = spawn_node("node-2b", move || async move {
            let t = Transport::bind(config(2, b_addr)).unwrap();
            t.add_peer(1, a_addr).unwrap();
            let last2 = receive_increasing(&t, 1, 200, Some(last)).await;
            t.shutdown().await;
            last2
        });
        let last2 = b2.join().unwrap();
        assert!(last2 > last + 200);
        a_addr
    };
    let _ = a_addr;
    stop.store(true, SeqCst);
    let (accepted, c) = a.join().unwrap();
    eprintln!("node 1: {accepted} sends accepted, {c:?}");
    assert!(c.reconnects >= 1, "{c:?}");
    assert!(c.links_closed >= 1, "{c:?}");
    assert_eq!(c.decode_errors, 0);
}

/// Reads from a hostile connection until the server closes it (EOF or reset).
fn expect_closed(mut s: StdTcpStream, what: &str) {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => continue, // the server's handshake reply, if any
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return,
            Err(e) => panic!("{what}: link not closed by the transport: {e}"),
        }
    }
}

/// Connects as node 3 (a configured peer of node 2), completes the handshake, and returns the
/// stream ready for frames.
fn impersonate_peer_3(addr: SocketAddr) -> StdTcpStream {
    let mut s = StdTcpStream::connect(addr).unwrap();
    s.write_all(&handshake_as(3)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut reply = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        let n = s.read(&mut buf).expect("handshake reply");
        assert!(n > 0, "handshake as node 3 refused");
        reply.extend_from_slice(&buf[..n]);
        if let Some((frame, _)) = decode_frame(&reply, &Limits::new(SHARDS)).unwrap() {
            assert!(matches!(
                frame,
                Frame::Handshake(Handshake { node_id: 2, .. })
            ));
            return s;
        }
    }
}

#[test]
fn hostile_clients_lose_their_link_and_the_transport_keeps_serving() {
    let stop = Arc::new(AtomicBool::new(false));
    let hostile_done = Arc::new(AtomicBool::new(false));
    // Node 1 takes its counters before node 2 goes away, so that its link is judged only over
    // the hostile phase.
    let a_stopped = Arc::new(AtomicBool::new(false));
    let (a_addr_tx, a_addr_rx) = mpsc::channel();
    let (b_addr_tx, b_addr_rx) = mpsc::channel::<SocketAddr>();
    let (b_addr_tx2, b_addr_rx2) = mpsc::channel::<SocketAddr>();

    let a = {
        let (stop, a_stopped) = (Arc::clone(&stop), Arc::clone(&a_stopped));
        spawn_node("node-1", move || async move {
            let deadline = Instant::now() + TEST_TIMEOUT;
            let t = Rc::new(Transport::bind(config(1, any_port())).unwrap());
            a_addr_tx.send(t.local_addr()).unwrap();
            t.add_peer(2, b_addr_rx.recv().unwrap()).unwrap();
            let accepted = paced_sender(Rc::clone(&t), 2, stop, deadline).await;
            let c = t.counters();
            a_stopped.store(true, SeqCst);
            Rc::try_unwrap(t).ok().unwrap().shutdown().await;
            (accepted, c)
        })
    };
    let b = {
        let (hostile_done, stop, a_stopped) = (
            Arc::clone(&hostile_done),
            Arc::clone(&stop),
            Arc::clone(&a_stopped),
        );
        spawn_node("node-2", move || async move {
            let deadline = Instant::now() + TEST_TIMEOUT;
            let t = Transport::bind(config(2, any_port())).unwrap();
            b_addr_tx.send(t.local_addr()).unwrap();
            b_addr_tx2.send(t.local_addr()).unwrap();
            t.add_peer(1, a_addr_rx.recv().unwrap()).unwrap();
            // Node 3 is configured but never runs: the hostile client impersonates it.
            t.add_peer(3, "127.0.0.1:9".parse().unwrap()).unwrap();
            let mut last = receive_increasing(&t, 1, 50, None).await;
            // Keep serving node 1 while the hostile clients do their worst.
            while !hostile_done.load(SeqCst) {
                assert!(Instant::now() < deadline, "hostile phase never ended");
                last = receive_increasing(&t, 1, 1, Some(last)).await;
            }
            let before = t.counters();
            last = receive_increasing(&t, 1, 100, Some(last)).await;
            let c = t.counters();
            stop.store(true, SeqCst);
            wait_until(deadline, "node 1 stopped", || a_stopped.load(SeqCst)).await;
            t.shutdown().await;
            (before, c, last)
        })
    };
    let b_addr = b_addr_rx2.recv().unwrap();

    // 1. Garbage instead of a handshake.
    let mut s = StdTcpStream::connect(b_addr).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    expect_closed(s, "garbage");
    // 2. A well-formed handshake from a node that is not a peer.
    let mut s = StdTcpStream::connect(b_addr).unwrap();
    s.write_all(&handshake_as(99)).unwrap();
    expect_closed(s, "unknown node");
    // 3. A peer's handshake, then a frame with a bad checksum.
    let mut s = impersonate_peer_3(b_addr);
    let mut e = DataFrameEncoder::new(FRAME_BYTES_MAX, 16);
    e.push(0, b"hello").unwrap();
    let mut frame = e.finish().to_vec();
    let last = frame.len() - 1;
    frame[last] ^= 0x55;
    s.write_all(&frame).unwrap();
    expect_closed(s, "bad checksum");
    // 4. A header announcing a frame far over the limit.
    let mut s = impersonate_peer_3(b_addr);
    let mut header = frame[..16].to_vec();
    header[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    s.write_all(&header).unwrap();
    expect_closed(s, "oversize length");
    // 5. A valid frame for a shard this chain does not have.
    let mut s = impersonate_peer_3(b_addr);
    let mut e = DataFrameEncoder::new(FRAME_BYTES_MAX, 16);
    e.push(SHARDS, b"no such shard").unwrap();
    s.write_all(e.finish()).unwrap();
    expect_closed(s, "shard out of range");
    // 6. Before any handshake, a data frame header announcing 8 MiB: refused from the header,
    //    nothing buffered for it.
    let mut s = StdTcpStream::connect(b_addr).unwrap();
    let mut header = frame[..16].to_vec();
    header[8..12].copy_from_slice(&((8u32 << 20) - 16).to_le_bytes());
    s.write_all(&header).unwrap();
    expect_closed(s, "big frame before handshake");
    // 7. A peer's handshake in another frame format version (a binary of an incompatible
    //    release): refused at its header, before anything else is read.
    let mut s = StdTcpStream::connect(b_addr).unwrap();
    let mut other_version = handshake_as(3);
    other_version[4] = 2;
    s.write_all(&other_version).unwrap();
    expect_closed(s, "another frame version");
    // 8. Connect and say nothing: the handshake timeout frees the slot.
    let started = Instant::now();
    let s = StdTcpStream::connect(b_addr).unwrap();
    expect_closed(s, "silent client");
    assert!(started.elapsed() < Duration::from_secs(4));
    hostile_done.store(true, SeqCst);

    let (before, c, last) = b.join().unwrap();
    let (_, a_counters) = a.join().unwrap();
    eprintln!("node 2 after the hostile phase: {c:?}; node 1: {a_counters:?}");
    assert!(last > 0);
    // Garbage, checksum, oversize length, shard, big frame before handshake, version.
    assert_eq!(before.decode_errors, 6, "{before:?}");
    // Garbage, unknown node, big frame before handshake, version, silence.
    assert_eq!(before.handshakes_refused, 5, "{before:?}");
    // Node 1's link was never disturbed.
    assert_eq!(a_counters.reconnects, 0, "{a_counters:?}");
    assert_eq!(a_counters.links_closed, 0, "{a_counters:?}");
}

#[test]
fn back_pressure_is_reported_and_nothing_accepted_is_lost() {
    const PAYLOAD_BYTES: usize = 16 << 10;
    let drain = Arc::new(AtomicBool::new(false));
    let sent_done = Arc::new(AtomicBool::new(false));
    let accepted_total = Arc::new(AtomicU64::new(0));
    let (a_addr_tx, a_addr_rx) = mpsc::channel();
    let (b_addr_tx, b_addr_rx) = mpsc::channel::<SocketAddr>();

    let a = {
        let (drain, sent_done, accepted_total) = (
            Arc::clone(&drain),
            Arc::clone(&sent_done),
            Arc::clone(&accepted_total),
        );
        spawn_node("node-1", move || async move {
            let deadline = Instant::now() + TEST_TIMEOUT;
            let mut cfg = config(1, any_port());
            cfg.queue_bytes_max = 256 << 10;
            let t = Transport::bind(cfg).unwrap();
            a_addr_tx.send(t.local_addr()).unwrap();
            t.add_peer(2, b_addr_rx.recv().unwrap()).unwrap();
            wait_until(deadline, "link to node 2", || t.is_connected(2)).await;
            let mut buf = Vec::new();
            let (mut seq, mut full) = (0u64, 0u64);
            // Node 2 is not reading: sends succeed until the socket buffers and then the
            // staging frame fill up, and then they are refused — not queued without bound.
            while full < 20 {
                assert!(
                    Instant::now() < deadline,
                    "never saw Full after {seq} sends"
                );
                encode_msg(&mut buf, seq, PAYLOAD_BYTES);
                match t.send(2, 1, &buf) {
                    Ok(()) => seq += 1,
                    Err(SendError::Full(2)) => {
                        full += 1;
                        sleep(Duration::from_millis(1)).await;
                    }
                    Err(e) => panic!("unexpected {e}"),
                }
                yield_now().await;
            }
            let queued = t.peer_status(2).unwrap();
            assert!(queued.queued_bytes <= 256 << 10, "{queued:?}");
            let stalled_at = seq;
            drain.store(true, SeqCst);
            // Once node 2 drains, sends are accepted again.
            while seq < stalled_at + 200 {
                assert!(Instant::now() < deadline, "never recovered from Full");
                encode_msg(&mut buf, seq, PAYLOAD_BYTES);
                match t.send(2, 1, &buf) {
                    Ok(()) => seq += 1,
                    Err(SendError::Full(2)) => {
                        full += 1;
                        sleep(Duration::from_millis(1)).await;
                    }
                    Err(e) => panic!("unexpected {e}"),
                }
            }
            accepted_total.store(seq, SeqCst);
            sent_done.store(true, SeqCst);
            let c = t.counters();
            // Stay up until node 2 has everything.
            wait_until(deadline, "node 2 drained", || !drain.load(SeqCst)).await;
            t.shutdown().await;
            (stalled_at, full, c)
        })
    };
    let b = {
        let (drain, sent_done, accepted_total) = (
            Arc::clone(&drain),
            Arc::clone(&sent_done),
            Arc::clone(&accepted_total),
        );
        spawn_node("node-2", move || async move {
            let deadline = Instant::now() + TEST_TIMEOUT;
            let mut cfg = config(2, any_port());
            cfg.inbound_batches_max = 2;
            let t = Transport::bind(cfg).unwrap();
            b_addr_tx.send(t.local_addr()).unwrap();
            t.add_peer(1, a_addr_rx.recv().unwrap()).unwrap();
            wait_until(deadline, "drain signal", || drain.load(SeqCst)).await;
            assert!(t.inbound_len() <= 2);
            let mut next = 0u64;
            while !(sent_done.load(SeqCst) && next == accepted_total.load(SeqCst)) {
                let Some(batch) = recv_until(&t, deadline).await else {
                    panic!("timed out at message {next}");
                };
                for m in batch.messages() {
                    assert_eq!(decode_msg(m.payload), next, "an accepted message was lost");
                    next += 1;
                }
            }
            drain.store(false, SeqCst);
            let c = t.counters();
            t.shutdown().await;
            (next, c)
        })
    };
    let (received, bc) = b.join().unwrap();
    let (stalled_at, full, ac): (u64, u64, TransportCounters) = a.join().unwrap();
    eprintln!(
        "stalled after {stalled_at} messages of {PAYLOAD_BYTES} bytes; {full} Full; \
         received {received}; sender {ac:?}; receiver {bc:?}"
    );
    assert!(full >= 20);
    assert_eq!(ac.queue_full_drops, full);
    assert_eq!(ac.disconnected_drops, 0);
    assert_eq!(received, accepted_total.load(SeqCst));
}

#[test]
fn handshake_with_other_chain_or_placement_is_refused() {
    let (addr_tx, addr_rx) = mpsc::channel::<(u64, SocketAddr)>();
    let done = Arc::new(AtomicUsize::new(0));
    let mut peer_txs = Vec::new();
    let mut handles = Vec::new();
    // Node 1 is ours; node 2 runs another chain; node 3 has another core layout.
    for id in [1u64, 2, 3] {
        let (peers_tx, peers_rx) = mpsc::channel::<Vec<(u64, SocketAddr)>>();
        peer_txs.push(peers_tx);
        let addr_tx = addr_tx.clone();
        let done = Arc::clone(&done);
        handles.push(spawn_node(&format!("node-{id}"), move || async move {
            let deadline = Instant::now() + TEST_TIMEOUT;
            let mut cfg = config(id, any_port());
            match id {
                2 => cfg.chain_id = b"other-chain".to_vec(),
                3 => cfg.cores = 2,
                _ => {}
            }
            let t = Transport::bind(cfg).unwrap();
            addr_tx.send((id, t.local_addr())).unwrap();
            let peers = peers_rx.recv().unwrap();
            for &(p, addr) in &peers {
                if p != id && (id == 1 || p == 1) {
                    t.add_peer(p, addr).unwrap();
                }
            }
            // Several connect attempts each way.
            sleep(Duration::from_millis(1_000)).await;
            let others: Vec<u64> = if id == 1 { vec![2, 3] } else { vec![1] };
            let connected: Vec<bool> = others.iter().map(|&p| t.is_connected(p)).collect();
            let refused_send = t.send(others[0], 0, b"x");
            done.fetch_add(1, SeqCst);
            wait_until(deadline, "all nodes done", || done.load(SeqCst) == 3).await;
            let c = t.counters();
            t.shutdown().await;
            (id, connected, refused_send, c)
        }));
    }
    let addrs: Vec<(u64, SocketAddr)> = (0..3).map(|_| addr_rx.recv().unwrap()).collect();
    for tx in &peer_txs {
        tx.send(addrs.clone()).unwrap();
    }
    for h in handles {
        let (id, connected, refused_send, c) = h.join().unwrap();
        eprintln!("node {id}: {c:?}");
        assert!(
            connected.iter().all(|&up| !up),
            "node {id} linked to a foreign node"
        );
        assert!(matches!(refused_send, Err(SendError::Disconnected(_))));
        assert!(c.handshakes_refused >= 2, "node {id}: {c:?}");
        assert_eq!(c.connects, 0);
        assert_eq!(c.messages_received, 0);
    }
}
