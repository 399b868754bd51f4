//! Verification shared between cores.
//!
//! A shard verifies its clients' signatures on its own core (`ingress`). A batch of 1,000
//! signed transfers then waits for one core to verify all of them (~14 ms on the development
//! VM), even when the other cores have time to spare. So a large submission that nothing waits
//! behind (the shard is not backlogged) is split: the shard's core keeps the first part and
//! *offers* each further part to another core of the engine. Whichever core starts on a part
//! first verifies it: the helper, if it gets to it first, or the shard's core, which takes back
//! every part not yet started once its own part is done. So a busy helper never makes a
//! submission wait much longer than its own core would have taken, and an idle one halves the
//! wait on two cores. A backlogged shard keeps its work: every core is busy then, and lending
//! would only add the hand-over.
//!
//! - Offers and answers travel on rings of their own, one per ordered pair of cores, never
//!   behind commands: a command ring's router may wait for room in a shard's queue, and a
//!   shard that waited for an answer behind that wait would never get it. The help routers
//!   never wait: an offer the helper has no room for goes back unclaimed.
//! - A part's records are copied into a buffer of the shard's core (168 bytes a signature,
//!   against ~14 µs to verify one), the helper writes the verdicts into a buffer of that core
//!   too (its capacity reserved there), and both go back to be freed where they were
//!   allocated.
//! - Each (shard, helper core) has one claim word, `generation << 2 | state`, in a board made
//!   when the engine starts. The shard opens it with a new generation when it offers a part;
//!   the helper's claim and the shard's take-back are each one compare-and-swap from "open" of
//!   that generation, so exactly one of them wins, and an offer of an earlier generation (a
//!   part taken back, its offer still on the way) can never be claimed.

use super::mesh::CoreCounters;
use crate::record::Record;
use crate::shard::ShardId;
use crate::verify::SignatureVerifier;
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::channels::shared_channel::{self, ConnectedSender, SharedReceiver, SharedSender};
use std::cell::{Cell, OnceCell};
use std::ops::Range;
use std::rc::Rc;
use std::sync::atomic::{
    AtomicU64,
    Ordering::{AcqRel, Acquire, Relaxed, Release},
};
use std::sync::Arc;

/// Signatures a submission needs at least before its shard offers parts of it to other cores,
/// by default (`EngineConfig::verify_help_signatures_min`; 0 turns the help off).
pub const VERIFY_HELP_SIGNATURES_MIN_DEFAULT: usize = 128;
/// Signatures of a part at least: a smaller one costs more to hand over than it saves.
const PART_SIGNATURES_MIN: usize = 64;
/// Messages each help ring holds (offers one way, answers and returns the other). A shard has
/// at most one part on offer to each other core, so this bounds the shards a core may have.
const HELP_RING_DEPTH: usize = 256;
/// Offers a core's helper holds queued at most; one more goes back unclaimed at once.
const HELPER_QUEUE_PARTS_MAX: usize = 64;

const OPEN: u64 = 1;
const CLAIMED: u64 = 2;
const TAKEN_BACK: u64 = 3;

/// The claim words of every (shard, helper core), made when the engine starts.
pub struct ClaimBoard {
    words: Box<[AtomicU64]>,
    cores: usize,
}

impl ClaimBoard {
    pub fn new(shards: usize, cores: usize) -> ClaimBoard {
        ClaimBoard {
            words: (0..shards * cores).map(|_| AtomicU64::new(0)).collect(),
            cores,
        }
    }

    fn word(&self, shard: ShardId, helper: usize) -> &AtomicU64 {
        assert!(helper < self.cores);
        &self.words[shard as usize * self.cores + helper]
    }

    /// Offers `shard`'s next part to `helper` under `generation` (new for each offer).
    fn open(&self, shard: ShardId, helper: usize, generation: u64) {
        self.word(shard, helper)
            .store(generation << 2 | OPEN, Release);
    }

    fn settle(&self, shard: ShardId, helper: usize, generation: u64, state: u64) -> bool {
        self.word(shard, helper)
            .compare_exchange(
                generation << 2 | OPEN,
                generation << 2 | state,
                AcqRel,
                Acquire,
            )
            .is_ok()
    }

    /// The helper starts on the part: whether it got it (the shard had not taken it back).
    fn claim(&self, shard: ShardId, helper: usize, generation: u64) -> bool {
        self.settle(shard, helper, generation, CLAIMED)
    }

    /// The shard takes its part back: whether it did (the helper had not started on it).
    fn take_back(&self, shard: ShardId, helper: usize, generation: u64) -> bool {
        self.settle(shard, helper, generation, TAKEN_BACK)
    }
}

/// A part of a submission offered to another core.
pub(super) struct Part {
    /// The shard's core: the buffers' home.
    home: usize,
    shard: ShardId,
    helper: usize,
    generation: u64,
    records: Vec<Record>,
    /// One per record once verified; its capacity was reserved at home.
    verdicts: Vec<bool>,
}

/// What travels on a help ring.
enum Message {
    /// Verify this part if you can claim it.
    Offer(Part),
    /// A part verified, for a shard of the receiving core.
    Verified(Part),
    /// A part not claimed, home to be freed.
    Unclaimed(Part),
}

/// One core's ends of the help rings, made before the executors start.
pub(super) struct HelpEnds {
    /// To every other core (index = destination core; `None` at this core's own index).
    outgoing: Vec<Option<SharedSender<Message>>>,
    /// From every other core.
    incoming: Vec<SharedReceiver<Message>>,
}

/// The help rings of `cores` executors: one per ordered pair of cores.
pub(super) fn build(cores: usize) -> Vec<HelpEnds> {
    let mut ends: Vec<HelpEnds> = (0..cores)
        .map(|_| HelpEnds {
            outgoing: (0..cores).map(|_| None).collect(),
            incoming: Vec::with_capacity(cores.saturating_sub(1)),
        })
        .collect();
    for from in 0..cores {
        for to in (0..cores).filter(|&to| to != from) {
            let (tx, rx) = shared_channel::new_bounded(HELP_RING_DEPTH);
            ends[from].outgoing[to] = Some(tx);
            ends[to].incoming.push(rx);
        }
    }
    ends
}

/// One core's side of the help: what its shards offer through, and what its helper answers
/// through. Single-threaded (one per executor).
pub(super) struct HelpDesk {
    core: usize,
    cores: usize,
    /// Signatures a submission needs at least to be split (0: never).
    signatures_min: usize,
    /// Signatures per batch equation between two yields, on either side.
    slice_signatures: usize,
    board: Arc<ClaimBoard>,
    /// Ring to each other core, once connected (index = core).
    outgoing: Vec<OnceCell<ConnectedSender<Message>>>,
    generation: Cell<u64>,
    core_counters: Arc<[CoreCounters]>,
}

/// What `install` needs besides the rings.
pub(super) struct HelpSetup {
    pub core: usize,
    pub cores: usize,
    pub signatures_min: usize,
    pub slice_signatures: usize,
    pub board: Arc<ClaimBoard>,
    pub core_counters: Arc<[CoreCounters]>,
    /// This core's shards.
    pub shards: Vec<ShardId>,
    pub shard_count: usize,
}

/// Starts a core's help: connects its rings, routes what arrives on them (offers to the
/// core's helper task, verified parts to their shard), and starts the helper. Returns the desk
/// and, for each of the core's shards, the receiver its ingress task waits on for answers.
pub(super) fn install(
    setup: HelpSetup,
    ends: HelpEnds,
) -> (Rc<HelpDesk>, Vec<(ShardId, LocalReceiver<Part>)>) {
    let desk = Rc::new(HelpDesk {
        core: setup.core,
        cores: setup.cores,
        signatures_min: setup.signatures_min,
        slice_signatures: setup.slice_signatures,
        board: setup.board,
        outgoing: (0..setup.cores).map(|_| OnceCell::new()).collect(),
        generation: Cell::new(0),
        core_counters: setup.core_counters,
    });
    for (core, end) in ends.outgoing.into_iter().enumerate() {
        let Some(end) = end else { continue };
        let desk = desk.clone();
        glommio::spawn_local(async move {
            let ring = end.connect().await;
            assert!(
                desk.outgoing[core].set(ring).is_ok(),
                "ring connected twice"
            );
        })
        .detach();
    }
    // Answers for each shard: one per other core at most is ever owed.
    let mut answers: Vec<Option<LocalSender<Part>>> =
        (0..setup.shard_count).map(|_| None).collect();
    let mut receivers = Vec::with_capacity(setup.shards.len());
    for &shard in &setup.shards {
        let (tx, rx) = local_channel::new_bounded(setup.cores.max(1));
        answers[shard as usize] = Some(tx);
        receivers.push((shard, rx));
    }
    let answers = Rc::new(answers);
    let (offers_tx, offers_rx) = local_channel::new_bounded(HELPER_QUEUE_PARTS_MAX);
    let offers_tx = Rc::new(offers_tx);
    for end in ends.incoming {
        let desk = desk.clone();
        let answers = answers.clone();
        let offers = offers_tx.clone();
        glommio::spawn_local(async move {
            let ring = end.connect().await;
            while let Some(message) = ring.recv().await {
                desk.route(message, &offers, &answers);
            }
        })
        .detach();
    }
    glommio::spawn_local(helper(offers_rx, desk.clone())).detach();
    (desk, receivers)
}

impl HelpDesk {
    /// Hands what arrived on a help ring on, without waiting.
    fn route(
        &self,
        message: Message,
        offers: &LocalSender<Part>,
        answers: &[Option<LocalSender<Part>>],
    ) {
        match message {
            Message::Offer(part) => {
                if let Err(error) = offers.try_send(part) {
                    self.send_home(Message::Unclaimed(channel_item(error)));
                }
            }
            Message::Verified(part) => {
                // A stopped shard's answer is dropped: its buffers are this core's own.
                if let Some(Some(tx)) = answers.get(part.shard as usize) {
                    let _ = tx.try_send(part);
                }
            }
            // Freed here, where they were allocated.
            Message::Unclaimed(part) => drop(part),
        }
    }

    /// Sends a part home without waiting; freed here (counted) when its ring has no room.
    fn send_home(&self, message: Message) {
        let home = match &message {
            Message::Offer(part) | Message::Verified(part) | Message::Unclaimed(part) => part.home,
        };
        let sent = self.outgoing[home]
            .get()
            .is_some_and(|ring| ring.try_send(message).is_ok());
        if !sent {
            self.core_counters[self.core]
                .buffers_freed_away
                .fetch_add(1, Relaxed);
        }
    }

    fn next_generation(&self) -> u64 {
        let generation = self.generation.get() + 1;
        self.generation.set(generation);
        generation
    }

    /// How many parts `signatures` are split into (1: verified here alone).
    fn parts_for(&self, signatures: usize, backlogged: bool) -> usize {
        if backlogged || self.signatures_min == 0 || signatures < self.signatures_min {
            return 1;
        }
        self.cores.min(signatures / PART_SIGNATURES_MIN).max(1)
    }

    /// Verifies `records` for `shard` of this core with `verifier`, offering parts to the other
    /// cores when there are enough signatures and nothing waits behind them. The verdicts, in
    /// order.
    pub(super) async fn verify(
        &self,
        shard: ShardId,
        answers: &LocalReceiver<Part>,
        verifier: &mut SignatureVerifier,
        records: &[Record],
        (slice_signatures, backlogged): (usize, bool),
        slice_valid: &mut Vec<bool>,
    ) -> Vec<bool> {
        let parts = self.parts_for(records.len(), backlogged);
        if parts < 2 {
            return verify_in_slices(verifier, records, slice_signatures, slice_valid).await;
        }
        let part_len = records.len().div_ceil(parts);
        let counters = &self.core_counters[self.core];
        let mut offers: Vec<Offer> = Vec::with_capacity(parts - 1);
        for i in 1..parts {
            let range = i * part_len..((i + 1) * part_len).min(records.len());
            if range.is_empty() {
                break;
            }
            let helper = (self.core + i) % self.cores;
            let generation = self.next_generation();
            self.board.open(shard, helper, generation);
            let part = Part {
                home: self.core,
                shard,
                helper,
                generation,
                records: records[range.clone()].to_vec(),
                verdicts: Vec::with_capacity(range.len()),
            };
            let offered = self.outgoing[helper]
                .get()
                .is_some_and(|ring| ring.try_send(Message::Offer(part)).is_ok());
            if offered {
                counters.verify_parts_offered.fetch_add(1, Relaxed);
            }
            offers.push(Offer {
                helper,
                generation,
                range,
                offered,
                verdicts: None,
            });
        }
        let mut verdicts = Vec::with_capacity(records.len());
        verdicts.extend(
            verify_in_slices(
                verifier,
                &records[..part_len],
                slice_signatures,
                slice_valid,
            )
            .await,
        );
        // Take back, in order, what no helper started on; wait for the rest.
        for offer in &mut offers {
            let unclaimed =
                !offer.offered || self.board.take_back(shard, offer.helper, offer.generation);
            if unclaimed {
                if offer.offered {
                    counters.verify_parts_taken_back.fetch_add(1, Relaxed);
                }
                let part = &records[offer.range.clone()];
                offer.verdicts =
                    Some(verify_in_slices(verifier, part, slice_signatures, slice_valid).await);
            }
        }
        while let Some(offer) = offers.iter_mut().find(|o| o.verdicts.is_none()) {
            let Some(mut part) = answers.recv().await else {
                // The engine is stopping: verify what is owed here.
                let part = &records[offer.range.clone()];
                offer.verdicts =
                    Some(verify_in_slices(verifier, part, slice_signatures, slice_valid).await);
                continue;
            };
            // Only a claimed part is answered, and a shard waits for all of its claimed parts
            // before it verifies its next submission: every answer is for one of these offers.
            let answered = offers
                .iter_mut()
                .find(|o| o.helper == part.helper && o.generation == part.generation)
                .expect("an answer is for a part this shard offered");
            assert_eq!(
                part.verdicts.len(),
                answered.range.len(),
                "one verdict per record"
            );
            answered.verdicts = Some(std::mem::take(&mut part.verdicts));
        }
        for offer in offers {
            verdicts.extend(offer.verdicts.expect("every part verified"));
        }
        assert_eq!(verdicts.len(), records.len());
        verdicts
    }
}

/// A part a shard offered, and its verdicts once known.
struct Offer {
    helper: usize,
    generation: u64,
    range: Range<usize>,
    /// Whether it went out (a full ring keeps it here).
    offered: bool,
    verdicts: Option<Vec<bool>>,
}

/// A core's helper: verifies the parts other cores' shards offer it, one at a time, each if it
/// can still claim it.
async fn helper(offers: LocalReceiver<Part>, desk: Rc<HelpDesk>) {
    let mut verifier = SignatureVerifier::new(desk.slice_signatures);
    let mut slice_valid = Vec::new();
    let counters = &desk.core_counters[desk.core];
    while let Some(mut part) = offers.recv().await {
        if !desk.board.claim(part.shard, desk.core, part.generation) {
            desk.send_home(Message::Unclaimed(part));
            continue;
        }
        let capacity = part.verdicts.capacity();
        for slice in part.records.chunks(desk.slice_signatures) {
            verifier.verify(slice, &mut slice_valid);
            part.verdicts.extend_from_slice(&slice_valid);
            glommio::yield_if_needed().await;
        }
        assert_eq!(
            part.verdicts.capacity(),
            capacity,
            "verdicts are written into the buffer their home reserved"
        );
        counters.verify_parts_helped.fetch_add(1, Relaxed);
        counters
            .signatures_verified_for_others
            .fetch_add(part.records.len() as u64, Relaxed);
        let home = part.home;
        if let Some(ring) = desk.outgoing[home].get() {
            // The home core's help router never waits, so room comes.
            let _ = ring.send(Message::Verified(part)).await;
        }
    }
}

/// Verifies `records` on this core, `slice_signatures` at a time, yielding between slices.
pub(super) async fn verify_in_slices(
    verifier: &mut SignatureVerifier,
    records: &[Record],
    slice_signatures: usize,
    slice_valid: &mut Vec<bool>,
) -> Vec<bool> {
    let mut valid = Vec::with_capacity(records.len());
    for slice in records.chunks(slice_signatures) {
        verifier.verify(slice, slice_valid);
        valid.extend_from_slice(slice_valid);
        glommio::yield_if_needed().await;
    }
    valid
}

fn channel_item<T>(error: glommio::GlommioError<T>) -> T {
    match error {
        glommio::GlommioError::WouldBlock(glommio::ResourceType::Channel(item))
        | glommio::GlommioError::Closed(glommio::ResourceType::Channel(item)) => item,
        _ => unreachable!("a channel's send fails with WouldBlock or Closed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_one_side_settles_an_offer_and_stale_offers_stay_unclaimed() {
        let board = ClaimBoard::new(3, 2);
        // Never offered: nobody can claim or take back.
        assert!(!board.claim(2, 1, 0));
        board.open(2, 1, 7);
        assert!(board.claim(2, 1, 7));
        assert!(
            !board.take_back(2, 1, 7),
            "claimed: the shard waits for the answer"
        );
        board.open(2, 1, 8);
        assert!(board.take_back(2, 1, 8));
        assert!(
            !board.claim(2, 1, 8),
            "taken back: the helper sends it home"
        );
        // An offer of generation 8 still on its way while generation 9 is open.
        board.open(2, 1, 9);
        assert!(!board.claim(2, 1, 8), "a stale offer is never claimed");
        assert!(board.claim(2, 1, 9));
        // Words are per (shard, helper).
        board.open(0, 0, 1);
        assert!(!board.claim(0, 1, 1));
        assert!(board.claim(0, 0, 1));
    }

    #[test]
    fn only_large_submissions_that_nothing_waits_behind_are_split() {
        let desk = HelpDesk {
            core: 0,
            cores: 4,
            signatures_min: 128,
            slice_signatures: 64,
            board: Arc::new(ClaimBoard::new(1, 4)),
            outgoing: (0..4).map(|_| OnceCell::new()).collect(),
            generation: Cell::new(0),
            core_counters: (0..4).map(|_| CoreCounters::default()).collect(),
        };
        assert_eq!(desk.parts_for(127, false), 1);
        assert_eq!(
            desk.parts_for(128, false),
            2,
            "at least 64 signatures a part"
        );
        assert_eq!(desk.parts_for(1000, false), 4, "one part per core at most");
        assert_eq!(
            desk.parts_for(1000, true),
            1,
            "a backlogged shard keeps its work"
        );
        let off = HelpDesk {
            signatures_min: 0,
            ..desk
        };
        assert_eq!(off.parts_for(1000, false), 1);
    }
}
