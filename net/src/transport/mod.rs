//! Validator-to-validator transport: core-to-core TCP links on glommio, framed, batched,
//! checksummed, bounded.
//!
//! Shard `s` runs on core `s mod cores` on every validator, so replication traffic never has to
//! cross cores: core `c` of one validator talks only to core `c` of its peers. Each core runs
//! its own [`Transport`] with its own listener, its own links and its own queues; nothing is
//! shared between cores.
//!
//! **Addressing.** A validator has one base peer address `HOST:PORT` (`--peer-addr`, and the
//! `ID=HOST:PORT` entries of `--peers`); core `c` listens on `HOST:PORT+c` and connects to
//! `PEER_HOST:PEER_PORT+c` ([`core_addr`]). One listener per core, rather than one shared
//! `SO_REUSEPORT` port, because the kernel spreads a shared port's connections over cores by
//! hash: a link would land on an arbitrary core and have to be handed over. With one port per
//! core the port says the core, and the handshake checks it.
//!
//! **Links.** Between validators A and B, core `c`, there are two TCP connections: A's
//! outbound link to B carries A's messages, B's outbound link to A carries B's. Each side of
//! a new connection first sends a handshake frame (chain id, node id, core, cores, shard
//! count); the acceptor checks the connector's and answers with its own, which the connector
//! checks in turn. A link between different chains, cores or shard placements, or from a node
//! that is not a configured peer, is refused. With `TransportConfig::tls` every link is mutual
//! TLS 1.3 and the certificate must name the node id the handshake claims ([`tls`]); without
//! it the handshake protects against misconfiguration only (loopback, or an operator's
//! explicit choice).
//!
//! **Sending.** [`Transport::send`] copies the message into the peer's staging frame (no
//! allocation once the buffer is warm) and returns at once: `Full` when the staging frame is
//! full (back-pressure, nothing grows), `Disconnected` while the link is down (nothing is kept
//! for a dead link: raft retransmits). The peer's writer task swaps the staging frame for its
//! own and writes everything staged as one frame in one write, so whatever the owner sends
//! between two scheduling points travels together.
//!
//! **Receiving.** A reader task per inbound link decodes frames and pushes each data frame,
//! copied once into a buffer of its own size (whose messages the owner may keep as slices), as
//! an [`InboundBatch`] into one bounded queue the owner drains with [`Transport::recv`]. When
//! that queue is full the reader waits, which stops reading the socket, which fills TCP's
//! window, which stalls the sender's writer, which fills its staging frame, which makes its
//! `send` return `Full`: back-pressure end to end, with a bounded amount of memory at every step. A malformed frame closes that link only (counted,
//! logged at warn).

mod frame;
mod link;
mod queue;
mod tls;

pub use frame::{
    decode_frame, encode_handshake, frame_checksum, DataFrame, DataFrameEncoder, Frame,
    FrameDecoder, FrameError, FrameKind, Handshake, Limits, Message, Messages, PushError,
    CHAIN_ID_BYTES_MAX, DATA_PREFIX_BYTES, FRAME_BYTES_MAX, HANDSHAKE_FRAME_BYTES_MAX,
    HEADER_BYTES, MAGIC, MESSAGES_PER_FRAME_MAX, MESSAGE_BYTES_MAX, MESSAGE_HEADER_BYTES,
    PAYLOAD_BYTES_MAX, VERSION,
};
pub use link::{InboundBatch, PeerStatus, Transport};
pub use tls::{peer_identity_name, PeerTls, PeerTlsError};

use std::net::SocketAddr;
use std::sync::Arc;
use thiserror::Error;

/// The address core `core` uses, given a validator's base peer address: port + core index.
/// `None` when the port would overflow.
pub fn core_addr(base: SocketAddr, core: u32) -> Option<SocketAddr> {
    let port = u16::try_from(u32::from(base.port()).checked_add(core)?).ok()?;
    let mut addr = base;
    addr.set_port(port);
    Some(addr)
}

/// How one core's transport runs. Every bound is explicit; the defaults of
/// [`TransportConfig::new`] are in the comments.
#[derive(Clone, Debug)]
pub struct TransportConfig {
    /// The chain this node runs (1 to 64 bytes); links to another chain are refused.
    pub chain_id: Vec<u8>,
    pub node_id: u64,
    /// This core and the node's core count: only shards `s` with `s % cores == core` travel.
    pub core: u32,
    pub cores: u32,
    pub shard_count: u32,
    /// Where this core listens (port 0: any free port, see [`Transport::local_addr`]).
    pub listen_addr: SocketAddr,
    /// Largest frame accepted or sent, header included (8 MiB, at most [`FRAME_BYTES_MAX`]).
    /// Each inbound link's read buffer grows at most to this.
    pub frame_bytes_max: usize,
    /// Per peer: bytes staged and not yet handed to the socket (4 MiB). A link holds at most
    /// twice this (the staging frame and the one being written). Also the largest message.
    pub queue_bytes_max: usize,
    /// Per peer: messages staged (4,096, at most [`MESSAGES_PER_FRAME_MAX`]).
    pub queue_messages_max: u32,
    /// Data frames received and not yet taken by the owner (64), over all links.
    pub inbound_batches_max: usize,
    /// Inbound connections at once, handshaking ones included (64); more are closed at accept.
    pub inbound_links_max: usize,
    /// Initial read buffer per inbound link (64 KiB); it grows to the largest frame seen.
    pub read_buffer_bytes: usize,
    /// Reconnect delays: doubling from min to max, with up to 25 % random jitter so that
    /// validators restarted together do not reconnect in lockstep (50 ms, 2,000 ms).
    pub backoff_min_ms: u64,
    pub backoff_max_ms: u64,
    /// TCP connect (1,000 ms).
    pub connect_timeout_ms: u64,
    /// Both handshake frames, from connect or accept to done (2,000 ms): a silent or slow
    /// client cannot hold an inbound slot longer.
    pub handshake_timeout_ms: u64,
    /// A write that makes no progress this long closes the link (10,000 ms): a peer that
    /// stopped reading does not pin the link's buffers forever.
    pub write_timeout_ms: u64,
    /// Mutual TLS on every link, shared by every core's transport (`None`: plain TCP, for
    /// loopback development or where the operator explicitly allowed it).
    pub tls: Option<Arc<PeerTls>>,
}

impl TransportConfig {
    pub fn new(
        chain_id: impl Into<Vec<u8>>,
        node_id: u64,
        core: u32,
        cores: u32,
        shard_count: u32,
        listen_addr: SocketAddr,
    ) -> TransportConfig {
        TransportConfig {
            chain_id: chain_id.into(),
            node_id,
            core,
            cores,
            shard_count,
            listen_addr,
            frame_bytes_max: FRAME_BYTES_MAX,
            queue_bytes_max: 4 << 20,
            queue_messages_max: MESSAGES_PER_FRAME_MAX,
            inbound_batches_max: 64,
            inbound_links_max: 64,
            read_buffer_bytes: 64 << 10,
            backoff_min_ms: 50,
            backoff_max_ms: 2_000,
            connect_timeout_ms: 1_000,
            handshake_timeout_ms: 2_000,
            write_timeout_ms: 10_000,
            tls: None,
        }
    }

    fn validate(&self) -> Result<(), TransportError> {
        let err = |m: &str| Err(TransportError::Config(m.to_string()));
        if self.chain_id.is_empty() || self.chain_id.len() > CHAIN_ID_BYTES_MAX {
            return err("chain id must be 1 to 64 bytes");
        }
        if self.cores == 0 || self.core >= self.cores {
            return err("core must be below cores");
        }
        if self.shard_count == 0 {
            return err("shard count must be positive");
        }
        if self.frame_bytes_max > FRAME_BYTES_MAX
            || self.frame_bytes_max < HEADER_BYTES + DATA_PREFIX_BYTES + MESSAGE_HEADER_BYTES
        {
            return err("frame_bytes_max out of range");
        }
        if self.queue_messages_max == 0 || self.queue_messages_max > MESSAGES_PER_FRAME_MAX {
            return err("queue_messages_max out of range");
        }
        if self.inbound_batches_max == 0 || self.inbound_links_max == 0 {
            return err("inbound bounds must be positive");
        }
        if self.backoff_min_ms == 0 || self.backoff_max_ms < self.backoff_min_ms {
            return err("backoff must satisfy 0 < min <= max");
        }
        if self.connect_timeout_ms == 0
            || self.handshake_timeout_ms == 0
            || self.write_timeout_ms == 0
        {
            return err("timeouts must be positive");
        }
        Ok(())
    }
}

/// Counters of one core's transport, as a plain snapshot (for Prometheus export and tests).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TransportCounters {
    pub frames_sent: u64,
    pub messages_sent: u64,
    pub bytes_sent: u64,
    pub frames_received: u64,
    pub messages_received: u64,
    pub bytes_received: u64,
    /// Inbound links closed for a malformed frame (bad magic, checksum, bounds, ...).
    pub decode_errors: u64,
    /// Handshakes refused, either side: other chain, core or placement, unknown node,
    /// malformed/missing handshake, or failed authentication.
    pub handshakes_refused: u64,
    /// Links refused for their certificate, either side: a failed TLS handshake (none,
    /// untrusted, expired, or a plaintext peer) or a certificate for another node id.
    pub authentication_failures: u64,
    /// Outbound links established (handshake done), and those of them after the first per peer.
    pub connects: u64,
    pub reconnects: u64,
    /// Outbound connect or handshake attempts that failed.
    pub connect_failures: u64,
    /// Established links (either direction) that ended.
    pub links_closed: u64,
    pub inbound_links_accepted: u64,
    /// Connections closed at accept because `inbound_links_max` were open.
    pub inbound_links_refused: u64,
    /// `send` calls answered `Full`.
    pub queue_full_drops: u64,
    /// `send` calls answered `Disconnected`, plus staged messages dropped when a link broke.
    pub disconnected_drops: u64,
}

/// Why [`Transport::send`] did not take a message. Nothing is queued on error.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum SendError {
    #[error("unknown peer {0}")]
    UnknownPeer(u64),
    #[error("no link to peer {0}")]
    Disconnected(u64),
    #[error("outbound queue to peer {0} is full")]
    Full(u64),
    #[error("message of {length_bytes} bytes exceeds the limit of {message_bytes_max}")]
    TooLarge {
        length_bytes: usize,
        message_bytes_max: usize,
    },
    #[error("bad shard: {0}")]
    BadShard(FrameError),
    #[error("transport closed")]
    Closed,
}

/// Why the transport could not start or change its peers.
#[derive(Debug, Error)]
pub enum TransportError {
    #[error("invalid transport configuration: {0}")]
    Config(String),
    #[error("peer {0} already configured")]
    DuplicatePeer(u64),
    #[error("node {0} cannot be its own peer")]
    SelfPeer(u64),
    #[error("transport closed")]
    Closed,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_addr_offsets_port() {
        let base: SocketAddr = "10.0.0.1:7000".parse().unwrap();
        assert_eq!(core_addr(base, 3), Some("10.0.0.1:7003".parse().unwrap()));
        let high: SocketAddr = "10.0.0.1:65535".parse().unwrap();
        assert_eq!(core_addr(high, 1), None);
    }

    #[test]
    fn config_validation() {
        let ok = TransportConfig::new("c", 1, 0, 2, 4, "127.0.0.1:0".parse().unwrap());
        assert!(ok.validate().is_ok());
        let mut bad = ok.clone();
        bad.core = 2;
        assert!(bad.validate().is_err());
        let mut bad = ok.clone();
        bad.backoff_max_ms = 1;
        assert!(bad.validate().is_err());
        let mut bad = ok;
        bad.chain_id.clear();
        assert!(bad.validate().is_err());
    }
}
