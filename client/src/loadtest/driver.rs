//! The load itself: closed-loop workers (each sends its next request when its reply came; the
//! ramp's level says how many work) or an open-loop scheduler (requests on a timetable at the
//! ramp's rate, whatever the replies). Requests go to the nodes round-robin; each outcome is
//! tallied by the [`Recorder`].

use super::recorder::{error_kind, Recorder};
use super::source::{Request, Source};
use crate::http::{Client, ErrorKind};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify, Semaphore};

/// Largest reply of a GET that is read (the rest fails the request).
const GET_BYTES_MAX: usize = 16 << 20;
/// A closed-loop worker whose request could not connect waits this long before its next one
/// (a node that is down is not hammered in a tight loop).
const CONNECTION_BACKOFF: Duration = Duration::from_millis(100);

/// What the workers share.
pub(crate) struct Shared {
    pub source: Source,
    pub recorder: Recorder,
    pub clients: Vec<Client>,
    next_client: AtomicUsize,
    pub stop: AtomicBool,
    /// Woken when the load stops before its duration.
    pub stopped: Notify,
    issued: AtomicU64,
    max_requests: u64,
    stop_reason: Mutex<Option<String>>,
}

impl Shared {
    pub fn new(source: Source, clients: Vec<Client>, max_requests: u64) -> Shared {
        Shared {
            source,
            recorder: Recorder::new(),
            clients,
            next_client: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            stopped: Notify::new(),
            issued: AtomicU64::new(0),
            max_requests,
            stop_reason: Mutex::new(None),
        }
    }

    /// Stops the load (the first reason given is kept).
    pub fn request_stop(&self, reason: &str) {
        let mut r = self.stop_reason.lock().unwrap_or_else(|e| e.into_inner());
        if r.is_none() {
            *r = Some(reason.to_string());
        }
        self.stop.store(true, Ordering::SeqCst);
        self.stopped.notify_one();
    }

    pub fn stop_reason(&self) -> Option<String> {
        self.stop_reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Counts one more request; false (and the load stops) past `--max-requests`.
    fn take_slot(&self) -> bool {
        if self.issued.fetch_add(1, Ordering::Relaxed) >= self.max_requests {
            self.request_stop(&format!("--max-requests {} reached", self.max_requests));
            return false;
        }
        true
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// Sends `request` to the next node and tallies the outcome, its latency measured from
/// `origin`. Returns whether it failed to connect.
async fn send(shared: &Shared, request: Request, origin: Instant) -> bool {
    let n = shared.next_client.fetch_add(1, Ordering::Relaxed) % shared.clients.len();
    let client = &shared.clients[n];
    let result = match request {
        Request::Batch {
            path,
            bytes,
            records,
        } => client
            .post_batch(path, bytes, records, true)
            .await
            .map(Some),
        Request::Get { path } => client
            .get_bytes(&path, "application/json", GET_BYTES_MAX)
            .await
            .map(|_| None),
    };
    let latency = origin.elapsed();
    match result {
        Ok(results) => {
            let results: Vec<(bool, &str)> = results
                .iter()
                .flatten()
                .map(|r| (r.code.is_ok(), r.code.name()))
                .collect();
            shared.recorder.with(|t| t.replied(latency, &results));
            false
        }
        Err(e) => {
            let connection = matches!(e.kind, ErrorKind::Transport(_));
            shared.recorder.with(|t| t.failed(error_kind(&e)));
            connection
        }
    }
}

/// Closed loop: worker `id` works while the level is above `id`.
pub(crate) async fn closed_worker(shared: Arc<Shared>, id: u64, mut level: watch::Receiver<u64>) {
    loop {
        if shared.stopping() {
            return;
        }
        if id >= *level.borrow_and_update() {
            if level.changed().await.is_err() {
                return;
            }
            continue;
        }
        if !shared.take_slot() {
            return;
        }
        let Some(request) = shared.source.next().await else {
            return;
        };
        if send(&shared, request, Instant::now()).await {
            tokio::time::sleep(CONNECTION_BACKOFF).await;
        }
    }
}

/// Open loop: request `k` is due one period (1 / the rate then) after request `k - 1`, from
/// `start` until `start + duration`, with at most `max_in_flight` requests in flight (a request
/// due while that many are waits, and is sent late). Latency counts from the due time, so the
/// wait of a late request is in it; the lag of each send is tallied. Returns once every request
/// sent has completed.
pub(crate) async fn open_scheduler(
    shared: Arc<Shared>,
    level: watch::Receiver<u64>,
    start: Instant,
    duration: Duration,
    max_in_flight: usize,
) {
    let permits = Arc::new(Semaphore::new(max_in_flight));
    let end = start + duration;
    let mut due = start;
    while !shared.stopping() && due < end {
        let rate = (*level.borrow()).max(1);
        let now = Instant::now();
        if due > now {
            tokio::time::sleep_until(due.into()).await;
        }
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        if shared.stopping() || !shared.take_slot() {
            break;
        }
        let Some(request) = shared.source.next().await else {
            break;
        };
        let lag = Instant::now().saturating_duration_since(due);
        shared.recorder.with(|t| t.lag(lag));
        let task_shared = shared.clone();
        tokio::spawn(async move {
            send(&task_shared, request, due).await;
            drop(permit);
        });
        due += Duration::from_secs_f64(1.0 / rate as f64);
    }
    // Every request sent has completed once every permit is back.
    let _ = permits.acquire_many(max_in_flight as u32).await;
}
