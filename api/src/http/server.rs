//! The per-core server: bind, accept loop with a connection limit, and one hyper connection
//! (HTTP/1.1 keep-alive or HTTP/2) per accepted socket, with an idle watchdog.

use super::error::ApiError;
use super::io::{Activity, HyperIo, LocalExec};
use super::limits::{ClientConnections, ClientGuard, WatchedBody};
use super::metrics::SAMPLE_PERIOD;
use super::routes::{self, Backend, Ctx};
use super::HttpSettings;
use aurigraph_engine::runtime::Engine;
use futures::future::select;
use futures::future::Either as Race;
use glommio::net::{TcpListener, TcpStream};
use http_body_util::Either;
use hyper::body::Incoming;
use std::cell::Cell;
use std::convert::Infallible;
use std::pin::pin;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How often an accept loop looks at `draining` while no connection arrives.
pub const DRAIN_POLL: Duration = Duration::from_millis(100);
/// Concurrent HTTP/2 streams per connection.
const H2_STREAMS_MAX: u32 = 256;
/// A request's header block at most (HTTP/2 `SETTINGS_MAX_HEADER_LIST_SIZE`; larger: the
/// stream is refused with 431).
const H2_HEADER_LIST_BYTES_MAX: u32 = 16 * 1024;
/// Streams a client may open and reset before the connection is closed with GOAWAY (the
/// "rapid reset" flood), and streams this server may reset for a client's errors.
const H2_PENDING_RESET_STREAMS_MAX: usize = 20;
const H2_LOCAL_ERROR_RESET_STREAMS_MAX: usize = 1024;
/// Header fields of an HTTP/1.1 request at most (more: 431).
const H1_HEADERS_MAX: usize = 100;
/// HTTP/2 flow-control windows: large enough that a binary batch of ~1000 records (168 KiB)
/// arrives without waiting for window updates.
const H2_STREAM_WINDOW: u32 = 1 << 20;
const H2_CONNECTION_WINDOW: u32 = 4 << 20;

/// Serves connections from `listener` on this core until `settings.draining` is set. Runs as a
/// local task of the core's glommio executor.
pub async fn serve(listener: TcpListener, core: usize, engine: Engine, settings: HttpSettings) {
    run(core, listener, engine, settings, Listener::Primary).await
}

/// Serves a second listener of `core` next to its first: the admin listener (`--admin-addr`)
/// or the gRPC one (`--grpc-addr`), as its settings' `surface` says.
pub async fn serve_secondary(
    listener: TcpListener,
    core: usize,
    engine: Engine,
    settings: HttpSettings,
) {
    run(core, listener, engine, settings, Listener::Secondary).await
}

/// Whether a listener is its core's first (which owns the core's per-thread figures).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Listener {
    Primary,
    Secondary,
}

/// Decrements the core's open-connection count when a connection task ends.
struct OpenGuard(Rc<Cell<usize>>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

pub(crate) async fn run<B: Backend>(
    core: usize,
    listener: TcpListener,
    backend: B,
    settings: HttpSettings,
    kind: Listener,
) {
    // This task runs on the core's executor thread: its CPU time is the core's.
    if kind == Listener::Primary {
        settings.metrics.register_core_thread(core);
    }
    if core == 0 && kind == Listener::Primary {
        // One sampler per process derives the windowed figures (tps, peak, CPU, latency).
        let metrics = settings.metrics.clone();
        let draining = settings.draining.clone();
        metrics.sample();
        glommio::spawn_local(async move {
            while !draining.load(Ordering::Relaxed) {
                glommio::timer::sleep(SAMPLE_PERIOD).await;
                metrics.sample();
            }
        })
        .detach();
    }
    let limit = settings.connections_max_per_core.max(1);
    let per_client_limit = settings.connections_per_ip_max_per_core.max(1);
    let clients = Rc::new(ClientConnections::new(settings.request_rate_per_ip));
    let draining = settings.draining.clone();
    let ctx = Rc::new(Ctx::new(core, backend, settings));
    let open = Rc::new(Cell::new(0usize));
    let mut refused: u64 = 0;
    let mut refused_clients: u64 = 0;
    // One accept stays pending across the drain polls: dropping an accept that the kernel may
    // be completing could lose a connection, so it is only dropped when the loop ends.
    let mut accept = Box::pin(listener.accept());
    loop {
        let tick = pin!(glommio::timer::sleep(DRAIN_POLL));
        let accepted = match select(&mut accept, tick).await {
            Race::Left((accepted, _)) => {
                accept = Box::pin(listener.accept());
                accepted
            }
            Race::Right(((), _)) => {
                if draining.load(Ordering::SeqCst) {
                    break;
                }
                continue;
            }
        };
        let stream = match accepted {
            Ok(stream) => {
                // Counted before any limit closes it: how the kernel spread connections.
                ctx.settings.metrics.count_connection_accepted(core);
                stream
            }
            Err(e) => {
                // EMFILE, ENOBUFS, a connection reset before accept: never fatal; pause briefly
                // so that a persistent error does not spin.
                tracing::warn!(core, error = %e, "accept failed");
                glommio::timer::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        if draining.load(Ordering::SeqCst) {
            break; // dropping the stream closes it
        }
        if open.get() >= limit {
            refused += 1;
            if refused.is_power_of_two() {
                tracing::warn!(
                    core,
                    limit,
                    refused,
                    "connection limit reached: closing new connections"
                );
            }
            drop(stream);
            continue;
        }
        let client = match stream.peer_addr() {
            Ok(peer) => match clients.admit(peer.ip(), per_client_limit) {
                Some(client) => Some(client),
                None => {
                    refused_clients += 1;
                    if refused_clients.is_power_of_two() {
                        tracing::warn!(
                            core,
                            client = %peer.ip(),
                            per_client_limit,
                            refused_clients,
                            "a client address holds its connection limit: closing its new connections"
                        );
                    }
                    drop(stream);
                    continue;
                }
            },
            // A socket already reset by its peer: served (and ended) as any other.
            Err(_) => None,
        };
        open.set(open.get() + 1);
        let guard = OpenGuard(open.clone());
        let ctx = ctx.clone();
        glommio::spawn_local(async move {
            let _guard = guard;
            connection(ctx, stream, client.map(Rc::new)).await;
        })
        .detach();
    }
    tracing::debug!(core, "HTTP accept loop stopped (draining)");
}

/// Serves one connection until it closes, fails, idles past `idle_timeout`, or (HTTP/1.1)
/// takes longer than `header_read_timeout` to send a request head.
async fn connection<B: Backend>(
    ctx: Rc<Ctx<B>>,
    stream: TcpStream,
    client: Option<Rc<ClientGuard>>,
) {
    let _ = stream.set_nodelay(true);
    let activity = Rc::new(Activity::default());
    let deadlines = Deadlines {
        idle: ctx.settings.idle_timeout,
        head: ctx.settings.header_read_timeout,
    };
    let served = pin!(serve_connection(ctx, stream, activity.clone(), client));
    let watchdog = pin!(watchdog(activity, deadlines));
    match select(served, watchdog).await {
        Race::Left((Err(error), _)) => tracing::debug!(%error, "connection ended with an error"),
        Race::Left((Ok(()), _)) => {}
        Race::Right((why, _)) => tracing::debug!(why, "connection closed"),
    }
}

/// How long a connection may idle, and take to send a request head.
#[derive(Clone, Copy)]
struct Deadlines {
    idle: Duration,
    head: Duration,
}

/// How often a connection's watchdog looks (its deadlines fire up to this late).
const WATCHDOG_TICK: Duration = Duration::from_millis(500);

/// Completes, saying why, when the connection made no progress for `idle` while no request of
/// it was running, or when a request head started (HTTP/1.1) and is still not complete after
/// `head`. A running request is bounded by its own deadlines (the body's: `WatchedBody`).
async fn watchdog(activity: Rc<Activity>, deadlines: Deadlines) -> &'static str {
    let mut seen = activity.progress.get();
    let mut quiet_since = Instant::now();
    loop {
        glommio::timer::sleep(WATCHDOG_TICK.min(deadlines.idle)).await;
        let now = Instant::now();
        let progress = activity.progress.get();
        if progress != seen || activity.in_flight.get() > 0 {
            seen = progress;
            quiet_since = now;
        } else if now - quiet_since >= deadlines.idle {
            return "idle";
        }
        let head_started = activity.head_since.get();
        let head_late = head_started.is_some_and(|t| now - t >= deadlines.head);
        if activity.in_flight.get() == 0 && head_late {
            return "request head not complete within header_read_timeout";
        }
    }
}

/// Counts a request of this connection as running.
pub(crate) struct RequestGuard(Rc<Activity>);

impl RequestGuard {
    pub(crate) fn enter(activity: &Rc<Activity>) -> RequestGuard {
        activity.in_flight.set(activity.in_flight.get() + 1);
        activity.head_since.set(None); // the head is complete: the request began
        RequestGuard(activity.clone())
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.in_flight.set(self.0.in_flight.get() - 1);
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A response body that holds its request's [`RequestGuard`] until it ends.
struct Held<B> {
    body: B,
    _guard: RequestGuard,
}

impl<B: hyper::body::Body + Unpin> hyper::body::Body for Held<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<B::Data>, B::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

async fn serve_connection<B: Backend>(
    ctx: Rc<Ctx<B>>,
    stream: TcpStream,
    activity: Rc<Activity>,
    client: Option<Rc<ClientGuard>>,
) -> Result<(), BoxError> {
    // The first request's head is due from the connection's start (a connection that sends
    // nothing, or whose TLS handshake drags, is cut off as one that sends a head too slowly).
    activity.head_since.set(Some(Instant::now()));
    match ctx.settings.tls.clone() {
        None => {
            // Plaintext: batch requests whose bodies go straight into their own buffer, until
            // the connection sends anything else; then HTTP/2 with prior knowledge or HTTP/1.1,
            // told by the first bytes.
            let served = super::direct::serve(&ctx, stream, &activity, client.as_deref()).await?;
            let stream = match served {
                super::direct::Served::Closed => return Ok(()),
                super::direct::Served::ToHyper(stream) => stream,
            };
            let mut io = HyperIo::new(stream, activity.clone());
            let h2 = io.sniff_h2_preface().await?;
            serve_http(ctx, io, h2, activity, client).await
        }
        Some(tls) => {
            // TLS: the protocol is the one ALPN agreed (HTTP/1.1 without ALPN).
            let stream = tls.acceptor().accept(stream).await?;
            let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
            serve_http(
                ctx,
                HyperIo::new(stream, activity.clone()),
                h2,
                activity,
                client,
            )
            .await
        }
    }
}

/// Serves HTTP/2 (`h2`) or HTTP/1.1 on a connection's byte stream until it closes.
async fn serve_http<B: Backend, S>(
    ctx: Rc<Ctx<B>>,
    io: HyperIo<S>,
    h2: bool,
    activity: Rc<Activity>,
    client: Option<Rc<ClientGuard>>,
) -> Result<(), BoxError>
where
    S: futures::io::AsyncRead + futures::io::AsyncWrite + Unpin + 'static,
{
    // HTTP/2 frames its own requests (and pings an idle connection): no head deadline there.
    activity.head_deadline_applies.set(!h2);
    if h2 {
        activity.head_since.set(None);
    }
    let body_deadline = ctx.settings.body_deadline;
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let ctx = ctx.clone();
        let guard = RequestGuard::enter(&activity);
        let rate = client
            .as_ref()
            .map_or(Ok(()), |client| client.take_request());
        async move {
            // gRPC (content-type application/grpc) and HTTP share the connection, the limits
            // and the engine; each answers in its own protocol.
            let response = if crate::grpc::is_grpc(&request)
                && ctx.settings.surface != super::Surface::Admin
            {
                // A gRPC body is a stream of messages that may pause between them: bounded by
                // the message size limit and HTTP/2 flow control, not by a body deadline.
                let response = match rate {
                    Ok(()) => crate::grpc::handle(&ctx, request).await,
                    Err(seconds) => {
                        tonic::Status::from(ApiError::rate_limited(seconds)).into_http()
                    }
                };
                // The request stays counted on its connection until its body's last frame: a
                // stream may be quiet for long, and the idle watchdog must not close it.
                response.map(|body| {
                    Either::Right(Held {
                        body,
                        _guard: guard,
                    })
                })
            } else {
                let request = request.map(|body| WatchedBody::new(body, body_deadline));
                let response = match rate {
                    Ok(()) => routes::handle(&ctx, request).await,
                    Err(seconds) => ApiError::rate_limited(seconds).into_response(),
                };
                drop(guard);
                response.map(Either::Left)
            };
            Ok::<_, Infallible>(response)
        }
    });
    if h2 {
        hyper::server::conn::http2::Builder::new(LocalExec)
            .max_concurrent_streams(H2_STREAMS_MAX)
            .max_header_list_size(H2_HEADER_LIST_BYTES_MAX)
            .max_pending_accept_reset_streams(H2_PENDING_RESET_STREAMS_MAX)
            .max_local_error_reset_streams(H2_LOCAL_ERROR_RESET_STREAMS_MAX)
            .initial_stream_window_size(H2_STREAM_WINDOW)
            .initial_connection_window_size(H2_CONNECTION_WINDOW)
            .serve_connection(io, service)
            .await?;
    } else {
        hyper::server::conn::http1::Builder::new()
            .keep_alive(true)
            .max_headers(H1_HEADERS_MAX)
            // No hyper timer on glommio: the watchdog above bounds idle and stalled connections.
            .header_read_timeout(None)
            .serve_connection(io, service)
            .await?;
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::http::listen::bind;
    use crate::http::routes::tests::{signed, transfer_json, Fake};
    use std::io;
    use std::io::{Read, Write};
    use std::net::SocketAddr;
    use std::net::TcpStream as StdStream;

    /// Starts a server with the fake ledger on one glommio executor; returns its address, the
    /// settings (to drain it) and the executor's handle.
    pub(crate) fn start(
        mut settings: HttpSettings,
    ) -> (SocketAddr, HttpSettings, glommio::ExecutorJoinHandle<()>) {
        settings.addr = "127.0.0.1:0".parse().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let inner = settings.clone();
        let handle = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(1 << 20)
            .spawn(move || async move {
                let listener = bind(&inner).unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                run(0, listener, Fake::default(), inner, Listener::Primary).await;
            })
            .unwrap();
        let addr = rx.recv().unwrap();
        assert_eq!(
            settings.bound_addr(),
            Some(addr),
            "port 0 resolved once for the node"
        );
        (addr, settings, handle)
    }

    /// Sends one request and reads its HTTP/1.1 response (Content-Length bodies) on a kept-alive
    /// connection; `None` if the connection closed or failed.
    fn try_send(
        stream: &mut StdStream,
        method: &str,
        path: &str,
        body: &str,
    ) -> Option<(u16, String, String)> {
        write!(stream, "{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).ok()?;
        let mut data = Vec::new();
        let mut byte = [0u8; 1];
        while !data.ends_with(b"\r\n\r\n") {
            if stream.read(&mut byte).ok()? != 1 {
                return None;
            }
            data.push(byte[0]);
        }
        let head = String::from_utf8(data).ok()?;
        let status: u16 = head.get(9..12)?.parse().ok()?;
        let length: usize = head.lines().find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })?;
        let mut body = vec![0u8; length];
        stream.read_exact(&mut body).ok()?;
        Some((status, head, String::from_utf8(body).ok()?))
    }

    fn send(stream: &mut StdStream, method: &str, path: &str, body: &str) -> (u16, String, String) {
        try_send(stream, method, path, body).expect("a response")
    }

    type H2Sender = hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>>;

    /// An HTTP/2 (prior knowledge) connection to `addr` on a tokio runtime of its own.
    fn h2_client(addr: SocketAddr) -> (tokio::runtime::Runtime, H2Sender) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let sender = runtime.block_on(async {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (sender, conn) = hyper::client::conn::http2::handshake(
                hyper_util::rt::TokioExecutor::new(),
                hyper_util::rt::TokioIo::new(tcp),
            )
            .await
            .unwrap();
            tokio::spawn(conn);
            sender
        });
        (runtime, sender)
    }

    #[test]
    fn serves_http1_keep_alive_h2_and_drains() {
        let mut settings = HttpSettings::new("127.0.0.1:0".parse().unwrap());
        settings.connections_max_per_core = 2;
        let (addr, settings, handle) = start(settings);
        let mut a = StdStream::connect(addr).unwrap();
        let (status, _, body) = send(&mut a, "GET", "/api/v11/info", "");
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("\"chainId\":7"), "{body}");
        // Same connection, a submission, then a 404 and a 405.
        let transfer = transfer_json(&signed(1, 10)).to_string();
        let (status, _, body) = send(&mut a, "POST", "/api/v11/transactions", &transfer);
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("\"status\":\"CONFIRMED\""), "{body}");
        assert_eq!(send(&mut a, "GET", "/nope", "").0, 404);
        let (status, head, _) = send(&mut a, "PUT", "/api/v11/stats", "");
        assert_eq!(status, 405);
        assert!(head.to_ascii_lowercase().contains("allow: get"), "{head}");

        // HTTP/2 with prior knowledge, on the same port.
        let (runtime, mut sender) = h2_client(addr);
        runtime.block_on(async {
            for _ in 0..3 {
                let request = hyper::Request::get(format!("http://{addr}/q/health/ready"))
                    .body(http_body_util::Empty::<bytes::Bytes>::new())
                    .unwrap();
                let response = sender.send_request(request).await.unwrap();
                assert_eq!(response.status(), 200);
                assert_eq!(response.version(), hyper::Version::HTTP_2);
                let body = http_body_util::BodyExt::collect(response.into_body())
                    .await
                    .unwrap()
                    .to_bytes();
                assert!(String::from_utf8_lossy(&body).contains("\"UP\""));
            }
        });
        drop(runtime);

        // Connection limit of 2 per core: a, b are served, c is closed at once. (The server may
        // take a moment to see the HTTP/2 connection close: retry b until it is served.)
        let b = (0..100).find_map(|_| {
            let mut b = StdStream::connect(addr).unwrap();
            b.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let served = try_send(&mut b, "GET", "/api/v11/health", "").map(|r| r.0);
            if served.is_none() {
                std::thread::sleep(Duration::from_millis(20));
            }
            served.map(|status| (status, b))
        });
        let (status, b) = b.expect("a second connection is served");
        assert_eq!(status, 200);
        let mut c = StdStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = write!(c, "GET /api/v11/health HTTP/1.1\r\nHost: x\r\n\r\n");
        let mut buf = [0u8; 64];
        assert!(
            matches!(c.read(&mut buf), Ok(0) | Err(_)),
            "over the limit: closed"
        );
        drop(b);

        // Draining: requests on kept-alive connections get 503 SHUTTING_DOWN and a close.
        settings.draining.store(true, Ordering::SeqCst);
        let (status, head, body) = send(&mut a, "GET", "/api/v11/info", "");
        assert_eq!(status, 503);
        assert!(body.contains("SHUTTING_DOWN"), "{body}");
        assert!(
            head.to_ascii_lowercase().contains("connection: close"),
            "{head}"
        );
        // The accept loop stops, and with it the executor.
        handle.join().unwrap();
        assert_eq!(settings.in_flight.total(), 0);
    }

    #[test]
    fn a_taken_port_is_an_error() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let s = HttpSettings::new(taken.local_addr().unwrap());
        let handle = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(1 << 20)
            .spawn(move || async move { bind(&s).map(|_| ()).map_err(|e| e.kind()) })
            .unwrap();
        assert_eq!(handle.join().unwrap(), Err(io::ErrorKind::AddrInUse));
    }

    #[test]
    fn idle_connections_are_closed() {
        let mut settings = HttpSettings::new("127.0.0.1:0".parse().unwrap());
        settings.idle_timeout = Duration::from_millis(200);
        let (addr, settings, handle) = start(settings);
        let mut a = StdStream::connect(addr).unwrap();
        assert_eq!(send(&mut a, "GET", "/api/v11/info", "").0, 200);
        a.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 16];
        let started = std::time::Instant::now();
        assert!(matches!(a.read(&mut buf), Ok(0)), "closed by the watchdog");
        assert!(started.elapsed() < Duration::from_secs(2));
        // A connection that never sends a byte is closed too.
        let mut silent = StdStream::connect(addr).unwrap();
        silent
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        assert!(matches!(silent.read(&mut buf), Ok(0)));
        settings.draining.store(true, Ordering::SeqCst);
        handle.join().unwrap();
    }

    /// Reads from `stream` until it closes (or 5 s pass); what it read.
    fn read_to_close(stream: &mut StdStream) -> String {
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut data = Vec::new();
        let _ = stream.read_to_end(&mut data);
        String::from_utf8_lossy(&data).into_owned()
    }

    #[test]
    fn slow_heads_and_slow_bodies_are_cut_off_and_a_client_address_is_capped() {
        let mut settings = HttpSettings::new("127.0.0.1:0".parse().unwrap());
        settings.header_read_timeout = Duration::from_millis(300);
        settings.body_deadline = crate::http::limits::BodyDeadline {
            grace: Duration::from_millis(300),
            rate_bytes_per_s_min: 1000,
        };
        settings.connections_per_ip_max_per_core = 3;
        let (addr, settings, handle) = start(settings);
        // A head that never completes: closed, without an answer (there is no request yet).
        let started = std::time::Instant::now();
        let mut head = StdStream::connect(addr).unwrap();
        write!(head, "POST /api/v11/transactions HTTP/1.1\r\nHost: x\r\n").unwrap();
        assert_eq!(read_to_close(&mut head), "");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        // A body that declares 16 MB and stops after 10 bytes: 408 REQUEST_TIMEOUT, closed.
        let started = std::time::Instant::now();
        let mut body = StdStream::connect(addr).unwrap();
        write!(
            body,
            "POST /api/v11/transactions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 16000000\r\n\r\n{{\"from\":12"
        )
        .unwrap();
        let answer = read_to_close(&mut body);
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("REQUEST_TIMEOUT"), "{answer}");
        assert!(
            answer.to_ascii_lowercase().contains("connection: close"),
            "{answer}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        // Three connections of this address are served; a fourth is closed at once.
        let mut held: Vec<StdStream> = (0..3).map(|_| StdStream::connect(addr).unwrap()).collect();
        for stream in &mut held {
            assert_eq!(send(stream, "GET", "/api/v11/health", "").0, 200);
        }
        let mut fourth = StdStream::connect(addr).unwrap();
        let _ = write!(fourth, "GET /api/v11/health HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(read_to_close(&mut fourth), "", "over the address's limit");
        drop(held.pop());
        // Once one closes, the address may connect again (the server sees the close shortly).
        let served = (0..100).any(|_| {
            let mut again = StdStream::connect(addr).unwrap();
            again
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let ok = try_send(&mut again, "GET", "/api/v11/health", "").is_some();
            if !ok {
                std::thread::sleep(Duration::from_millis(20));
            }
            ok
        });
        assert!(served);
        settings.draining.store(true, Ordering::SeqCst);
        handle.join().unwrap();
    }

    #[test]
    fn bodies_past_the_cores_budget_are_refused_until_memory_is_free_again() {
        let mut settings = HttpSettings::new("127.0.0.1:0".parse().unwrap());
        settings.body_bytes_budget_per_core = 100_000;
        let (addr, settings, handle) = start(settings);
        // A holds the whole budget: 70,000 of the 100,000 bytes it declares have arrived.
        let mut a = StdStream::connect(addr).unwrap();
        write!(
            a,
            "POST /api/v11/transactions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
        )
        .unwrap();
        a.write_all(&[b' '; 70_000]).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        // B's small body does not fit: 503 OVERLOADED with Retry-After.
        let mut b = StdStream::connect(addr).unwrap();
        let transfer = transfer_json(&signed(1, 10)).to_string();
        let (status, head, answer) = send(&mut b, "POST", "/api/v11/transactions", &transfer);
        assert_eq!(status, 503, "{answer}");
        assert!(answer.contains("OVERLOADED"), "{answer}");
        assert!(
            head.to_ascii_lowercase().contains("retry-after: 1"),
            "{head}"
        );
        // A's body completes (blanks: not JSON) and is answered; its memory is free again.
        a.write_all(&[b' '; 30_000]).unwrap();
        a.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut status_line = [0u8; 12];
        a.read_exact(&mut status_line).unwrap();
        assert_eq!(&status_line, b"HTTP/1.1 400");
        let mut c = StdStream::connect(addr).unwrap();
        let (status, _, answer) = send(&mut c, "POST", "/api/v11/transactions", &transfer);
        assert_eq!(status, 200, "{answer}");
        settings.draining.store(true, Ordering::SeqCst);
        handle.join().unwrap();
    }

    #[test]
    fn a_client_address_over_its_request_rate_gets_429() {
        let mut settings = HttpSettings::new("127.0.0.1:0".parse().unwrap());
        settings.request_rate_per_ip = Some(crate::http::limits::RequestRate {
            per_s: 0.5,
            burst: 2.0,
        });
        let (addr, settings, handle) = start(settings);
        let mut a = StdStream::connect(addr).unwrap();
        let mut b = StdStream::connect(addr).unwrap();
        assert_eq!(send(&mut a, "GET", "/api/v11/health", "").0, 200);
        assert_eq!(send(&mut b, "GET", "/api/v11/health", "").0, 200);
        let (status, head, body) = send(&mut a, "GET", "/api/v11/health", "");
        assert_eq!(status, 429, "{body}");
        assert!(body.contains("RATE_LIMITED"), "{body}");
        assert!(
            head.to_ascii_lowercase().contains("retry-after: 2"),
            "{head}"
        );
        settings.draining.store(true, Ordering::SeqCst);
        handle.join().unwrap();
    }

    /// A development CA and a certificate it signed for 127.0.0.1, written into `dir` as
    /// `{name}.pem`, `{name}-key.pem`; returns the CA's certificate (DER).
    fn issue(dir: &std::path::Path, name: &str) -> rustls::pki_types::CertificateDer<'static> {
        issue_valid_until(dir, name, rcgen::date_time_ymd(4096, 1, 1))
    }

    /// [`issue`], the node's certificate valid until `not_after`.
    fn issue_valid_until(
        dir: &std::path::Path,
        name: &str,
        not_after: time::OffsetDateTime,
    ) -> rustls::pki_types::CertificateDer<'static> {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::default();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca.self_signed(&ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        leaf.not_after = not_after;
        let leaf = leaf.signed_by(&key, &ca, &ca_key).unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), leaf.pem()).unwrap();
        std::fs::write(dir.join(format!("{name}-key.pem")), key.serialize_pem()).unwrap();
        ca.der().clone()
    }

    type TlsStream = rustls::StreamOwned<rustls::ClientConnection, StdStream>;

    /// A TLS connection trusting `ca`, offering ALPN `alpn`; the handshake's error if any.
    fn tls_connect(
        addr: SocketAddr,
        ca: &rustls::pki_types::CertificateDer<'static>,
        alpn: &[&[u8]],
    ) -> Result<TlsStream, io::Error> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.clone()).unwrap();
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let connection = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
        let tcp = StdStream::connect(addr)?;
        tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut stream = rustls::StreamOwned::new(connection, tcp);
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock)?;
        }
        Ok(stream)
    }

    /// One HTTP/1.1 GET over `stream`; the status.
    fn tls_get(stream: &mut TlsStream, path: &str) -> u16 {
        write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map(|v| v.trim().parse().unwrap())
            .unwrap();
        let mut body = vec![0u8; length];
        stream.read_exact(&mut body).unwrap();
        head[9..12].parse().unwrap()
    }

    #[test]
    fn tls_serves_http1_and_h2_by_alpn_and_a_reload_reaches_new_connections_only() {
        let dir = tempfile::tempdir().unwrap();
        let first_ca = issue(dir.path(), "node");
        let (cert, key) = (dir.path().join("node.pem"), dir.path().join("node-key.pem"));
        let tls = std::sync::Arc::new(crate::http::tls::Tls::load(&cert, &key).unwrap());
        let mut settings = HttpSettings::new("127.0.0.1:0".parse().unwrap());
        settings.tls = Some(tls.clone());
        let (addr, settings, handle) = start(settings);
        let mut kept = tls_connect(addr, &first_ca, &[b"http/1.1"]).unwrap();
        assert_eq!(tls_get(&mut kept, "/api/v11/health"), 200);
        let h2 = tls_connect(addr, &first_ca, &[b"h2", b"http/1.1"]).unwrap();
        assert_eq!(
            h2.conn.alpn_protocol(),
            Some(b"h2".as_slice()),
            "ALPN picks h2"
        );
        assert_eq!(
            h2.conn.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_3)
        );
        // A client that does not trust the node's CA refuses it; plaintext gets no answer.
        let stranger = issue(dir.path(), "stranger");
        assert!(tls_connect(addr, &stranger, &[]).is_err());
        let mut plain = StdStream::connect(addr).unwrap();
        assert!(try_send(&mut plain, "GET", "/api/v11/health", "").is_none());
        // A new certificate from another CA, reloaded: new connections get it, the connection
        // established before keeps its session and goes on.
        let second_ca = issue(dir.path(), "node");
        tls.reload().unwrap();
        assert!(
            tls_connect(addr, &first_ca, &[]).is_err(),
            "the old CA no longer verifies"
        );
        let mut fresh = tls_connect(addr, &second_ca, &[]).unwrap();
        assert_eq!(tls_get(&mut fresh, "/api/v11/health"), 200);
        assert_eq!(tls_get(&mut kept, "/api/v11/info"), 200);
        // An expired certificate is served if the operator configures one, and clients refuse it.
        let expired_ca = issue_valid_until(dir.path(), "node", rcgen::date_time_ymd(2020, 1, 1));
        tls.reload().unwrap();
        let refused = tls_connect(addr, &expired_ca, &[]).unwrap_err();
        assert!(
            refused.to_string().to_lowercase().contains("expired"),
            "{refused}"
        );
        let second_ca = issue(dir.path(), "node");
        tls.reload().unwrap();
        // A key that does not belong to the certificate: the reload fails, the pair stays.
        std::fs::copy(dir.path().join("stranger-key.pem"), &key).unwrap();
        assert!(tls.reload().unwrap_err().to_string().contains("node.pem"));
        assert!(tls_connect(addr, &second_ca, &[]).is_ok());
        settings.draining.store(true, Ordering::SeqCst);
        handle.join().unwrap();
    }

    #[test]
    fn oversized_header_blocks_are_refused_over_http2_and_http1() {
        let (addr, settings, handle) = start(HttpSettings::new("127.0.0.1:0".parse().unwrap()));
        let (runtime, mut sender) = h2_client(addr);
        runtime.block_on(async {
            let get = |extra: usize| {
                hyper::Request::get(format!("http://{addr}/api/v11/health"))
                    .header("x-filler", "a".repeat(extra))
                    .body(http_body_util::Empty::<bytes::Bytes>::new())
                    .unwrap()
            };
            let small = sender.send_request(get(1000)).await.unwrap();
            assert_eq!(small.status(), 200);
            let large = sender.send_request(get(32 * 1024)).await;
            assert!(
                large.as_ref().map_or(true, |r| r.status() == 431),
                "{:?}",
                large.map(|r| r.status())
            );
        });
        drop(runtime);
        let mut many = StdStream::connect(addr).unwrap();
        let headers: String = (0..150).map(|i| format!("x-h{i}: v\r\n")).collect();
        write!(
            many,
            "GET /api/v11/health HTTP/1.1\r\nHost: x\r\n{headers}\r\n"
        )
        .unwrap();
        many.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut answer = String::new();
        let _ = many.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
        settings.draining.store(true, Ordering::SeqCst);
        handle.join().unwrap();
    }
}
