//! Verification shared between cores.
//!
//! A shard verifies its clients' signatures on its own core (`ingress`). A batch of 1,000
//! signed transfers then waits for one core to verify all of them (~9 ms on the development
//! VM), even when the other cores have time to spare. So a large submission that nothing waits
//! behind (the shard is not backlogged) is shared: cut into chunks of one verification slice,
//! offered to every other core of the engine, and verified by whichever core takes each chunk
//! first: the shard's core from the first chunk on, each helper whenever its core gets to it
//! (one shared chunk counter, `fetch_add`). A helper takes no chunk while its own shards verify
//! a submission (first come, first served), so the submission never waits much longer than its
//! own core would have taken (one chunk at most, the last a helper took); idle helpers divide
//! the wait by the cores that join. A backlogged shard keeps its work: every core is busy then,
//! and sharing would only add the hand-over.
//!
//! - Offers and answers travel on rings of their own, one per ordered pair of cores, never
//!   behind commands: a command ring's router may wait for room in a shard's queue, and a
//!   shard that waited for an answer behind that wait would never get it. The help routers
//!   never wait: an offer the helper has no room for goes back at once.
//! - A shared submission (`Shared`: a copy of its signed records, 168 bytes a signature against
//!   ~9 µs to verify one, and one verdict slot per record) is allocated on the shard's core;
//!   every helper sends its handle back when it is done with it, so it is freed there.
//! - A helper that verified chunks says so after its last one (`Joined`); the shard waits until
//!   every chunk is verified, reading those answers as they come. A helper that found nothing
//!   left sends its handle back without an answer (`Unused`), and no one waits for it.

use super::counters::ShardCounters;
use super::mesh::{item, pairwise_rings, CoreCounters};
use crate::record::Record;
use crate::shard::ShardId;
use crate::verify::SignatureVerifier;
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::channels::shared_channel::{ConnectedSender, SharedReceiver, SharedSender};
use std::cell::{Cell, OnceCell};
use std::rc::Rc;
use std::sync::atomic::{
    AtomicBool, AtomicUsize,
    Ordering::{Acquire, Relaxed, Release},
};
use std::sync::Arc;

/// Signatures a submission needs at least before its shard shares it with the other cores, by
/// default (`EngineConfig::verify_help_signatures_min`; 0 turns the help off).
pub const VERIFY_HELP_SIGNATURES_MIN_DEFAULT: usize = 128;
/// Messages each help ring holds (offers one way, handles coming back the other). A shard has
/// at most one submission shared at a time, so this bounds the shards a core may have.
const HELP_RING_DEPTH: usize = 256;
/// Offers a core's helper holds queued at most; one more goes back at once.
const HELPER_QUEUE_OFFERS_MAX: usize = 64;

/// A submission shared between cores: its signed records, cut into chunks of `chunk` records.
pub(super) struct Shared {
    /// The shard's core: where this was allocated, and where every handle goes back.
    home: usize,
    shard: ShardId,
    /// Which of the shard's shared submissions this is (answers name it).
    id: u64,
    records: Box<[Record]>,
    chunk: usize,
    /// The next chunk to take: whoever's `fetch_add` returns it verifies it.
    next_chunk: AtomicUsize,
    /// Chunks verified so far (their verdicts are in `verdicts`).
    chunks_done: AtomicUsize,
    verdicts: Box<[AtomicBool]>,
}

impl Shared {
    fn chunks(&self) -> usize {
        self.records.len().div_ceil(self.chunk)
    }

    /// Takes and verifies chunks until none is left, or until `stop` says so before a chunk
    /// is taken: how many signatures it verified.
    async fn verify_chunks(
        &self,
        verifier: &mut SignatureVerifier,
        valid: &mut Vec<bool>,
        stop: impl Fn() -> bool,
    ) -> usize {
        let chunks = self.chunks();
        let mut verified = 0;
        loop {
            if stop() {
                return verified;
            }
            let c = self.next_chunk.fetch_add(1, Relaxed);
            if c >= chunks {
                return verified;
            }
            let range = c * self.chunk..((c + 1) * self.chunk).min(self.records.len());
            verifier.verify(&self.records[range.clone()], valid);
            for (slot, &ok) in self.verdicts[range.clone()].iter().zip(valid.iter()) {
                slot.store(ok, Relaxed);
            }
            // Publishes the verdicts above to whoever sees the count.
            self.chunks_done.fetch_add(1, Release);
            verified += range.len();
            glommio::yield_if_needed().await;
        }
    }

    fn all_done(&self) -> bool {
        self.chunks_done.load(Acquire) == self.chunks()
    }
}

/// What travels on a help ring.
enum Message {
    /// Verify chunks of this submission, while any is left.
    Offer(Arc<Shared>),
    /// The sender verified chunks of it and is done with it (for a shard of the receiving
    /// core).
    Joined(Arc<Shared>),
    /// The sender found nothing left (or had no room): the handle, home to be dropped.
    Unused(Arc<Shared>),
}

impl Message {
    fn shared(&self) -> &Arc<Shared> {
        match self {
            Message::Offer(s) | Message::Joined(s) | Message::Unused(s) => s,
        }
    }
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
    pairwise_rings(cores, HELP_RING_DEPTH)
        .into_iter()
        .map(|(outgoing, incoming)| HelpEnds { outgoing, incoming })
        .collect()
}

/// One core's side of the help: what its shards share through, and what its helper answers
/// through. Single-threaded (one per executor).
pub(super) struct HelpDesk {
    core: usize,
    cores: usize,
    /// Signatures a submission needs at least to be shared (0: never).
    signatures_min: usize,
    /// Records per chunk: one verification slice.
    chunk: usize,
    /// Ring to each other core, once connected (index = core).
    outgoing: Vec<OnceCell<ConnectedSender<Message>>>,
    next_id: Cell<u64>,
    /// Submissions this core's shards are verifying now: while there are any, its helper
    /// takes no chunk of another core's (first come, first served: of two submissions that
    /// overlap, one finishes in half the time, rather than both in the full time).
    own_verifying: Cell<u32>,
    core_counters: Arc<[CoreCounters]>,
    /// Every shard's counters: a core is offered work only while its shards have no backlog.
    shard_counters: Arc<[ShardCounters]>,
}

/// What `install` needs besides the rings.
pub(super) struct HelpSetup {
    pub core: usize,
    pub cores: usize,
    pub signatures_min: usize,
    pub chunk: usize,
    pub core_counters: Arc<[CoreCounters]>,
    pub shard_counters: Arc<[ShardCounters]>,
    /// This core's shards.
    pub shards: Vec<ShardId>,
    pub shard_count: usize,
}

/// A shard's receiver of its helpers' answers.
pub(super) type Answers = LocalReceiver<Arc<Shared>>;

/// Starts a core's help: connects its rings, routes what arrives on them (offers to the
/// core's helper task, answers to their shard), and starts the helper. Returns the desk and,
/// for each of the core's shards, the receiver its ingress task reads answers from.
pub(super) fn install(setup: HelpSetup, ends: HelpEnds) -> (Rc<HelpDesk>, Vec<(ShardId, Answers)>) {
    assert!(setup.chunk >= 1);
    let desk = Rc::new(HelpDesk {
        core: setup.core,
        cores: setup.cores,
        signatures_min: setup.signatures_min,
        chunk: setup.chunk,
        outgoing: (0..setup.cores).map(|_| OnceCell::new()).collect(),
        next_id: Cell::new(0),
        own_verifying: Cell::new(0),
        core_counters: setup.core_counters,
        shard_counters: setup.shard_counters,
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
    let mut answers: Vec<Option<LocalSender<Arc<Shared>>>> =
        (0..setup.shard_count).map(|_| None).collect();
    let mut receivers = Vec::with_capacity(setup.shards.len());
    for &shard in &setup.shards {
        // Answers queued at most: one per other core for the submission being verified, and
        // late ones of the one before (dropped when the next is shared).
        let (tx, rx) = local_channel::new_bounded(2 * setup.cores);
        answers[shard as usize] = Some(tx);
        receivers.push((shard, rx));
    }
    let answers = Rc::new(answers);
    let (offers_tx, offers_rx) = local_channel::new_bounded(HELPER_QUEUE_OFFERS_MAX);
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
    /// Hands what arrived on a help ring on, without waiting. Handles that come home are
    /// dropped here (or by their shard), on the core that allocated them.
    fn route(
        &self,
        message: Message,
        offers: &LocalSender<Arc<Shared>>,
        answers: &[Option<LocalSender<Arc<Shared>>>],
    ) {
        match message {
            Message::Offer(shared) => {
                if let Err(error) = offers.try_send(shared) {
                    self.send_home(Message::Unused(item(error)));
                }
            }
            Message::Joined(shared) => {
                if let Some(Some(tx)) = answers.get(shared.shard as usize) {
                    // Never full (see `install`); closed only when the shard stopped.
                    if let Err(error) = tx.try_send(shared) {
                        let full = matches!(error, glommio::GlommioError::WouldBlock(_));
                        assert!(!full, "a shard's answers overflowed their bound");
                    }
                }
            }
            Message::Unused(shared) => drop(shared),
        }
    }

    /// Sends a handle home without waiting; dropped here (counted) when its ring has no room.
    fn send_home(&self, message: Message) {
        let home = message.shared().home;
        let sent = self.outgoing[home]
            .get()
            .is_some_and(|ring| ring.try_send(message).is_ok());
        if !sent {
            self.core_counters[self.core]
                .buffers_freed_away
                .fetch_add(1, Relaxed);
        }
    }

    /// Whether `core`'s shards have nothing waiting behind what they verify: then it has time
    /// to help (a backlogged core would only slow its own shards down).
    fn may_help(&self, core: usize) -> bool {
        (core..self.shard_counters.len())
            .step_by(self.cores)
            .all(|s| self.shard_counters[s].ingress_backlog.load(Relaxed) == 0)
    }

    /// Whether `signatures` are shared with the other cores.
    fn shares(&self, signatures: usize, backlogged: bool) -> bool {
        self.cores > 1
            && !backlogged
            && self.signatures_min > 0
            && signatures >= self.signatures_min
            && signatures > self.chunk
    }

    /// Verifies `records` for `shard` of this core with `verifier`, sharing them with the
    /// other cores when there are enough signatures and nothing waits behind them. The
    /// verdicts, in order.
    pub(super) async fn verify(
        &self,
        shard: ShardId,
        answers: &Answers,
        verifier: &mut SignatureVerifier,
        records: &[Record],
        (slice_signatures, backlogged): (usize, bool),
        slice_valid: &mut Vec<bool>,
    ) -> Vec<bool> {
        let _verifying = OwnVerifying::enter(&self.own_verifying);
        if !self.shares(records.len(), backlogged) {
            return verify_in_slices(verifier, records, slice_signatures, slice_valid).await;
        }
        drop_late_answers(answers);
        let id = self.next_id.get() + 1;
        self.next_id.set(id);
        let shared = Arc::new(Shared {
            home: self.core,
            shard,
            id,
            records: records.into(),
            chunk: self.chunk,
            next_chunk: AtomicUsize::new(0),
            chunks_done: AtomicUsize::new(0),
            verdicts: records.iter().map(|_| AtomicBool::new(false)).collect(),
        });
        let counters = &self.core_counters[self.core];
        for i in 1..self.cores {
            let helper = (self.core + i) % self.cores;
            if !self.may_help(helper) {
                continue;
            }
            let offer = Message::Offer(shared.clone());
            if let Some(ring) = self.outgoing[helper].get() {
                if ring.try_send(offer).is_ok() {
                    counters.verify_help_offered.fetch_add(1, Relaxed);
                }
            }
        }
        shared.verify_chunks(verifier, slice_valid, || false).await;
        // Helpers still on their last chunks: each that took one says so when done.
        while !shared.all_done() {
            match answers.recv().await {
                // An answer of an earlier submission (it finished without waiting) is dropped.
                Some(answer) if answer.id != id => {}
                Some(_) => {}
                // The engine is stopping and a helper's chunk may never be done: every
                // verdict from this core instead (never a made-up one).
                None => {
                    return verify_in_slices(verifier, records, slice_signatures, slice_valid).await
                }
            }
        }
        drop_late_answers(answers);
        shared.verdicts.iter().map(|v| v.load(Relaxed)).collect()
    }
}

/// Drops the answers already queued: each holds a shared submission's records, which need
/// not wait for the shard's next submission to be freed.
fn drop_late_answers(answers: &Answers) {
    use futures::FutureExt;
    while let Some(Some(answer)) = answers.recv().now_or_never() {
        drop(answer);
    }
}

/// Counts a submission of this core's shards as being verified, until dropped.
struct OwnVerifying<'a>(&'a Cell<u32>);

impl<'a> OwnVerifying<'a> {
    fn enter(count: &'a Cell<u32>) -> OwnVerifying<'a> {
        count.set(count.get() + 1);
        OwnVerifying(count)
    }
}

impl Drop for OwnVerifying<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

/// A core's helper: verifies chunks of the submissions other cores' shards share, while any
/// is left, one submission at a time.
async fn helper(offers: LocalReceiver<Arc<Shared>>, desk: Rc<HelpDesk>) {
    let mut verifier = SignatureVerifier::new(desk.chunk);
    let mut valid = Vec::new();
    let counters = &desk.core_counters[desk.core];
    while let Some(shared) = offers.recv().await {
        let busy = || desk.own_verifying.get() > 0;
        let signatures = shared.verify_chunks(&mut verifier, &mut valid, busy).await;
        let message = if signatures > 0 {
            counters.verify_help_joined.fetch_add(1, Relaxed);
            counters
                .signatures_verified_for_others
                .fetch_add(signatures as u64, Relaxed);
            Message::Joined(shared)
        } else {
            Message::Unused(shared)
        };
        let home = message.shared().home;
        if let Some(ring) = desk.outgoing[home].get() {
            // The home core's help router never waits, so room comes.
            let _ = ring.send(message).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn desk(cores: usize, signatures_min: usize) -> HelpDesk {
        HelpDesk {
            core: 0,
            cores,
            signatures_min,
            chunk: 64,
            outgoing: (0..cores).map(|_| OnceCell::new()).collect(),
            next_id: Cell::new(0),
            own_verifying: Cell::new(0),
            core_counters: (0..cores).map(|_| CoreCounters::default()).collect(),
            shard_counters: (0..cores).map(|_| ShardCounters::default()).collect(),
        }
    }

    #[test]
    fn only_large_submissions_that_nothing_waits_behind_are_shared() {
        let desk = desk(4, 128);
        assert!(!desk.shares(127, false));
        assert!(desk.shares(128, false));
        assert!(
            !desk.shares(1000, true),
            "a backlogged shard keeps its work"
        );
        assert!(!self::desk(4, 0).shares(1000, false), "help off");
        assert!(!self::desk(1, 128).shares(1000, false), "no other core");
        // Core 1 (shard 1 of 4 shards on 4 cores) may help while its shard has no backlog.
        assert!(desk.may_help(1));
        desk.shard_counters[1].ingress_backlog.store(2, Relaxed);
        assert!(!desk.may_help(1));
        assert!(desk.may_help(2));
    }

    #[test]
    fn every_chunk_is_verified_once_by_whoever_takes_it() {
        let keys: Vec<_> = (0..5u8)
            .map(|i| ed25519_dalek::SigningKey::from_bytes(&[i + 1; 32]))
            .collect();
        let records: Vec<Record> = (0..150u64)
            .map(|n| {
                let key = &keys[n as usize % keys.len()];
                let mut record = crate::record::Transfer {
                    chain_id: 7,
                    from: crate::record::address_of(key),
                    to: crate::record::Address([9; 32]),
                    asset: 0,
                    amount: 1,
                    nonce: n,
                }
                .sign(key);
                if n % 40 == 3 {
                    record.0[150] ^= 1;
                }
                record
            })
            .collect();
        let shared = Shared {
            home: 0,
            shard: 0,
            id: 1,
            records: records.clone().into(),
            chunk: 64,
            next_chunk: AtomicUsize::new(0),
            chunks_done: AtomicUsize::new(0),
            verdicts: records.iter().map(|_| AtomicBool::new(false)).collect(),
        };
        let mut verifier = SignatureVerifier::new(64);
        let mut valid = Vec::new();
        // Two takers, one after the other: the first takes all three chunks, the second none.
        let stopped = glommio::LocalExecutor::default().run(shared.verify_chunks(
            &mut verifier,
            &mut valid,
            || true,
        ));
        assert_eq!(stopped, 0, "told to stop before the first chunk");
        let first = glommio::LocalExecutor::default().run(shared.verify_chunks(
            &mut verifier,
            &mut valid,
            || false,
        ));
        assert_eq!(first, 150, "three chunks");
        assert!(shared.all_done());
        let second = glommio::LocalExecutor::default().run(shared.verify_chunks(
            &mut verifier,
            &mut valid,
            || false,
        ));
        assert_eq!(second, 0);
        let verdicts: Vec<bool> = shared.verdicts.iter().map(|v| v.load(Relaxed)).collect();
        let expected: Vec<bool> = (0..150u64).map(|n| n % 40 != 3).collect();
        assert_eq!(verdicts, expected);
    }
}
