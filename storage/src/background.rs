//! Background work on glommio's blocking pool: below the shards' priority, and its writes paced.
//!
//! Everything the node hands to an executor's blocking pool is background work that no reply
//! waits for: archiving a snapshot (sorting the accounts, rkyv, tens of MiB), writing and
//! syncing its file, zero-filling the next WAL segment, unlinking compacted segments.
//!
//! - **Its writes are paced** ([`Pace`]): what stalled the shards during a snapshot, and after
//!   every WAL roll, was not the CPU but the disk. Written in a burst, a ~95 MB snapshot or a
//!   64 MiB spare filled the disk's queue and every group commit's fdatasync waited behind it
//!   (docs/benchmarks.md, "Background writes, paced: the long-run half-load tail").
//! - **Its threads run niced** ([`BACKGROUND_NICE`]). A pool thread is an ordinary thread:
//!   on a host whose cores all run executors, the scheduler would give it an equal share of a
//!   core. Niced, it takes an idle core whole, and under contention the executor comes first
//!   while background work keeps a bounded share (weight 110 of 1,134 at nice 10), so that a
//!   snapshot still ends under full load and the log it truncates stays bounded. On the 2-core
//!   development VM this made no visible difference to the half-load tail (the disk did; same
//!   section); it is a bound on what background CPU can take, not a measured gain.

use std::future::Future;
use std::time::{Duration, Instant};

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

/// Runs `job` on a thread of its own, niced like the blocking pool's jobs, for background
/// work that sleeps between its steps (freeing deleted files gradually): on the executor's
/// blocking pool, whose one thread also makes the WAL's spare segments and writes snapshots,
/// seconds of it would hold those up. `Err` when no thread could be started.
pub fn spawn_background_thread<T, F>(
    name: &str,
    job: F,
) -> impl Future<Output = std::io::Result<T>> + use<T, F>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let (tx, rx) = futures::channel::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            lower_own_priority();
            let _ = tx.send(job());
        });
    async move {
        spawned?;
        rx.await.map_err(|_| {
            std::io::Error::other("the background job's thread ended without a result")
        })
    }
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

/// Paces a background job that writes in pieces: before each piece, [`Pace::wait_for`] sleeps
/// (the job's pool thread, never an executor) until that piece is due at `bytes_per_sec`. A
/// burst of background writes, even O_DIRECT and in 1 MiB pieces, fills the disk's queue, and
/// every WAL group commit's fdatasync waits behind it (docs/benchmarks.md, "Background
/// writes, paced: the long-run half-load tail").
pub(crate) struct Pace {
    started: Instant,
    bytes_per_sec: Option<u64>,
}

impl Pace {
    /// `None` (or 0): no pacing.
    pub fn new(bytes_per_sec: Option<u64>) -> Pace {
        Pace {
            started: Instant::now(),
            bytes_per_sec: bytes_per_sec.filter(|&rate| rate > 0),
        }
    }

    /// Sleeps until the piece that starts after `written` bytes is due.
    pub fn wait_for(&self, written: u64) {
        let Some(rate) = self.bytes_per_sec else {
            return;
        };
        let due = self.started + Duration::from_secs_f64(written as f64 / rate as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
}

/// Bytes a file is shrunk by at a time when it is freed gradually ([`free_gradually`]).
pub const FREE_PIECE_BYTES: u64 = 8 << 20;
/// Time between two pieces freed.
pub const FREE_PIECE_INTERVAL: Duration = Duration::from_millis(20);

/// Deletes the file at `path` a piece at a time: shrinks it by [`FREE_PIECE_BYTES`], makes
/// that durable (which commits the freed blocks on their own), waits [`FREE_PIECE_INTERVAL`],
/// and so on, then unlinks what is left. On a file system mounted with online discard, the
/// blocks a journal commit frees are trimmed inside that commit, and the WAL's writes and
/// fdatasyncs wait behind it: a 64 MiB segment or a 55 MB snapshot freed at once held group
/// commits up for milliseconds to tens of them (docs/benchmarks.md, "Online discard"). Runs on
/// a blocking thread. A file shrunk half-way by a crash is the caller's to recognise (a name
/// nothing reads, or a file nothing needs).
pub fn free_gradually(path: &std::path::Path) -> std::io::Result<()> {
    let file = std::fs::OpenOptions::new().write(true).open(path)?;
    let mut len = file.metadata()?.len();
    while len > FREE_PIECE_BYTES {
        len -= FREE_PIECE_BYTES;
        file.set_len(len)?;
        file.sync_data()?;
        std::thread::sleep(FREE_PIECE_INTERVAL);
    }
    drop(file);
    std::fs::remove_file(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_freed_gradually_is_gone_after_a_pause_per_piece() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        let file = std::fs::File::create(&path).unwrap();
        file.set_len(20 << 20).unwrap();
        drop(file);
        let started = Instant::now();
        free_gradually(&path).unwrap();
        assert!(!path.exists());
        // 20 MiB: shrunk to 12 and to 4 MiB (a pause after each), then unlinked.
        assert!(
            started.elapsed() >= 2 * FREE_PIECE_INTERVAL,
            "{:?}",
            started.elapsed()
        );
        assert!(free_gradually(&path).is_err(), "a missing file is an error");
    }

    /// The calling thread's nice value.
    fn own_nice() -> i32 {
        // SAFETY: a plain syscall on the calling thread's own scheduling attribute.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
    }

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

    #[test]
    fn a_pace_sleeps_until_each_piece_is_due() {
        let pace = Pace::new(Some(1000));
        pace.wait_for(0);
        pace.wait_for(100);
        assert!(pace.started.elapsed() >= Duration::from_millis(100));
        let unpaced = Pace::new(Some(0));
        unpaced.wait_for(1 << 40);
        assert!(unpaced.started.elapsed() < Duration::from_secs(1));
    }
}
