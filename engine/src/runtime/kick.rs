//! Waking a core's executor thread with a signal.
//!
//! Now and then a glommio 0.9 executor goes to sleep in `io_uring_enter` on its main ring and
//! is not woken by what should wake it: a completion on its latency ring (where its timers and
//! the eventfd that other threads write to wake it sit), which reaches the main ring only
//! through a `POLL_ADD` on the latency ring's file descriptor. Caught in gdb: parked in
//! `io_uring_enter`, no timer firing, cross-thread wakes (eventfd writes) without effect, and
//! woken at once by a signal. `benches/scripts/starts.sh` reproduces it: one start in 300
//! under load on the 2-core machine, an executor that did not recover its shards within 30 s.
//!
//! A signal interrupts the wait (glommio takes the `EINTR` as a wake-up) and makes the thread
//! run the kernel work queued for it, which posts the pending completions. So the start-up
//! loop kicks an executor that has not reported its shards yet at each nudge, and the
//! watchdog kicks a core whose heartbeat stopped before it gives up on it. The signal is
//! `SIGURG` (what Go's runtime preempts threads with): ignored by default, so a handler that
//! does nothing is installed — a signal that is ignored is discarded and interrupts nothing.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, Once};

const KICK_SIGNAL: libc::c_int = libc::SIGURG;

extern "C" fn on_kick(_signal: libc::c_int) {}

fn install_handler() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // SAFETY: a handler that does nothing (async-signal-safe), installed once. SA_RESTART:
        // the other system calls a kick may land in (open, read, fsync...) restart on their
        // own; io_uring_enter's wait returns EINTR all the same, after the thread ran the work
        // queued for it.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_kick as extern "C" fn(libc::c_int) as libc::sighandler_t;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            let installed = libc::sigaction(KICK_SIGNAL, &action, std::ptr::null_mut());
            assert_eq!(installed, 0, "install the SIGURG handler");
        }
    });
}

/// Each core's executor thread, while it runs, and the kicks sent.
pub struct Kicker {
    /// The thread of each core's executor; `None` before it starts and after it ends. A kick
    /// holds the lock, so a thread never ends (and its id is never reused) while being kicked.
    threads: Box<[Mutex<Option<libc::pthread_t>>]>,
    kicks: AtomicU64,
}

impl Kicker {
    pub fn new(cores: usize) -> Kicker {
        Kicker {
            threads: (0..cores).map(|_| Mutex::new(None)).collect(),
            kicks: AtomicU64::new(0),
        }
    }

    /// Call on core `core`'s executor thread when it starts.
    pub fn register(&self, core: usize) {
        install_handler();
        // SAFETY: pthread_self has no preconditions.
        let me = unsafe { libc::pthread_self() };
        *self.threads[core].lock().expect("kicker lock") = Some(me);
    }

    /// Call on core `core`'s executor thread before it ends.
    pub fn unregister(&self, core: usize) {
        *self.threads[core].lock().expect("kicker lock") = None;
    }

    /// Interrupts core `core`'s executor thread, if it runs. Whether a signal was sent.
    pub fn kick(&self, core: usize) -> bool {
        let thread = self.threads[core].lock().expect("kicker lock");
        let Some(thread) = *thread else {
            return false;
        };
        // SAFETY: the thread is registered, hence alive (it unregisters under this lock
        // before it ends), and the signal has a handler.
        let sent = unsafe { libc::pthread_kill(thread, KICK_SIGNAL) } == 0;
        if sent {
            self.kicks.fetch_add(1, Relaxed);
        }
        sent
    }

    /// Signals sent so far.
    pub fn kicks(&self) -> u64 {
        self.kicks.load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    #[test]
    fn a_kick_interrupts_a_thread_waiting_for_a_signal() {
        let kicker = Arc::new(Kicker::new(1));
        assert!(!kicker.kick(0), "no thread registered yet");
        let (registered_tx, registered_rx) = std::sync::mpsc::channel();
        let thread = {
            let kicker = kicker.clone();
            std::thread::spawn(move || {
                kicker.register(0);
                registered_tx.send(()).unwrap();
                // Waits in pause(2) until a signal's handler ran (as io_uring_enter's wait, it
                // is never restarted).
                // SAFETY: pause has no preconditions.
                let result = unsafe { libc::pause() };
                let error = std::io::Error::last_os_error().raw_os_error();
                kicker.unregister(0);
                (result, error)
            })
        };
        registered_rx.recv().unwrap();
        let started = Instant::now();
        while !thread.is_finished() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the read was never interrupted"
            );
            kicker.kick(0);
            std::thread::sleep(Duration::from_millis(20));
        }
        let (result, error) = thread.join().unwrap();
        assert_eq!((result, error), (-1, Some(libc::EINTR)));
        assert!(kicker.kicks() >= 1);
        assert!(!kicker.kick(0), "the thread unregistered");
    }
}
