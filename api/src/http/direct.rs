//! Batch requests whose bodies are received straight from the socket into their own buffer.
//!
//! hyper reads a connection into its own buffer and hands a body over in frames of it, so a
//! body would be gathered once more before the engine sees it (docs/architecture.md, "How often
//! a transfer's 168 bytes are copied"). On a plaintext connection this module serves the batch
//! endpoints itself, before hyper sees the connection:
//! - it *peeks* at the socket (nothing is consumed) and parses the request head (`httparse`);
//! - a head that is complete within [`HEAD_PEEK_BYTES_MAX`] and asks for nothing unusual (`POST` to
//!   a batch endpoint, HTTP/1.1, one `Content-Length` within `body_bytes_max`, no
//!   `Transfer-Encoding`, `Expect` or `Upgrade`) is consumed, and its body, when at least half
//!   of it is in the socket already, is received (`recv`) into a buffer of exactly its length,
//!   counted in the core's body budget: the kernel's copy is the only one. A body less far
//!   along is gathered as it arrives (one copy more, as through hyper), so that memory follows
//!   the bytes that came;
//! - the request then takes the route every request takes (`routes::handle`: authentication,
//!   limits, metrics, CORS) with its body already read ([`ReadBody`]), and the answer is
//!   written back;
//! - anything else (HTTP/2's preface, another request, a head longer than the peek, a body over
//!   the budget, a client over its request rate) hands the connection to hyper as it is, since
//!   nothing of that request was consumed, for the rest of the connection's life.
//!
//! TLS connections go to hyper from the start (rustls decrypts into a buffer of its own anyway).

use super::io::{Activity, H2_PREFACE};
use super::limits::{BodyDeadline, BodyTooSlow, BudgetedBody, ClientGuard, OverBudget};
use super::routes::{self, Backend, Ctx, HttpResponse};
use super::server::RequestGuard;
use bytes::Bytes;
use futures::future::{select, Either};
use futures::io::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use http_body_util::{BodyExt, Empty};
use hyper::header::{HeaderValue, CONNECTION, CONTENT_LENGTH, DATE, TRANSFER_ENCODING};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::pin;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// Bytes of a connection first peeked at for a request head, and at most (a longer head goes
/// to hyper). The peek also copies the body's first bytes (the peek's length less the head's),
/// which are then received again into the body: the only bytes of a batch copied twice here.
/// `aurigraph bench`'s heads are 190-280 bytes, so the first peek is short; a head it does not
/// hold is peeked again at the most.
pub(crate) const HEAD_PEEK_BYTES_FIRST: usize = 512;
pub(crate) const HEAD_PEEK_BYTES_MAX: usize = 4096;

/// The response buffer a connection keeps between requests at most (compact results of a
/// batch of 8,192 are 72 KiB; JSON results of a large batch can be megabytes).
const RESPONSE_BUFFER_KEPT_BYTES_MAX: usize = 256 * 1024;

/// Header fields a head served here may have (more: hyper's, which has its own limit).
const HEADER_FIELDS_MAX: usize = 32;

/// The endpoints served here, `POST` only: the batch endpoints.
const BATCH_PATHS: [&str; 2] = [
    "/api/v11/transactions/batch",
    "/api/v11/gateway/transactions/batch",
];

/// A request body read before the request was routed, in the request's extensions:
/// `read_body` takes it instead of reading frames.
#[derive(Clone, Debug)]
pub(crate) enum ReadBody {
    Whole(Vec<u8>),
    /// The body came too slowly (answered 408, and the connection closes).
    TooSlow(BodyTooSlow),
    /// The body outgrew the core's body budget while it arrived (answered 503).
    OverBudget,
}

/// A request head this module serves.
#[derive(Debug)]
pub(crate) struct DirectHead {
    /// The head's length, request line to blank line.
    pub head_bytes: usize,
    pub content_length: usize,
    /// The client asked to close the connection after this request.
    pub close: bool,
    pub parts: hyper::http::request::Parts,
}

/// Parses `peeked`, a connection's next bytes: a complete head of a request served here, or
/// `None` for anything else (hyper's to serve).
pub(crate) fn direct_head(peeked: &[u8]) -> Option<DirectHead> {
    let mut fields = [httparse::EMPTY_HEADER; HEADER_FIELDS_MAX];
    let mut head = httparse::Request::new(&mut fields);
    let httparse::Status::Complete(head_bytes) = head.parse(peeked).ok()? else {
        return None;
    };
    if head.method != Some("POST") || head.version != Some(1) {
        return None;
    }
    let target = head.path?;
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    if !BATCH_PATHS.contains(&path) {
        return None;
    }
    let mut request = hyper::Request::builder()
        .method(hyper::Method::POST)
        .uri(target)
        .version(hyper::Version::HTTP_11);
    let mut content_length = None;
    let mut close = false;
    for field in head.headers.iter() {
        let name = field.name;
        if name.eq_ignore_ascii_case("content-length") {
            if content_length.is_some() {
                return None;
            }
            content_length = Some(decimal(field.value)?);
        } else if ["transfer-encoding", "expect", "upgrade"]
            .iter()
            .any(|n| name.eq_ignore_ascii_case(n))
        {
            return None;
        } else if name.eq_ignore_ascii_case("connection") {
            for option in std::str::from_utf8(field.value).ok()?.split(',') {
                let option = option.trim();
                if option.eq_ignore_ascii_case("upgrade") {
                    return None;
                }
                close |= option.eq_ignore_ascii_case("close");
            }
        }
        request = request.header(name, field.value);
    }
    let (parts, ()) = request.body(()).ok()?.into_parts();
    Some(DirectHead {
        head_bytes,
        content_length: content_length?,
        close,
        parts,
    })
}

/// A `Content-Length` value: ASCII digits only.
fn decimal(value: &[u8]) -> Option<usize> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// What became of a connection served here.
pub(crate) enum Served {
    Closed,
    /// Its next request is hyper's, and so is the connection from now on.
    ToHyper(TcpStream),
}

/// Serves a plaintext connection's batch requests until it closes or sends a request that is
/// hyper's.
pub(crate) async fn serve<B: Backend>(
    ctx: &Ctx<B>,
    mut stream: TcpStream,
    activity: &Rc<Activity>,
    client: Option<&ClientGuard>,
) -> io::Result<Served> {
    // HTTP/1.1 until the connection shows HTTP/2's preface (then hyper's `serve_http` says so).
    activity.head_deadline_applies.set(true);
    let mut head = [0u8; HEAD_PEEK_BYTES_MAX];
    let mut out = Vec::new();
    loop {
        let mut peeked = peek(&stream, &mut head[..HEAD_PEEK_BYTES_FIRST]).await?;
        if peeked == 0 {
            return Ok(Served::Closed);
        }
        activity.note_head_bytes();
        let known = peeked.min(H2_PREFACE.len());
        if head[..known] == H2_PREFACE[..known] {
            return Ok(Served::ToHyper(stream));
        }
        let mut parsed = direct_head(&head[..peeked]);
        if parsed.is_none() && peeked == HEAD_PEEK_BYTES_FIRST {
            peeked = peek(&stream, &mut head).await?;
            parsed = direct_head(&head[..peeked]);
        }
        let Some(request) = parsed else {
            return Ok(Served::ToHyper(stream));
        };
        if request.content_length > ctx.settings.body_bytes_max {
            return Ok(Served::ToHyper(stream)); // 413, in hyper's words
        }
        // A body at least half here already is received into a buffer of its length at once
        // (the memory it holds is then at most twice the bytes that came, the bound of a
        // buffer that doubles as bytes arrive through hyper); one less far along is gathered
        // as it arrives, so that a client that declares a body and sends little of it holds
        // no more memory here than through hyper.
        let queued = queued_bytes(&stream)?;
        let body_here = queued.saturating_sub(request.head_bytes);
        let whole = body_here >= request.content_length.div_ceil(2);
        let mut body = ctx.bodies.body(Some(request.content_length as u64));
        if whole && body.reserve_whole().is_err() {
            return Ok(Served::ToHyper(stream)); // 503 over the budget
        }
        if client.is_some_and(|client| client.take_request().is_err()) {
            drop(body);
            return Ok(Served::ToHyper(stream)); // 429
        }
        let guard = RequestGuard::enter(activity);
        stream.read_exact(&mut head[..request.head_bytes]).await?;
        activity.bump();
        let deadline = ctx.settings.body_deadline;
        let received = receive(
            &stream,
            &mut body,
            request.content_length,
            deadline,
            activity,
        )
        .await;
        let read = match received {
            Received::Whole if whole => {
                ctx.settings.metrics.record_direct_body(ctx.core);
                ReadBody::Whole(body.into_bytes())
            }
            Received::Whole => ReadBody::Whole(body.into_bytes()),
            Received::TooSlow(slow) => ReadBody::TooSlow(slow),
            Received::OverBudget => ReadBody::OverBudget,
            Received::Closed => return Ok(Served::Closed),
            Received::Failed(error) => return Err(error),
        };
        let mut routed = hyper::Request::from_parts(request.parts, Empty::<Bytes>::new());
        routed.extensions_mut().insert(read);
        let response = routes::handle(ctx, routed).await;
        drop(guard);
        let asked_to_close = write_response(&mut stream, response, &mut out).await?;
        activity.bump();
        if out.capacity() > RESPONSE_BUFFER_KEPT_BYTES_MAX {
            // A large answer (JSON results of a big batch): not kept for an idle connection.
            out = Vec::new();
        }
        if request.close || asked_to_close || ctx.settings.draining.load(Ordering::SeqCst) {
            let _ = stream.close().await;
            return Ok(Served::Closed);
        }
    }
}

/// Peeks at the connection's next bytes, waiting for at least one: how many (0: it ended).
async fn peek(stream: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match recv(
            stream.as_raw_fd(),
            buf.as_mut_ptr(),
            buf.len(),
            libc::MSG_PEEK,
        ) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                stream.peek(&mut [0u8; 1]).await?;
            }
            result => return result,
        }
    }
}

/// Bytes waiting in the connection's receive queue (`FIONREAD`).
fn queued_bytes(stream: &TcpStream) -> io::Result<usize> {
    let mut queued: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer, which points to `queued`.
    let rc = unsafe { libc::ioctl(stream.as_raw_fd(), libc::FIONREAD, &mut queued) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(usize::try_from(queued).unwrap_or(0))
}

/// Sends the socket's pending acknowledgement, with its receive window, now (`TCP_QUICKACK`).
///
/// Why: a client's large body waits in its send queue for the window this side advertises.
/// When this side reads, Linux announces the window it opened only if it at least doubled,
/// else with the next delayed acknowledgement. Early in a connection, before the kernel has
/// grown the socket's buffers, a body of 168 KB then stalled for about 9 ms halfway (seen on
/// the 10th request or so of most connections of a bench run: the first 200 ms of a run had
/// batches of 16-37 ms; docs/benchmarks.md). Called only before waiting for more of a body.
fn acknowledge_now(fd: RawFd) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: TCP_QUICKACK reads one int through the pointer, which points to `on`, of the
    // length given.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_QUICKACK,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// How receiving a body ended.
enum Received {
    Whole,
    TooSlow(BodyTooSlow),
    /// Gathered, it outgrew the core's body budget.
    OverBudget,
    Closed,
    Failed(io::Error),
}

/// Bytes a gathered body is received in at a time, through one buffer per core.
const GATHER_CHUNK_BYTES: usize = 64 * 1024;

thread_local! {
    static GATHER_CHUNK: std::cell::RefCell<Vec<u8>> =
        std::cell::RefCell::new(vec![0; GATHER_CHUNK_BYTES]);
}

/// Receives the `len` bytes of `body`, each by the time `deadline` gives it: straight into
/// its buffer when it was reserved whole, else gathered through the core's chunk buffer,
/// growing only as bytes arrive.
async fn receive(
    stream: &TcpStream,
    body: &mut BudgetedBody<'_>,
    len: usize,
    deadline: BodyDeadline,
    activity: &Activity,
) -> Received {
    assert!(body.is_empty());
    let start = Instant::now();
    while body.len() < len {
        let missing = len - body.len();
        // Outer `Err`: a gathered body outgrew the core's budget; inner: the `recv`.
        let received: Result<io::Result<usize>, OverBudget> = match body.reserved_spare(missing) {
            Some(spare) => Ok(
                match recv(stream.as_raw_fd(), spare.as_mut_ptr().cast(), missing, 0) {
                    Ok(n) if n > 0 => {
                        assert!(n <= missing);
                        // SAFETY: the kernel wrote `n` bytes into the reserved spare capacity.
                        unsafe { body.filled(n) };
                        Ok(n)
                    }
                    other => other,
                },
            ),
            None => GATHER_CHUNK.with(|chunk| {
                let mut chunk = chunk.borrow_mut();
                let want = missing.min(chunk.len());
                match recv(stream.as_raw_fd(), chunk.as_mut_ptr(), want, 0) {
                    Ok(n) => body.extend(&chunk[..n]).map(|()| Ok(n)),
                    Err(e) => Ok(Err(e)),
                }
            }),
        };
        let Ok(received) = received else {
            return Received::OverBudget;
        };
        match received {
            Ok(0) => return Received::Closed,
            Ok(_) => activity.bump(),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // Before waiting for the rest: the window the reads above opened goes to the
                // client now (see `acknowledge_now`). Failing only costs that wait.
                let _ = acknowledge_now(stream.as_raw_fd());
                let received_bytes = body.len() as u64;
                let due = deadline.due(start, received_bytes);
                let timer =
                    glommio::timer::Timer::new(due.saturating_duration_since(Instant::now()));
                let ready = async {
                    let mut probe = [0u8; 1];
                    stream.peek(&mut probe).await
                };
                match select(pin!(ready), pin!(timer)).await {
                    Either::Left((Ok(_), _)) => {}
                    Either::Left((Err(e), _)) => return Received::Failed(e.into()),
                    Either::Right(_) => {
                        return Received::TooSlow(BodyTooSlow {
                            received_bytes,
                            elapsed: start.elapsed(),
                        })
                    }
                }
            }
            Err(e) => return Received::Failed(e),
        }
    }
    Received::Whole
}

/// `recv(2)` without blocking (`flags` added to `MSG_DONTWAIT`), retried when interrupted.
fn recv(fd: RawFd, buf: *mut u8, len: usize, flags: libc::c_int) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` points to `len` writable bytes (the callers' buffers).
        let n = unsafe { libc::recv(fd, buf.cast(), len, flags | libc::MSG_DONTWAIT) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

/// Writes `response` (HTTP/1.1, `Content-Length`, `Date`) in one write, encoded into `out`;
/// whether it asks to close the connection.
async fn write_response(
    stream: &mut TcpStream,
    response: HttpResponse,
    out: &mut Vec<u8>,
) -> io::Result<bool> {
    let (parts, body) = response.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(never) => match never {},
    };
    out.clear();
    encode_head(
        &parts,
        body.len(),
        httpdate::fmt_http_date(std::time::SystemTime::now()),
        out,
    );
    out.extend_from_slice(&body);
    stream.write_all(out).await?;
    let close = parts
        .headers
        .get(CONNECTION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|o| o.trim().eq_ignore_ascii_case("close")));
    Ok(close)
}

/// A response head as hyper writes one: status line, the response's own fields, then
/// `content-length` and `date`.
fn encode_head(
    parts: &hyper::http::response::Parts,
    body_bytes: usize,
    date: String,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(parts.status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(parts.status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in &parts.headers {
        if name == CONTENT_LENGTH || name == TRANSFER_ENCODING || name == DATE {
            continue;
        }
        field(out, name.as_str(), value);
    }
    field(out, "content-length", &HeaderValue::from(body_bytes));
    if let Ok(date) = HeaderValue::from_str(&date) {
        field(out, "date", &date);
    }
    out.extend_from_slice(b"\r\n");
}

fn field(out: &mut Vec<u8>, name: &str, value: &HeaderValue) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests;
