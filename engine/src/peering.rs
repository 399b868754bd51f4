//! What shards of different validators say to each other, as bytes (no I/O): the payloads the
//! transport carries for one shard. The first byte says the kind:
//!
//! - `RAFT`: one raft-rs message (protobuf, as raft-rs encodes it).
//! - `FORWARD`: transfers a client gave a follower, for the shard's leader to propose; with a
//!   request id (0: no reply wanted, for `wait=false` submissions) and the follower's signature
//!   verdict per transfer. The leader takes the verdicts as they are: validators trust each
//!   other's work in this crash-fault-tolerant design exactly as followers trust the leader's log
//!   (which they apply without verifying), so verification is spread over the validators
//!   clients talk to.
//! - `FORWARD_REPLY`: the leader's answer to a forwarded request — one outcome per transfer,
//!   or why there is none (retry, not the leader, overloaded, stopping).
//! - `RAFT_CHUNK`: a piece of a raft message too large for one transport message (a snapshot):
//!   transfer id, total length, offset, bytes; the receiver reassembles the pieces in order.
//! - `CREDITED`: "on my validator, destination shard d has durably credited (in a snapshot)
//!   the receipts of source shard s up to index i" — source shards forget receipts only up to
//!   what every validator reported, so a snapshot of s never lacks a receipt some replica of d
//!   still needs.
//!
//! Decoding is defensive: any length or code that does not add up is an error, never a panic,
//! and nothing allocates more than the payload's own length implies.

use crate::record::{Record, TxHash, RECORD_BYTES};
use crate::replica::Outcome;
use crate::result::ResultCode;
use crate::shard::ShardId;
use protobuf::Message as _;
use raft::eraftpb::Message;

pub const KIND_RAFT: u8 = 0;
pub const KIND_FORWARD: u8 = 1;
pub const KIND_FORWARD_REPLY: u8 = 2;
pub const KIND_CREDITED: u8 = 3;
pub const KIND_RAFT_CHUNK: u8 = 4;

/// Header bytes of a `RAFT_CHUNK` payload after the kind: transfer id, total, offset.
pub const CHUNK_HEADER_BYTES: usize = 24;

/// Bytes of one encoded outcome: tx hash, result code, shard, block.
const OUTCOME_BYTES: usize = 32 + 1 + 4 + 8;

/// Why a forwarded request has no outcomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForwardRefusal {
    /// The proposal was lost in a leadership change: resubmit.
    Retry,
    /// The receiver does not lead the shard (any more); its idea of the leader.
    NotLeader(Option<u64>),
    Overloaded,
    Stopped,
}

/// The leader's answer to a forwarded request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ForwardReply {
    Outcomes(Vec<Outcome>),
    Refused(ForwardRefusal),
}

/// One decoded payload.
#[derive(Debug, PartialEq)]
pub enum PeerMessage {
    Raft(Box<Message>),
    Forward {
        request: u64,
        records: Vec<Record>,
        valid: Vec<bool>,
    },
    ForwardReply {
        request: u64,
        reply: ForwardReply,
    },
    Credited {
        destination: ShardId,
        source: ShardId,
        up_to: u64,
    },
    RaftChunk {
        transfer: u64,
        total: u64,
        offset: u64,
        data: Vec<u8>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PeerDecodeError {
    #[error("empty payload")]
    Empty,
    #[error("unknown payload kind {0}")]
    UnknownKind(u8),
    #[error("raft message does not decode: {0}")]
    Raft(String),
    #[error("{what}: {len} bytes do not add up")]
    Length { what: &'static str, len: usize },
    #[error("unknown code {code} in {what}")]
    Code { what: &'static str, code: u8 },
}

/// Appends the encoding of a raft message to `out` (cleared first).
pub fn encode_raft(message: &Message, out: &mut Vec<u8>) {
    out.clear();
    out.push(KIND_RAFT);
    message
        .write_to_vec(out)
        .expect("raft messages always encode");
}

/// Appends the encoding of a forwarded request to `out` (cleared first).
pub fn encode_forward(request: u64, records: &[Record], valid: &[bool], out: &mut Vec<u8>) {
    assert_eq!(records.len(), valid.len());
    out.clear();
    out.reserve(1 + 8 + records.len() * (RECORD_BYTES + 1));
    out.push(KIND_FORWARD);
    out.extend_from_slice(&request.to_le_bytes());
    for record in records {
        out.extend_from_slice(&record.0);
    }
    out.extend(valid.iter().map(|&v| u8::from(v)));
}

/// Appends the encoding of a forward reply to `out` (cleared first).
pub fn encode_forward_reply(request: u64, reply: &ForwardReply, out: &mut Vec<u8>) {
    out.clear();
    out.push(KIND_FORWARD_REPLY);
    out.extend_from_slice(&request.to_le_bytes());
    match reply {
        ForwardReply::Outcomes(outcomes) => {
            out.push(0);
            out.reserve(outcomes.len() * OUTCOME_BYTES);
            for o in outcomes {
                out.extend_from_slice(&o.tx_hash.0);
                out.push(o.result as u8);
                out.extend_from_slice(&o.shard.to_le_bytes());
                out.extend_from_slice(&o.block.to_le_bytes());
            }
        }
        ForwardReply::Refused(ForwardRefusal::Retry) => out.push(1),
        ForwardReply::Refused(ForwardRefusal::NotLeader(leader)) => {
            out.push(2);
            out.extend_from_slice(&leader.unwrap_or(0).to_le_bytes());
        }
        ForwardReply::Refused(ForwardRefusal::Overloaded) => out.push(3),
        ForwardReply::Refused(ForwardRefusal::Stopped) => out.push(4),
    }
}

/// A payload to send, borrowed from its owner; the edge encodes it into its own buffer.
#[derive(Debug)]
pub enum Outbound<'a> {
    Raft(&'a Message),
    RaftPiece {
        transfer: u64,
        total: u64,
        offset: u64,
        data: &'a [u8],
    },
    Forward {
        request: u64,
        records: &'a [Record],
        valid: &'a [bool],
    },
    ForwardReply {
        request: u64,
        reply: &'a ForwardReply,
    },
    Credited {
        destination: ShardId,
        source: ShardId,
        up_to: u64,
    },
}

impl Outbound<'_> {
    /// Encodes the payload into `out` (cleared first).
    pub fn encode(&self, out: &mut Vec<u8>) {
        match *self {
            Outbound::Raft(message) => encode_raft(message, out),
            Outbound::RaftPiece {
                transfer,
                total,
                offset,
                data,
            } => encode_raft_chunk(transfer, total, offset, data, out),
            Outbound::Forward {
                request,
                records,
                valid,
            } => encode_forward(request, records, valid, out),
            Outbound::ForwardReply { request, reply } => encode_forward_reply(request, reply, out),
            Outbound::Credited {
                destination,
                source,
                up_to,
            } => encode_credited(destination, source, up_to, out),
        }
    }
}

/// The bytes a raft message travels as (what `RAFT_CHUNK` pieces reassemble to).
pub fn raft_message_bytes(message: &Message) -> Vec<u8> {
    message
        .write_to_bytes()
        .expect("raft messages always encode")
}

/// The raft message of reassembled `RAFT_CHUNK` bytes.
pub fn decode_raft_message(bytes: &[u8]) -> Result<Message, PeerDecodeError> {
    Message::parse_from_bytes(bytes).map_err(|e| PeerDecodeError::Raft(e.to_string()))
}

/// Appends the encoding of one piece of a large raft message to `out` (cleared first).
pub fn encode_raft_chunk(transfer: u64, total: u64, offset: u64, data: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.reserve(1 + CHUNK_HEADER_BYTES + data.len());
    out.push(KIND_RAFT_CHUNK);
    out.extend_from_slice(&transfer.to_le_bytes());
    out.extend_from_slice(&total.to_le_bytes());
    out.extend_from_slice(&offset.to_le_bytes());
    out.extend_from_slice(data);
}

/// Appends the encoding of a credit watermark to `out` (cleared first).
pub fn encode_credited(destination: ShardId, source: ShardId, up_to: u64, out: &mut Vec<u8>) {
    out.clear();
    out.push(KIND_CREDITED);
    out.extend_from_slice(&destination.to_le_bytes());
    out.extend_from_slice(&source.to_le_bytes());
    out.extend_from_slice(&up_to.to_le_bytes());
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

/// Decodes one payload that arrived as a shared buffer (a slice of the frame it came in): a
/// raft message's entries are then slices of it too, not copies (protobuf's `Bytes` parsing).
/// Otherwise the same as [`decode`].
pub fn decode_shared(payload: &bytes::Bytes) -> Result<PeerMessage, PeerDecodeError> {
    if payload.first() == Some(&KIND_RAFT) {
        return raft_payload(Message::parse_from_carllerche_bytes(&payload.slice(1..)));
    }
    decode(payload)
}

/// A `RAFT` payload's message, as parsed.
fn raft_payload(parsed: protobuf::ProtobufResult<Message>) -> Result<PeerMessage, PeerDecodeError> {
    parsed
        .map(|m| PeerMessage::Raft(Box::new(m)))
        .map_err(|e| PeerDecodeError::Raft(e.to_string()))
}

/// Decodes one payload.
pub fn decode(payload: &[u8]) -> Result<PeerMessage, PeerDecodeError> {
    let (&kind, body) = payload.split_first().ok_or(PeerDecodeError::Empty)?;
    match kind {
        KIND_RAFT => raft_payload(Message::parse_from_bytes(body)),
        KIND_FORWARD => {
            let bad = PeerDecodeError::Length {
                what: "forwarded transfers",
                len: body.len(),
            };
            let request = u64_at(body, 0).ok_or(bad.clone())?;
            let rest = &body[8..];
            // n records of RECORD_BYTES, then n verdict bytes.
            if rest.is_empty() || rest.len() % (RECORD_BYTES + 1) != 0 {
                return Err(bad);
            }
            let n = rest.len() / (RECORD_BYTES + 1);
            let (records, verdicts) = rest.split_at(n * RECORD_BYTES);
            let valid = verdicts
                .iter()
                .map(|&v| match v {
                    0 => Ok(false),
                    1 => Ok(true),
                    code => Err(PeerDecodeError::Code {
                        what: "signature verdict",
                        code,
                    }),
                })
                .collect::<Result<Vec<bool>, _>>()?;
            let records = records
                .chunks_exact(RECORD_BYTES)
                .map(|c| Record(c.try_into().expect("exact chunk")))
                .collect();
            Ok(PeerMessage::Forward {
                request,
                records,
                valid,
            })
        }
        KIND_FORWARD_REPLY => {
            let bad = |len| PeerDecodeError::Length {
                what: "forward reply",
                len,
            };
            let request = u64_at(body, 0).ok_or(bad(body.len()))?;
            let (&code, rest) = body[8..].split_first().ok_or(bad(body.len()))?;
            let reply = match (code, rest.len()) {
                (0, n) if n % OUTCOME_BYTES == 0 => {
                    let mut outcomes = Vec::with_capacity(n / OUTCOME_BYTES);
                    for c in rest.chunks_exact(OUTCOME_BYTES) {
                        let result = ResultCode::from_u8(c[32]).ok_or(PeerDecodeError::Code {
                            what: "outcome result",
                            code: c[32],
                        })?;
                        outcomes.push(Outcome {
                            tx_hash: TxHash(c[..32].try_into().expect("32 bytes")),
                            result,
                            shard: ShardId::from_le_bytes(c[33..37].try_into().expect("4 bytes")),
                            block: u64::from_le_bytes(c[37..45].try_into().expect("8 bytes")),
                        });
                    }
                    ForwardReply::Outcomes(outcomes)
                }
                (1, 0) => ForwardReply::Refused(ForwardRefusal::Retry),
                (2, 8) => {
                    let leader = u64_at(rest, 0).expect("8 bytes");
                    ForwardReply::Refused(ForwardRefusal::NotLeader(
                        (leader != 0).then_some(leader),
                    ))
                }
                (3, 0) => ForwardReply::Refused(ForwardRefusal::Overloaded),
                (4, 0) => ForwardReply::Refused(ForwardRefusal::Stopped),
                (0..=4, n) => return Err(bad(n)),
                (code, _) => {
                    return Err(PeerDecodeError::Code {
                        what: "forward reply",
                        code,
                    })
                }
            };
            Ok(PeerMessage::ForwardReply { request, reply })
        }
        KIND_CREDITED => {
            if body.len() != 16 {
                return Err(PeerDecodeError::Length {
                    what: "credit watermark",
                    len: body.len(),
                });
            }
            let u32_at = |at: usize| u32::from_le_bytes(body[at..at + 4].try_into().expect("4"));
            Ok(PeerMessage::Credited {
                destination: u32_at(0),
                source: u32_at(4),
                up_to: u64_at(body, 8).expect("8 bytes"),
            })
        }
        KIND_RAFT_CHUNK => {
            let bad = PeerDecodeError::Length {
                what: "raft message piece",
                len: body.len(),
            };
            let (Some(transfer), Some(total), Some(offset)) =
                (u64_at(body, 0), u64_at(body, 8), u64_at(body, 16))
            else {
                return Err(bad);
            };
            let data = &body[CHUNK_HEADER_BYTES..];
            let end = offset.checked_add(data.len() as u64);
            if data.is_empty() || end.is_none_or(|end| end > total) {
                return Err(bad);
            }
            Ok(PeerMessage::RaftChunk {
                transfer,
                total,
                offset,
                data: data.to_vec(),
            })
        }
        other => Err(PeerDecodeError::UnknownKind(other)),
    }
}

/// A large raft message being sent in pieces to one peer (sans I/O: the caller sends each
/// piece and advances when the transport took it).
#[derive(Debug)]
pub struct OutgoingPieces {
    pub transfer: u64,
    pub bytes: Vec<u8>,
    pub offset: usize,
    /// A snapshot: raft must hear whether it went out.
    pub is_snapshot: bool,
}

impl OutgoingPieces {
    /// The next piece of at most `piece_bytes`, or `None` when everything went out.
    pub fn next_piece(&self, piece_bytes: usize) -> Option<(u64, &[u8])> {
        assert!(piece_bytes > 0);
        let rest = self.bytes.get(self.offset..).filter(|r| !r.is_empty())?;
        Some((self.offset as u64, &rest[..rest.len().min(piece_bytes)]))
    }

    pub fn advance(&mut self, sent: usize) {
        self.offset += sent;
        assert!(self.offset <= self.bytes.len());
    }

    pub fn done(&self) -> bool {
        self.offset == self.bytes.len()
    }
}

/// Reassembles the pieces of one large raft message from one peer, in order, up to a bound.
#[derive(Debug, Default)]
pub struct IncomingPieces {
    transfer: u64,
    total: u64,
    buf: Vec<u8>,
}

impl IncomingPieces {
    /// Takes a piece. Returns the whole message's bytes once the last piece arrived. A piece of
    /// a new transfer starts over (the sender gave up on the old one); a piece out of order
    /// (one was lost when a link broke) drops what was gathered: raft sends the message again.
    /// A total above `bytes_max` is refused (nothing is buffered).
    pub fn accept(
        &mut self,
        transfer: u64,
        total: u64,
        offset: u64,
        data: &[u8],
        bytes_max: u64,
    ) -> Result<Option<Vec<u8>>, &'static str> {
        if total > bytes_max {
            *self = IncomingPieces::default();
            return Err("message larger than the configured maximum");
        }
        if offset == 0 {
            *self = IncomingPieces {
                transfer,
                total,
                buf: Vec::with_capacity(total as usize),
            };
        }
        let end = offset.saturating_add(data.len() as u64);
        if offset > 0 && transfer == self.transfer && end <= self.buf.len() as u64 {
            // A piece received already (the link delivered it twice): nothing new.
            return Ok(None);
        }
        if transfer != self.transfer || total != self.total || offset != self.buf.len() as u64 {
            *self = IncomingPieces::default();
            return Err("piece out of order: dropped what was gathered");
        }
        self.buf.extend_from_slice(data);
        if self.buf.len() as u64 == self.total {
            let whole = std::mem::take(&mut self.buf);
            *self = IncomingPieces::default();
            return Ok(Some(whole));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::eraftpb::{Entry, MessageType};

    fn record(seed: u8) -> Record {
        Record([seed; RECORD_BYTES])
    }

    #[test]
    fn round_trips() {
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgAppend);
        m.from = 2;
        m.to = 3;
        m.term = 7;
        m.mut_entries().push(Entry {
            index: 9,
            term: 7,
            data: vec![1, 2, 3].into(),
            ..Default::default()
        });
        let mut buf = Vec::new();
        encode_raft(&m, &mut buf);
        assert_eq!(decode(&buf).unwrap(), PeerMessage::Raft(Box::new(m)));

        let records = vec![record(1), record(2)];
        encode_forward(42, &records, &[true, false], &mut buf);
        assert_eq!(
            decode(&buf).unwrap(),
            PeerMessage::Forward {
                request: 42,
                records,
                valid: vec![true, false]
            }
        );

        encode_raft_chunk(7, 10, 4, &[1, 2, 3], &mut buf);
        assert_eq!(
            decode(&buf).unwrap(),
            PeerMessage::RaftChunk {
                transfer: 7,
                total: 10,
                offset: 4,
                data: vec![1, 2, 3]
            }
        );
        encode_raft_chunk(7, 5, 4, &[1, 2, 3], &mut buf);
        assert!(decode(&buf).is_err(), "a piece past the total");

        encode_credited(1, 0, 99, &mut buf);
        assert_eq!(
            decode(&buf).unwrap(),
            PeerMessage::Credited {
                destination: 1,
                source: 0,
                up_to: 99
            }
        );

        let outcomes = vec![Outcome {
            tx_hash: TxHash([5; 32]),
            result: ResultCode::NonceReplayed,
            shard: 1,
            block: 77,
        }];
        for reply in [
            ForwardReply::Outcomes(outcomes),
            ForwardReply::Refused(ForwardRefusal::Retry),
            ForwardReply::Refused(ForwardRefusal::NotLeader(Some(3))),
            ForwardReply::Refused(ForwardRefusal::NotLeader(None)),
            ForwardReply::Refused(ForwardRefusal::Overloaded),
            ForwardReply::Refused(ForwardRefusal::Stopped),
        ] {
            encode_forward_reply(9, &reply, &mut buf);
            assert_eq!(
                decode(&buf).unwrap(),
                PeerMessage::ForwardReply { request: 9, reply }
            );
        }
    }

    #[test]
    fn a_shared_payload_decodes_alike_and_its_entries_are_slices_of_it() {
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgAppend);
        m.mut_entries().push(Entry {
            index: 9,
            term: 7,
            data: vec![4; 1000].into(),
            ..Default::default()
        });
        let mut buf = Vec::new();
        encode_raft(&m, &mut buf);
        let shared = bytes::Bytes::from(buf.clone());
        let decoded = decode_shared(&shared).unwrap();
        assert_eq!(decoded, decode(&buf).unwrap());
        let PeerMessage::Raft(message) = decoded else {
            panic!("a raft message")
        };
        let data = &message.entries[0].data;
        let within = shared.as_ptr_range();
        assert!(
            within.contains(&data.as_ptr()),
            "the entry's bytes are in the payload's buffer, not a copy"
        );
        // Other kinds decode as from a slice.
        encode_credited(1, 0, 99, &mut buf);
        assert_eq!(
            decode_shared(&bytes::Bytes::from(buf.clone())),
            decode(&buf)
        );
        assert_eq!(
            decode_shared(&bytes::Bytes::new()),
            Err(PeerDecodeError::Empty)
        );
    }

    #[test]
    fn malformed_payloads_are_errors() {
        assert_eq!(decode(&[]), Err(PeerDecodeError::Empty));
        assert_eq!(decode(&[9]), Err(PeerDecodeError::UnknownKind(9)));
        let mut buf = Vec::new();
        encode_forward(1, &[record(1)], &[true], &mut buf);
        assert!(decode(&buf[..buf.len() - 1]).is_err());
        *buf.last_mut().unwrap() = 2;
        assert!(decode(&buf).is_err(), "a verdict other than 0 or 1");
        assert!(decode(&buf[..9]).is_err());
        encode_forward_reply(1, &ForwardReply::Refused(ForwardRefusal::Retry), &mut buf);
        buf.push(0);
        assert!(decode(&buf).is_err());
        buf[9] = 7;
        assert!(decode(&buf).is_err());
    }

    #[test]
    fn pieces_reassemble_in_order_and_gaps_start_over() {
        let bytes: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let mut out = OutgoingPieces {
            transfer: 3,
            bytes: bytes.clone(),
            offset: 0,
            is_snapshot: true,
        };
        let mut incoming = IncomingPieces::default();
        let mut whole = None;
        while let Some((offset, piece)) = out.next_piece(300) {
            let n = piece.len();
            whole = incoming.accept(3, 1000, offset, piece, 1 << 20).unwrap();
            out.advance(n);
        }
        assert!(out.done());
        assert_eq!(whole, Some(bytes.clone()));
        // A lost piece: the next one is refused and the gathering starts over.
        assert_eq!(
            incoming.accept(4, 1000, 0, &bytes[..300], 1 << 20),
            Ok(None)
        );
        assert!(incoming
            .accept(4, 1000, 600, &bytes[600..900], 1 << 20)
            .is_err());
        assert!(incoming
            .accept(4, 1000, 900, &bytes[900..], 1 << 20)
            .is_err());
        // Too large: refused before buffering.
        assert!(incoming
            .accept(5, 1 << 30, 0, &bytes[..10], 1 << 20)
            .is_err());
    }

    proptest::proptest! {
        #[test]
        fn random_bytes_never_panic(kind in 0u8..6, body in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            let mut payload = vec![kind];
            payload.extend_from_slice(&body);
            let _ = decode(&payload);
            let _ = decode_shared(&bytes::Bytes::from(payload));
        }
    }
}
