//! Raft messages too large for one transport message (snapshots, large appends) travel in
//! pieces: out, queued per peer in raft's order and paced by the transport's back-pressure over
//! turns; in, reassembled in order up to a bound.

use super::{Effects, SendRefused, ShardNode};
use crate::peering::{self, IncomingPieces, Outbound, OutgoingPieces};
use crate::shard::ShardId;
use raft::eraftpb::{Message, MessageType};
use std::collections::{BTreeMap, VecDeque};

/// Raft messages waiting for a peer's transport queue, in order.
enum Queued {
    Whole(Message),
    Pieces(OutgoingPieces),
}

/// Raft messages queued per peer (most; beyond it the transport is treated as down).
const QUEUED_PER_PEER_MAX: usize = 64;

/// Large messages going out and coming in, per peer (ordered maps: the simulator replays a
/// seed exactly). Once a peer has something queued, every raft message to it queues behind
/// (whole or in pieces), so a peer sees this shard's messages in the order raft sent them.
#[derive(Default)]
pub(super) struct Pieces {
    outgoing: BTreeMap<u64, VecDeque<Queued>>,
    incoming: BTreeMap<u64, IncomingPieces>,
    next_transfer: u64,
}

impl Pieces {
    /// Raft messages queued for peers (all peers).
    pub(super) fn queued(&self) -> usize {
        self.outgoing.values().map(VecDeque::len).sum()
    }

    /// Whether messages to `to` must queue behind earlier ones.
    pub(super) fn is_queued(&self, to: u64) -> bool {
        self.outgoing.get(&to).is_some_and(|q| !q.is_empty())
    }

    /// Queues `message` for `to`, in pieces when `large`; false (dropped) when the peer's
    /// queue is full.
    #[must_use]
    pub(super) fn queue(&mut self, to: u64, message: Message, large: bool) -> bool {
        let queue = self.outgoing.entry(to).or_default();
        if queue.len() >= QUEUED_PER_PEER_MAX {
            return false;
        }
        if large {
            self.next_transfer += 1;
            queue.push_back(Queued::Pieces(OutgoingPieces {
                transfer: self.next_transfer,
                bytes: peering::raft_message_bytes(&message),
                offset: 0,
                is_snapshot: message.get_msg_type() == MessageType::MsgSnapshot,
            }));
        } else {
            queue.push_back(Queued::Whole(message));
        }
        true
    }

    /// Takes a piece from `from`; the whole message once its last piece arrived.
    pub(super) fn accept(
        &mut self,
        shard: ShardId,
        from: u64,
        (transfer, total, offset, data): (u64, u64, u64, &[u8]),
        bytes_max: u64,
    ) -> Option<Message> {
        let whole = self
            .incoming
            .entry(from)
            .or_default()
            .accept(transfer, total, offset, data, bytes_max);
        match whole {
            Ok(Some(bytes)) => {
                self.incoming.remove(&from);
                match peering::decode_raft_message(&bytes) {
                    Ok(message) => Some(message),
                    Err(error) => {
                        tracing::warn!(shard, from, %error, "reassembled raft message dropped");
                        None
                    }
                }
            }
            Ok(None) => None,
            Err(why) => {
                tracing::debug!(shard, from, why, "raft message piece dropped");
                None
            }
        }
    }
}

impl<R> ShardNode<R> {
    /// Sends queued raft messages (pieces of large ones) while the transport takes them, in
    /// order per peer; a full queue waits for the next turn, a link that is down gives up
    /// everything queued for that peer (raft retries: it hears the peer is unreachable, and a
    /// snapshot that did not go).
    pub(super) fn pump_pieces<E: Effects<Reply = R>>(&mut self, io: &mut E) {
        if self.pieces.outgoing.is_empty() {
            return;
        }
        let shard = self.replica.shard();
        let piece_bytes = self.config.raft_piece_bytes;
        // (peer, snapshot delivered?) for raft; (peer) given up.
        let mut snapshots = Vec::new();
        let mut down = Vec::new();
        for (&to, queue) in self.pieces.outgoing.iter_mut() {
            'queue: while let Some(front) = queue.front_mut() {
                match front {
                    Queued::Whole(message) => match io.send(to, Outbound::Raft(message)) {
                        Ok(()) => {
                            if message.get_msg_type() == MessageType::MsgSnapshot {
                                snapshots.push((to, true));
                            }
                            queue.pop_front();
                        }
                        Err(SendRefused::Full) => break 'queue,
                        Err(SendRefused::Down) => {
                            down.push(to);
                            break 'queue;
                        }
                    },
                    Queued::Pieces(pieces) => {
                        while let Some((offset, data)) = pieces.next_piece(piece_bytes) {
                            let (transfer, total, n) =
                                (pieces.transfer, pieces.bytes.len() as u64, data.len());
                            let piece = Outbound::RaftPiece {
                                transfer,
                                total,
                                offset,
                                data,
                            };
                            match io.send(to, piece) {
                                Ok(()) => {
                                    pieces.advance(n);
                                    self.counters.pieces_sent += 1;
                                }
                                Err(SendRefused::Full) => break 'queue,
                                Err(SendRefused::Down) => {
                                    down.push(to);
                                    break 'queue;
                                }
                            }
                        }
                        if pieces.is_snapshot {
                            tracing::info!(
                                shard,
                                to,
                                bytes = pieces.bytes.len(),
                                pieces = pieces.bytes.len().div_ceil(piece_bytes),
                                "snapshot sent in pieces"
                            );
                            snapshots.push((to, true));
                        }
                        queue.pop_front();
                    }
                }
            }
        }
        for to in down {
            tracing::debug!(shard, to, "peer link down: queued raft messages given up");
            for queued in self.pieces.outgoing.remove(&to).unwrap_or_default() {
                let is_snapshot = match &queued {
                    Queued::Whole(m) => m.get_msg_type() == MessageType::MsgSnapshot,
                    Queued::Pieces(p) => p.is_snapshot,
                };
                if is_snapshot {
                    snapshots.push((to, false));
                }
            }
            self.replica.report_unreachable(to);
        }
        self.pieces.outgoing.retain(|_, queue| !queue.is_empty());
        for (to, delivered) in snapshots {
            self.replica.report_snapshot(to, delivered);
        }
    }
}
