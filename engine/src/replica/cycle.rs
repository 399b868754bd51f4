//! The ready cycle of the replica (module documentation above): a `Ready` handed out, its
//! writes staged, later made durable (raft-rs's asynchronous append).

use super::*;

impl ShardReplica {
    /// Starts a ready cycle: applies committed entries that are durable, restores a snapshot
    /// received from the leader, and returns what the caller must persist and send. `None` when
    /// there is nothing to do. The caller stages the writes (raft reads them from the storage
    /// from then on) and calls [`ShardReplica::staged`] before any other input; once they are
    /// durable it sends `persisted_messages` and calls [`ShardReplica::persisted`]. Ready
    /// cycles are persisted in order; several may be staged and not yet durable (raft-rs's
    /// asynchronous append: the next group is proposed and sent while a write runs).
    pub fn ready(&mut self, now_ms: u64) -> Result<Option<ReadyWork>, ReplicaError> {
        assert!(self.pending_ready.is_none(), "previous ready not staged");
        if let Some(fatal) = &self.fatal {
            // Sticky: the replica does no more work.
            return Err(fatal.clone());
        }
        // raft-rs switches to a received snapshot's configuration as soon as it steps the
        // snapshot, before the snapshot reaches us in a Ready. Until the Ready below restores
        // it, nothing may apply or be archived against that configuration: committed entries
        // queued below the snapshot's index would apply their membership changes to it (a
        // leave-joint against a configuration that is no longer joint stops the replica), and
        // a snapshot made now would pair the old state with the new configuration. Restoring
        // drops those entries; what stays queued above the snapshot applies with the
        // Ready's committed entries.
        let snapshot_stepped = self.node.raft.raft_log.unstable_snapshot().is_some();
        if !snapshot_stepped {
            self.release_unservable_snapshot_requests();
            self.make_snapshot_if_requested();
        }
        if !snapshot_stepped && !self.apply_queue.is_empty() {
            // Apply waits at a marker; the receipts it waits for may have arrived since (they
            // come from another shard, not through raft, so raft may have no Ready for us).
            self.apply_committed(Vec::new(), now_ms);
            self.advance_apply();
        }
        if !self.node.has_ready() {
            return Ok(None);
        }
        let mut ready = self.node.ready();
        let mut work = ReadyWork {
            number: ready.number(),
            must_sync: ready.must_sync(),
            ..Default::default()
        };
        if !ready.snapshot().is_empty() {
            let snapshot = ready.snapshot().clone();
            self.restore_snapshot(&snapshot)?;
            work.snapshot = Some(snapshot);
        }
        let committed = ready.take_committed_entries();
        self.apply_committed(committed, now_ms);
        work.entries = ready.take_entries();
        work.hard_state = ready.hs().cloned();
        work.messages = ready.take_messages();
        work.persisted_messages = ready.take_persisted_messages();
        self.pending_ready = Some(ready);
        Ok(Some(work))
    }

    /// The caller staged the writes of ready cycle `number`: raft may read them from the
    /// storage, and takes input again.
    pub fn staged(&mut self, number: u64) {
        let ready = self
            .pending_ready
            .take()
            .expect("staged without a ready cycle");
        assert_eq!(ready.number(), number, "staged the ready cycle handed out");
        self.node.advance_append_async(ready);
        self.advance_apply();
    }

    /// Ready cycles up to `number` are durable (and their persisted messages sent). What
    /// commits because of it applies at the next ready cycle.
    pub fn persisted(&mut self, number: u64) {
        assert!(
            self.pending_ready.is_none(),
            "persisted while a ready cycle is not staged"
        );
        self.node.on_persist_ready(number);
        self.advance_apply();
    }
}
