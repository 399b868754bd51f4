//! One replica's I/O loop in the simulator, as the runtime's shard driver runs it: inputs,
//! a ready cycle staged when the node may start one, the end of the turn, one group commit in
//! flight at a time with its fdatasync taking simulated time, and the storage faults.

use super::*;

impl Cluster {
    /// Runs one replica's I/O loop as far as it can go this millisecond: the runtime's turn
    /// (inputs, a ready cycle staged when the node may start one, finish_turn, a group commit
    /// of what is staged when none is in flight), with the fdatasync taking simulated time.
    pub(super) fn drive(&mut self, v: usize, s: usize) -> Result<(), Violation> {
        for _ in 0..16 {
            if !self.validators[v].up {
                return Ok(());
            }
            let mut progressed = false;
            if let Some((number, done_at)) = self.validators[v].shards[s].committing {
                if done_at <= self.now {
                    self.validators[v].shards[s].committing = None;
                    if self.chaotic
                        && self.config.storage_faults
                        && self.rng.gen_bool(STORAGE_FAULT_P)
                    {
                        // fdatasync failed: what it was to make durable is in an unknown state
                        // (the kernel may have dropped the dirty pages): fail-stop, as a crash.
                        self.stats.fsync_eio += 1;
                        self.fail_stop(v);
                        return Ok(());
                    }
                    self.validators[v].shards[s].disk.sync();
                    let now = self.clock();
                    let mut io = self.io(v, s);
                    self.node(v, s).persisted(&mut io, number, now);
                    self.flush(v, s, io)?;
                    progressed = true;
                }
            }
            let inputs: Vec<Input> = self.validators[v].shards[s].inputs.drain(..).collect();
            for input in inputs {
                self.feed(v, s, input)?;
            }
            if self.node(v, s).can_start_turn() {
                let now = self.clock();
                let mut io = self.io(v, s);
                let persist = self
                    .node(v, s)
                    .start_turn(&mut io, now)
                    .map_err(|e| self.violation(format!("ready failed: {e}")))?;
                self.flush(v, s, io)?;
                if let Some(persist) = persist {
                    let write = DiskWrite {
                        snapshot: persist
                            .snapshot
                            .map(|snap| (snap.get_metadata().clone(), snap.data.to_vec())),
                        entries: persist.entries,
                        hard_state: persist.hard_state,
                    };
                    self.trace(&[
                        3,
                        v as u64,
                        s as u64,
                        persist.number,
                        write.snapshot.as_ref().map_or(0, |(m, _)| m.index),
                        write.entries.len() as u64,
                        write.entries.last().map_or(0, |e| e.index),
                        write.hard_state.as_ref().map_or(0, |h| h.commit),
                    ]);
                    let slot = &mut self.validators[v].shards[s];
                    assert!(
                        write.snapshot.is_none()
                            || (slot.committing.is_none() && slot.staged_up_to.is_none()),
                        "a snapshot's cycle starts with nothing else in flight"
                    );
                    slot.disk.stage(write);
                    slot.staged_up_to = Some(persist.number);
                    self.node(v, s).staged(persist.number);
                    progressed = true;
                }
            }
            self.finish_turn(v, s)?;
            let slot = &self.validators[v].shards[s];
            if slot.committing.is_none() && slot.staged_up_to.is_some() {
                self.start_commit(v, s)?;
                if !self.validators[v].up {
                    return Ok(());
                }
            }
            if !progressed {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Starts a group commit of what shard `s` of validator `v` staged.
    fn start_commit(&mut self, v: usize, s: usize) -> Result<(), Violation> {
        let slot = &mut self.validators[v].shards[s];
        slot.disk.start_commit();
        let number = slot.staged_up_to.take().expect("something staged");
        if self.chaotic && self.config.storage_faults && self.rng.gen_bool(STORAGE_FAULT_P) {
            // The write failed (EIO, or ENOSPC: the disk is full): fail-stop; whatever part of
            // it reached the disk is like an unsynced write at a crash. The kinds alternate
            // (every seed that fails two writes has both).
            if self.stats.write_eio <= self.stats.write_enospc {
                self.stats.write_eio += 1;
            } else {
                self.stats.write_enospc += 1;
            }
            self.fail_stop(v);
            return Ok(());
        }
        let latency = if self.rng.gen_bool(0.5) {
            0
        } else {
            self.rng.gen_range(1..4)
        };
        self.validators[v].shards[s].committing = Some((number, self.now + latency));
        Ok(())
    }

    /// The end of a turn: answers, pieces, messages to other shards, and a local snapshot
    /// (durable at once on the simulated disk, which also truncates the log).
    fn finish_turn(&mut self, v: usize, s: usize) -> Result<(), Violation> {
        let mut io = self.io(v, s);
        let snapshot = self.node(v, s).finish_turn(&mut io);
        self.flush(v, s, io)?;
        if let Some(snapshot) = snapshot {
            let index = snapshot.index;
            self.validators[v].shards[s].disk.save_local_snapshot(
                index,
                snapshot.term,
                snapshot.conf,
                snapshot.image.encode(),
            );
            let now = self.clock();
            let mut io = self.io(v, s);
            self.node(v, s).snapshot_saved(&mut io, index, now);
            self.flush(v, s, io)?;
        }
        Ok(())
    }
}
