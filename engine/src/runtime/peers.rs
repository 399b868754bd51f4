//! The runtime's edge to other validators: per core, one transport (aurigraph-net) to the
//! same core of every peer; a router task that hands what arrives to this core's shard drivers;
//! and the leader's side of forwarded submissions.
//!
//! Shard `s` lives on core `s mod cores` on every validator, so a shard's raft messages and
//! forwarded transfers never cross cores here either. The payloads are [`crate::peering`].

use super::{Command, Engine, EngineConfig, EngineError, SubmitFailure};
use crate::genesis::Genesis;
use crate::peering::{self, ForwardRefusal, ForwardReply, PeerMessage};
use crate::record::Record;
use crate::replica::SubmitError;
use crate::shard::ShardId;
use aurigraph_net::transport::{core_addr, SendError, Transport, TransportConfig};
use sha2::{Digest, Sha256};
use std::cell::{Cell, RefCell};
use std::rc::Rc;

/// Forwarded submissions a leader's core handles at once; beyond it they are refused as
/// overloaded (the follower's client retries), so a peer cannot make it spawn without bound.
const FORWARDS_IN_FLIGHT_MAX: usize = 4096;

/// One core's link to the other validators.
pub(super) struct PeerLink {
    pub transport: Transport,
    /// Encoding buffer, reused (single-threaded: one core).
    buf: RefCell<Vec<u8>>,
    forwards_in_flight: Cell<usize>,
}

impl PeerLink {
    /// Binds this core's transport (base peer port + core) and registers every peer's
    /// same-numbered core. `None` for a single validator.
    pub fn start(
        core: usize,
        config: &EngineConfig,
        genesis: &Genesis,
        shard_count: u32,
    ) -> Result<Option<Rc<PeerLink>>, EngineError> {
        if config.peers.is_empty() {
            return Ok(None);
        }
        let fail = |message: String| EngineError::Executor { core, message };
        let base = config
            .peer_addr
            .ok_or_else(|| fail("peers are configured but no peer address".into()))?;
        let listen = core_addr(base, core as u32)
            .ok_or_else(|| fail(format!("peer port of core {core} overflows ({base})")))?;
        let transport = Transport::bind(TransportConfig::new(
            chain_tag(genesis, shard_count),
            config.node_id,
            core as u32,
            config.cores as u32,
            shard_count,
            listen,
        ))
        .map_err(|e| fail(format!("peer transport on {listen}: {e}")))?;
        for &(id, addr) in &config.peers {
            let addr = core_addr(addr, core as u32)
                .ok_or_else(|| fail(format!("peer {id}: port of core {core} overflows")))?;
            transport
                .add_peer(id, addr)
                .map_err(|e| fail(format!("peer {id} at {addr}: {e}")))?;
        }
        tracing::info!(core, %listen, peers = config.peers.len(), "peer transport listening");
        Ok(Some(Rc::new(PeerLink {
            transport,
            buf: RefCell::new(Vec::with_capacity(64 << 10)),
            forwards_in_flight: Cell::new(0),
        })))
    }

    /// Encodes with `encode` into the shared buffer and sends to `peer` for `shard`.
    pub fn send(
        &self,
        peer: u64,
        shard: ShardId,
        encode: impl FnOnce(&mut Vec<u8>),
    ) -> Result<(), SendError> {
        let mut buf = self.buf.borrow_mut();
        encode(&mut buf);
        self.transport.send(peer, shard, &buf)
    }
}

/// What links refuse to mix: the chain id and a digest of the genesis (a validator started with
/// another genesis is another chain even under the same id).
fn chain_tag(genesis: &Genesis, shard_count: u32) -> Vec<u8> {
    let digest = Sha256::digest(genesis.to_canonical_json(shard_count).as_bytes());
    format!(
        "aurigraph-{}-{}",
        genesis.chain_id,
        hex::encode(&digest[..12])
    )
    .into_bytes()
}

/// Hands what the peers send to this core's shards, until the transport closes. `drivers` are
/// the driver channels of this core's shards (raft messages, forward replies); forwarded
/// submissions go through the shard's ingress like a client's (signatures verified here).
pub(super) async fn route(
    link: Rc<PeerLink>,
    drivers: Vec<(ShardId, async_channel::Sender<Command>)>,
    engine: Engine,
) {
    let driver = |shard: u32| drivers.iter().find(|(s, _)| *s == shard).map(|(_, tx)| tx);
    while let Some(batch) = link.transport.recv().await {
        let from = batch.from_node();
        for message in batch.messages() {
            let shard = message.shard;
            let Some(tx) = driver(shard) else {
                // The transport checked shard placement; a shard not on this core is a bug.
                tracing::warn!(from, shard, "message for a shard not on this core");
                continue;
            };
            match peering::decode(message.payload) {
                Ok(PeerMessage::Raft(m)) => {
                    // Full: dropped, raft retransmits (never block the router on one shard).
                    let _ = tx.try_send(Command::Raft(m));
                }
                Ok(PeerMessage::RaftChunk {
                    transfer,
                    total,
                    offset,
                    data,
                }) => {
                    let _ = tx.try_send(Command::RaftPiece {
                        from,
                        transfer,
                        total,
                        offset,
                        data,
                    });
                }
                Ok(PeerMessage::ForwardReply { request, reply }) => {
                    let _ = tx.try_send(Command::ForwardReply { request, reply });
                }
                Ok(PeerMessage::Credited {
                    destination,
                    source,
                    up_to,
                }) => {
                    // For a source shard, possibly on another core: through its channel.
                    if destination == shard {
                        if let Some(tx) = engine.inner.shards.get(source as usize) {
                            let _ = tx.try_send(Command::Credited {
                                destination,
                                node: from,
                                up_to,
                            });
                        }
                    }
                }
                Ok(PeerMessage::Forward {
                    request,
                    records,
                    valid,
                }) => {
                    serve_forward(&link, &engine, from, shard, request, records, valid);
                }
                Err(error) => {
                    tracing::warn!(from, shard, %error, "undecodable peer message dropped");
                }
            }
        }
    }
}

/// The leader's side of a forwarded submission: submit it here (not forwardable again) and,
/// when the follower wants an answer, send it back.
fn serve_forward(
    link: &Rc<PeerLink>,
    engine: &Engine,
    from: u64,
    shard: ShardId,
    request: u64,
    records: Vec<Record>,
    valid: Vec<bool>,
) {
    let reply_to = move |link: &PeerLink, reply: ForwardReply| {
        if request != 0 {
            let _ = link.send(from, shard, |buf| {
                peering::encode_forward_reply(request, &reply, buf)
            });
        }
    };
    if link.forwards_in_flight.get() >= FORWARDS_IN_FLIGHT_MAX {
        reply_to(link, ForwardReply::Refused(ForwardRefusal::Overloaded));
        return;
    }
    link.forwards_in_flight
        .set(link.forwards_in_flight.get() + 1);
    let (link, engine) = (link.clone(), engine.clone());
    glommio::spawn_local(async move {
        let reply = if request == 0 {
            // Nobody waits for a detached submission's refusal.
            let _ = engine.submit_from_peer_detached(records, valid).await;
            None
        } else {
            Some(match engine.submit_from_peer(records, valid).await {
                Ok(outcomes) => ForwardReply::Outcomes(outcomes),
                Err(failure) => ForwardReply::Refused(refusal_of(failure)),
            })
        };
        if let Some(reply) = reply {
            reply_to(&link, reply);
        }
        link.forwards_in_flight
            .set(link.forwards_in_flight.get() - 1);
    })
    .detach();
}

fn refusal_of(failure: SubmitFailure) -> ForwardRefusal {
    match failure {
        SubmitFailure::Rejected(SubmitError::NotLeader { leader, .. }) => {
            ForwardRefusal::NotLeader(leader)
        }
        SubmitFailure::Rejected(SubmitError::Overloaded(_) | SubmitError::Membership { .. }) => {
            ForwardRefusal::Overloaded
        }
        SubmitFailure::Retry(_) => ForwardRefusal::Retry,
        SubmitFailure::Stopped => ForwardRefusal::Stopped,
    }
}

/// The client's failure for a refusal the leader sent back.
pub(super) fn failure_of(shard: ShardId, refusal: ForwardRefusal) -> SubmitFailure {
    match refusal {
        ForwardRefusal::Retry | ForwardRefusal::Stopped => SubmitFailure::Retry(shard),
        ForwardRefusal::NotLeader(leader) => {
            SubmitFailure::Rejected(SubmitError::NotLeader { shard, leader })
        }
        ForwardRefusal::Overloaded => SubmitFailure::Rejected(SubmitError::Overloaded(shard)),
    }
}
