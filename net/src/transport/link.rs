//! The I/O edge of the transport: one core's listener, outbound links and inbound links, as
//! glommio tasks on the core's executor. See the module documentation of `transport`.

use super::frame::{
    encode_handshake, DataFrame, DataFrameEncoder, Frame, FrameDecoder, FrameError, Handshake,
    Limits, Messages, PushError, HANDSHAKE_FRAME_BYTES_MAX, MESSAGES_PER_FRAME_MAX,
};
use super::queue::{LocalQueue, Signal};
use super::{SendError, TransportConfig, TransportCounters, TransportError};
use futures::io::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use glommio::task::JoinHandle;
use glommio::timer::{sleep, timeout};
use glommio::GlommioError;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::rc::{Rc, Weak};
use std::task::Poll;
use std::time::Duration;
use thiserror::Error;

/// Pooled receive buffers larger than this are freed rather than kept, so the pool holds at
/// most `inbound_batches_max` buffers of at most this size.
const POOLED_BUFFER_BYTES_MAX: usize = 1 << 20;

/// Why a link ended (internal; logged and counted).
#[derive(Debug, Error)]
enum LinkError {
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    #[error("malformed frame: {0}")]
    Frame(#[from] FrameError),
    #[error("handshake refused: {0}")]
    Refused(String),
    #[error("protocol violation: {0}")]
    Protocol(&'static str),
    #[error("handshake timed out")]
    Timeout,
    #[error("connection closed by peer")]
    Eof,
    #[error("transport closed")]
    Closed,
}

impl From<GlommioError<()>> for LinkError {
    fn from(e: GlommioError<()>) -> LinkError {
        LinkError::Io(e.into())
    }
}

/// One data frame received from a peer: its messages, in the order the peer sent them.
/// Dropping it returns its buffer to the transport's pool.
pub struct InboundBatch {
    from: u64,
    count: u32,
    body: Vec<u8>,
    pool: Rc<BufferPool>,
}

impl InboundBatch {
    /// The node that sent the frame (authenticated by the link's handshake only).
    pub fn from_node(&self) -> u64 {
        self.from
    }

    pub fn len(&self) -> u32 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The messages, each `(shard, payload)`; shards are already checked against this core.
    pub fn messages(&self) -> Messages<'_> {
        Messages::new(self.count, &self.body)
    }
}

impl fmt::Debug for InboundBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InboundBatch")
            .field("from", &self.from)
            .field("messages", &self.count)
            .field("body_bytes", &self.body.len())
            .finish()
    }
}

impl Drop for InboundBatch {
    fn drop(&mut self) {
        self.pool.put(std::mem::take(&mut self.body));
    }
}

/// Receive buffers, recycled so that steady traffic allocates nothing per frame.
struct BufferPool {
    free: RefCell<Vec<Vec<u8>>>,
    buffers_max: usize,
}

impl BufferPool {
    fn take(&self) -> Vec<u8> {
        self.free.borrow_mut().pop().unwrap_or_default()
    }

    fn put(&self, mut buf: Vec<u8>) {
        let mut free = self.free.borrow_mut();
        if buf.capacity() <= POOLED_BUFFER_BYTES_MAX && free.len() < self.buffers_max {
            buf.clear();
            free.push(buf);
        }
    }
}

/// What the owner can see of one peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerStatus {
    pub node_id: u64,
    pub addr: SocketAddr,
    /// Whether the outbound link is up (handshake done, last write succeeded).
    pub connected: bool,
    /// Messages and bytes staged for the next write.
    pub queued_messages: u32,
    pub queued_bytes: usize,
    /// Outbound links established so far.
    pub connects: u64,
}

struct Peer {
    node_id: u64,
    addr: SocketAddr,
    connected: Cell<bool>,
    removed: Cell<bool>,
    /// Messages accepted by `send` and not yet taken by the writer: the bounded outbound queue.
    staging: RefCell<DataFrameEncoder>,
    writer_wake: Signal,
    writer_task: Cell<Option<u64>>,
    /// The reader task of this peer's current inbound link (a newer link supersedes it).
    inbound_task: Cell<Option<u64>>,
    connects: Cell<u64>,
}

/// Tasks spawned by the transport, by id, so that `close` and link supersession can cancel
/// them. A task removes itself when it completes; cancelled ones are removed by the canceller.
#[derive(Default)]
struct TaskSet {
    next_id: Cell<u64>,
    handles: RefCell<HashMap<u64, JoinHandle<()>>>,
}

impl TaskSet {
    fn cancel(&self, id: u64) {
        let handle = self.handles.borrow_mut().remove(&id);
        if let Some(h) = handle {
            h.cancel();
        }
    }
}

struct Inner {
    config: TransportConfig,
    limits: Limits,
    local_addr: SocketAddr,
    /// This node's handshake, encoded once.
    handshake_frame: Vec<u8>,
    peers: RefCell<HashMap<u64, Rc<Peer>>>,
    inbound: LocalQueue<InboundBatch>,
    pool: Rc<BufferPool>,
    counters: RefCell<TransportCounters>,
    tasks: TaskSet,
    /// Inbound connections open (handshaking or established).
    inbound_links: Cell<usize>,
    closed: Cell<bool>,
}

impl Inner {
    fn bump(&self, f: impl FnOnce(&mut TransportCounters)) {
        f(&mut self.counters.borrow_mut());
    }

    fn spawn<F, Fut>(self: &Rc<Self>, make: F) -> u64
    where
        F: FnOnce(u64) -> Fut,
        Fut: Future<Output = ()> + 'static,
    {
        let id = self.tasks.next_id.get();
        self.tasks.next_id.set(id + 1);
        let future = make(id);
        let weak: Weak<Inner> = Rc::downgrade(self);
        let handle = glommio::spawn_local(async move {
            future.await;
            if let Some(inner) = weak.upgrade() {
                inner.tasks.handles.borrow_mut().remove(&id);
            }
        })
        .detach();
        self.tasks.handles.borrow_mut().insert(id, handle);
        id
    }

    fn close(&self) -> Vec<JoinHandle<()>> {
        if self.closed.replace(true) {
            return Vec::new();
        }
        self.inbound.close();
        for peer in self.peers.borrow().values() {
            peer.connected.set(false);
            peer.writer_wake.notify();
        }
        let handles: Vec<JoinHandle<()>> = std::mem::take(&mut *self.tasks.handles.borrow_mut())
            .into_values()
            .collect();
        for h in &handles {
            h.cancel();
        }
        handles
    }

    /// What a link accepts until the peer has identified itself: handshake-sized frames only.
    fn handshake_limits(&self) -> Limits {
        Limits {
            frame_bytes_max: HANDSHAKE_FRAME_BYTES_MAX,
            ..self.limits
        }
    }

    fn staging_encoder(&self) -> DataFrameEncoder {
        DataFrameEncoder::new(
            self.config.queue_bytes_max.min(self.config.frame_bytes_max),
            self.config.queue_messages_max,
        )
    }

    /// Checks a peer's handshake against this node; `expect` is the node we dialled, if any.
    fn check_handshake(&self, h: &Handshake, expect: Option<u64>) -> Result<Rc<Peer>, LinkError> {
        let c = &self.config;
        if h.chain_id != c.chain_id {
            return Err(LinkError::Refused(format!(
                "chain id {:?} is not ours ({:?})",
                String::from_utf8_lossy(&h.chain_id),
                String::from_utf8_lossy(&c.chain_id)
            )));
        }
        if h.core != c.core || h.cores != c.cores || h.shard_count != c.shard_count {
            return Err(LinkError::Refused(format!(
                "placement core {}/{} shards {} differs from ours (core {}/{} shards {})",
                h.core, h.cores, h.shard_count, c.core, c.cores, c.shard_count
            )));
        }
        if h.node_id == c.node_id {
            return Err(LinkError::Refused("peer claims our own node id".into()));
        }
        if let Some(expected) = expect {
            if h.node_id != expected {
                return Err(LinkError::Refused(format!(
                    "dialled node {expected}, reached node {}",
                    h.node_id
                )));
            }
        }
        self.peers
            .borrow()
            .get(&h.node_id)
            .cloned()
            .ok_or_else(|| LinkError::Refused(format!("node {} is not a peer", h.node_id)))
    }
}

/// One core's validator-to-validator transport. Lives on (and only on) the glommio executor
/// that created it; dropping it closes every link and stops every task.
pub struct Transport {
    inner: Rc<Inner>,
}

impl Transport {
    /// Validates `config`, binds the listener and starts accepting. Must run inside a glommio
    /// executor. glommio binds with `SO_REUSEPORT`: a port that another process still holds is
    /// shared with it rather than refused, so ports must be assigned without overlap.
    pub fn bind(config: TransportConfig) -> Result<Transport, TransportError> {
        config.validate()?;
        let listener = TcpListener::bind(config.listen_addr).map_err(io::Error::from)?;
        let local_addr = listener.local_addr().map_err(io::Error::from)?;
        let limits = Limits {
            shard_count: config.shard_count,
            core: config.core,
            cores: config.cores,
            frame_bytes_max: config.frame_bytes_max,
            // Peers may batch more per frame than we do; accept the format's maximum.
            messages_max: MESSAGES_PER_FRAME_MAX,
        };
        let mut handshake_frame = Vec::new();
        encode_handshake(
            &Handshake {
                chain_id: config.chain_id.clone(),
                node_id: config.node_id,
                core: config.core,
                cores: config.cores,
                shard_count: config.shard_count,
            },
            &mut handshake_frame,
        )
        .map_err(|e| TransportError::Config(e.to_string()))?;
        let inner = Rc::new(Inner {
            limits,
            local_addr,
            handshake_frame,
            peers: RefCell::new(HashMap::new()),
            inbound: LocalQueue::new(config.inbound_batches_max),
            pool: Rc::new(BufferPool {
                free: RefCell::new(Vec::with_capacity(config.inbound_batches_max)),
                buffers_max: config.inbound_batches_max,
            }),
            counters: RefCell::new(TransportCounters::default()),
            tasks: TaskSet::default(),
            inbound_links: Cell::new(0),
            closed: Cell::new(false),
            config,
        });
        let task_inner = Rc::clone(&inner);
        inner.spawn(move |_| run_listener(task_inner, listener));
        tracing::info!(
            node = inner.config.node_id,
            core = inner.config.core,
            addr = %local_addr,
            "transport listening"
        );
        Ok(Transport { inner })
    }

    /// The address the listener is bound to (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    pub fn node_id(&self) -> u64 {
        self.inner.config.node_id
    }

    /// Adds a peer: this core will keep one outbound link to `addr` (the peer's address for
    /// this core, see [`super::core_addr`]) and accept its inbound link.
    pub fn add_peer(&self, node_id: u64, addr: SocketAddr) -> Result<(), TransportError> {
        let inner = &self.inner;
        if inner.closed.get() {
            return Err(TransportError::Closed);
        }
        if node_id == inner.config.node_id {
            return Err(TransportError::SelfPeer(node_id));
        }
        if inner.peers.borrow().contains_key(&node_id) {
            return Err(TransportError::DuplicatePeer(node_id));
        }
        let peer = Rc::new(Peer {
            node_id,
            addr,
            connected: Cell::new(false),
            removed: Cell::new(false),
            staging: RefCell::new(inner.staging_encoder()),
            writer_wake: Signal::default(),
            writer_task: Cell::new(None),
            inbound_task: Cell::new(None),
            connects: Cell::new(0),
        });
        inner.peers.borrow_mut().insert(node_id, Rc::clone(&peer));
        let (task_inner, task_peer) = (Rc::clone(inner), Rc::clone(&peer));
        let id = inner.spawn(move |_| run_writer(task_inner, task_peer));
        peer.writer_task.set(Some(id));
        Ok(())
    }

    /// Removes a peer and closes both its links. Returns whether it was a peer.
    pub fn remove_peer(&self, node_id: u64) -> bool {
        let Some(peer) = self.inner.peers.borrow_mut().remove(&node_id) else {
            return false;
        };
        peer.removed.set(true);
        peer.connected.set(false);
        for id in [peer.writer_task.take(), peer.inbound_task.take()]
            .into_iter()
            .flatten()
        {
            self.inner.tasks.cancel(id);
        }
        true
    }

    /// Queues one message for `peer` without waiting: it goes out with the next write of that
    /// link. Nothing is queued when an error is returned; `Full` and `Disconnected` are
    /// counted.
    pub fn send(&self, peer: u64, shard: u32, payload: &[u8]) -> Result<(), SendError> {
        let inner = &*self.inner;
        if inner.closed.get() {
            return Err(SendError::Closed);
        }
        // The receiver would close the whole link on a misplaced shard: refuse it here.
        inner
            .limits
            .check_shard(0, shard)
            .map_err(SendError::BadShard)?;
        let peers = inner.peers.borrow();
        let p = peers.get(&peer).ok_or(SendError::UnknownPeer(peer))?;
        if !p.connected.get() {
            inner.bump(|c| c.disconnected_drops += 1);
            return Err(SendError::Disconnected(peer));
        }
        let mut staging = p.staging.borrow_mut();
        let was_empty = staging.is_empty();
        match staging.push(shard, payload) {
            Ok(()) => {
                // The writer sleeps only on an empty staging frame: wake it on the transition.
                if was_empty {
                    p.writer_wake.notify();
                }
                Ok(())
            }
            Err(PushError::Full) => {
                inner.bump(|c| c.queue_full_drops += 1);
                Err(SendError::Full(peer))
            }
            Err(PushError::TooLarge {
                length_bytes,
                message_bytes_max,
            }) => Err(SendError::TooLarge {
                length_bytes,
                message_bytes_max,
            }),
        }
    }

    /// The next batch received from any peer, waiting for one; `None` once closed.
    pub async fn recv(&self) -> Option<InboundBatch> {
        self.inner.inbound.pop().await
    }

    /// The next batch received, if one is waiting.
    pub fn try_recv(&self) -> Option<InboundBatch> {
        self.inner.inbound.try_pop()
    }

    /// Batches received and not yet taken.
    pub fn inbound_len(&self) -> usize {
        self.inner.inbound.len()
    }

    pub fn counters(&self) -> TransportCounters {
        *self.inner.counters.borrow()
    }

    pub fn is_connected(&self, peer: u64) -> bool {
        self.inner
            .peers
            .borrow()
            .get(&peer)
            .is_some_and(|p| p.connected.get())
    }

    pub fn peer_status(&self, peer: u64) -> Option<PeerStatus> {
        let peers = self.inner.peers.borrow();
        let p = peers.get(&peer)?;
        let staging = p.staging.borrow();
        Some(PeerStatus {
            node_id: p.node_id,
            addr: p.addr,
            connected: p.connected.get(),
            queued_messages: staging.len(),
            queued_bytes: staging.frame_bytes(),
            connects: p.connects.get(),
        })
    }

    /// Closes every link and the listener, and waits until every task has stopped (so that,
    /// for one, the port is free again when this returns).
    pub async fn shutdown(self) {
        let handles = self.inner.close();
        for h in handles {
            h.await;
        }
    }
}

impl Drop for Transport {
    fn drop(&mut self) {
        // Tasks hold the inner state; cancelling them breaks the cycle. They are dropped the
        // next time the executor runs them.
        let _ = self.inner.close();
    }
}

async fn run_listener(inner: Rc<Inner>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                if inner.inbound_links.get() >= inner.config.inbound_links_max {
                    inner.bump(|c| c.inbound_links_refused += 1);
                    tracing::warn!(
                        remote = ?stream.peer_addr().ok(),
                        limit = inner.config.inbound_links_max,
                        "inbound link refused: too many open"
                    );
                    continue;
                }
                inner.inbound_links.set(inner.inbound_links.get() + 1);
                inner.bump(|c| c.inbound_links_accepted += 1);
                let task_inner = Rc::clone(&inner);
                inner.spawn(move |id| run_reader(task_inner, stream, id));
            }
            Err(e) => {
                // Out of descriptors and the like: back off instead of spinning on accept.
                tracing::warn!(error = %e, "accept failed");
                sleep(Duration::from_millis(inner.config.backoff_min_ms)).await;
            }
        }
    }
}

/// Gives back the inbound slot and, if still current, the peer's inbound link, however the
/// reader ends (returned, or cancelled and dropped).
struct InboundGuard {
    inner: Rc<Inner>,
    task_id: u64,
    peer: Option<Rc<Peer>>,
}

impl Drop for InboundGuard {
    fn drop(&mut self) {
        self.inner
            .inbound_links
            .set(self.inner.inbound_links.get().saturating_sub(1));
        if let Some(peer) = &self.peer {
            if peer.inbound_task.get() == Some(self.task_id) {
                peer.inbound_task.set(None);
            }
        }
    }
}

async fn run_reader(inner: Rc<Inner>, mut stream: TcpStream, task_id: u64) {
    let mut guard = InboundGuard {
        inner: Rc::clone(&inner),
        task_id,
        peer: None,
    };
    let remote = stream.peer_addr().ok();
    let mut decoder = FrameDecoder::new(inner.handshake_limits(), inner.config.read_buffer_bytes);
    let handshake = timeout(
        Duration::from_millis(inner.config.handshake_timeout_ms),
        async { Ok(accept_handshake(&inner, &mut stream, &mut decoder).await) },
    )
    .await
    .unwrap_or(Err(LinkError::Timeout));
    let peer = match handshake {
        Ok(peer) => peer,
        Err(e) => {
            inner.bump(|c| {
                c.handshakes_refused += 1;
                if matches!(e, LinkError::Frame(_)) {
                    c.decode_errors += 1;
                }
            });
            tracing::warn!(remote = ?remote, error = %e, "inbound link refused");
            return;
        }
    };
    // A peer that reconnects supersedes its previous link (which may be half-open).
    if let Some(old) = peer.inbound_task.replace(Some(task_id)) {
        inner.tasks.cancel(old);
    }
    guard.peer = Some(Rc::clone(&peer));
    decoder.set_limits(inner.limits);
    tracing::info!(peer = peer.node_id, remote = ?remote, "inbound link up");
    let result = read_frames(&inner, &mut stream, &mut decoder, peer.node_id).await;
    inner.bump(|c| {
        c.links_closed += 1;
        if let Err(LinkError::Frame(_) | LinkError::Protocol(_)) = result {
            c.decode_errors += 1;
        }
    });
    match result {
        Err(LinkError::Closed) | Ok(()) => {}
        Err(LinkError::Eof) => {
            tracing::info!(peer = peer.node_id, remote = ?remote, "inbound link closed by peer")
        }
        Err(e) => tracing::warn!(
            peer = peer.node_id,
            remote = ?remote,
            error = %e,
            "inbound link closed"
        ),
    }
}

async fn accept_handshake(
    inner: &Rc<Inner>,
    stream: &mut TcpStream,
    decoder: &mut FrameDecoder,
) -> Result<Rc<Peer>, LinkError> {
    stream.set_write_timeout(Some(Duration::from_millis(inner.config.write_timeout_ms)))?;
    let handshake = read_handshake(inner, stream, decoder).await?;
    let peer = match inner.check_handshake(&handshake, None) {
        Ok(peer) => peer,
        Err(e) => {
            // Answer anyway, so that a misconfigured peer logs precisely why it was refused
            // (its own check of our handshake fails too), then close.
            let _ = stream.write_all(&inner.handshake_frame).await;
            return Err(e);
        }
    };
    stream.write_all(&inner.handshake_frame).await?;
    Ok(peer)
}

async fn read_some(
    inner: &Inner,
    stream: &mut TcpStream,
    decoder: &mut FrameDecoder,
) -> Result<(), LinkError> {
    let n = stream.read(decoder.read_buf()).await?;
    if n == 0 {
        return Err(LinkError::Eof);
    }
    decoder.advance(n);
    inner.bump(|c| c.bytes_received += n as u64);
    Ok(())
}

async fn read_handshake(
    inner: &Inner,
    stream: &mut TcpStream,
    decoder: &mut FrameDecoder,
) -> Result<Handshake, LinkError> {
    loop {
        match decoder.next_frame()? {
            Some(Frame::Handshake(h)) => return Ok(h),
            Some(Frame::Data(_)) => return Err(LinkError::Protocol("data frame before handshake")),
            None => {}
        }
        read_some(inner, stream, decoder).await?;
    }
}

fn make_batch(inner: &Inner, from: u64, frame: DataFrame<'_>) -> InboundBatch {
    let mut body = inner.pool.take();
    body.extend_from_slice(frame.body());
    InboundBatch {
        from,
        count: frame.len(),
        body,
        pool: Rc::clone(&inner.pool),
    }
}

async fn read_frames(
    inner: &Inner,
    stream: &mut TcpStream,
    decoder: &mut FrameDecoder,
    from: u64,
) -> Result<(), LinkError> {
    loop {
        loop {
            let batch = match decoder.next_frame()? {
                None => break,
                Some(Frame::Handshake(_)) => return Err(LinkError::Protocol("second handshake")),
                Some(Frame::Data(d)) if d.is_empty() => continue,
                Some(Frame::Data(d)) => make_batch(inner, from, d),
            };
            let messages = u64::from(batch.len());
            inner.bump(|c| {
                c.frames_received += 1;
                c.messages_received += messages;
            });
            // Waiting here stops reading the socket: back-pressure reaches the sender via TCP.
            if inner.inbound.push(batch).await.is_err() {
                return Err(LinkError::Closed);
            }
        }
        read_some(inner, stream, decoder).await?;
    }
}

/// Reconnect delay after `attempt` consecutive failures: `min * 2^attempt` capped at `max`,
/// minus up to a quarter of random jitter.
fn backoff(config: &TransportConfig, attempt: u32, rng: &mut u64) -> Duration {
    let base = config
        .backoff_min_ms
        .saturating_mul(1u64 << attempt.min(20))
        .min(config.backoff_max_ms);
    // xorshift64: cheap, and good enough to de-synchronise reconnecting validators.
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    let jitter = *rng % (base / 4 + 1);
    Duration::from_millis(base - jitter)
}

async fn run_writer(inner: Rc<Inner>, peer: Rc<Peer>) {
    let mut spare = inner.staging_encoder();
    let mut attempt: u32 = 0;
    let mut rng = (inner.config.node_id.rotate_left(32) ^ peer.node_id ^ 0x9E37_79B9_7F4A_7C15) | 1;
    loop {
        if inner.closed.get() || peer.removed.get() {
            return;
        }
        match connect(&inner, &peer).await {
            Ok(mut stream) => {
                attempt = 0;
                let connects = peer.connects.get() + 1;
                peer.connects.set(connects);
                inner.bump(|c| {
                    c.connects += 1;
                    if connects > 1 {
                        c.reconnects += 1;
                    }
                });
                peer.connected.set(true);
                tracing::info!(peer = peer.node_id, addr = %peer.addr, connects, "outbound link up");
                let result = pump(&inner, &peer, &mut stream, &mut spare).await;
                peer.connected.set(false);
                // What was staged is dropped, not kept for the next link: raft retransmits from
                // its own state, and a stale backlog would only delay fresh messages.
                let dropped = {
                    let mut staging = peer.staging.borrow_mut();
                    let n = staging.len() + spare.len();
                    staging.clear();
                    spare.clear();
                    n
                };
                inner.bump(|c| {
                    c.links_closed += 1;
                    c.disconnected_drops += u64::from(dropped);
                });
                if let Err(LinkError::Closed) = result {
                    return;
                }
                if let Err(e) = result {
                    tracing::warn!(
                        peer = peer.node_id,
                        addr = %peer.addr,
                        error = %e,
                        dropped,
                        "outbound link closed"
                    );
                }
            }
            Err(e) => {
                inner.bump(|c| {
                    c.connect_failures += 1;
                    if matches!(e, LinkError::Refused(_)) {
                        c.handshakes_refused += 1;
                    }
                });
                // Warn once per outage; the retries of a peer that stays down go to debug.
                if attempt == 0 || matches!(e, LinkError::Refused(_)) {
                    tracing::warn!(peer = peer.node_id, addr = %peer.addr, error = %e, "connect failed");
                } else {
                    tracing::debug!(peer = peer.node_id, addr = %peer.addr, error = %e, attempt, "connect failed");
                }
            }
        }
        let delay = backoff(&inner.config, attempt, &mut rng);
        attempt = attempt.saturating_add(1);
        sleep(delay).await;
    }
}

/// Dials `peer`, exchanges handshakes, and returns the link ready for data.
async fn connect(inner: &Rc<Inner>, peer: &Peer) -> Result<TcpStream, LinkError> {
    let mut stream = TcpStream::connect_timeout(
        peer.addr,
        Duration::from_millis(inner.config.connect_timeout_ms),
    )
    .await?;
    // Raft votes and heartbeats are small and latency-bound; batching is ours to do.
    stream.set_nodelay(true)?;
    stream.set_write_timeout(Some(Duration::from_millis(inner.config.write_timeout_ms)))?;
    timeout(
        Duration::from_millis(inner.config.handshake_timeout_ms),
        async {
            Ok(async {
                stream.write_all(&inner.handshake_frame).await?;
                // Only the handshake is ever read on an outbound link; a small buffer will do.
                let mut decoder = FrameDecoder::new(inner.handshake_limits(), 0);
                let reply = read_handshake(inner, &mut stream, &mut decoder).await?;
                inner.check_handshake(&reply, Some(peer.node_id))?;
                Ok::<(), LinkError>(())
            }
            .await)
        },
    )
    .await
    .unwrap_or(Err(LinkError::Timeout))?;
    Ok(stream)
}

/// Writes whatever `send` staged, one frame per write, until the link fails or closes.
async fn pump(
    inner: &Inner,
    peer: &Peer,
    stream: &mut TcpStream,
    spare: &mut DataFrameEncoder,
) -> Result<(), LinkError> {
    loop {
        let work = poll_fn(|cx| {
            if inner.closed.get() || peer.removed.get() {
                return Poll::Ready(false);
            }
            if !peer.staging.borrow().is_empty() {
                return Poll::Ready(true);
            }
            peer.writer_wake.register(cx.waker());
            Poll::Pending
        })
        .await;
        if !work {
            return Err(LinkError::Closed);
        }
        // Double buffering: `send` fills the other frame while this one is on the wire.
        std::mem::swap(&mut *peer.staging.borrow_mut(), spare);
        let messages = u64::from(spare.len());
        let frame = spare.finish();
        let bytes = frame.len() as u64;
        stream.write_all(frame).await?;
        spare.clear();
        inner.bump(|c| {
            c.frames_sent += 1;
            c.messages_sent += messages;
            c.bytes_sent += bytes;
        });
    }
}
