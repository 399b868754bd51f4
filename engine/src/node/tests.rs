//! The node's decisions on their own, with a recording edge: forwarding both ways, timeouts,
//! refusals, and raft messages queued behind pieces in raft's order.

use super::*;
use crate::genesis::{Allocation, Genesis};
use crate::ledger::ShardState;
use crate::peering::{self, ForwardRefusal};
use crate::record::Record;
use crate::record::{address_of, Address, Transfer};
use crate::replica::ReplicaConfig;
use ed25519_dalek::SigningKey;
use raft::eraftpb::ConfChangeType;
use raft::eraftpb::{Entry, EntryType};
use raft::storage::MemStorage;
use std::collections::BTreeMap;

/// Records every action; refuses sends while `refuse` is set.
#[derive(Default)]
struct Recorder {
    sent: Vec<(u64, PeerMessage)>,
    replies: Vec<(u32, Answer)>,
    refuse: Option<SendRefused>,
    /// Validators linked (latest address asked for) and unlinked, in order.
    links: BTreeMap<u64, Vec<u8>>,
    unlinked: Vec<u64>,
    /// Messages handed to the other shards of this validator.
    local: Vec<(ShardId, LocalMessage)>,
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
    fn to_shard(&mut self, shard: ShardId, message: LocalMessage) -> Result<(), LocalMessage> {
        self.local.push((shard, message));
        Ok(())
    }
    fn link(&mut self, node_id: u64, peer_addr: &[u8]) {
        self.links.insert(node_id, peer_addr.to_vec());
    }
    fn unlink(&mut self, node_id: u64) {
        self.links.remove(&node_id);
        self.unlinked.push(node_id);
    }
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
        controllers: Default::default(),
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
    restarted_single_leader_with(NodeConfig::new(1))
}

fn restarted_single_leader_with(config: NodeConfig) -> (ShardNode<u32>, Recorder, MemStorage) {
    let genesis = Genesis {
        chain_id: 7,
        controllers: Default::default(),
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
    let node = ShardNode::new(config, replica);
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
            node.staged(persist.number);
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

#[test]
fn a_removed_node_id_is_never_added_again() {
    let (mut node, mut io, storage) = restarted_single_leader();
    turns(&mut node, &mut io, &storage, 3);
    let change = |node: &mut ShardNode<u32>, io: &mut Recorder, kind, id, reply| {
        io.replies.clear();
        node.change_membership(io, &[(kind, id)], b"127.0.0.1:9200", reply);
        turns(node, io, &storage, 3);
        std::mem::take(&mut io.replies)
    };
    let added = change(&mut node, &mut io, ConfChangeType::AddLearnerNode, 2, 1);
    assert!(
        matches!(added.as_slice(), [(1, Answer::Membership(Ok(_)))]),
        "{added:?}"
    );
    let removed = change(&mut node, &mut io, ConfChangeType::RemoveNode, 2, 2);
    assert!(
        matches!(removed.as_slice(), [(2, Answer::Membership(Ok(_)))]),
        "{removed:?}"
    );
    assert!(node.replica().state().node_removed(2));
    assert_eq!(node.replica().state().peer_address(2), None);
    // Node 2's old incarnation may still have messages in flight to this leader: were 2
    // added again, an old append response would count as the new, empty replica's progress.
    for kind in [ConfChangeType::AddLearnerNode, ConfChangeType::AddNode] {
        match change(&mut node, &mut io, kind, 2, 3).as_slice() {
            [(
                3,
                Answer::Membership(Err(SubmitFailure::Rejected(SubmitError::Membership {
                    reason,
                    ..
                }))),
            )] => assert!(reason.contains("never added again"), "{reason}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
    assert!(node.replica().learners().is_empty());
    // The validator comes back under a new node id.
    let again = change(&mut node, &mut io, ConfChangeType::AddLearnerNode, 5, 4);
    assert!(
        matches!(again.as_slice(), [(4, Answer::Membership(Ok(_)))]),
        "{again:?}"
    );
    assert_eq!(node.replica().learners(), vec![5]);
}

/// Node 1 of shard `shard` (of `shards`), a follower of leader 2 in the group [1, 2, 3], with
/// `state`; its storage is returned so that turns can write into it.
fn follower_with(state: ShardState) -> (ShardNode<u32>, Recorder, MemStorage) {
    follower_tapping(state, false)
}

/// [`follower_with`], handing what it applies to a sink's tap with `tap_applied`.
fn follower_tapping(
    state: ShardState,
    tap_applied: bool,
) -> (ShardNode<u32>, Recorder, MemStorage) {
    let mut replica_config = ReplicaConfig::new(1, state.shard());
    replica_config.voters = vec![1, 2, 3];
    replica_config.tap_applied = tap_applied;
    let storage = MemStorage::new_with_conf_state((vec![1, 2, 3], vec![]));
    let replica = ShardReplica::new(replica_config, storage.clone(), state).expect("replica");
    let mut node = ShardNode::new(replicated(), replica);
    let mut io = Recorder::default();
    leader_sends(&mut node, &mut io, &storage, 0, vec![], 0);
    assert_eq!(node.replica().leader_id(), Some(2));
    io.sent.clear();
    (node, io, storage)
}

/// Ticks (one ms of wall clock each) through twice the node's election timeout, a ready cycle
/// after each tick.
fn tick_through_two_election_timeouts(
    node: &mut ShardNode<u32>,
    io: &mut Recorder,
    storage: &MemStorage,
) {
    let timeout = 2 * node.replica().raw_node().raft.election_timeout();
    for tick in 0..timeout as u64 {
        let now = Now {
            monotonic_ms: tick,
            wall_ms: tick,
        };
        node.tick(io, now);
        turns(node, io, storage, 1);
    }
}

/// A message of `msg_type` from leader 2 (term 1) to this node (1), saying `commit`.
fn from_leader(msg_type: MessageType, commit: u64) -> Message {
    let mut message = Message::default();
    message.set_msg_type(msg_type);
    message.from = 2;
    message.to = 1;
    message.term = 1;
    message.commit = commit;
    message
}

/// Leader 2 (term 1) appends `entries` after index `prev` and says `commit`; the follower
/// runs turns until it has nothing more to do.
fn leader_sends(
    node: &mut ShardNode<u32>,
    io: &mut Recorder,
    storage: &MemStorage,
    prev: u64,
    entries: Vec<Entry>,
    commit: u64,
) {
    let mut append = from_leader(MessageType::MsgAppend, commit);
    append.index = prev;
    append.log_term = u64::from(prev > 0);
    append.entries = entries.into();
    node.peer_message(io, 2, PeerMessage::Raft(Box::new(append)));
    turns(node, io, storage, 3);
}

fn entry(index: u64, entry_type: EntryType, context: Vec<u8>, data: Vec<u8>) -> Entry {
    let mut entry = Entry {
        index,
        term: 1,
        context: context.into(),
        data: data.into(),
        ..Default::default()
    };
    entry.set_entry_type(entry_type);
    entry
}

/// A markers entry of leader 2: credit receipts of `source` up to `up_to`.
fn marker(index: u64, source: ShardId, up_to: u64) -> Entry {
    let mut data = 1u32.to_le_bytes().to_vec();
    data.extend_from_slice(&source.to_le_bytes());
    data.extend_from_slice(&up_to.to_le_bytes());
    let context = crate::replica::entry_context(crate::replica::ENTRY_KIND_MARKERS, 2, index);
    entry(index, EntryType::EntryNormal, context.to_vec(), data)
}

fn membership(index: u64, changes: &[(ConfChangeType, u64)], context: &[u8]) -> Entry {
    let cc = crate::replica::conf_change_v2(changes, context);
    let data = protobuf::Message::write_to_bytes(&cc).expect("encodes");
    entry(index, EntryType::EntryConfChangeV2, Vec::new(), data)
}

/// Shard 1 of 2 (empty) and an address it owns.
fn destination_shard() -> (ShardState, Address) {
    let genesis = Genesis {
        chain_id: 7,
        controllers: Default::default(),
        shards: Some(2),
        allocations: vec![Allocation {
            address: address_of(&key()),
            asset: 0,
            amount: 1_000,
        }],
    };
    let to = (1..=255u8)
        .map(|b| Address([b; 32]))
        .find(|a| crate::shard::shard_of(a, 2) == 1)
        .expect("an address of shard 1");
    (ShardState::from_genesis(&genesis, 1, 2), to)
}

fn receipts(up_to: u64, pruned_through: u64, at: &[u64], to: Address) -> LocalMessage {
    LocalMessage::Receipts(crate::replica::ReceiptDelivery {
        source: 0,
        destination: 1,
        up_to,
        pruned_through,
        source_left: false,
        receipts: at
            .iter()
            .map(|&source_index| crate::ledger::Receipt {
                source_index,
                to,
                asset: 0,
                amount: 5,
            })
            .collect(),
    })
}

#[test]
fn a_marker_never_credits_past_receipts_the_source_forgot() {
    // This validator joined shard 1's group before shard 0's: shard 0 pruned its receipts up
    // to 6 (every member of *its* group had credited them) before this validator's replica of
    // shard 0 existed; what reaches our shard 1 starts after 6. A marker up to 10 must not
    // apply here (it would credit only the receipt at 8 and move the watermark past the
    // forgotten ones): apply stalls and the replica asks the leader for a snapshot.
    let (state, to) = destination_shard();
    let (mut node, mut io, storage) = follower_with(state);
    node.local_message(receipts(10, 6, &[8], to));
    leader_sends(&mut node, &mut io, &storage, 0, vec![marker(1, 0, 10)], 1);
    let state = node.replica().state();
    assert_eq!(
        state.inbound_watermark(0),
        0,
        "credited across forgotten receipts"
    );
    assert_eq!(state.account(&to).map(|a| a.balance(0)).unwrap_or(0), 0);
    assert!(node.replica().wants_snapshot());
    node.tick(&mut io, AT);
    turns(&mut node, &mut io, &storage, 2);
    let asked = io.sent.iter().any(|(to, m)| {
        *to == 2
            && matches!(m, PeerMessage::Raft(m)
                if m.get_msg_type() == MessageType::MsgAppendResponse && m.request_snapshot > 0)
    });
    assert!(asked, "no snapshot request sent: {:?}", io.sent);
    assert_eq!(node.counters().snapshots_requested, 1);
}

#[test]
fn a_replica_removed_from_its_group_tells_the_other_shards_it_left() {
    // Shard 1's replica of this validator (1) applies its own removal: it learns of no
    // further entries, so its receipts for shard 0 here stop for good. Shard 0 must hear it.
    let (state, _) = destination_shard();
    let (mut node, mut io, storage) = follower_with(state);
    leader_sends(&mut node, &mut io, &storage, 0, vec![marker(1, 0, 0)], 1);
    node.tick(&mut io, AT);
    turns(&mut node, &mut io, &storage, 1);
    let left = |io: &Recorder| {
        io.local.iter().rev().find_map(|(to, m)| match m {
            LocalMessage::Receipts(d) if *to == 0 => Some(d.source_left),
            _ => None,
        })
    };
    assert_eq!(left(&io), Some(false));
    let removal = membership(2, &[(ConfChangeType::RemoveNode, 1)], b"");
    leader_sends(&mut node, &mut io, &storage, 1, vec![removal], 2);
    assert_eq!(node.replica().state().applied_index(), 2);
    node.tick(&mut io, AT);
    turns(&mut node, &mut io, &storage, 1);
    assert_eq!(
        left(&io),
        Some(true),
        "removal not announced: {:?}",
        io.local
    );
}

/// Receipts up to `up_to` (at `at`) from this validator's replica of shard 0, which left that
/// group: it will deliver nothing more.
fn receipts_of_a_source_that_left(up_to: u64, at: &[u64], to: Address) -> LocalMessage {
    let LocalMessage::Receipts(mut delivery) = receipts(up_to, 0, at, to) else {
        unreachable!()
    };
    delivery.source_left = true;
    LocalMessage::Receipts(delivery)
}

#[test]
fn a_marker_past_receipts_of_a_source_this_validator_left_asks_for_a_snapshot() {
    // This validator was removed from shard 0's group: its replica of shard 0 stopped at 10
    // and will never deliver the receipts up to 12 that the marker credits. Waiting would
    // stall apply for ever (and the whole shard with it while this replica leads): apply
    // stops as at forgotten receipts and the replica asks the leader for a snapshot.
    let (state, to) = destination_shard();
    let (mut node, mut io, storage) = follower_with(state);
    node.local_message(receipts_of_a_source_that_left(10, &[8], to));
    leader_sends(&mut node, &mut io, &storage, 0, vec![marker(1, 0, 12)], 1);
    assert_eq!(node.replica().state().inbound_watermark(0), 0);
    assert!(
        node.replica().wants_snapshot(),
        "waits for receipts that never come"
    );
    node.tick(&mut io, AT);
    turns(&mut node, &mut io, &storage, 2);
    let asked = io.sent.iter().any(|(to, m)| {
        *to == 2
            && matches!(m, PeerMessage::Raft(m)
                if m.get_msg_type() == MessageType::MsgAppendResponse && m.request_snapshot > 0)
    });
    assert!(asked, "no snapshot request sent: {:?}", io.sent);
}

#[test]
fn a_stalled_follower_asks_for_a_snapshot_only_once_its_whole_log_is_committed() {
    // raft-rs asks for a snapshot at the follower's last index and then refuses appends. Entry 2
    // is not committed yet and the leader may need this follower's acknowledgement to commit
    // it (three voters, one down): asking now would stall both for ever. The follower keeps
    // acknowledging appends and asks once its log is committed.
    let (state, to) = destination_shard();
    let (mut node, mut io, storage) = follower_with(state);
    node.local_message(receipts_of_a_source_that_left(10, &[8], to));
    let tail = entry(2, EntryType::EntryNormal, vec![], vec![]);
    leader_sends(
        &mut node,
        &mut io,
        &storage,
        0,
        vec![marker(1, 0, 12), tail],
        1,
    );
    assert!(node.replica().wants_snapshot());
    let asked = |io: &Recorder| {
        io.sent.iter().any(|(to, m)| {
            *to == 2
                && matches!(m, PeerMessage::Raft(m)
                    if m.get_msg_type() == MessageType::MsgAppendResponse
                        && m.request_snapshot > 0)
        })
    };
    node.tick(&mut io, AT);
    turns(&mut node, &mut io, &storage, 2);
    assert!(!asked(&io), "asked with an uncommitted tail: {:?}", io.sent);
    leader_sends(&mut node, &mut io, &storage, 2, vec![], 2);
    node.tick(&mut io, AT);
    turns(&mut node, &mut io, &storage, 2);
    assert!(asked(&io), "no snapshot request sent: {:?}", io.sent);
}

#[test]
fn receipts_arriving_after_their_marker_committed_unblock_apply_without_a_raft_ready() {
    let (state, to) = destination_shard();
    let (mut node, mut io, storage) = follower_with(state);
    leader_sends(&mut node, &mut io, &storage, 0, vec![marker(1, 0, 10)], 1);
    assert!(node.replica().apply_blocked());
    // The receipts arrive from shard 0 on this validator; raft has nothing new.
    node.local_message(receipts(10, 0, &[8], to));
    turns(&mut node, &mut io, &storage, 1);
    let state = node.replica().state();
    assert_eq!(state.inbound_watermark(0), 10);
    assert_eq!(state.account(&to).map(|a| a.balance(0)), Some(5));
    assert!(!node.replica().apply_blocked());
}

#[test]
fn a_replica_links_to_every_validator_of_its_configuration_when_it_opens() {
    // Restarted from a snapshot whose configuration has validator 4 (joined after the start,
    // so not on the command line): its address comes from the snapshot's address book.
    let (mut state, _) = destination_shard();
    state.set_peer_address(4, b"127.0.0.1:9400".to_vec());
    let mut replica_config = ReplicaConfig::new(1, 1);
    replica_config.voters = vec![1, 2, 3, 4];
    let storage = MemStorage::new_with_conf_state((vec![1, 2, 3, 4], vec![]));
    let replica = ShardReplica::new(replica_config, storage.clone(), state).expect("replica");
    let mut node = ShardNode::new(replicated(), replica);
    let mut io = Recorder::default();
    turns(&mut node, &mut io, &storage, 1);
    let linked: Vec<(u64, Vec<u8>)> = io.links.into_iter().collect();
    assert_eq!(
        linked,
        vec![(2, vec![]), (3, vec![]), (4, b"127.0.0.1:9400".to_vec())]
    );
}

#[test]
fn a_removed_voter_stays_linked_while_it_is_an_outgoing_voter() {
    let (state, _) = destination_shard();
    let (mut node, mut io, storage) = follower_with(state);
    // Two changes at once: joint consensus; 3 is an outgoing voter until the group leaves it.
    let joint = membership(
        1,
        &[
            (ConfChangeType::RemoveNode, 3),
            (ConfChangeType::AddLearnerNode, 4),
        ],
        b"127.0.0.1:9400",
    );
    leader_sends(&mut node, &mut io, &storage, 0, vec![joint], 1);
    assert!(
        io.unlinked.is_empty(),
        "unlinked while joint: {:?}",
        io.unlinked
    );
    assert_eq!(
        io.links.get(&4).map(Vec::as_slice),
        Some(&b"127.0.0.1:9400"[..])
    );
    assert!(io.links.contains_key(&3));
    // The leader leaves the joint configuration: now 3 is in no configuration.
    leader_sends(
        &mut node,
        &mut io,
        &storage,
        1,
        vec![membership(2, &[], b"")],
        2,
    );
    assert_eq!(io.unlinked, vec![3]);
    assert_eq!(
        node.replica().state().peer_address(4),
        Some(&b"127.0.0.1:9400"[..])
    );
}

/// Node 1, leader of the group [1, 2] of shard 1 (of 2), with 2 caught up.
fn leader_of_two() -> (ShardNode<u32>, Recorder, MemStorage) {
    leader_of_two_on(destination_shard().0)
}

/// Node 1, leader of the group [1, 2] of `state`'s shard, with 2 caught up.
fn leader_of_two_on(state: ShardState) -> (ShardNode<u32>, Recorder, MemStorage) {
    let mut replica_config = ReplicaConfig::new(1, state.shard());
    replica_config.voters = vec![1, 2];
    let storage = MemStorage::new_with_conf_state((vec![1, 2], vec![]));
    let replica = ShardReplica::new(replica_config, storage.clone(), state).expect("replica");
    let mut node = ShardNode::new(replicated(), replica);
    let mut io = Recorder::default();
    node.replica.raw_node_mut().campaign().expect("campaign");
    // Grant whatever it asks for (a pre-vote first when pre-vote is on, then the vote).
    for _ in 0..2 {
        turns(&mut node, &mut io, &storage, 1);
        let asks: Vec<Message> = io
            .sent
            .drain(..)
            .filter_map(|(_, m)| match m {
                PeerMessage::Raft(m) => Some(*m),
                _ => None,
            })
            .filter(|m| {
                matches!(
                    m.get_msg_type(),
                    MessageType::MsgRequestVote | MessageType::MsgRequestPreVote
                )
            })
            .collect();
        for ask in asks {
            let mut grant = Message::default();
            grant.set_msg_type(if ask.get_msg_type() == MessageType::MsgRequestVote {
                MessageType::MsgRequestVoteResponse
            } else {
                MessageType::MsgRequestPreVoteResponse
            });
            grant.from = 2;
            grant.to = 1;
            grant.term = ask.term;
            node.peer_message(&mut io, 2, PeerMessage::Raft(Box::new(grant)));
        }
    }
    turns(&mut node, &mut io, &storage, 2);
    assert!(node.replica().is_leader());
    let mut ack = Message::default();
    ack.set_msg_type(MessageType::MsgAppendResponse);
    ack.from = 2;
    ack.to = 1;
    ack.term = node.replica().raw_node().raft.term;
    ack.index = node.replica().raw_node().raft.raft_log.last_index();
    node.peer_message(&mut io, 2, PeerMessage::Raft(Box::new(ack)));
    turns(&mut node, &mut io, &storage, 2);
    (node, io, storage)
}

/// Leader 2 acknowledges everything node 1's log holds.
fn ack_from_2(node: &mut ShardNode<u32>, io: &mut Recorder, storage: &MemStorage) {
    let mut ack = Message::default();
    ack.set_msg_type(MessageType::MsgAppendResponse);
    ack.from = 2;
    ack.to = 1;
    ack.term = node.replica().raw_node().raft.term;
    ack.index = node.replica().raw_node().raft.raft_log.last_index();
    node.peer_message(io, 2, PeerMessage::Raft(Box::new(ack)));
    turns(node, io, storage, 2);
}

#[test]
fn a_leader_asked_to_remove_itself_hands_leadership_over_first() {
    let (mut node, mut io, storage) = leader_of_two();
    io.replies.clear();
    node.change_membership(&mut io, &[(ConfChangeType::RemoveNode, 1)], b"", 9);
    turns(&mut node, &mut io, &storage, 2);
    assert!(
        matches!(
            io.replies.as_slice(),
            [(9, Answer::Membership(Err(SubmitFailure::Retry(1))))]
        ),
        "{:?}",
        io.replies
    );
    assert_eq!(node.replica().raw_node().raft.lead_transferee, Some(2));
    assert_eq!(
        node.replica()
            .raw_node()
            .raft
            .prs()
            .conf()
            .voters()
            .ids()
            .len(),
        2
    );
}

#[test]
fn a_membership_change_raft_cannot_apply_stops_the_replica() {
    let (state, _) = destination_shard();
    let (mut node, mut io, storage) = follower_with(state);
    // Committed, but raft-rs refuses to apply it (a group without voters).
    let impossible = membership(
        1,
        &[
            (ConfChangeType::RemoveNode, 1),
            (ConfChangeType::RemoveNode, 2),
            (ConfChangeType::RemoveNode, 3),
        ],
        b"",
    );
    let mut append = Message::default();
    append.set_msg_type(MessageType::MsgAppend);
    append.from = 2;
    append.to = 1;
    append.term = 1;
    append.commit = 1;
    append.entries = vec![impossible].into();
    node.peer_message(&mut io, 2, PeerMessage::Raft(Box::new(append)));
    let mut stopped = None;
    for _ in 0..3 {
        match node.start_turn(&mut io, AT) {
            Ok(Some(persist)) => {
                storage.wl().append(&persist.entries).unwrap();
                if let Some(hs) = &persist.hard_state {
                    storage.wl().set_hardstate(hs.clone());
                }
                node.staged(persist.number);
                node.persisted(&mut io, persist.number, AT);
                node.finish_turn(&mut io);
            }
            Ok(None) => {
                node.finish_turn(&mut io);
            }
            Err(error) => {
                stopped = Some(error);
                break;
            }
        }
    }
    match stopped {
        Some(crate::replica::ReplicaError::Membership { index: 1, .. }) => {}
        other => panic!("expected the replica to stop at index 1, got {other:?}"),
    }
    // And it stays stopped.
    assert!(node.start_turn(&mut io, AT).is_err());
}

#[test]
fn a_leader_that_applies_its_own_removal_steps_down() {
    // The removal was proposed while another validator led, or leadership moved to this one
    // before it applied: raft-rs 0.7 keeps a removed leader leading (and panics at the next
    // append response, its own progress being gone). It must step down when it applies it.
    let (mut node, mut io, storage) = leader_of_two();
    let index = node
        .replica
        .propose_membership(&[(ConfChangeType::RemoveNode, 1)], b"")
        .expect("proposed");
    turns(&mut node, &mut io, &storage, 1);
    ack_from_2(&mut node, &mut io, &storage);
    assert!(node.replica().state().applied_index() >= index);
    assert!(!node.replica().is_leader(), "a removed leader still leads");
    // A late append response from 2 must not reach a leader without its own progress.
    ack_from_2(&mut node, &mut io, &storage);
}

#[test]
fn a_re_added_validator_holds_pruning_back_until_its_new_incarnation_reports() {
    let (state, _) = destination_shard();
    let (mut node, mut io, storage) = follower_with(state);
    let credited = |node_id: u64, up_to: u64| LocalMessage::Credited {
        destination: 0,
        node: node_id,
        up_to,
    };
    // Validator 3's old incarnation credited receipts of this shard up to 50, then left.
    node.local_message(credited(3, 50));
    leader_sends(
        &mut node,
        &mut io,
        &storage,
        0,
        vec![membership(1, &[(ConfChangeType::RemoveNode, 3)], b"")],
        1,
    );
    // Wiped and re-added: its new replica has credited nothing yet.
    let add = membership(2, &[(ConfChangeType::AddLearnerNode, 3)], b"127.0.0.1:9300");
    leader_sends(&mut node, &mut io, &storage, 1, vec![add], 2);
    assert_eq!(node.replica().learners(), vec![3]);
    node.local_message(credited(1, 60));
    node.local_message(credited(2, 60));
    assert_eq!(
        node.counters().receipts_pruned_to,
        0,
        "pruned by the old incarnation's report"
    );
}

#[test]
fn a_validator_outside_the_group_still_holds_its_own_pruning_back() {
    // A joiner before its snapshot: not in its own configuration (here: the group [2, 3]).
    let (state, _) = destination_shard();
    let mut replica_config = ReplicaConfig::new(1, state.shard());
    replica_config.voters = vec![2, 3];
    let storage = MemStorage::new_with_conf_state((vec![2, 3], vec![]));
    let replica = ShardReplica::new(replica_config, storage, state).expect("replica");
    let mut node: ShardNode<u32> = ShardNode::new(replicated(), replica);
    for member in [2, 3] {
        node.local_message(LocalMessage::Credited {
            destination: 0,
            node: member,
            up_to: 60,
        });
    }
    // Its own destination replica has credited nothing: nothing may be forgotten here.
    assert_eq!(node.counters().receipts_pruned_to, 0);
}

#[test]
fn a_leader_whose_apply_waits_at_a_marker_hands_leadership_over() {
    // Leader 1 of [1, 2] commits a marker whose receipts never reach it (its replica of the
    // source shard was removed from that group without learning it): it applies nothing more
    // and acknowledges nothing. After a hand-over interval it hands over to caught-up 2.
    // Shard 0 prefers voter 1 as leader, so only the stall can make it hand over.
    let genesis = Genesis {
        chain_id: 7,
        controllers: Default::default(),
        shards: Some(2),
        allocations: vec![],
    };
    let (mut node, mut io, storage) = leader_of_two_on(ShardState::from_genesis(&genesis, 0, 2));
    let data = marker(0, 1, 12).data.to_vec();
    let context = crate::replica::entry_context(crate::replica::ENTRY_KIND_MARKERS, 1, 99);
    node.replica
        .raw_node_mut()
        .propose(context.to_vec(), data)
        .expect("proposed");
    turns(&mut node, &mut io, &storage, 1);
    ack_from_2(&mut node, &mut io, &storage);
    assert!(node.replica().apply_blocked());
    assert!(node.replica().is_leader());
    let later = |ms: u64| Now {
        monotonic_ms: AT.monotonic_ms + ms,
        wall_ms: AT.wall_ms + ms,
    };
    node.tick(&mut io, later(0));
    assert_eq!(node.replica().raw_node().raft.lead_transferee, None);
    let interval = node.config().leader_transfer_interval_ms;
    node.tick(&mut io, later(interval + 1));
    assert_eq!(node.replica().raw_node().raft.lead_transferee, Some(2));
}

#[test]
fn a_replica_whose_apply_is_blocked_declines_a_leadership_hand_over() {
    // Its apply waits at a marker: as leader it could acknowledge nothing (and would hand
    // leadership back), so it does not campaign when the leader hands over to it.
    let (state, _) = destination_shard();
    let (mut node, mut io, storage) = follower_with(state);
    leader_sends(&mut node, &mut io, &storage, 0, vec![marker(1, 0, 10)], 1);
    assert!(node.replica().apply_blocked());
    let mut timeout_now = Message::default();
    timeout_now.set_msg_type(MessageType::MsgTimeoutNow);
    timeout_now.from = 2;
    timeout_now.to = 1;
    timeout_now.term = 1;
    node.peer_message(&mut io, 2, PeerMessage::Raft(Box::new(timeout_now)));
    turns(&mut node, &mut io, &storage, 2);
    assert_eq!(
        node.replica().raw_node().raft.state,
        raft::StateRole::Follower
    );
    assert_eq!(node.replica().raw_node().raft.term, 1);
    assert_eq!(node.counters().handovers_declined, 1);
}

#[test]
fn a_replica_without_a_configuration_does_not_vote() {
    // A joiner before its snapshot (possibly rejoining wiped, under a node id it had before):
    // an empty log is behind every log, so raft-rs would grant any candidate its vote — a
    // removed voter that never learnt its removal could win its stale configuration with it.
    let (state, _) = destination_shard();
    let mut replica_config = ReplicaConfig::new(3, state.shard());
    replica_config.voters = Vec::new();
    let storage = MemStorage::new();
    let replica = ShardReplica::new(replica_config, storage.clone(), state).expect("joiner");
    let config = NodeConfig {
        replicated: true,
        incarnation: 3,
        ..NodeConfig::new(3)
    };
    let mut node: ShardNode<u32> = ShardNode::new(config, replica);
    let mut io = Recorder::default();
    for msg_type in [MessageType::MsgRequestPreVote, MessageType::MsgRequestVote] {
        let mut ask = Message::default();
        ask.set_msg_type(msg_type);
        ask.from = 2;
        ask.to = 3;
        ask.term = 7;
        ask.index = 63;
        ask.log_term = 6;
        node.peer_message(&mut io, 2, PeerMessage::Raft(Box::new(ask)));
        turns(&mut node, &mut io, &storage, 2);
    }
    assert_eq!(node.replica().raw_node().raft.vote, 0);
    let granted = io.sent.iter().any(|(_, m)| {
        matches!(m, PeerMessage::Raft(m)
            if matches!(m.get_msg_type(), MessageType::MsgRequestVoteResponse | MessageType::MsgRequestPreVoteResponse) && !m.reject)
    });
    assert!(!granted, "{:?}", io.sent);
    assert_eq!(node.counters().votes_declined, 2);
}

#[test]
fn a_follower_that_cannot_campaign_forgets_its_leader_and_votes() {
    // raft-rs will not campaign while committed membership changes are unapplied, and
    // restarts its timer with the old leader still known — which made a follower ignore every
    // pre-vote as "within the leader's lease" for ever (seed 710333). Membership changes now
    // apply to raft ahead of a waiting marker, so the window is the one between learning a
    // commit and the next ready cycle: here a pre-vote this follower refuses (its log is
    // longer) tells it that the change at index 2 committed, just before its election times
    // out. After that whole timeout without its leader it forgets the leader and votes.
    let (state, _) = destination_shard();
    let (mut node, mut io, storage) = follower_with(state);
    let joint = membership(2, &[(ConfChangeType::AddLearnerNode, 4)], b"127.0.0.1:9400");
    let tail = entry(3, EntryType::EntryNormal, Vec::new(), Vec::new());
    leader_sends(
        &mut node,
        &mut io,
        &storage,
        0,
        vec![marker(1, 0, 10), joint, tail],
        0,
    );
    let raft = &mut node.replica.raw_node_mut().raft;
    let timeout = 2 * raft.election_timeout() - 1;
    raft.set_randomized_election_timeout(timeout);
    // The leader falls silent; its lease runs out one tick before the election timeout.
    for tick in 0..timeout as u64 - 1 {
        let now = Now {
            monotonic_ms: tick,
            wall_ms: tick,
        };
        node.tick(&mut io, now);
        turns(&mut node, &mut io, &storage, 1);
    }
    let pre_vote = |from: u64, index: u64, commit: u64| {
        let mut ask = Message::default();
        ask.set_msg_type(MessageType::MsgRequestPreVote);
        (ask.from, ask.to, ask.term) = (from, 1, 2);
        (ask.index, ask.log_term) = (index, 1);
        (ask.commit, ask.commit_term) = (commit, 1);
        PeerMessage::Raft(Box::new(ask))
    };
    // Candidate 3 holds [1, 2] and knows both committed: refused, and its commit index taken.
    node.peer_message(&mut io, 3, pre_vote(3, 2, 2));
    let raft = &node.replica().raw_node().raft;
    assert_eq!((raft.raft_log.committed, raft.raft_log.applied), (2, 0));
    assert_eq!(raft.leader_id, 2);
    // The election times out before a ready cycle hands the change over: no campaign.
    node.tick(
        &mut io,
        Now {
            monotonic_ms: timeout as u64,
            wall_ms: timeout as u64,
        },
    );
    let raft = &node.replica().raw_node().raft;
    assert_eq!(
        raft.state,
        raft::StateRole::Follower,
        "raft refused to campaign"
    );
    assert_eq!(raft.leader_id, raft::INVALID_ID, "the leader is forgotten");
    // Candidate 2, as up to date, asks for a pre-vote: granted (not "within the lease").
    io.sent.clear();
    node.peer_message(&mut io, 2, pre_vote(2, 3, 2));
    turns(&mut node, &mut io, &storage, 1);
    let granted = io.sent.iter().any(|(to, m)| {
        matches!(m, PeerMessage::Raft(m)
            if *to == 2 && m.get_msg_type() == MessageType::MsgRequestPreVoteResponse && !m.reject)
    });
    assert!(granted, "{:?}", io.sent);
}

#[test]
fn a_follower_blocked_at_a_marker_applies_membership_ahead_and_campaigns() {
    // Seed 917863: apply waits at a marker (index 1) whose receipts do not come, a committed
    // joint change waits behind it (index 2), and this follower holds the group's longest
    // log. raft-rs will not campaign with a committed change unapplied, and no shorter log
    // gets its vote: with a voter down nobody could be elected. raft's configuration depends
    // on the log alone, so the change applies to raft ahead of the ledger.
    let (state, to) = destination_shard();
    let (mut node, mut io, storage) = follower_with(state);
    let changes = [
        (ConfChangeType::AddNode, 4),
        (ConfChangeType::RemoveNode, 3),
    ];
    let joint = membership(2, &changes, b"127.0.0.1:9400");
    leader_sends(
        &mut node,
        &mut io,
        &storage,
        0,
        vec![marker(1, 0, 10), joint],
        2,
    );
    let replica = node.replica();
    assert!(replica.apply_blocked());
    assert_eq!(
        replica.state().applied_index(),
        0,
        "the ledger waits at the marker"
    );
    let mut conf = replica.raw_node().raft.prs().conf().to_conf_state();
    conf.voters.sort_unstable();
    conf.voters_outgoing.sort_unstable();
    assert_eq!(
        (conf.voters, conf.voters_outgoing),
        (vec![1, 2, 4], vec![1, 2, 3])
    );
    assert_eq!(replica.raw_node().raft.raft_log.applied, 2);
    assert!(
        replica.membership_ahead(),
        "no snapshot pairs the state with it"
    );
    tick_through_two_election_timeouts(&mut node, &mut io, &storage);
    let raft = &node.replica().raw_node().raft;
    assert_ne!(raft.state, raft::StateRole::Follower, "it campaigns");
    // The receipts come: the marker applies, then the change's ledger part (the address), in
    // log order, without applying the change to raft a second time (a joint change twice
    // would stop the replica).
    node.local_message(receipts(10, 0, &[], to));
    turns(&mut node, &mut io, &storage, 2);
    let replica = node.replica();
    assert_eq!(replica.state().applied_index(), 2);
    assert!(!replica.apply_blocked() && !replica.membership_ahead());
    assert_eq!(
        replica.state().peer_address(4),
        Some(&b"127.0.0.1:9400"[..])
    );
}

#[test]
fn a_snapshot_request_beyond_the_leaders_commit_index_gets_appends_again() {
    // A follower asked an earlier leader for a snapshot at its last index (213 in seed 702359);
    // raft-rs keeps that request when leadership changes and the new leader, whose commit
    // index lags it, would send nothing but a snapshot it cannot make before it commits that
    // far — which needs that follower's acknowledgement.
    let (mut node, mut io, storage) = leader_of_two();
    let raft = &node.replica().raw_node().raft;
    let (term, committed) = (raft.term, raft.raft_log.committed);
    let mut request = Message::default();
    request.set_msg_type(MessageType::MsgAppendResponse);
    request.from = 2;
    request.to = 1;
    request.term = term;
    request.reject = true;
    request.index = committed;
    request.reject_hint = committed;
    request.request_snapshot = committed + 5;
    node.peer_message(&mut io, 2, PeerMessage::Raft(Box::new(request)));
    turns(&mut node, &mut io, &storage, 2);
    let progress = node.replica().raw_node().raft.prs().get(2).unwrap().clone();
    assert_eq!(progress.pending_request_snapshot, raft::INVALID_INDEX);
    // The next entry goes to 2 as an append (before: nothing, a snapshot it cannot make).
    io.sent.clear();
    node.replica.raw_node_mut().propose(vec![], vec![]).unwrap();
    turns(&mut node, &mut io, &storage, 2);
    let appended = io.sent.iter().any(|(to, m)| {
        matches!(m, PeerMessage::Raft(m) if *to == 2 && m.get_msg_type() == MessageType::MsgAppend)
    });
    assert!(appended, "{:?}", io.sent);
}

#[test]
fn a_follower_drops_its_snapshot_request_when_the_leader_changes() {
    let (state, _) = destination_shard();
    let (mut node, mut io, storage) = follower_with(state);
    leader_sends(&mut node, &mut io, &storage, 0, vec![marker(1, 0, 10)], 1);
    // Validator 3 elected in term 2; then the same validator re-elected in term 3 (a newly
    // elected leader's commit index may be behind this follower's: seed 702359), a new
    // leadership too. Each time the follower had a snapshot request pending.
    for term in [2, 3] {
        node.replica.raw_node_mut().raft.pending_request_snapshot = 1;
        let mut append = Message::default();
        append.set_msg_type(MessageType::MsgAppend);
        append.from = 3;
        append.to = 1;
        append.term = term;
        append.index = 1;
        append.log_term = 1;
        append.commit = 1;
        node.peer_message(&mut io, 3, PeerMessage::Raft(Box::new(append)));
        turns(&mut node, &mut io, &storage, 3);
        let raft = &node.replica().raw_node().raft;
        assert_eq!((raft.leader_id, raft.term), (3, term));
        assert_eq!(raft.pending_request_snapshot, raft::INVALID_INDEX);
    }
}

#[test]
fn a_candidate_learns_the_leave_of_a_joint_configuration_from_a_refusal_of_an_older_term() {
    // Seed 1309781: a candidate still in the joint configuration needs the vote of the removed
    // validator, which knows the leave committed but refuses a shorter log, and answers with
    // the old term it kept (removed, it hears of no election). raft drops such a refusal as
    // stale, its commit index with it, and nobody is ever elected.
    let (state, _) = destination_shard();
    let (mut node, mut io, storage) = follower_with(state);
    let changes = [
        (ConfChangeType::AddNode, 4),
        (ConfChangeType::RemoveNode, 3),
    ];
    let leave = membership(2, &[], b"");
    leader_sends(
        &mut node,
        &mut io,
        &storage,
        0,
        vec![membership(1, &changes, b"127.0.0.1:9400"), leave],
        1,
    );
    let voters = |node: &ShardNode<u32>| {
        let mut conf = node.replica().raw_node().raft.prs().conf().to_conf_state();
        conf.voters.sort_unstable();
        conf.voters_outgoing.sort_unstable();
        (conf.voters, conf.voters_outgoing)
    };
    assert_eq!(voters(&node), (vec![1, 2, 4], vec![1, 2, 3]), "joint");
    // The leader goes; this follower campaigns, and 2 grants its pre-vote: it is a candidate.
    tick_through_two_election_timeouts(&mut node, &mut io, &storage);
    let pre_vote_term = node.replica().raw_node().raft.term + 1;
    let mut granted = Message::default();
    granted.set_msg_type(MessageType::MsgRequestPreVoteResponse);
    (granted.from, granted.to, granted.term) = (2, 1, pre_vote_term);
    node.peer_message(&mut io, 2, PeerMessage::Raft(Box::new(granted)));
    turns(&mut node, &mut io, &storage, 2);
    let raft = &node.replica().raw_node().raft;
    assert_eq!(raft.state, raft::StateRole::Candidate);
    assert_eq!(raft.raft_log.committed, 1);
    // 3, removed, refuses with its old term and the commit index that covers the leave.
    let mut refused = Message::default();
    refused.set_msg_type(MessageType::MsgRequestVoteResponse);
    (refused.from, refused.to, refused.term) = (3, 1, 1);
    (refused.reject, refused.commit, refused.commit_term) = (true, 2, 1);
    assert!(refused.term < raft.term, "an older term");
    node.peer_message(&mut io, 3, PeerMessage::Raft(Box::new(refused)));
    turns(&mut node, &mut io, &storage, 2);
    let raft = &node.replica().raw_node().raft;
    assert_eq!(raft.raft_log.committed, 2, "the leave is known committed");
    assert_eq!(
        raft.state,
        raft::StateRole::Follower,
        "a candidate stops campaigning until it has applied the change"
    );
    assert_eq!(voters(&node), (vec![1, 2, 4], vec![]), "the group left it");
    assert_eq!(node.replica().state().applied_index(), 2);
}

#[test]
fn a_shard_snapshots_once_the_entries_it_applied_pass_the_byte_bound() {
    // 100 transfers make one entry of about 17 KB: under a 10 KB bound a snapshot is due,
    // under the default bound (and far from 20,000 entries) none is.
    for (bytes_bound, due) in [
        (NodeConfig::new(1).snapshot_interval_bytes, false),
        (10_000, true),
    ] {
        let config = NodeConfig {
            snapshot_interval_bytes: bytes_bound,
            ..NodeConfig::new(1)
        };
        let (mut node, mut io, storage) = restarted_single_leader_with(config);
        let (records, valid) = transfers(100);
        node.submit(&mut io, &records, &valid, Submitter::Client(1));
        let mut snapshot = None;
        for _ in 0..5 {
            if let Some(persist) = node.start_turn(&mut io, AT).unwrap() {
                storage.wl().append(&persist.entries).unwrap();
                if let Some(hs) = &persist.hard_state {
                    storage.wl().set_hardstate(hs.clone());
                }
                node.staged(persist.number);
                node.persisted(&mut io, persist.number, AT);
            }
            snapshot = node.finish_turn(&mut io);
            if snapshot.is_some() {
                break;
            }
        }
        assert!(node.replica().applied_bytes() > 10_000);
        assert_eq!(snapshot.is_some(), due, "bound {bytes_bound}");
        if let Some(snapshot) = snapshot {
            node.snapshot_saved(&mut io, snapshot.index, AT);
            // The bound counts from the snapshot on: nothing more is due.
            assert!(node.finish_turn(&mut io).is_none());
        }
    }
}

#[test]
fn the_sink_tap_chains_every_applied_index_with_the_balances_each_entry_changed() {
    let genesis = Genesis {
        chain_id: 7,
        controllers: Default::default(),
        shards: Some(1),
        allocations: vec![Allocation {
            address: address_of(&key()),
            asset: 0,
            amount: 1_000,
        }],
    };
    let (mut node, mut io, storage) =
        follower_tapping(ShardState::from_genesis(&genesis, 0, 1), true);
    let (records, _) = transfers(3);
    let context = crate::replica::entry_context(crate::replica::ENTRY_KIND_TRANSFERS, 2, 2);
    let batch = entry(
        2,
        EntryType::EntryNormal,
        context.to_vec(),
        crate::encode_batch(&records),
    );
    let empty = |index| entry(index, EntryType::EntryNormal, vec![], vec![]);
    leader_sends(
        &mut node,
        &mut io,
        &storage,
        0,
        vec![empty(1), batch, empty(3)],
        3,
    );
    let tapped = node.take_applied();
    // The batch covers the empty entry before it; a last entry without data covers the rest.
    let chain: Vec<(u64, u64, usize)> = tapped
        .iter()
        .map(|e| (e.previous, e.index, e.results.len()))
        .collect();
    assert_eq!(chain, [(0, 2, 3), (2, 3, 0)]);
    let from = address_of(&key());
    let sender: Vec<u64> = tapped[0]
        .balances
        .iter()
        .filter(|b| b.address == from)
        .map(|b| b.balance)
        .collect();
    assert_eq!(sender, [985], "the sender's balance after the batch, once");
    let receiver = tapped[0]
        .balances
        .iter()
        .rev()
        .find(|b| b.address.0 == [9; 32]);
    assert_eq!(receiver.map(|b| b.balance), Some(15));
    assert!(node.take_applied().is_empty(), "nothing new applied");

    // A marker crediting receipts from another shard: the credited balances, chained on.
    let (state, to) = destination_shard();
    let (mut node, mut io, storage) = follower_tapping(state, true);
    node.local_message(receipts(10, 0, &[4, 8], to));
    leader_sends(&mut node, &mut io, &storage, 0, vec![marker(1, 0, 10)], 1);
    let tapped = node.take_applied();
    assert_eq!(tapped.len(), 1);
    assert_eq!((tapped[0].previous, tapped[0].index), (0, 1));
    assert!(tapped[0].data.is_empty());
    let credited: Vec<u64> = tapped[0].balances.iter().map(|b| b.balance).collect();
    assert_eq!(credited, [10, 10], "both receipts credited to {to:?}");
}

#[test]
fn shards_start_ahead_towards_their_first_snapshot_so_that_they_take_turns() {
    use super::snapshot_head_start_bytes as head_start;
    // Two shards: shard 0 snapshots after half the interval, shard 1 after all of it; from
    // then on every interval, half an interval apart.
    assert_eq!(head_start(512, 0, 2), 256);
    assert_eq!(head_start(512, 1, 2), 0);
    assert_eq!(head_start(400, 0, 4), 300);
    assert_eq!(head_start(400, 3, 4), 0);
    // One shard, and the simulator's "never": no head start, no overflow.
    assert_eq!(head_start(512, 0, 1), 0);
    assert_eq!(head_start(u64::MAX, 1, 2), 0);
    assert!(head_start(u64::MAX, 0, 2) < u64::MAX);
}
