//! Background work on glommio's blocking pool, below the shards' priority.
//!
//! Everything the node hands to an executor's blocking pool is background work that no reply
//! waits for: archiving a snapshot (sorting the accounts, rkyv, tens of MiB), writing and
//! syncing its file, zero-filling the next WAL segment, unlinking compacted segments. A pool
//! thread is an ordinary thread, so on a host whose cores are all running executors the
//! scheduler gave it an equal share of a core: while both shards of the 2-core development VM
//! archived their ~95 MB snapshots at once, every batch waited 30-90 ms
//! (docs/benchmarks.md, "Background work below the shards"). The pool's threads therefore run
//! niced ([`BACKGROUND_NICE`]): when a core is idle they take all of it, and under contention
//! the executor comes first while background work still gets a bounded share (weight 110 of
//! 1,134 at nice 10), so that a snapshot still ends under full load and the raft log it
//! truncates stays bounded.

use std::future::Future;

/// The nice value of a blocking-pool thread while it runs background work (0 is the default;
/// 19 the lowest priority). On Linux nice is a per-thread attribute.
pub const BACKGROUND_NICE: i32 = 10;

/// Runs `job` on the current executor's blocking pool, niced (see the module). Must run inside
/// a glommio executor; the future must be polled for the job to start.
pub fn spawn_background<T, F>(job: F) -> impl Future<Output = T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    glommio::executor().spawn_blocking(move || {
        lower_own_priority();
        job()
    })
}

/// Raises the calling thread's nice value to [`BACKGROUND_NICE`] (never lowers it: an
/// unprivileged thread could not take it back down, and an operator may have niced the node
/// further).
fn lower_own_priority() {
    // SAFETY: plain syscalls on the calling thread's own scheduling attribute.
    unsafe {
        let tid = libc::gettid() as libc::id_t;
        // getpriority can return -1 as a value: clear errno first and check it after.
        *libc::__errno_location() = 0;
        let nice = libc::getpriority(libc::PRIO_PROCESS, tid);
        if *libc::__errno_location() != 0 || nice >= BACKGROUND_NICE {
            return;
        }
        // A failure leaves the thread at its priority: background work then runs as before.
        libc::setpriority(libc::PRIO_PROCESS, tid, BACKGROUND_NICE);
    }
}

/// The calling thread's nice value.
pub fn own_nice() -> i32 {
    // SAFETY: as above.
    unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn background_jobs_run_niced_and_the_executor_is_not() {
        let ex = glommio::LocalExecutorBuilder::default()
            .spawn(|| async {
                let before = own_nice();
                let (value, nice) = spawn_background(|| (7, own_nice())).await;
                assert_eq!(value, 7);
                assert_eq!(nice, BACKGROUND_NICE.max(before));
                assert_eq!(
                    own_nice(),
                    before,
                    "the executor's thread keeps its priority"
                );
            })
            .expect("executor");
        ex.join().expect("executor ran");
    }
}
