//! Lost wake-ups of glommio executors: ping-pong through channels, counting round trips that
//! take longer than a deadline although the executor has nothing else to do.
//!
//! `lost_wakes [ROUNDS] [MODE]` (ROUNDS per pair, default 2,000,000):
//! - `thread` (default): two std threads each ping an executor of their own through
//!   async-channel, the way the node's other threads reach its cores;
//! - `executors`: two executors ping each other over glommio's `shared_channel`.
//!
//! A round trip still unanswered after `STALL_AFTER` is a stall: the thread mode then signals
//! the executor's thread (a signal interrupts a reactor asleep in the kernel; if the answer
//! comes at once, the executor was asleep with work it had not run). Prints each stall, the
//! totals, and exits 1 if there was any. docs/operations.md ("Lost wake-ups") has the figures.

use glommio::channels::shared_channel;
use glommio::{LocalExecutorBuilder, Placement};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a round trip may take before it counts as a stall (an idle executor answers in
/// microseconds).
const STALL_AFTER: Duration = Duration::from_secs(2);
/// A stall that a signal does not end within this long stops the run.
const STUCK_AFTER: Duration = Duration::from_secs(30);
const PAIRS: usize = 2;

extern "C" fn ignore_signal(_: libc::c_int) {}

fn main() {
    let rounds: u64 = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("ROUNDS: a number"))
        .unwrap_or(2_000_000);
    let mode = std::env::args().nth(2).unwrap_or_else(|| "thread".into());
    let started = Instant::now();
    let stalls = match mode.as_str() {
        "thread" => thread_pairs(rounds),
        "executors" => executor_pairs(rounds),
        other => {
            eprintln!("lost_wakes: unknown mode {other:?} (thread or executors)");
            std::process::exit(2);
        }
    };
    println!(
        "lost_wakes {mode}: {} round trips in {:.1} s, {stalls} stalls",
        rounds * PAIRS as u64,
        started.elapsed().as_secs_f64()
    );
    std::process::exit(i32::from(stalls > 0));
}

/// Threads pinging executors through async-channel; returns the stalls seen.
fn thread_pairs(rounds: u64) -> u64 {
    // SAFETY: installs a handler that does nothing, without SA_RESTART, so that a system call
    // it interrupts returns to the reactor instead of resuming.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = ignore_signal as *const () as usize;
        libc::sigaction(libc::SIGUSR2, &action, std::ptr::null_mut());
    }
    let stalls = Arc::new(AtomicU64::new(0));
    let mut pairs = Vec::new();
    for pair in 0..PAIRS {
        let (to_executor, requests) = async_channel::bounded::<u64>(1);
        let (to_thread, answers) = async_channel::bounded::<u64>(1);
        let tid = Arc::new(AtomicI32::new(0));
        let executor_tid = Arc::clone(&tid);
        let executor = LocalExecutorBuilder::new(Placement::Unbound)
            .name(&format!("wakes-{pair}"))
            .preempt_timer(Duration::from_millis(1))
            .spawn(move || async move {
                // SAFETY: gettid has no preconditions.
                executor_tid.store(unsafe { libc::gettid() }, Ordering::SeqCst);
                while let Ok(n) = requests.recv().await {
                    if to_thread.send(n + 1).await.is_err() {
                        break;
                    }
                }
            })
            .expect("executor");
        let stalls = Arc::clone(&stalls);
        let thread = std::thread::spawn(move || {
            for i in 0..rounds {
                let sent = Instant::now();
                to_executor.send_blocking(i).expect("executor alive");
                let mut signalled = false;
                let answer = loop {
                    if let Ok(answer) = answers.try_recv() {
                        break answer;
                    }
                    if !signalled && sent.elapsed() > STALL_AFTER {
                        signalled = true;
                        stalls.fetch_add(1, Ordering::Relaxed);
                        // SAFETY: a signal with a no-op handler, to a thread of this process.
                        unsafe {
                            libc::syscall(
                                libc::SYS_tgkill,
                                libc::getpid(),
                                tid.load(Ordering::SeqCst),
                                libc::SIGUSR2,
                            );
                        }
                    }
                    if sent.elapsed() > STUCK_AFTER {
                        eprintln!(
                            "pair {pair} round {i}: stuck {STUCK_AFTER:?}, even after a signal"
                        );
                        std::process::exit(3);
                    }
                    std::thread::sleep(Duration::from_micros(50));
                };
                assert_eq!(answer, i + 1);
                if signalled {
                    eprintln!(
                        "pair {pair} round {i}: stalled; answered {:?} after sending, at once \
                         after a signal",
                        sent.elapsed()
                    );
                }
            }
        });
        pairs.push((executor, thread));
    }
    for (executor, thread) in pairs {
        thread.join().expect("thread");
        executor.join().expect("executor");
    }
    stalls.load(Ordering::Relaxed)
}

/// Executors pinging executors over glommio's shared channels; returns the stalls seen.
fn executor_pairs(rounds: u64) -> u64 {
    let stalls = Arc::new(AtomicU64::new(0));
    let mut executors = Vec::new();
    for pair in 0..PAIRS {
        let (ping_tx, ping_rx) = shared_channel::new_bounded::<u64>(1);
        let (pong_tx, pong_rx) = shared_channel::new_bounded::<u64>(1);
        let builder = |name: String| {
            LocalExecutorBuilder::new(Placement::Unbound)
                .name(&name)
                .preempt_timer(Duration::from_millis(1))
        };
        executors.push(
            builder(format!("echo-{pair}"))
                .spawn(move || async move {
                    let requests = ping_rx.connect().await;
                    let answers = pong_tx.connect().await;
                    while let Some(n) = requests.recv().await {
                        if answers.send(n + 1).await.is_err() {
                            break;
                        }
                    }
                })
                .expect("executor"),
        );
        let stalls = Arc::clone(&stalls);
        executors.push(
            builder(format!("ping-{pair}"))
                .spawn(move || async move {
                    let requests = ping_tx.connect().await;
                    let answers = pong_rx.connect().await;
                    for i in 0..rounds {
                        requests.send(i).await.expect("echo alive");
                        let answer = glommio::timer::timeout(STALL_AFTER, async {
                            Ok(answers.recv().await)
                        })
                        .await;
                        let answer = match answer {
                            Ok(answer) => answer,
                            Err(_) => {
                                stalls.fetch_add(1, Ordering::Relaxed);
                                eprintln!("pair {pair} round {i}: no answer after {STALL_AFTER:?}");
                                match glommio::timer::timeout(STUCK_AFTER, async {
                                    Ok(answers.recv().await)
                                })
                                .await
                                {
                                    Ok(answer) => answer,
                                    Err(_) => {
                                        eprintln!("pair {pair} round {i}: stuck");
                                        std::process::exit(3);
                                    }
                                }
                            }
                        };
                        assert_eq!(answer, Some(i + 1));
                    }
                })
                .expect("executor"),
        );
    }
    for executor in executors {
        executor.join().expect("executor");
    }
    stalls.load(Ordering::Relaxed)
}
