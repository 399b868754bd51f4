//! A shard's local snapshots on the driver's side: the node hands out a copy of the state at
//! the end of a turn; it is archived, written and the log compacted to it on the blocking pool
//! and at later turns, the shard's turns going on meanwhile.

use super::ShardDriver;
use crate::node::LocalSnapshot;
use crate::runtime::EngineError;
use aurigraph_storage::background::spawn_background;
use futures::FutureExt;
use raft::eraftpb::ConfState;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

/// A local snapshot handed out by the node, its state being archived off the core.
pub(in crate::runtime) struct Archiving {
    index: u64,
    term: u64,
    conf: ConfState,
    started: Instant,
    /// The replica's applied bytes when the state was copied (what it applied past the
    /// snapshot while waiting for the sinks is measured from it).
    applied_bytes: u64,
    /// Saved although a sink had not written up to `index` (counted and logged once).
    overran_sinks: bool,
    data: Pin<Box<dyn Future<Output = Vec<u8>>>>,
    /// The snapshot's file being written on the blocking pool, once the data is ready and the
    /// sinks let it be saved; the log is compacted to it when this is done.
    writing: Option<SnapshotWrite>,
}

/// A snapshot's file being written on the blocking pool (`ShardLog::write_snapshot_file`).
type SnapshotWrite = Pin<Box<dyn Future<Output = Result<(), aurigraph_storage::StorageError>>>>;

impl ShardDriver {
    /// Starts archiving the snapshot `finish_turn` handed out (`finishing`: when that call
    /// began, for the log line).
    pub(super) fn start_archiving(&mut self, snapshot: LocalSnapshot, finishing: Instant) {
        // Archiving the copied state (sorting its accounts, rkyv) is most of a snapshot's
        // cost: it runs on glommio's blocking pool while this shard's turns go on (the log
        // keeps everything until the snapshot is saved, at a later turn).
        let LocalSnapshot {
            index,
            term,
            conf,
            image,
        } = snapshot;
        tracing::debug!(
            shard = self.node.shard(),
            index,
            turn_end_us = finishing.elapsed().as_micros() as u64,
            "snapshot taken (state copied)"
        );
        let data = spawn_background(move || image.encode());
        assert!(self.archiving.is_none(), "one local snapshot at a time");
        self.archiving = Some(Archiving {
            index,
            term,
            conf,
            started: Instant::now(),
            applied_bytes: self.node.replica().applied_bytes(),
            overran_sinks: false,
            data: Box::pin(data),
            writing: None,
        });
    }

    /// Moves the local snapshot being archived on, without waiting (with `wait`, to the end):
    /// once its bytes are ready and the sinks let it be saved, its file is written on the
    /// blocking pool; once written, the log is compacted to it and the node told. The turns go
    /// on meanwhile: on the development VM the file's fsync behind a busy WAL took up to 0.3 s,
    /// and a shard that waited for it stalled every client for that long.
    pub(super) async fn save_archived(&mut self, wait: bool) -> Result<(), EngineError> {
        let shard = self.node.shard();
        let Some(archiving) = self.archiving.as_ref() else {
            return Ok(());
        };
        if archiving.writing.is_none() {
            if !wait && !self.sinks_let_save(archiving.index, archiving.applied_bytes) {
                return Ok(());
            }
            let archiving = self.archiving.as_mut().expect("archiving");
            let data = if wait {
                archiving.data.as_mut().await
            } else {
                match archiving.data.as_mut().now_or_never() {
                    Some(data) => data,
                    None => return Ok(()),
                }
            };
            tracing::debug!(
                shard,
                index = archiving.index,
                bytes = data.len(),
                archive_ms = archiving.started.elapsed().as_millis() as u64,
                "snapshot archived"
            );
            let write = self.log.write_snapshot_file(
                archiving.index,
                archiving.term,
                archiving.conf.clone(),
                data,
                // 0 is unpaced, as `Pace` reads it.
                Some(self.config.snapshot_write_bytes_per_sec),
            );
            archiving.writing = Some(Box::pin(write));
        }
        let archiving = self.archiving.as_mut().expect("archiving");
        let writing = archiving.writing.as_mut().expect("writing");
        let written = if wait {
            writing.await
        } else {
            match writing.now_or_never() {
                Some(written) => written,
                None => return Ok(()),
            }
        };
        written.map_err(|source| EngineError::Storage { shard, source })?;
        let Archiving {
            index,
            term,
            conf,
            started,
            ..
        } = self.archiving.take().expect("archiving");
        // Compacting the WAL takes no group commit under way.
        let compacting = Instant::now();
        self.drain_writes().await?;
        let drained_us = compacting.elapsed().as_micros() as u64;
        self.log
            .compact_to_snapshot(index, term, conf)
            .await
            .map_err(|source| EngineError::Storage { shard, source })?;
        tracing::debug!(
            shard,
            index,
            saved_ms = started.elapsed().as_millis() as u64,
            drained_us,
            compact_us = compacting.elapsed().as_micros() as u64 - drained_us,
            "snapshot saved, log compacted"
        );
        self.counters().snapshots.fetch_add(1, Relaxed);
        let now = self.now();
        let (node, mut io) = self.split();
        node.snapshot_saved(&mut io, index, now);
        Ok(())
    }

    /// Whether a local snapshot at `index` may be saved (compacting the log up to it): every
    /// sink has written up to it, or the shard applied `sink_retain_bytes_max` past it while
    /// waiting (then it is saved anyway: counted, logged).
    fn sinks_let_save(&mut self, index: u64, applied_bytes: u64) -> bool {
        let shard = self.node.shard();
        let behind = self
            .config
            .applied_taps
            .iter()
            .find(|tap| tap.written.get(shard) < index);
        let Some(tap) = behind else {
            return true;
        };
        let waited_bytes = self
            .node
            .replica()
            .applied_bytes()
            .saturating_sub(applied_bytes);
        if waited_bytes < self.config.sink_retain_bytes_max {
            return false;
        }
        let archiving = self.archiving.as_mut().expect("archiving");
        if !archiving.overran_sinks {
            archiving.overran_sinks = true;
            self.engine.inner.counters[shard as usize]
                .snapshots_ahead_of_sinks
                .fetch_add(1, Relaxed);
            tracing::warn!(
                shard,
                index,
                sink = tap.sink,
                written = tap.written.get(shard),
                "saving a snapshot the sink has not written up to (it stayed behind past \
                 sink_retain_bytes_max): a crash before it catches up leaves it a gap"
            );
        }
        true
    }
}
