//! The node's decisions on their own, with a recording edge: forwarding both ways, timeouts,
//! refusals, and raft messages queued behind pieces in raft's order.

use super::*;
use crate::genesis::{Allocation, Genesis};
use crate::ledger::ShardState;
use crate::peering::{self, ForwardRefusal};
use crate::record::{address_of, Address, Transfer};
use crate::replica::ReplicaConfig;
use ed25519_dalek::SigningKey;
use raft::eraftpb::ConfChangeType;
use raft::storage::MemStorage;

/// Records every action; refuses sends while `refuse` is set.
#[derive(Default)]
struct Recorder {
    sent: Vec<(u64, PeerMessage)>,
    replies: Vec<(u32, Answer)>,
    refuse: Option<SendRefused>,
}

impl Effects for Recorder {
    type Reply = u32;
    fn send(&mut self, to: u64, message: Outbound<'_>) -> Result<(), SendRefused> {
        if let Some(refused) = self.refuse {
            return Err(refused);
        }
        let mut bytes = Vec::new();
        message.encode(&mut bytes);
        self.sent
            .push((to, peering::decode(&bytes).expect("decodes")));
        Ok(())
    }
    fn reply(&mut self, to: u32, answer: Answer) {
        self.replies.push((to, answer));
    }
    fn to_shard(&mut self, _: ShardId, _: LocalMessage) -> Result<(), LocalMessage> {
        Ok(())
    }
    fn link(&mut self, _: u64, _: &[u8]) {}
    fn unlink(&mut self, _: u64) {}
}

fn key() -> SigningKey {
    SigningKey::from_bytes(&[7; 32])
}

fn transfers(n: u64) -> (Vec<Record>, Vec<bool>) {
    let records: Vec<Record> = (1..=n)
        .map(|nonce| {
            Transfer {
                chain_id: 7,
                from: address_of(&key()),
                to: Address([9; 32]),
                asset: 0,
                amount: 5,
                nonce,
            }
            .sign(&key())
        })
        .collect();
    let valid = vec![true; records.len()];
    (records, valid)
}

const AT: Now = Now {
    monotonic_ms: 1_000,
    wall_ms: 1_000,
};

/// Node 1 of a three-validator group that follows leader 2 (after one heartbeat).
fn follower(config: NodeConfig) -> (ShardNode<u32>, Recorder) {
    let genesis = Genesis {
        chain_id: 7,
        shards: Some(1),
        allocations: vec![Allocation {
            address: address_of(&key()),
            asset: 0,
            amount: 1_000,
        }],
    };
    let state = ShardState::from_genesis(&genesis, 0, 1);
    let mut replica_config = ReplicaConfig::new(1, 0);
    replica_config.voters = vec![1, 2, 3];
    let storage = MemStorage::new_with_conf_state((vec![1, 2, 3], vec![]));
    let replica = ShardReplica::new(replica_config, storage, state).expect("replica");
    let mut node = ShardNode::new(config, replica);
    let mut io = Recorder::default();
    let mut heartbeat = Message::default();
    heartbeat.set_msg_type(MessageType::MsgHeartbeat);
    heartbeat.from = 2;
    heartbeat.to = 1;
    heartbeat.term = 1;
    node.peer_message(&mut io, 2, PeerMessage::Raft(Box::new(heartbeat)));
    assert_eq!(node.replica().leader_id(), Some(2));
    io.sent.clear();
    (node, io)
}

fn replicated() -> NodeConfig {
    NodeConfig {
        replicated: true,
        incarnation: 3,
        ..NodeConfig::new(1)
    }
}

/// The request id of the only forward sent so far.
fn forwarded_request(io: &Recorder) -> u64 {
    match io.sent.as_slice() {
        [(
            2,
            PeerMessage::Forward {
                request,
                records,
                valid,
            },
        )] => {
            assert_eq!(records.len(), valid.len());
            *request
        }
        other => panic!("expected one forward to the leader, sent {other:?}"),
    }
}

#[test]
fn a_follower_forwards_and_answers_its_client_with_the_leaders_reply() {
    let (mut node, mut io) = follower(replicated());
    let (records, valid) = transfers(2);
    node.submit(&mut io, &records, &valid, Submitter::Client(41));
    let request = forwarded_request(&io);
    assert_eq!(request >> 20, 3, "request ids carry the incarnation");
    assert!(io.replies.is_empty(), "the client waits for the leader");
    let outcomes: Vec<Outcome> = records
        .iter()
        .map(|r| Outcome {
            tx_hash: r.tx_hash(),
            result: crate::result::ResultCode::Ok,
            shard: 0,
            block: 4,
        })
        .collect();
    let reply = ForwardReply::Outcomes(outcomes.clone());
    node.peer_message(&mut io, 2, PeerMessage::ForwardReply { request, reply });
    assert_eq!(io.replies, vec![(41, Answer::Outcomes(Ok(outcomes)))]);
    // A second (duplicated) reply finds nobody waiting.
    let again = ForwardReply::Refused(ForwardRefusal::Retry);
    node.peer_message(
        &mut io,
        2,
        PeerMessage::ForwardReply {
            request,
            reply: again,
        },
    );
    assert_eq!(io.replies.len(), 1);
}

#[test]
fn a_reply_that_does_not_fit_the_request_makes_the_client_retry() {
    let (mut node, mut io) = follower(replicated());
    let (records, valid) = transfers(3);
    node.submit(&mut io, &records, &valid, Submitter::Client(7));
    let request = forwarded_request(&io);
    let reply = ForwardReply::Outcomes(Vec::new());
    node.peer_message(&mut io, 2, PeerMessage::ForwardReply { request, reply });
    assert_eq!(
        io.replies,
        vec![(7, Answer::Outcomes(Err(SubmitFailure::Retry(0))))]
    );
}

#[test]
fn a_forward_that_cannot_go_tells_the_client_who_leads() {
    let (mut node, mut io) = follower(replicated());
    io.refuse = Some(SendRefused::Down);
    let (records, valid) = transfers(1);
    node.submit(&mut io, &records, &valid, Submitter::Client(5));
    let not_leader = SubmitFailure::Rejected(SubmitError::NotLeader {
        shard: 0,
        leader: Some(2),
    });
    assert_eq!(io.replies, vec![(5, Answer::Outcomes(Err(not_leader)))]);
}

#[test]
fn a_forward_without_an_answer_times_out_into_a_retry() {
    let config = NodeConfig {
        forward_timeout_ms: 500,
        ..replicated()
    };
    let (mut node, mut io) = follower(config);
    node.tick(&mut io, AT);
    let (records, valid) = transfers(1);
    node.submit(&mut io, &records, &valid, Submitter::Client(9));
    let _ = forwarded_request(&io);
    let before = Now {
        monotonic_ms: AT.monotonic_ms + 499,
        ..AT
    };
    node.tick(&mut io, before);
    assert!(io.replies.is_empty());
    let after = Now {
        monotonic_ms: AT.monotonic_ms + 500,
        ..AT
    };
    node.tick(&mut io, after);
    assert_eq!(
        io.replies,
        vec![(9, Answer::Outcomes(Err(SubmitFailure::Retry(0))))]
    );
}

#[test]
fn a_detached_submission_is_admitted_once_forwarded_and_a_peers_is_never_forwarded_again() {
    let (mut node, mut io) = follower(replicated());
    let (records, valid) = transfers(1);
    node.submit(&mut io, &records, &valid, Submitter::Detached(3));
    assert_eq!(
        forwarded_request(&io),
        0,
        "nobody waits for a detached forward"
    );
    assert_eq!(io.replies, vec![(3, Answer::Admitted(Ok(())))]);
    io.sent.clear();
    // Validator 3 forwarded to us, but we follow: refuse with our idea of the leader.
    let from = Submitter::Peer {
        node: 3,
        request: 11,
    };
    node.submit(&mut io, &records, &valid, from);
    match io.sent.as_slice() {
        [(3, PeerMessage::ForwardReply { request: 11, reply })] => assert_eq!(
            *reply,
            ForwardReply::Refused(ForwardRefusal::NotLeader(Some(2)))
        ),
        other => panic!("expected a refusal to validator 3, sent {other:?}"),
    }
}

#[test]
fn a_single_validator_refuses_instead_of_forwarding() {
    let (mut node, mut io) = follower(NodeConfig::new(1));
    let (records, valid) = transfers(1);
    node.submit(&mut io, &records, &valid, Submitter::Client(1));
    assert!(io.sent.is_empty());
    assert!(matches!(
        io.replies.as_slice(),
        [(
            1,
            Answer::Outcomes(Err(SubmitFailure::Rejected(SubmitError::NotLeader { .. })))
        )]
    ));
}

#[test]
fn raft_messages_queue_behind_pieces_in_raft_order() {
    let config = NodeConfig {
        raft_piece_bytes: 64,
        ..replicated()
    };
    let (mut node, mut io) = follower(config);
    let big = {
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgAppendResponse);
        m.to = 2;
        m.context = vec![1u8; 200].into();
        m
    };
    let small = {
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgHeartbeatResponse);
        m.to = 2;
        m
    };
    io.refuse = Some(SendRefused::Full);
    node.send_raft(&mut io, vec![big.clone(), small.clone()]);
    assert!(io.sent.is_empty(), "the queue is full: everything waits");
    io.refuse = None;
    node.pump_pieces(&mut io);
    let kinds: Vec<&str> = io
        .sent
        .iter()
        .map(|(_, m)| match m {
            PeerMessage::RaftChunk { .. } => "piece",
            PeerMessage::Raft(_) => "whole",
            _ => "other",
        })
        .collect();
    let pieces = peering::raft_message_bytes(&big).len().div_ceil(64);
    let mut expected = vec!["piece"; pieces];
    expected.push("whole");
    assert_eq!(
        kinds, expected,
        "the small message went after the large one"
    );
    // The receiver reassembles the large one from the pieces.
    let mut receiver = pieces::Pieces::default();
    let mut whole = None;
    for (_, m) in &io.sent {
        if let PeerMessage::RaftChunk {
            transfer,
            total,
            offset,
            data,
        } = m
        {
            whole = receiver.accept(0, 1, (*transfer, *total, *offset, data), 1 << 20);
        }
    }
    assert_eq!(whole, Some(big));
}

/// Node 1 leading a single-voter group after a restart (its log holds an entry of term 1 that
/// is not applied yet; it campaigns at once), with the in-memory log the test persists into.
fn restarted_single_leader() -> (ShardNode<u32>, Recorder, MemStorage) {
    let genesis = Genesis {
        chain_id: 7,
        shards: Some(1),
        allocations: vec![],
    };
    let state = ShardState::from_genesis(&genesis, 0, 1);
    let storage = MemStorage::new_with_conf_state((vec![1], vec![]));
    let earlier = raft::eraftpb::Entry {
        index: 1,
        term: 1,
        ..Default::default()
    };
    storage.wl().append(&[earlier]).unwrap();
    storage.wl().set_hardstate(raft::eraftpb::HardState {
        term: 1,
        vote: 1,
        commit: 0,
        ..Default::default()
    });
    let replica = ShardReplica::new(ReplicaConfig::new(1, 0), storage.clone(), state).unwrap();
    let node = ShardNode::new(NodeConfig::new(1), replica);
    assert!(node.replica().is_leader());
    (node, Recorder::default(), storage)
}

/// Runs turns as the runtime does, writing into `storage` (what `ShardLog::stage` does).
fn turns(node: &mut ShardNode<u32>, io: &mut Recorder, storage: &MemStorage, n: usize) {
    for _ in 0..n {
        if let Some(persist) = node.start_turn(io, AT).unwrap() {
            storage.wl().append(&persist.entries).unwrap();
            if let Some(hs) = &persist.hard_state {
                storage.wl().set_hardstate(hs.clone());
            }
            node.persisted(io, persist.number, AT);
        }
        assert!(node.finish_turn(io).is_none());
    }
}

#[test]
fn a_membership_change_raft_would_ignore_is_refused_not_reported_applied() {
    let (mut node, mut io, storage) = restarted_single_leader();
    // Just elected after a restart: the entries of its log are not applied yet, so raft would
    // turn the change into an empty entry (answered as applied at that index before).
    let add = [(ConfChangeType::AddLearnerNode, 2)];
    node.change_membership(&mut io, &add, b"127.0.0.1:9100", 1);
    turns(&mut node, &mut io, &storage, 3);
    match io.replies.as_slice() {
        [(
            1,
            Answer::Membership(Err(SubmitFailure::Rejected(SubmitError::Membership {
                reason,
                ..
            }))),
        )] => assert!(reason.contains("not applied yet"), "{reason}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(node.replica().learners().is_empty());
    // Once the leader applied its entries, the same change goes through and is answered with
    // the index at which it applied.
    io.replies.clear();
    node.change_membership(&mut io, &add, b"127.0.0.1:9100", 2);
    turns(&mut node, &mut io, &storage, 3);
    assert!(
        matches!(io.replies.as_slice(), [(2, Answer::Membership(Ok(_)))]),
        "{:?}",
        io.replies
    );
    assert_eq!(node.replica().learners(), vec![2]);
}
