//! The runtime's edge to other validators: per core, one transport (aurigraph-net) to the
//! same core of every peer, and a router task that hands what arrives to this core's shards.
//!
//! Shard `s` lives on core `s mod cores` on every validator, so a shard's raft messages and
//! forwarded transfers never cross cores here either. The payloads are [`crate::peering`].

use super::driver::Command;
use super::submit::Submitted;
use super::{Engine, EngineConfig, EngineError};
use crate::genesis::Genesis;
use crate::node::{LocalMessage, Submitter};
use crate::peering::{self, ForwardRefusal, ForwardReply, Outbound, PeerMessage};
use crate::shard::ShardId;
use aurigraph_net::transport::{core_addr, SendError, Transport, TransportConfig};
use glommio::channels::local_channel::LocalSender;
use sha2::{Digest, Sha256};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::rc::Rc;

/// One core's link to the other validators.
pub(super) struct PeerLink {
    pub transport: Transport,
    /// Encoding buffer, reused (single-threaded: one core).
    buf: RefCell<Vec<u8>>,
    /// Per validator, the shards of this core whose configuration has it. A validator is
    /// unlinked only when no shard here wants it any more: in joint consensus a removed voter
    /// is still an outgoing voter of its shard, and other shards may keep it as a member.
    wanted: RefCell<LinkWants>,
    /// Links to validators beyond loopback are allowed: mutual TLS, or the operator's choice.
    beyond_loopback: bool,
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
        let mut transport_config = TransportConfig::new(
            chain_tag(genesis, shard_count),
            config.node_id,
            core as u32,
            config.cores as u32,
            shard_count,
            listen,
        );
        transport_config.tls = config.peer_tls.clone();
        let transport = Transport::bind(transport_config)
            .map_err(|e| fail(format!("peer transport on {listen}: {e}")))?;
        for &(id, addr) in &config.peers {
            let addr = core_addr(addr, core as u32)
                .ok_or_else(|| fail(format!("peer {id}: port of core {core} overflows")))?;
            transport
                .add_peer(id, addr)
                .map_err(|e| fail(format!("peer {id} at {addr}: {e}")))?;
        }
        tracing::info!(
            core,
            %listen,
            peers = config.peers.len(),
            mutual_tls = config.peer_tls.is_some(),
            "peer transport listening"
        );
        Ok(Some(Rc::new(PeerLink {
            transport,
            buf: RefCell::new(Vec::with_capacity(64 << 10)),
            wanted: RefCell::new(LinkWants::default()),
            beyond_loopback: config.peer_tls.is_some() || config.allow_plaintext_peers,
        })))
    }

    /// Shard `shard` has validator `node_id` in its configuration: reach it at `peer_addr`
    /// (the address its membership change carried; empty for a founding validator, which
    /// the command line registered). Idempotent.
    pub fn want(&self, shard: ShardId, node_id: u64, peer_addr: &[u8], core: usize) {
        self.wanted.borrow_mut().want(shard, node_id);
        if self.transport.has_peer(node_id) {
            return;
        }
        let addr = std::str::from_utf8(peer_addr)
            .ok()
            .and_then(|a| a.parse::<SocketAddr>().ok())
            .and_then(|a| core_addr(a, core as u32));
        match addr {
            Some(addr) if !addr.ip().is_loopback() && !self.beyond_loopback => tracing::warn!(
                node_id,
                %addr,
                shard,
                "validator of the configuration not linked: its address is beyond loopback and \
                 peer links are plaintext (configure peer TLS, or allow plaintext peers)"
            ),
            Some(addr) => match self.transport.add_peer(node_id, addr) {
                Ok(()) => {
                    tracing::info!(node_id, %addr, shard, "validator of the configuration linked")
                }
                Err(error) => {
                    tracing::warn!(node_id, %addr, %error, "validator could not be linked")
                }
            },
            None => tracing::warn!(
                node_id,
                shard,
                "validator of the configuration has no usable peer address (not on the \
                 command line, none in its membership change): unreachable from here"
            ),
        }
    }

    /// Shard `shard` no longer has `node_id` in its configuration; unlinked once no shard
    /// of this core has.
    pub fn unwant(&self, shard: ShardId, node_id: u64) {
        let unwanted = self.wanted.borrow_mut().unwant(shard, node_id);
        if unwanted && self.transport.remove_peer(node_id) {
            tracing::info!(
                node_id,
                "validator in no configuration on this core: unlinked"
            );
        }
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

/// Which shards of a core have which validator in their configuration.
#[derive(Default)]
pub(super) struct LinkWants {
    shards_of: BTreeMap<u64, BTreeSet<ShardId>>,
}

impl LinkWants {
    /// Shard `shard` has `node_id` in its configuration (idempotent).
    pub fn want(&mut self, shard: ShardId, node_id: u64) {
        self.shards_of.entry(node_id).or_default().insert(shard);
    }

    /// Shard `shard` no longer has `node_id`; true when no shard of the core has it any more
    /// (unlink it then). A node no shard wanted is not unlinked: a founding validator on the
    /// command line stays linked until some shard's configuration dropped it.
    pub fn unwant(&mut self, shard: ShardId, node_id: u64) -> bool {
        let Some(shards) = self.shards_of.get_mut(&node_id) else {
            return false;
        };
        shards.remove(&shard);
        if !shards.is_empty() {
            return false;
        }
        self.shards_of.remove(&node_id);
        true
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
/// the driver channels of this core's shards (raft messages, pieces, forward replies);
/// forwarded submissions go through the shard's ingress like a client's (which verifies them
/// only if they came without verdicts); credit watermarks go to the source shard they are
/// about, possibly on another core. Never blocks on one shard: a full channel drops the
/// message (raft retransmits; a forwarded submission is refused as overloaded).
pub(super) async fn route(
    link: Rc<PeerLink>,
    drivers: Vec<(ShardId, Rc<LocalSender<Command>>)>,
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
            match peering::decode_shared(&batch.shared(message.payload)) {
                Ok(PeerMessage::Forward {
                    request,
                    records,
                    valid,
                }) => {
                    let forwarded = Command::Submit {
                        records: Submitted::Records(records),
                        valid,
                        custodial: Vec::new(),
                        from: Submitter::Peer {
                            node: from,
                            request,
                        },
                        home: None,
                        sent: None,
                    };
                    if engine.try_send_to(shard, forwarded).is_err() && request != 0 {
                        let refused = ForwardReply::Refused(ForwardRefusal::Overloaded);
                        let reply = Outbound::ForwardReply {
                            request,
                            reply: &refused,
                        };
                        let _ = link.send(from, shard, |buf| reply.encode(buf));
                    }
                }
                Ok(PeerMessage::Credited {
                    destination,
                    source,
                    up_to,
                }) => {
                    if destination == shard && source < engine.shard_count() {
                        let credited = LocalMessage::Credited {
                            destination,
                            node: from,
                            up_to,
                        };
                        let _ = engine.try_send_to(source, Command::Local(credited));
                    }
                }
                Ok(message) => {
                    let _ = tx.try_send(Command::Peer { from, message });
                }
                Err(error) => {
                    tracing::warn!(from, shard, %error, "undecodable peer message dropped");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::LinkWants;

    #[test]
    fn a_validator_is_unlinked_only_when_no_shard_of_the_core_has_it() {
        let mut wants = LinkWants::default();
        // Shards 0 and 2 share this core; both have validator 3.
        wants.want(0, 3);
        wants.want(2, 3);
        wants.want(2, 3);
        assert!(!wants.unwant(0, 3), "shard 2 still has validator 3");
        assert!(wants.unwant(2, 3));
        assert!(!wants.unwant(2, 3), "already unlinked");
        assert!(!wants.unwant(1, 9), "never wanted");
    }
}
