//! The archive's reader threads ([`ArchiveReaderPool`]) and the handle that queues reads for
//! them ([`ArchiveReader`]): a bounded channel in, a oneshot channel back per read, a deadline
//! on each (see the parent module).

use super::{ArchiveQueries, ArchivedRow, HistoryCursor, HistoryPage, ReaderOptions};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use futures::channel::oneshot;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Why a read has no answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// Every reader is busy and the queue is full.
    #[error("the archive reader's queue is full ({0} reads waiting); try again shortly")]
    QueueFull(usize),
    /// PostgreSQL is away, refused, or failed the query.
    #[error("the archive (PostgreSQL) is unavailable: {0}")]
    Unavailable(String),
    /// No answer within the deadline.
    #[error("the archive (PostgreSQL) did not answer within {} ms", .0.as_millis())]
    TimedOut(Duration),
    /// The node is stopping.
    #[error("the archive reader stopped")]
    Stopped,
}

/// Reads by outcome (`/metrics`), counted by whoever awaits them ([`ReadCounters::record`]).
#[derive(Debug, Default)]
pub struct ReadCounters {
    pub ok: AtomicU64,
    pub unavailable: AtomicU64,
    pub queue_full: AtomicU64,
    pub timed_out: AtomicU64,
}

impl ReadCounters {
    /// Counts a read's outcome.
    pub fn record<T>(&self, result: &Result<T, ReadError>) {
        let counter = match result {
            Ok(_) => &self.ok,
            Err(ReadError::QueueFull(_)) => &self.queue_full,
            Err(ReadError::TimedOut(_)) => &self.timed_out,
            Err(ReadError::Unavailable(_) | ReadError::Stopped) => &self.unavailable,
        };
        counter.fetch_add(1, Relaxed);
    }
}

/// A queued read's answer, to await. A reader that stopped before answering is
/// [`ReadError::Stopped`].
pub struct Reply<T>(oneshot::Receiver<Result<T, ReadError>>);

impl<T> Future for Reply<T> {
    type Output = Result<T, ReadError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(ReadError::Stopped)))
    }
}

enum Query {
    Transfer {
        tx_hash: [u8; 32],
        reply: oneshot::Sender<Result<Option<ArchivedRow>, ReadError>>,
    },
    History {
        address: [u8; 32],
        before: Option<HistoryCursor>,
        limit: u32,
        reply: oneshot::Sender<Result<HistoryPage, ReadError>>,
    },
}

struct Job {
    query: Query,
    deadline: Instant,
}

impl Job {
    /// Past its deadline, or nobody waits for it any more.
    fn abandoned(&self, now: Instant) -> bool {
        now >= self.deadline
            || match &self.query {
                Query::Transfer { reply, .. } => reply.is_canceled(),
                Query::History { reply, .. } => reply.is_canceled(),
            }
    }

    fn fail(self, error: ReadError) {
        // A caller that went away does not need the answer.
        match self.query {
            Query::Transfer { reply, .. } => drop(reply.send(Err(error))),
            Query::History { reply, .. } => drop(reply.send(Err(error))),
        }
    }
}

/// The handle the HTTP cores hold: queues reads without waiting. Cheap to clone.
#[derive(Clone)]
pub struct ArchiveReader {
    jobs: Sender<Job>,
    counters: Arc<ReadCounters>,
    timeout: Duration,
    queue: usize,
}

impl ArchiveReader {
    /// Queues a lookup by hash; [`ReadError::QueueFull`] at once when the queue is full.
    pub fn transfer(&self, tx_hash: [u8; 32]) -> Result<Reply<Option<ArchivedRow>>, ReadError> {
        let (reply, answer) = oneshot::channel();
        self.queue(Query::Transfer { tx_hash, reply })?;
        Ok(Reply(answer))
    }

    /// Queues a page of `address`'s history (see [`ArchiveQueries::history`]).
    pub fn history(
        &self,
        address: [u8; 32],
        before: Option<HistoryCursor>,
        limit: u32,
    ) -> Result<Reply<HistoryPage>, ReadError> {
        let (reply, answer) = oneshot::channel();
        self.queue(Query::History {
            address,
            before,
            limit,
            reply,
        })?;
        Ok(Reply(answer))
    }

    fn queue(&self, query: Query) -> Result<(), ReadError> {
        let job = Job {
            query,
            deadline: Instant::now() + self.timeout,
        };
        self.jobs.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) => ReadError::QueueFull(self.queue),
            TrySendError::Disconnected(_) => ReadError::Stopped,
        })
    }

    /// How long a caller waits for an answer before giving up ([`ReadError::TimedOut`]).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn counters(&self) -> &Arc<ReadCounters> {
        &self.counters
    }
}

/// The reader threads, owned by the node; [`ArchiveReaderPool::stop`] (or dropping it) ends
/// them.
pub struct ArchiveReaderPool {
    reader: ArchiveReader,
    stop: Arc<AtomicBool>,
    stop_wait: Duration,
    threads: Vec<JoinHandle<()>>,
}

impl ArchiveReaderPool {
    /// Starts `options.threads` readers of the archive at `url` (connections are opened when
    /// the first read comes).
    pub fn spawn(url: &str, options: ReaderOptions) -> ArchiveReaderPool {
        let (jobs, queued) = crossbeam_channel::bounded(options.queue.max(1));
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..options.threads.max(1))
            .map(|i| {
                let (url, options, queued, stop) = (
                    url.to_string(),
                    options.clone(),
                    queued.clone(),
                    stop.clone(),
                );
                std::thread::Builder::new()
                    .name(format!("aurigraph-archive-read-{i}"))
                    .spawn(move || read_loop(&url, &options, &queued, &stop))
                    .expect("spawn an archive reader thread")
            })
            .collect();
        ArchiveReaderPool {
            reader: ArchiveReader {
                jobs,
                counters: Arc::default(),
                timeout: options.timeout,
                queue: options.queue.max(1),
            },
            stop,
            stop_wait: options.stop_wait,
            threads,
        }
    }

    /// The handle to queue reads with.
    pub fn reader(&self) -> ArchiveReader {
        self.reader.clone()
    }

    /// Ends the threads (a query running finishes first, within the statement timeout); reads
    /// still queued are answered [`ReadError::Stopped`]. A thread still held after
    /// [`ReaderOptions::stop_wait`] (a server that accepted its connection and never answers) is left behind,
    /// so that stopping the node never waits on PostgreSQL.
    pub fn stop(mut self) {
        self.stop_threads();
    }

    fn stop_threads(&mut self) {
        self.stop.store(true, Relaxed);
        let deadline = Instant::now() + self.stop_wait;
        while self.threads.iter().any(|t| !t.is_finished()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut left = 0;
        for thread in self.threads.drain(..) {
            if thread.is_finished() {
                let _ = thread.join();
            } else {
                left += 1;
            }
        }
        if left > 0 {
            tracing::warn!(
                left,
                "archive readers still waiting on PostgreSQL; not waiting for them"
            );
        }
    }
}

impl Drop for ArchiveReaderPool {
    fn drop(&mut self) {
        self.stop_threads();
    }
}

/// How often an idle reader looks at the stop flag.
const STOP_POLL: Duration = Duration::from_millis(100);

/// One reader thread: takes queued reads and answers them on its connection.
fn read_loop(url: &str, options: &ReaderOptions, queued: &Receiver<Job>, stop: &AtomicBool) {
    let mut connection: Option<ArchiveQueries> = None;
    // After a failed connection: no new attempt before `retry_at`; reads get `last_error`.
    let mut retry_at = Instant::now();
    let mut last_error = String::new();
    loop {
        if stop.load(Relaxed) {
            return;
        }
        let mut job = match queued.recv_timeout(STOP_POLL) {
            Ok(job) => job,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        if job.abandoned(Instant::now()) {
            continue;
        }
        // A connection that broke since the last read (PostgreSQL restarted) is replaced at
        // once; one that breaks during this read is replaced and the read tried once more.
        for attempt in 0..2 {
            if connection.as_ref().is_some_and(ArchiveQueries::is_closed) {
                connection = None;
            }
            let c = match &mut connection {
                Some(c) => c,
                None if Instant::now() < retry_at => {
                    job.fail(ReadError::Unavailable(last_error.clone()));
                    break;
                }
                None => match ArchiveQueries::connect(url, options) {
                    Ok(c) => connection.insert(c),
                    Err(e) => {
                        last_error = error_text(&e);
                        retry_at = Instant::now() + options.reconnect_pause;
                        tracing::debug!(error = %last_error, "archive reader: cannot connect");
                        job.fail(ReadError::Unavailable(last_error.clone()));
                        break;
                    }
                },
            };
            match run(c, job) {
                Ok(()) => break,
                Err((back, e)) if c.is_closed() && attempt == 0 => {
                    tracing::debug!(error = %error_text(&e), "archive reader: connection lost; reconnecting");
                    connection = None;
                    job = back;
                }
                Err((back, e)) => {
                    back.fail(ReadError::Unavailable(error_text(&e)));
                    break;
                }
            }
        }
    }
}

/// Runs a job's query and sends its answer; on a failure, the job back with the error.
fn run(c: &mut ArchiveQueries, job: Job) -> Result<(), (Job, postgres::Error)> {
    let deadline = job.deadline;
    match job.query {
        Query::Transfer { tx_hash, reply } => match c.transfer(&tx_hash) {
            Ok(found) => {
                let _ = reply.send(Ok(found));
                Ok(())
            }
            Err(e) => Err((
                Job {
                    query: Query::Transfer { tx_hash, reply },
                    deadline,
                },
                e,
            )),
        },
        Query::History {
            address,
            before,
            limit,
            reply,
        } => match c.history(&address, before, limit) {
            Ok(page) => {
                let _ = reply.send(Ok(page));
                Ok(())
            }
            Err(e) => Err((
                Job {
                    query: Query::History {
                        address,
                        before,
                        limit,
                        reply,
                    },
                    deadline,
                },
                e,
            )),
        },
    }
}

/// A PostgreSQL error with its cause (the plain `Display` of a connection error says only
/// "error connecting to server").
fn error_text(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => match std::error::Error::source(e) {
            Some(source) => format!("{e}: {source}"),
            None => e.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_archive_answers_unavailable_at_once() {
        // Nothing listens on port 1: connecting is refused at once, and again after the pause.
        let options = ReaderOptions {
            threads: 1,
            reconnect_pause: Duration::from_millis(1),
            ..ReaderOptions::default()
        };
        let pool = ArchiveReaderPool::spawn("host=127.0.0.1 port=1 user=u dbname=d", options);
        let reader = pool.reader();
        for _ in 0..3 {
            std::thread::sleep(Duration::from_millis(2));
            let started = Instant::now();
            let answer = futures::executor::block_on(reader.transfer([7; 32]).unwrap());
            assert!(
                matches!(&answer, Err(ReadError::Unavailable(m)) if m.contains("refused")),
                "{answer:?}"
            );
            assert!(started.elapsed() < Duration::from_secs(2));
        }
        pool.stop();
        // Stopped: a read is refused at once.
        assert!(matches!(
            reader.history([7; 32], None, 10).err(),
            Some(ReadError::Stopped)
        ));
    }

    #[test]
    fn a_full_queue_is_refused_at_once_and_counted() {
        // A server that accepts connections and never answers: the one reader waits in its
        // connection's start-up, one read waits in the queue, the next is refused.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!(
            "host=127.0.0.1 port={} user=u dbname=d",
            silent.local_addr().unwrap().port()
        );
        let options = ReaderOptions {
            threads: 1,
            queue: 1,
            ..ReaderOptions::default()
        };
        let pool = ArchiveReaderPool::spawn(&url, options);
        let reader = pool.reader();
        let stuck = reader.transfer([1; 32]).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !reader.jobs.is_empty() {
            assert!(Instant::now() < deadline, "the reader never took the read");
            std::thread::sleep(Duration::from_millis(5));
        }
        let waiting = reader.history([1; 32], None, 5).unwrap();
        let refused = reader.transfer([2; 32]).err();
        assert_eq!(refused, Some(ReadError::QueueFull(1)));
        let counters = reader.counters();
        counters.record::<()>(&Err(refused.unwrap()));
        counters.record(&Ok(()));
        counters.record::<()>(&Err(ReadError::TimedOut(Duration::from_secs(5))));
        assert_eq!(
            [
                &counters.ok,
                &counters.queue_full,
                &counters.timed_out,
                &counters.unavailable
            ]
            .map(|c| c.load(Relaxed)),
            [1, 1, 1, 0]
        );
        // The server goes away: the stuck connection fails, both reads are answered.
        // (Stopping before that would leave the stuck reader behind: see the next test.)
        drop(silent);
        drop(stuck);
        let answer = futures::executor::block_on(waiting);
        assert!(
            matches!(answer, Err(ReadError::Unavailable(_))),
            "{answer:?}"
        );
        pool.stop();
    }

    #[test]
    fn stopping_never_waits_on_a_server_that_does_not_answer() {
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!(
            "host=127.0.0.1 port={} user=u dbname=d",
            silent.local_addr().unwrap().port()
        );
        let options = ReaderOptions {
            threads: 1,
            stop_wait: Duration::from_millis(200),
            ..ReaderOptions::default()
        };
        let pool = ArchiveReaderPool::spawn(&url, options);
        let reader = pool.reader();
        let stuck = reader.transfer([1; 32]).unwrap();
        while !reader.jobs.is_empty() {
            std::thread::sleep(Duration::from_millis(5));
        }
        let started = Instant::now();
        pool.stop();
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(200), "{took:?}");
        assert!(took < Duration::from_secs(2), "{took:?}");
        // The reader left behind ends once the server goes away.
        drop(silent);
        assert!(futures::executor::block_on(stuck).is_err());
    }
}
