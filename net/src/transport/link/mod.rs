//! The I/O edge of the transport: one core's listener, outbound links and inbound links, as
//! glommio tasks on the core's executor. See the module documentation of `transport`.

use super::frame::{
    encode_handshake, DataFrame, DataFrameEncoder, Frame, FrameDecoder, FrameError, Handshake,
    Limits, Messages, PushError, HANDSHAKE_FRAME_BYTES_MAX, MESSAGES_PER_FRAME_MAX,
};
use super::queue::{LocalQueue, Signal};
use super::tls::{check_peer_identity, peer_server_name};
use super::{SendError, TransportConfig, TransportCounters, TransportError};
use bytes::Bytes;
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

mod stream;
mod tasks;
use stream::LinkStream;
use tasks::*;

/// Why a link ended (internal; logged and counted).
#[derive(Debug, Error)]
enum LinkError {
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    #[error("malformed frame: {0}")]
    Frame(#[from] FrameError),
    #[error("handshake refused: {0}")]
    Refused(String),
    #[error("authentication failed: {0}")]
    Authentication(String),
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
///
/// The body is one allocation of exactly the frame's size, shared: a message's payload can be
/// kept as a slice of it ([`InboundBatch::shared`]) instead of copied, e.g. the entries of a
/// raft append, which then live in the raft log as parts of the frame they came in. The body
/// is freed when the batch and the last such slice are gone. (Frames used to be copied into
/// recycled buffers, and every entry copied out of them again.)
pub struct InboundBatch {
    from: u64,
    count: u32,
    body: Bytes,
}

impl InboundBatch {
    /// The node that sent the frame: with peer TLS, the node its certificate names; without,
    /// the node its handshake claimed.
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

    /// `payload`, a message of this batch, as a shared slice of the frame (no copy).
    pub fn shared(&self, payload: &[u8]) -> Bytes {
        self.body.slice_ref(payload)
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

    /// Whether `node_id` is a peer of this core.
    pub fn has_peer(&self, node_id: u64) -> bool {
        self.inner.peers.borrow().contains_key(&node_id)
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
