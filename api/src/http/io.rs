//! Glue between glommio and hyper 1.x.
//!
//! - [`HyperIo`]: a byte stream with futures' `AsyncRead`/`AsyncWrite` (glommio's `TcpStream`)
//!   seen through hyper's own `hyper::rt::Read`/`Write` traits. It can first replay bytes that
//!   were read ahead to tell HTTP/2 from HTTP/1.1 (see [`HyperIo::sniff_h2_preface`]), and it
//!   counts progress so that an idle-connection watchdog can tell a stalled connection from one
//!   that is working.
//! - [`LocalExec`]: hyper's `Executor` over glommio's `spawn_local` (HTTP/2 runs each stream as
//!   a task). Everything stays on the connection's own core, so nothing needs to be `Send`.

use futures::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use std::cell::Cell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

/// The connection preface every HTTP/2 client sends first (RFC 9113 section 3.4).
pub const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Bytes zero-initialised and read per `poll_read` at most. hyper hands over uninitialised
/// buffers (possibly hundreds of KiB); they must be initialised before they may be handed to
/// `AsyncRead` as `&mut [u8]`, and bounding the chunk bounds that cost per read.
const READ_CHUNK_MAX: usize = 64 * 1024;

/// Per-connection state shared by the I/O adapter, the request handler and the watchdog.
#[derive(Default, Debug)]
pub struct Activity {
    /// Incremented on every read or write that moved bytes.
    pub progress: Cell<u64>,
    /// Requests of this connection being handled now (HTTP/2 may have several).
    pub in_flight: Cell<usize>,
    /// When the first byte of a request head not yet complete arrived (HTTP/1.1: read while
    /// no request runs; cleared when the request begins).
    pub head_since: Cell<Option<std::time::Instant>>,
    /// Whether heads have a deadline on this connection (HTTP/1.1, not HTTP/2).
    pub head_deadline_applies: Cell<bool>,
}

impl Activity {
    pub(crate) fn bump(&self) {
        self.progress.set(self.progress.get().wrapping_add(1));
    }

    /// Bytes arrived while no request runs: a request head has begun (if none had).
    pub(crate) fn note_head_bytes(&self) {
        if self.head_deadline_applies.get()
            && self.in_flight.get() == 0
            && self.head_since.get().is_none()
        {
            self.head_since.set(Some(std::time::Instant::now()));
        }
    }
}

/// A stream adapted to hyper's I/O traits.
pub struct HyperIo<S> {
    stream: S,
    /// Bytes read ahead (while sniffing the protocol) that hyper has not seen yet:
    /// `replay[replay_at..]`.
    replay: Vec<u8>,
    replay_at: usize,
    activity: Rc<Activity>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> HyperIo<S> {
    pub fn new(stream: S, activity: Rc<Activity>) -> HyperIo<S> {
        HyperIo {
            stream,
            replay: Vec::new(),
            replay_at: 0,
            activity,
        }
    }

    /// Reads until the first bytes either match the whole HTTP/2 preface (true: "h2c with prior
    /// knowledge") or differ from it (false: HTTP/1.x). What was read is kept and replayed to
    /// hyper, so the protocol sees the connection from its first byte. A connection that
    /// closes before sending anything distinguishable is an `UnexpectedEof` error.
    pub async fn sniff_h2_preface(&mut self) -> io::Result<bool> {
        let mut chunk = [0u8; 1024];
        loop {
            let known = self.replay.len().min(H2_PREFACE.len());
            if self.replay[..known] != H2_PREFACE[..known] {
                return Ok(false);
            }
            if known == H2_PREFACE.len() {
                return Ok(true);
            }
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed before a request",
                ));
            }
            self.activity.bump();
            self.replay.extend_from_slice(&chunk[..n]);
        }
    }
}

impl<S: AsyncRead + Unpin> hyper::rt::Read for HyperIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // 1. Bytes read ahead while sniffing go first, in order.
        if this.replay_at < this.replay.len() {
            let pending = &this.replay[this.replay_at..];
            let n = pending.len().min(buf.remaining());
            buf.put_slice(&pending[..n]);
            this.replay_at += n;
            if this.replay_at == this.replay.len() {
                // Done replaying: release the buffer.
                this.replay = Vec::new();
                this.replay_at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        // 2. Then the stream itself. Reading zero bytes into a non-empty buffer signals EOF to
        // hyper, exactly as `AsyncRead` signals it to us.
        let want = buf.remaining().min(READ_CHUNK_MAX);
        let dst = buf.initialize_unfilled_to(want);
        match Pin::new(&mut this.stream).poll_read(cx, dst) {
            Poll::Ready(Ok(n)) => {
                debug_assert!(n <= want);
                // SAFETY: the first `want` bytes of the unfilled part were initialised just
                // above, and the reader reported that it wrote `n <= want` of them.
                unsafe { buf.advance(n.min(want)) };
                if n > 0 {
                    this.activity.bump();
                    this.activity.note_head_bytes();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncWrite + Unpin> hyper::rt::Write for HyperIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.stream).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &result {
            if *n > 0 {
                this.activity.bump();
            }
        }
        result
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = &result {
            if *n > 0 {
                this.activity.bump();
            }
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        // glommio's TcpStream writes one buffer per call (futures' default vectored write picks
        // the first non-empty slice), so let hyper flatten headers and body into one buffer
        // instead of issuing several small writes.
        false
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // futures' `poll_close` is the write-side shutdown (glommio: shutdown(Write)).
        Pin::new(&mut self.get_mut().stream).poll_close(cx)
    }
}

/// hyper's executor for HTTP/2 stream tasks: a detached glommio task on the current core.
/// Must only be used from inside a glommio executor (where the connection runs).
#[derive(Clone, Copy, Debug, Default)]
pub struct LocalExec;

impl<F> hyper::rt::Executor<F> for LocalExec
where
    F: Future + 'static,
{
    fn execute(&self, future: F) {
        glommio::spawn_local(future).detach();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;
    use hyper::rt::{Read, ReadBuf, Write};

    /// An in-memory stream: reads from `input` in chunks of `chunk`, records writes.
    struct Mem {
        input: Vec<u8>,
        at: usize,
        chunk: usize,
        output: Vec<u8>,
    }

    impl AsyncRead for Mem {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            let n = (self.input.len() - self.at).min(buf.len()).min(self.chunk);
            let at = self.at;
            buf[..n].copy_from_slice(&self.input[at..at + n]);
            self.at += n;
            Poll::Ready(Ok(n))
        }
    }

    impl AsyncWrite for Mem {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.output.extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn io(input: &[u8], chunk: usize) -> HyperIo<Mem> {
        let mem = Mem {
            input: input.to_vec(),
            at: 0,
            chunk,
            output: Vec::new(),
        };
        HyperIo::new(mem, Rc::new(Activity::default()))
    }

    /// Reads everything through hyper's trait with a small buffer.
    fn read_all(io: &mut HyperIo<Mem>, buf_len: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        loop {
            let mut storage = vec![std::mem::MaybeUninit::<u8>::uninit(); buf_len];
            let mut rb = ReadBuf::uninit(&mut storage);
            match Pin::new(&mut *io).poll_read(&mut cx, rb.unfilled()) {
                Poll::Ready(Ok(())) => {}
                other => panic!("{other:?}"),
            }
            if rb.filled().is_empty() {
                return out;
            }
            out.extend_from_slice(rb.filled());
        }
    }

    #[test]
    fn detects_h2_and_replays_every_byte() {
        let mut input = H2_PREFACE.to_vec();
        input.extend_from_slice(b"\x00\x00\x00frames");
        for chunk in [1, 5, 24, 1000] {
            let mut io = io(&input, chunk);
            assert!(block_on(io.sniff_h2_preface()).unwrap(), "chunk {chunk}");
            assert_eq!(read_all(&mut io, 7), input, "chunk {chunk}");
            assert!(io.activity.progress.get() > 0);
        }
    }

    #[test]
    fn detects_http1_early_and_replays() {
        let input = b"POST /api/v11/transactions HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
        for chunk in [1, 3, 1000] {
            let mut io = io(&input, chunk);
            assert!(!block_on(io.sniff_h2_preface()).unwrap());
            assert!(
                io.replay.len() <= chunk.max(2),
                "sniffing stops at the first difference"
            );
            assert_eq!(read_all(&mut io, 16), input);
        }
        let mut io = io(b"PRI * HTTP/1.1", 100);
        assert!(!block_on(io.sniff_h2_preface()).unwrap());
    }

    #[test]
    fn eof_before_a_request_is_an_error() {
        let mut empty = io(b"", 10);
        assert_eq!(
            block_on(empty.sniff_h2_preface()).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
        let mut partial = io(b"PRI * HT", 10);
        assert!(block_on(partial.sniff_h2_preface()).is_err());
    }

    #[test]
    fn writes_pass_through() {
        let mut io = io(b"", 1);
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let p = Pin::new(&mut io).poll_write(&mut cx, b"hello");
        assert!(matches!(p, Poll::Ready(Ok(5))));
        assert!(matches!(
            Pin::new(&mut io).poll_flush(&mut cx),
            Poll::Ready(Ok(()))
        ));
        assert!(matches!(
            Pin::new(&mut io).poll_shutdown(&mut cx),
            Poll::Ready(Ok(()))
        ));
        assert_eq!(io.stream.output, b"hello");
        assert_eq!(io.activity.progress.get(), 1);
    }
}
