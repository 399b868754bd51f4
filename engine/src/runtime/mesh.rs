//! How commands reach a shard without a lock between cores.
//!
//! - **Between two executors**: one bounded single-producer, single-consumer ring per ordered
//!   pair of cores (glommio's shared channels: a lock-free ring, and an eventfd write only when
//!   the receiving core sleeps). On the receiving core, one router task per ring hands each
//!   command to its shard.
//! - **Within a core**: each shard's ingress channel is a glommio local channel (no atomics).
//! - **From a thread that is not one of the engine's executors** (tests, the shutdown from the
//!   main thread): a multi-producer channel per core, with its own router. This is the control
//!   plane; no executor ever uses it once its rings are connected.
//!
//! Each executor finds its ends in a thread-local [`Outbox`], installed when the core starts.
//! Every queue is bounded: a full ring or shard channel holds its sender back (`send`) or is
//! reported (`try_send`: the caller keeps the command and retries).

use super::counters::ShardCounters;
use super::driver::Command;
use crate::ledger::Receipt;
use crate::record::Record;
use crate::replica::Outcome;
use crate::shard::ShardId;
use aurigraph_wire::steering::core_of_shard;
use glommio::channels::local_channel::LocalSender;
use glommio::channels::shared_channel::{self, ConnectedSender, SharedReceiver, SharedSender};
use glommio::{GlommioError, ResourceType};
use std::cell::{OnceCell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// What travels on a ring.
pub(super) enum Envelope {
    /// A command for a shard of the receiving core.
    Command(ShardId, Command),
    /// Buffers the receiving core allocated and lent to another core's shard: back home, to be
    /// freed by the core that allocated them (no allocator sees memory of another core freed).
    Home(Lent),
}

impl Envelope {
    /// The command of an envelope that carried one (a failed send hands it back).
    fn into_command(self) -> Command {
        match self {
            Envelope::Command(_, command) => command,
            Envelope::Home(_) => unreachable!("only commands are sent and handed back"),
        }
    }
}

/// What a core's foreign channel carries: commands only (threads that are not executors lend
/// no buffers).
pub(super) type Foreign = (ShardId, Command);

/// Buffers lent from one core to another with a command or an answer.
#[expect(
    dead_code,
    reason = "held only to be dropped by the core that allocated them"
)]
pub(super) enum Lent {
    /// A submission's records and custodial flags, once the shard admitted (copied) them.
    Submission(Vec<Record>, Vec<bool>),
    /// A shard's outcomes, once the submitting core read them.
    Outcomes(Vec<Outcome>),
    /// A delivery of cross-shard receipts, once the destination shard took them.
    Receipts(Vec<Receipt>),
}

/// Why a command could not be queued without waiting; the command comes back.
pub(super) enum TrySendError<T = Command> {
    Full(T),
    /// The shard stopped (the engine is shutting down).
    Closed(T),
}

/// One core's ends of the rings, made before the executors start and moved into its executor.
pub(super) struct CoreEnds {
    /// To every other core (index = destination core; `None` at this core's own index).
    outgoing: Vec<Option<SharedSender<Envelope>>>,
    /// From every other core.
    incoming: Vec<SharedReceiver<Envelope>>,
    /// From threads that are not executors of this engine.
    foreign: async_channel::Receiver<Foreign>,
}

/// The rings of `cores` executors (`cores × (cores − 1)` of them, `depth` commands each), and
/// the senders of each core's foreign channel.
pub(super) fn build(
    cores: usize,
    depth: usize,
) -> (Vec<CoreEnds>, Vec<async_channel::Sender<Foreign>>) {
    assert!(cores > 0 && depth > 0);
    let mut foreign_senders = Vec::with_capacity(cores);
    let ends = pairwise_rings(cores, depth)
        .into_iter()
        .map(|(outgoing, incoming)| {
            let (tx, rx) = async_channel::bounded(depth);
            foreign_senders.push(tx);
            CoreEnds {
                outgoing,
                incoming,
                foreign: rx,
            }
        })
        .collect();
    (ends, foreign_senders)
}

/// One bounded ring (`depth` items) per ordered pair of `cores` executors: for each core, its
/// senders (index = destination core; `None` at its own index) and its receivers from every
/// other core.
pub(super) type RingEnds<T> = (Vec<Option<SharedSender<T>>>, Vec<SharedReceiver<T>>);

pub(super) fn pairwise_rings<T: Send>(cores: usize, depth: usize) -> Vec<RingEnds<T>> {
    let mut ends: Vec<RingEnds<T>> = (0..cores)
        .map(|_| {
            let outgoing = (0..cores).map(|_| None).collect();
            (outgoing, Vec::with_capacity(cores.saturating_sub(1)))
        })
        .collect();
    for from in 0..cores {
        for to in (0..cores).filter(|&to| to != from) {
            let (tx, rx) = shared_channel::new_bounded(depth);
            ends[from].0[to] = Some(tx);
            ends[to].1.push(rx);
        }
    }
    ends
}

/// What an executor sends through: its shards' ingress channels and its rings to the other
/// cores. Single-threaded (one per executor thread).
pub(super) struct Outbox {
    /// The engine it belongs to (several engines may share a process: tests).
    engine: usize,
    /// The core this outbox is on.
    core: usize,
    cores: usize,
    /// Ingress channel of each shard of this core (index = shard; `None`: another core's),
    /// shared with the core's routers.
    local: Rc<Vec<Option<Rc<LocalSender<Command>>>>>,
    /// Ring to each other core, once both ends connected (index = core).
    remote: Vec<OnceCell<ConnectedSender<Envelope>>>,
    /// Every core's counters (this one's counts the buffers it frees for others).
    core_counters: Arc<[CoreCounters]>,
}

thread_local! {
    static OUTBOX: RefCell<Option<Rc<Outbox>>> = const { RefCell::new(None) };
}

impl Outbox {
    /// The outbox of the executor running this thread, if it is one of `engine`'s.
    pub(super) fn current(engine: usize) -> Option<Rc<Outbox>> {
        OUTBOX.with(|o| o.borrow().as_ref().filter(|o| o.engine == engine).cloned())
    }

    /// Sends `command` to `shard`, waiting while its queue is full. `Err` gives the command
    /// back when this core cannot reach the shard yet (its ring not connected: the caller
    /// uses the foreign channel) or the shard stopped.
    pub(super) async fn send(&self, shard: ShardId, command: Command) -> Result<(), Command> {
        let core = core_of_shard(shard, self.cores);
        if let Some(Some(tx)) = self.local.get(shard as usize) {
            return tx.send(command).await.map_err(item);
        }
        match self.remote[core].get() {
            Some(ring) => ring
                .send(Envelope::Command(shard, command))
                .await
                .map_err(|e| item(e).into_command()),
            None => Err(command),
        }
    }

    /// This executor's core.
    pub(super) fn core(&self) -> usize {
        self.core
    }

    /// Sends buffers core `home` lent back to it, to be freed there. They are freed here
    /// instead when `home` is this core, or (counted) when its ring is full or closed: this
    /// never waits.
    pub(super) fn send_home(&self, home: usize, lent: Lent) {
        if home == self.core {
            return;
        }
        let sent = self.remote[home]
            .get()
            .is_some_and(|ring| ring.try_send(Envelope::Home(lent)).is_ok());
        if !sent {
            self.core_counters[self.core]
                .buffers_freed_away
                .fetch_add(1, Relaxed);
        }
    }

    /// Queues `command` for `shard` if there is room now (a ring not yet connected counts as
    /// full: retried later, so one sender's commands to a shard stay in order).
    #[expect(
        clippy::result_large_err,
        reason = "a command that found no room comes back to its sender, whole, to retry"
    )]
    pub(super) fn try_send(&self, shard: ShardId, command: Command) -> Result<(), TrySendError> {
        let core = core_of_shard(shard, self.cores);
        if let Some(Some(tx)) = self.local.get(shard as usize) {
            return tx.try_send(command).map_err(classify);
        }
        match self.remote[core].get() {
            Some(ring) => ring
                .try_send(Envelope::Command(shard, command))
                .map_err(|e| match classify(e) {
                    TrySendError::Full(envelope) => TrySendError::Full(envelope.into_command()),
                    TrySendError::Closed(envelope) => TrySendError::Closed(envelope.into_command()),
                }),
            None => Err(TrySendError::Full(command)),
        }
    }
}

/// Installs this executor's outbox and connects its rings: one task per ring end (a ring's
/// `connect` waits for the other core to connect its end). Incoming rings and the foreign
/// channel get a router task each, which hands commands to `local` (this core's shards'
/// ingress channels, index = shard). Returns the tasks connecting the outgoing rings: the
/// core awaits them once every executor runs, before it serves clients.
pub(super) fn install(
    engine: usize,
    (core, cores): (usize, usize),
    ends: CoreEnds,
    local: Vec<Option<Rc<LocalSender<Command>>>>,
    counters: Arc<[ShardCounters]>,
    core_counters: Arc<[CoreCounters]>,
) -> Vec<glommio::task::JoinHandle<()>> {
    let local = Rc::new(local);
    let outbox = Rc::new(Outbox {
        engine,
        core,
        cores,
        local: local.clone(),
        remote: (0..cores).map(|_| OnceCell::new()).collect(),
        core_counters: core_counters.clone(),
    });
    OUTBOX.with(|o| *o.borrow_mut() = Some(outbox.clone()));
    let mut connecting = Vec::new();
    for (core, end) in ends.outgoing.into_iter().enumerate() {
        let Some(end) = end else { continue };
        let outbox = outbox.clone();
        let task = glommio::spawn_local(async move {
            let ring = end.connect().await;
            assert!(
                outbox.remote[core].set(ring).is_ok(),
                "ring connected twice"
            );
        });
        connecting.push(task.detach());
    }
    for end in ends.incoming {
        let local = local.clone();
        let counters = counters.clone();
        let home = core_counters.clone();
        glommio::spawn_local(async move {
            let ring = end.connect().await;
            while let Some(envelope) = ring.recv().await {
                match envelope {
                    Envelope::Command(shard, command) => {
                        let counted = &counters[shard as usize].commands_from_cores;
                        deliver(&local, shard, command, counted).await;
                    }
                    // Freed here, on the core that allocated them.
                    Envelope::Home(lent) => {
                        drop(lent);
                        home[core].buffers_home.fetch_add(1, Relaxed);
                    }
                }
            }
        })
        .detach();
    }
    let foreign = ends.foreign;
    glommio::spawn_local(async move {
        while let Ok((shard, command)) = foreign.recv().await {
            let counted = &counters[shard as usize].commands_from_threads;
            deliver(&local, shard, command, counted).await;
        }
    })
    .detach();
    connecting
}

/// Per core: where the submissions its executor received went, and what happened to the
/// buffers it lent to other cores.
#[derive(Default)]
#[repr(align(128))]
pub struct CoreCounters {
    /// Submissions (one per shard of a request) sent to a shard of this core: the request's
    /// connection was steered to the core owning its senders (`aurigraph_wire::steering`).
    pub submissions_to_own_shards: AtomicU64,
    /// Submissions sent to a shard of another core, over a ring.
    pub submissions_to_other_cores: AtomicU64,
    /// Lent buffers that came back over a ring and were freed by this core.
    pub buffers_home: AtomicU64,
    /// Buffers of another core freed by this one: the ring home was full (never waits).
    pub buffers_freed_away: AtomicU64,
    /// Offers of this core's shards' large submissions to other cores, to verify chunks of
    /// them (`verify_help`: one per other core and submission shared).
    pub verify_help_offered: AtomicU64,
    /// Offers of other cores this core joined (it verified at least one chunk), and the
    /// signatures it verified for them.
    pub verify_help_joined: AtomicU64,
    pub signatures_verified_for_others: AtomicU64,
}

/// Hands a command that arrived on a ring to its shard's ingress channel, waiting for room
/// (back-pressure reaches the sending core through the ring). A stopped shard drops it: its
/// reply channel closes, and the asker sees the engine stopping.
async fn deliver(
    local: &[Option<Rc<LocalSender<Command>>>],
    shard: ShardId,
    command: Command,
    counted: &AtomicU64,
) {
    match local.get(shard as usize) {
        Some(Some(tx)) => {
            counted.fetch_add(1, Relaxed);
            drop(tx.send(command).await)
        }
        _ => {
            // Senders route by `shard mod cores`; a shard not on this core is a bug.
            debug_assert!(false, "command for shard {shard} on the wrong core");
            tracing::error!(shard, "command for a shard not on this core dropped");
        }
    }
}

/// The item a failed channel send gives back.
pub(super) fn item<T>(error: GlommioError<T>) -> T {
    match classify(error) {
        TrySendError::Full(c) | TrySendError::Closed(c) => c,
    }
}

/// Which failure a channel's error is, with the item it gives back.
fn classify<T>(error: GlommioError<T>) -> TrySendError<T> {
    match error {
        GlommioError::WouldBlock(ResourceType::Channel(c)) => TrySendError::Full(c),
        GlommioError::Closed(ResourceType::Channel(c)) => TrySendError::Closed(c),
        _ => unreachable!("a channel's send fails with WouldBlock or Closed"),
    }
}
