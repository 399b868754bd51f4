//! What bounds a client: the deadlines of a request's head and body, the memory all request
//! bodies of a core may hold together, and the connections one client address may hold. The
//! defaults and what each answers are in `docs/security.md`.
//!
//! The rules, and why:
//! - A request head must be complete within `header_read_timeout` of its first byte (HTTP/1.1;
//!   a slow head otherwise keeps a connection for as long as its bytes trickle).
//! - A body must arrive at `body_rate_bytes_per_s_min` on average once `body_read_timeout` has
//!   passed: the n-th byte is due by `start + body_read_timeout + n / rate`. Late: 408
//!   `REQUEST_TIMEOUT` and the connection is closed. A request whose body stalls is not "being
//!   worked on", so nothing else would ever end it.
//! - Bodies grow as their bytes arrive (never from a declared `Content-Length`), and what the
//!   bodies being read on a core hold together stays within `body_bytes_budget_per_core`: past
//!   it, 503 `OVERLOADED` with `Retry-After` instead of memory the host does not have.
//! - One client address holds at most `connections_per_ip_max_per_core` connections per core;
//!   more are accepted and closed at once (as beyond `connections_max_per_core`).
//! - With `requests_per_s_per_ip` set, one client address's requests on a core are a token
//!   bucket (that rate, a burst of `request_burst_per_ip`): past it, 429 `RATE_LIMITED` with
//!   `Retry-After`. With `requests_per_s_per_token` set, so are one bearer token's requests,
//!   from wherever they come ([`PrincipalRates`]).

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Default: a request head must be complete this long after its first byte.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default grace before a body's minimum rate applies.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default minimum average rate of a body after the grace (64 KiB/s).
pub const DEFAULT_BODY_RATE_BYTES_PER_S_MIN: u64 = 64 * 1024;
/// Default memory for the bodies being read on one core, together (256 MiB: 23 full binary
/// batches of 65,536 transfers at once).
pub const DEFAULT_BODY_BYTES_BUDGET_PER_CORE: usize = 256 << 20;
/// Default connections one client address may hold on one core.
pub const DEFAULT_CONNECTIONS_PER_IP_MAX_PER_CORE: usize = 512;
/// A body's first allocation at most, whatever length it declares.
const BODY_FIRST_ALLOCATION_BYTES_MAX: usize = 64 * 1024;

/// The deadlines of a body: its n-th byte is due `grace + n / rate` after the request began.
#[derive(Clone, Copy, Debug)]
pub struct BodyDeadline {
    pub grace: Duration,
    pub rate_bytes_per_s_min: u64,
}

impl BodyDeadline {
    /// When the byte after the first `received` ones is due.
    pub fn due(&self, start: Instant, received: u64) -> Instant {
        let rate = self.rate_bytes_per_s_min.max(1);
        let allowance = Duration::from_secs_f64(received as f64 / rate as f64);
        start + self.grace + allowance
    }
}

/// The error a [`WatchedBody`] ends with when its next byte is overdue.
#[derive(Clone, Debug)]
pub struct BodyTooSlow {
    pub received_bytes: u64,
    pub elapsed: Duration,
}

impl std::fmt::Display for BodyTooSlow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the request body came too slowly ({} bytes in {:.1} s)",
            self.received_bytes,
            self.elapsed.as_secs_f64()
        )
    }
}

impl std::error::Error for BodyTooSlow {}

/// A request body (hyper's) that ends with [`BodyTooSlow`] once its next byte is overdue
/// ([`BodyDeadline`]). Runs on the connection's glommio executor (its timer is glommio's).
pub struct WatchedBody {
    inner: Incoming,
    deadline: BodyDeadline,
    start: Instant,
    received_bytes: u64,
    timer: Option<glommio::timer::Timer>,
}

impl WatchedBody {
    pub fn new(inner: Incoming, deadline: BodyDeadline) -> WatchedBody {
        WatchedBody {
            inner,
            deadline,
            start: Instant::now(),
            received_bytes: 0,
            timer: None,
        }
    }
}

impl Body for WatchedBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.received_bytes += data.len() as u64;
                    this.timer = None; // the next byte's deadline is later
                }
                return Poll::Ready(Some(Ok(frame)));
            }
            Poll::Ready(Some(Err(error))) => return Poll::Ready(Some(Err(error.into()))),
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => {}
        }
        let due = this.deadline.due(this.start, this.received_bytes);
        let timer = this.timer.get_or_insert_with(|| {
            glommio::timer::Timer::new(due.saturating_duration_since(Instant::now()))
        });
        match Pin::new(timer).poll(cx) {
            Poll::Ready(_) => Poll::Ready(Some(Err(Box::new(BodyTooSlow {
                received_bytes: this.received_bytes,
                elapsed: this.start.elapsed(),
            })))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The memory the bodies being read on one core hold together (one per core: single-threaded).
#[derive(Debug)]
pub struct BodyBudget {
    held_bytes: Cell<usize>,
    max_bytes: usize,
}

impl BodyBudget {
    pub fn new(max_bytes: usize) -> BodyBudget {
        BodyBudget {
            held_bytes: Cell::new(0),
            max_bytes,
        }
    }

    /// What the bodies being read hold now.
    pub fn held_bytes(&self) -> usize {
        self.held_bytes.get()
    }

    /// A body to fill within this budget.
    pub fn body(&self, declared_bytes: Option<u64>) -> BudgetedBody<'_> {
        BudgetedBody {
            budget: self,
            bytes: Vec::new(),
            declared_bytes: declared_bytes.map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
            reserved_whole: false,
        }
    }
}

/// A body being read, whose allocation counts against its core's [`BodyBudget`] until it is
/// taken ([`BudgetedBody::into_bytes`]) or dropped.
pub struct BudgetedBody<'a> {
    budget: &'a BodyBudget,
    bytes: Vec<u8>,
    declared_bytes: Option<usize>,
    /// Reserved at its declared length at once ([`BudgetedBody::reserve_whole`]).
    reserved_whole: bool,
}

/// The core's body budget is spent.
#[derive(Debug)]
pub struct OverBudget;

impl BudgetedBody<'_> {
    /// Appends `data`, growing the allocation (at most to the declared length, when there is
    /// one) only as bytes arrive.
    pub fn extend(&mut self, data: &[u8]) -> Result<(), OverBudget> {
        let needed = self.bytes.len() + data.len();
        let capacity = self.bytes.capacity();
        if needed > capacity {
            let doubled = capacity
                .saturating_mul(2)
                .max(BODY_FIRST_ALLOCATION_BYTES_MAX);
            let target = match self.declared_bytes {
                Some(declared) => doubled.min(declared).max(needed),
                None => doubled.max(needed),
            };
            let grow = target - capacity;
            let held = self.budget.held_bytes.get();
            if held + grow > self.budget.max_bytes {
                return Err(OverBudget);
            }
            self.bytes.reserve_exact(target - self.bytes.len());
            let grown = self.bytes.capacity() - capacity;
            self.budget.held_bytes.set(held + grown);
        }
        self.bytes.extend_from_slice(data);
        Ok(())
    }

    /// Reserves the whole declared length at once (counted), to be filled in place
    /// ([`BudgetedBody::reserved_spare`]): `Err` when there is no declared length or the
    /// budget cannot hold it. Only for a body at least half of which is here already: a
    /// reservation holds memory before the bytes arrive.
    pub fn reserve_whole(&mut self) -> Result<(), OverBudget> {
        let declared = self.declared_bytes.ok_or(OverBudget)?;
        assert!(
            self.bytes.capacity() == 0,
            "a body is reserved whole before it is filled"
        );
        let held = self.budget.held_bytes.get();
        if held.saturating_add(declared) > self.budget.max_bytes {
            return Err(OverBudget);
        }
        self.bytes.reserve_exact(declared);
        self.budget.held_bytes.set(held + self.bytes.capacity());
        self.reserved_whole = true;
        Ok(())
    }

    /// Of a body reserved whole, the first `len` bytes of its unfilled capacity; `None` for
    /// a body that grows as it arrives ([`BudgetedBody::extend`]).
    pub fn reserved_spare(&mut self, len: usize) -> Option<&mut [std::mem::MaybeUninit<u8>]> {
        if !self.reserved_whole {
            return None;
        }
        Some(&mut self.bytes.spare_capacity_mut()[..len])
    }

    /// Counts `n` more bytes of a body reserved whole as filled.
    ///
    /// # Safety
    /// The first `n` bytes of [`BudgetedBody::reserved_spare`] must have been written.
    pub unsafe fn filled(&mut self, n: usize) {
        assert!(self.reserved_whole && self.bytes.len() + n <= self.bytes.capacity());
        // SAFETY: the caller wrote those bytes; they are within the capacity (asserted).
        unsafe { self.bytes.set_len(self.bytes.len() + n) };
    }

    /// Bytes received so far.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The bytes, no longer counted (the request is being worked on now).
    pub fn into_bytes(mut self) -> Vec<u8> {
        let bytes = std::mem::take(&mut self.bytes);
        let held = self.budget.held_bytes.get();
        self.budget.held_bytes.set(held - bytes.capacity());
        bytes
    }
}

impl Drop for BudgetedBody<'_> {
    fn drop(&mut self) {
        let held = self.budget.held_bytes.get();
        let capacity = self.bytes.capacity();
        assert!(capacity <= held, "a body holds more than its budget counts");
        self.budget.held_bytes.set(held - capacity);
    }
}

/// A token bucket of requests: `burst` at most, refilled at `per_s` a second.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RequestRate {
    pub per_s: f64,
    pub burst: f64,
}

impl RequestRate {
    /// From the configuration's (requests a second, burst).
    pub fn from_pair((per_s, burst): (u64, u64)) -> RequestRate {
        RequestRate {
            per_s: per_s as f64,
            burst: burst as f64,
        }
    }
}

/// The requests one client may still send at once, refilled over time.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    refilled_at: Instant,
}

impl Bucket {
    fn full(rate: Option<RequestRate>) -> Bucket {
        Bucket {
            tokens: rate.map_or(0.0, |rate| rate.burst),
            refilled_at: Instant::now(),
        }
    }

    fn refill(&mut self, rate: RequestRate, now: Instant) {
        let elapsed_s = now
            .saturating_duration_since(self.refilled_at)
            .as_secs_f64();
        self.tokens = (self.tokens + elapsed_s * rate.per_s).min(rate.burst);
        self.refilled_at = now;
    }

    /// Takes one request; `Err(seconds)` until one is there again.
    fn take(&mut self, rate: RequestRate, now: Instant) -> Result<(), u32> {
        self.refill(rate, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let wait_s = (1.0 - self.tokens) / rate.per_s;
            Err(wait_s.ceil().max(1.0) as u32)
        }
    }

    fn is_full(&mut self, rate: RequestRate, now: Instant) -> bool {
        self.refill(rate, now);
        self.tokens >= rate.burst
    }
}

/// What one client address holds on one core: connections, and its request bucket.
#[derive(Debug)]
struct ClientState {
    connections: usize,
    bucket: Bucket,
}

/// Client addresses one core remembers at most: beyond it, addresses without connections are
/// forgotten (their request debt with them).
const CLIENTS_REMEMBERED_MAX: usize = 65_536;

/// Connections and request rates per client address on one core. An address is remembered
/// while it has connections, and after its last one closes only until its bucket is full
/// again (closing and reopening connections does not reset a rate).
#[derive(Debug, Default)]
pub struct ClientConnections {
    clients: RefCell<HashMap<IpAddr, ClientState>>,
    /// `None`: no request-rate limit.
    rate: Option<RequestRate>,
}

impl ClientConnections {
    pub fn new(rate: Option<RequestRate>) -> ClientConnections {
        ClientConnections {
            clients: RefCell::default(),
            rate,
        }
    }

    /// Counts a connection of `ip` unless it already holds `max`; the guard uncounts it.
    pub fn admit(self: &Rc<Self>, ip: IpAddr, max: usize) -> Option<ClientGuard> {
        let mut clients = self.clients.borrow_mut();
        if clients.len() >= CLIENTS_REMEMBERED_MAX {
            clients.retain(|_, client| client.connections > 0);
        }
        let client = clients.entry(ip).or_insert_with(|| ClientState {
            connections: 0,
            bucket: Bucket::full(self.rate),
        });
        if client.connections >= max {
            return None;
        }
        client.connections += 1;
        Some(ClientGuard {
            clients: self.clone(),
            ip,
        })
    }

    /// Connections `ip` holds now.
    pub fn open(&self, ip: IpAddr) -> usize {
        self.clients
            .borrow()
            .get(&ip)
            .map_or(0, |client| client.connections)
    }
}

/// A connection of one client address: uncounts it when dropped.
pub struct ClientGuard {
    clients: Rc<ClientConnections>,
    ip: IpAddr,
}

impl ClientGuard {
    /// Takes one request from the address's bucket; `Err(seconds)` until one is there again.
    pub fn take_request(&self) -> Result<(), u32> {
        let Some(rate) = self.clients.rate else {
            return Ok(());
        };
        let mut clients = self.clients.clients.borrow_mut();
        let client = clients.get_mut(&self.ip).expect("a counted client");
        client.bucket.take(rate, Instant::now())
    }
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        let mut clients = self.clients.clients.borrow_mut();
        let client = clients.get_mut(&self.ip).expect("a counted client");
        client.connections -= 1;
        if client.connections == 0 {
            let full = match self.clients.rate {
                None => true,
                Some(rate) => client.bucket.is_full(rate, Instant::now()),
            };
            if full {
                clients.remove(&self.ip); // nothing left to remember
            }
        }
    }
}

/// Principals (tokens) one core keeps a bucket for at most: beyond it, full buckets are
/// forgotten. Tokens files are short; this bounds the table whatever they hold.
const PRINCIPALS_REMEMBERED_MAX: usize = 4096;

/// Request rates per principal (the name of a bearer token) on one core: whoever holds a
/// token is limited as that token, from any address and connection.
#[derive(Debug, Default)]
pub struct PrincipalRates {
    buckets: RefCell<HashMap<String, Bucket>>,
    /// `None`: no per-token limit.
    rate: Option<RequestRate>,
}

impl PrincipalRates {
    pub fn new(rate: Option<RequestRate>) -> PrincipalRates {
        PrincipalRates {
            buckets: RefCell::default(),
            rate,
        }
    }

    /// Takes one request of `principal`'s bucket; `Err(seconds)` until one is there again.
    pub fn take(&self, principal: &str) -> Result<(), u32> {
        let Some(rate) = self.rate else {
            return Ok(());
        };
        let now = Instant::now();
        let mut buckets = self.buckets.borrow_mut();
        if !buckets.contains_key(principal) && buckets.len() >= PRINCIPALS_REMEMBERED_MAX {
            buckets.retain(|_, bucket| !bucket.is_full(rate, now));
        }
        buckets
            .entry(principal.to_owned())
            .or_insert_with(|| Bucket::full(Some(rate)))
            .take(rate, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_limited_as_itself_and_others_are_not() {
        let rates = PrincipalRates::new(Some(RequestRate {
            per_s: 1.0,
            burst: 3.0,
        }));
        for _ in 0..3 {
            rates.take("acme").unwrap();
        }
        assert_eq!(rates.take("acme"), Err(1));
        rates.take("globex").unwrap();
        assert!(PrincipalRates::default().take("acme").is_ok());
    }

    #[test]
    fn a_body_grows_as_it_arrives_not_as_it_declares() {
        let budget = BodyBudget::new(1 << 20);
        let mut body = budget.body(Some(16_000_000));
        assert_eq!(budget.held_bytes(), 0, "nothing for a declared length");
        body.extend(&[1; 10]).unwrap();
        assert!(budget.held_bytes() <= BODY_FIRST_ALLOCATION_BYTES_MAX);
        drop(body);
        assert_eq!(budget.held_bytes(), 0);
    }

    #[test]
    fn bodies_over_the_cores_budget_are_refused_and_a_taken_body_is_uncounted() {
        let budget = BodyBudget::new(200 * 1024);
        let mut first = budget.body(None);
        first.extend(&vec![0; 150 * 1024]).unwrap();
        let mut second = budget.body(None);
        assert!(second.extend(&vec![0; 100 * 1024]).is_err(), "over budget");
        let bytes = first.into_bytes();
        assert_eq!(bytes.len(), 150 * 1024);
        assert_eq!(budget.held_bytes(), 0);
        second.extend(&vec![0; 100 * 1024]).unwrap();
    }

    #[test]
    fn a_body_never_allocates_past_its_declared_length() {
        let budget = BodyBudget::new(1 << 20);
        let mut body = budget.body(Some(100_000));
        for _ in 0..10 {
            body.extend(&[7; 10_000]).unwrap();
        }
        assert_eq!(budget.held_bytes(), 100_000);
        assert_eq!(body.into_bytes().capacity(), 100_000);
    }

    #[test]
    fn a_client_addresss_requests_are_rate_limited_across_its_connections() {
        let rate = RequestRate {
            per_s: 1.0,
            burst: 3.0,
        };
        let clients = Rc::new(ClientConnections::new(Some(rate)));
        let ip: IpAddr = "127.0.0.2".parse().unwrap();
        let a = clients.admit(ip, 10).unwrap();
        let b = clients.admit(ip, 10).unwrap();
        assert!(a.take_request().is_ok() && b.take_request().is_ok() && a.take_request().is_ok());
        assert_eq!(b.take_request(), Err(1), "the burst is spent");
        // Closing every connection and coming back does not reset the bucket.
        drop((a, b));
        let c = clients.admit(ip, 10).unwrap();
        assert!(c.take_request().is_err());
        let other = clients.admit("127.0.0.3".parse().unwrap(), 10).unwrap();
        assert!(other.take_request().is_ok());
    }

    #[test]
    fn a_client_address_holds_at_most_its_connections() {
        let clients = Rc::new(ClientConnections::default());
        let ip: IpAddr = "127.0.0.2".parse().unwrap();
        let first = clients.admit(ip, 2).unwrap();
        let _second = clients.admit(ip, 2).unwrap();
        assert!(clients.admit(ip, 2).is_none());
        assert!(clients.admit("127.0.0.3".parse().unwrap(), 2).is_some());
        drop(first);
        assert_eq!(clients.open(ip), 1);
        assert!(clients.admit(ip, 2).is_some());
    }

    #[test]
    fn a_bodys_deadline_moves_with_the_bytes_that_arrived() {
        let deadline = BodyDeadline {
            grace: Duration::from_secs(10),
            rate_bytes_per_s_min: 1000,
        };
        let start = Instant::now();
        assert_eq!(deadline.due(start, 0), start + Duration::from_secs(10));
        assert_eq!(deadline.due(start, 5000), start + Duration::from_secs(15));
    }
}
