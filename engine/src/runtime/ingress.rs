//! The shard's ingress task: verifies the signatures of each submission on the shard's core,
//! in slices that yield to the core's other tasks, while the driver waits for its group commit
//! (verification is the CPU-bound stage, the fdatasync the I/O-bound one).

use super::counters::ShardCounters;
use super::driver::Command;
use super::verify_help::{Answers, HelpDesk};
use crate::record::Record;
use crate::shard::ShardId;
use crate::verify::SignatureVerifier;
use glommio::channels::local_channel::{LocalReceiver, LocalSender};
use std::rc::Rc;
use std::sync::Arc;

/// Signatures verified between two chances for the core's other tasks to run, by default,
/// while nothing waits behind the submission (`EngineConfig::verify_slice_signatures`): 64
/// batched verifications take about 0.6 ms on the development VM's core with AVX-512 IFMA and
/// 0.8 ms with AVX2, within the executor's task quantum (256 once took ~5 ms and held the
/// core's raft and network tasks back that long). Each slice is one batch equation, so smaller
/// slices cost verification throughput; a backlogged shard uses `VerifySlices::backlogged`
/// instead (docs/benchmarks.md).
pub const VERIFY_SLICE_SIGNATURES_DEFAULT: usize = 64;
/// The largest slice allowed (one batch equation; a failed one is re-verified one by one).
pub const VERIFY_SLICE_SIGNATURES_MAX: usize = 256;

/// Slice sizes (signatures per batch equation between two yields): `idle` when nothing else
/// waits on the shard's ingress channel (a small slice keeps the core's other tasks waiting
/// less), `backlogged` when submissions are queued behind the one being verified (then the
/// core is saturated: larger equations verify more per second, and the wait they add is
/// queueing the client sees anyway).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerifySlices {
    pub idle: usize,
    pub backlogged: usize,
}

impl VerifySlices {
    /// The slice for a submission with `queued` commands behind it.
    fn for_backlog(&self, queued: usize) -> usize {
        if queued > 0 {
            self.backlogged
        } else {
            self.idle
        }
    }
}

impl Default for VerifySlices {
    fn default() -> VerifySlices {
        VerifySlices {
            idle: VERIFY_SLICE_SIGNATURES_DEFAULT,
            backlogged: VERIFY_SLICE_SIGNATURES_MAX,
        }
    }
}

/// Verifies the signatures of each submission on the shard's core, in slices that yield to the
/// core's other tasks, and passes every command on to the shard's driver in arrival order.
///
/// A submission another validator forwarded with its signature verdicts is passed on as it is:
/// each transfer is verified once in the cluster, by the validator its client talked to.
/// Followers never verify what they apply: the leader's log holds only verified transfers.
/// Large submissions that nothing waits behind are verified with the other cores' help
/// (`verify_help`), whose answers for this shard arrive on `answers`.
pub(super) async fn ingress(
    (rx, queue): (LocalReceiver<Command>, Rc<LocalSender<Command>>),
    tx: Rc<LocalSender<Command>>,
    counters: Arc<[ShardCounters]>,
    shard: ShardId,
    slices: VerifySlices,
    (help, answers): (Rc<HelpDesk>, Answers),
) {
    for slice in [slices.idle, slices.backlogged] {
        assert!((1..=VERIFY_SLICE_SIGNATURES_MAX).contains(&slice));
    }
    let counters = &counters[shard as usize];
    let mut verifier = SignatureVerifier::new(slices.idle.max(slices.backlogged));
    let mut cache_counted = (0, 0);
    let mut slice_valid = Vec::new();
    while let Some(mut command) = rx.recv().await {
        // A client's submission gets its verdicts here; one forwarded by another validator
        // arrives with them (one per record, or they do not count).
        if let Some((records, valid, custodial)) = command.submission_mut() {
            if valid.len() != records.len() {
                // What waits behind this submission decides the slice (`VerifySlices`), and
                // whether other cores are asked to help.
                let backlog = queue.len();
                counters
                    .ingress_backlog
                    .store(backlog as u64, std::sync::atomic::Ordering::Relaxed);
                let backlogged = backlog > 0;
                let slice_signatures = slices.for_backlog(queue.len());
                let verifying = Verifying {
                    help: (&help, shard, &answers),
                    slice: (slice_signatures, backlogged),
                    counters,
                };
                *valid = verifying
                    .verify_unless_custodial(&mut verifier, records, custodial, &mut slice_valid)
                    .await;
                let (hits, misses) = verifier.key_cache_stats();
                counters.record_key_cache(hits - cache_counted.0, misses - cache_counted.1);
                cache_counted = (hits, misses);
            }
        }
        let stop = matches!(command, Command::Shutdown);
        if tx.send(command).await.is_err() || stop {
            return;
        }
    }
}

/// How one submission is verified: with which help, in which slices, counted where.
struct Verifying<'a> {
    help: (&'a HelpDesk, ShardId, &'a Answers),
    /// (signatures per slice, whether submissions wait behind this one).
    slice: (usize, bool),
    counters: &'a ShardCounters,
}

impl Verifying<'_> {
    /// Verdicts for a submission some of whose records a gateway controls (`custodial`,
    /// empty: none): those need no signature; the others are verified as anyone's. Counts
    /// both.
    async fn verify_unless_custodial(
        &self,
        verifier: &mut SignatureVerifier,
        records: &[Record],
        custodial: &[bool],
        slice_valid: &mut Vec<bool>,
    ) -> Vec<bool> {
        let (desk, shard, answers) = self.help;
        if custodial.is_empty() {
            let verdicts = desk
                .verify(shard, answers, verifier, records, self.slice, slice_valid)
                .await;
            self.counters.record_verified(&verdicts);
            return verdicts;
        }
        assert_eq!(custodial.len(), records.len(), "one flag per record");
        let signed: Vec<Record> = records
            .iter()
            .zip(custodial)
            .filter(|(_, &c)| !c)
            .map(|(r, _)| *r)
            .collect();
        let verdicts = desk
            .verify(shard, answers, verifier, &signed, self.slice, slice_valid)
            .await;
        self.counters.record_verified(&verdicts);
        self.counters
            .record_custodial((records.len() - signed.len()) as u64);
        let mut verdicts = verdicts.into_iter();
        custodial
            .iter()
            .map(|&c| c || verdicts.next().expect("one verdict per signed record"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::VerifySlices;

    #[test]
    fn a_backlog_behind_a_submission_picks_the_larger_slice() {
        let slices = VerifySlices::default();
        assert_eq!(slices.for_backlog(0), 64);
        assert_eq!(slices.for_backlog(1), 256);
        let fixed = VerifySlices {
            idle: 32,
            backlogged: 32,
        };
        assert_eq!(fixed.for_backlog(9), 32);
    }
}
