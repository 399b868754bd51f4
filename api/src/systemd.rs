//! systemd integration over the sd_notify protocol (a datagram to `$NOTIFY_SOCKET`): the node
//! says `READY=1` once every core serves (for `Type=notify` units), `STOPPING=1` when a stop
//! signal arrives, and, when the unit sets `WatchdogSec=`, `WATCHDOG=1` every half period, but
//! only while every executor makes progress (their liveness beats): a node whose core stalls
//! stops pinging and systemd restarts it, as the node's own watchdog would.
//!
//! Outside systemd (`$NOTIFY_SOCKET` unset) all of it does nothing.

use aurigraph_engine::runtime::watchdog::Beats;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Where the node's notifications go (none outside systemd).
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
}

impl Notifier {
    /// From `$NOTIFY_SOCKET` (a path, or `@name` for an abstract socket).
    pub fn from_env() -> Notifier {
        let target = std::env::var_os("NOTIFY_SOCKET").and_then(|path| {
            let path = path.to_string_lossy().into_owned();
            let addr = match path.strip_prefix('@') {
                Some(name) => {
                    use std::os::linux::net::SocketAddrExt;
                    SocketAddr::from_abstract_name(name.as_bytes())
                }
                None => SocketAddr::from_pathname(&path),
            };
            match (UnixDatagram::unbound(), addr) {
                (Ok(socket), Ok(addr)) => Some((socket, addr)),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::warn!(socket = %path, error = %e, "NOTIFY_SOCKET unusable: no sd_notify");
                    None
                }
            }
        });
        Notifier { target }
    }

    pub fn is_active(&self) -> bool {
        self.target.is_some()
    }

    /// Sends one notification (`READY=1`, `STOPPING=1`, ...); a failure is logged, not fatal.
    pub fn notify(&self, state: &str) {
        if let Some((socket, addr)) = &self.target {
            if let Err(error) = socket.send_to_addr(state.as_bytes(), addr) {
                tracing::warn!(%error, state, "sd_notify failed");
            }
        }
    }
}

/// The watchdog period systemd asked for (`$WATCHDOG_USEC`, when `$WATCHDOG_PID` is unset or
/// this process).
pub fn watchdog_period() -> Option<Duration> {
    if let Some(pid) = std::env::var_os("WATCHDOG_PID") {
        if pid.to_string_lossy().parse::<u32>().ok() != Some(std::process::id()) {
            return None;
        }
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// Pings systemd's watchdog every half `period` while every executor makes progress.
pub struct WatchdogPinger {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl WatchdogPinger {
    pub fn start(notifier: Arc<Notifier>, beats: Beats, period: Duration) -> WatchdogPinger {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("aurigraph-sdwatch".into())
                .spawn(move || {
                    let mut last = beats.counts();
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::park_timeout(period / 2);
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        let (alive, now) = beats.all_moved_since(&last);
                        last = now;
                        if alive {
                            notifier.notify("WATCHDOG=1");
                        } else {
                            tracing::error!(
                                "an executor made no progress: not telling systemd's watchdog \
                                 that the node is alive"
                            );
                        }
                    }
                })
                .expect("spawn the systemd watchdog thread")
        };
        WatchdogPinger {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for WatchdogPinger {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}
