//! Submissions from the API to the shards.
//!
//! - The general path ([`Engine::submit_as`]): a submission's records are split by owning
//!   shard, each shard's copied into a submission of its own and sent to it (over a ring when
//!   it lives on another core); the outcomes come back in the records' order.
//! - A whole binary batch ([`Engine::submit_archive_as`]): when the batch is all of one shard
//!   and the calling core owns that shard (a steered connection, `aurigraph_wire::steering`),
//!   the request's own bytes go to the shard, and may become the log entry without their
//!   records being copied (`ShardReplica::submit_verified_archive`). Anything else takes the
//!   general path.

use super::driver::{Command, Reply};
use super::{mesh, Engine, GatewayId};
use crate::node::{SubmitFailure, Submitter};
use crate::record::{Record, TxHash};
use crate::replica::{archived_records, Outcome};
use crate::shard::{shard_of, ShardId};
use aurigraph_wire::steering::core_of_shard;
use futures::channel::oneshot;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

/// A submission's records as they reach their shard.
pub(super) enum Submitted {
    /// Copied out of the request: a JSON body, a batch of several shards or read by another
    /// core, a peer's forward.
    Records(Vec<Record>),
    /// A binary batch of this shard only, read by this core: the validated archive, read in
    /// place, and proposed as the log entry itself when every record is admitted
    /// (`ShardReplica::submit_verified_archive`).
    Archive(Vec<u8>),
}

impl Submitted {
    pub(super) fn records(&self) -> &[Record] {
        match self {
            Submitted::Records(records) => records,
            Submitted::Archive(archive) => crate::replica::archived_records(archive),
        }
    }
}

impl Engine {
    /// Submits records (any shards, any order) and resolves to one outcome per record, in
    /// order, once every record's entry was fdatasynced and applied (or rejected before).
    pub async fn submit(&self, records: &[Record]) -> Result<Vec<Outcome>, SubmitFailure> {
        self.submit_as(records, None).await
    }

    /// Like [`Engine::submit`], on behalf of `gateway` (authenticated by the caller): records
    /// whose source account it controls need no signature; the others are verified.
    pub async fn submit_as(
        &self,
        records: &[Record],
        gateway: Option<GatewayId>,
    ) -> Result<Vec<Outcome>, SubmitFailure> {
        let total = records.len();
        let waits = self
            .send_per_shard(records, gateway, |reply| {
                Submitter::Client(Reply::Outcomes(reply))
            })
            .await?;
        let mut outcomes: Vec<Option<Outcome>> = vec![None; total];
        let outbox = mesh::Outbox::current(self.id());
        for (shard, positions, rx) in waits {
            let got = rx.await.map_err(|_| SubmitFailure::Stopped)??;
            for (&position, outcome) in positions.iter().zip(&got) {
                outcomes[position] = Some(*outcome);
            }
            // The shard's core allocated them: freed there.
            if let Some(outbox) = &outbox {
                let home = core_of_shard(shard, self.inner.cores);
                outbox.send_home(home, mesh::Lent::Outcomes(got));
            }
        }
        Ok(outcomes
            .into_iter()
            .map(|o| o.expect("every record answered"))
            .collect())
    }

    /// Splits `records` by owning shard and sends each shard one submission, answered as
    /// `from` says; returns, per shard reached, the shard, the positions of its records in
    /// `records` and its reply. From an executor, the submission says which core lent its
    /// buffers (they come back to be freed there).
    async fn send_per_shard<T>(
        &self,
        records: &[Record],
        gateway: Option<GatewayId>,
        from: impl Fn(oneshot::Sender<T>) -> Submitter<Reply>,
    ) -> Result<Vec<(ShardId, Vec<usize>, oneshot::Receiver<T>)>, SubmitFailure> {
        let lender = mesh::Outbox::current(self.id())
            .map(|o| u16::try_from(o.core()).expect("at most 65,536 cores"));
        let shard_count = self.inner.shard_count as usize;
        let mut per_shard: Vec<(Vec<usize>, Vec<Record>)> =
            vec![(Vec::new(), Vec::new()); shard_count];
        // The one copy of the records on their way to the shards: into each shard's group.
        for (i, r) in records.iter().enumerate() {
            let group = &mut per_shard[shard_of(&r.from(), shard_count as u32) as usize];
            group.0.push(i);
            group.1.push(*r);
        }
        let mut waits = Vec::new();
        for (s, (positions, group)) in per_shard.into_iter().enumerate() {
            if group.is_empty() {
                continue;
            }
            let (tx, rx) = oneshot::channel();
            let custodial = self.inner.custody.custodial(gateway, &group);
            let submission = Command::Submit {
                records: Submitted::Records(group),
                valid: Vec::new(),
                custodial,
                from: from(tx),
                home: lender,
                sent: Some(Instant::now()),
            };
            self.send_to(s as ShardId, submission)
                .await
                .map_err(|_| SubmitFailure::Stopped)?;
            if let Some(core) = lender {
                let counters = &self.inner.core_counters[usize::from(core)];
                let counted = if core_of_shard(s as ShardId, self.inner.cores) == usize::from(core)
                {
                    &counters.submissions_to_own_shards
                } else {
                    &counters.submissions_to_other_cores
                };
                counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            waits.push((s as ShardId, positions, rx));
        }
        Ok(waits)
    }

    /// Queues records for consensus and returns their hashes once every owning shard admitted
    /// them (the `?wait=false` path); their outcomes appear in [`Engine::transaction`].
    pub async fn submit_detached(&self, records: &[Record]) -> Result<Vec<TxHash>, SubmitFailure> {
        self.submit_detached_as(records, None).await
    }

    /// Like [`Engine::submit_detached`], on behalf of `gateway` (see [`Engine::submit_as`]).
    pub async fn submit_detached_as(
        &self,
        records: &[Record],
        gateway: Option<GatewayId>,
    ) -> Result<Vec<TxHash>, SubmitFailure> {
        let hashes: Vec<TxHash> = records.iter().map(Record::tx_hash).collect();
        let waits = self
            .send_per_shard(records, gateway, |reply| {
                Submitter::Detached(Reply::Admitted(reply))
            })
            .await?;
        for (_, _, rx) in waits {
            rx.await.map_err(|_| SubmitFailure::Stopped)??;
        }
        Ok(hashes)
    }

    /// Like [`Engine::submit_as`] for a binary batch: `archive` is the batch as it arrived,
    /// validated (`aurigraph_wire::batch::decode_batch`); the outcomes are in its records'
    /// order.
    pub async fn submit_archive_as(
        &self,
        mut archive: Vec<u8>,
        gateway: Option<GatewayId>,
    ) -> Result<Vec<Outcome>, SubmitFailure> {
        // It may stay in the raft log until a snapshot: no spare capacity goes with it (a body
        // without a declared length grows by doubling; one with a length has none).
        archive.shrink_to_fit();
        let records = archived_records(&archive);
        let Some(shard) = self.own_single_shard(records) else {
            return self.submit_as(records, gateway).await;
        };
        let custodial = self.inner.custody.custodial(gateway, records);
        let core = core_of_shard(shard, self.inner.cores);
        let (tx, rx) = oneshot::channel();
        let submission = Command::Submit {
            records: Submitted::Archive(archive),
            valid: Vec::new(),
            custodial,
            from: Submitter::Client(Reply::Outcomes(tx)),
            // Nothing lent: the shard is on this core.
            home: None,
            sent: Some(Instant::now()),
        };
        self.send_to(shard, submission)
            .await
            .map_err(|_| SubmitFailure::Stopped)?;
        self.inner.core_counters[core]
            .submissions_to_own_shards
            .fetch_add(1, Relaxed);
        rx.await.map_err(|_| SubmitFailure::Stopped)?
    }

    /// The shard of every record of `records`, if they share one and the calling thread is the
    /// executor of that shard's core.
    fn own_single_shard(&self, records: &[Record]) -> Option<ShardId> {
        let core = mesh::Outbox::current(self.id())?.core();
        let shard_count = self.inner.shard_count;
        let shard = shard_of(&records.first()?.from(), shard_count);
        let single = records[1..]
            .iter()
            .all(|r| shard_of(&r.from(), shard_count) == shard);
        (single && core_of_shard(shard, self.inner.cores) == core).then_some(shard)
    }
}
