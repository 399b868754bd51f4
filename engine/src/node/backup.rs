//! A backup's view of the shard: its state at the applied index, copied on the shard's core,
//! with what a snapshot file needs besides (term, configuration). Nothing of the node's own
//! snapshot bookkeeping changes: a backup is not a snapshot of the log.

use super::{LocalSnapshot, ShardNode};
use crate::state_snapshot::capture_state;

/// Why a shard cannot be backed up at this moment.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BackupRefused {
    #[error("shard {0} has applied nothing yet")]
    NothingApplied(u32),
    #[error(
        "shard {0} is applying a membership change ahead of its ledger; try again in a moment"
    )]
    MembershipAhead(u32),
}

impl<R> ShardNode<R> {
    /// The transfer entries applied since the last call, for a downstream sink.
    pub fn take_applied(&mut self) -> Vec<crate::replica::AppliedEntry> {
        self.replica.take_applied()
    }

    /// The state at the applied index, for a backup (the runtime encodes it off the core).
    pub fn backup_image(&self) -> Result<LocalSnapshot, BackupRefused> {
        let shard = self.replica.shard();
        if self.replica.membership_ahead() {
            // The configuration raft holds is not the one of the applied ledger.
            return Err(BackupRefused::MembershipAhead(shard));
        }
        let state = self.replica.state();
        let applied = state.applied_index();
        let raft = &self.replica.raw_node().raft;
        let term = raft.raft_log.term(applied).unwrap_or(0);
        if applied == 0 || term == 0 {
            return Err(BackupRefused::NothingApplied(shard));
        }
        Ok(LocalSnapshot {
            index: applied,
            term,
            conf: raft.prs().conf().to_conf_state(),
            image: capture_state(state),
        })
    }
}
