//! A link's byte stream: plain TCP (loopback development, or where the operator allowed it) or
//! TLS over TCP (mutual, see `transport::tls`). One type for both, so that the framing code
//! above it is written once.

use futures::io::{AsyncRead, AsyncWrite};
use futures_rustls::TlsStream;
use glommio::net::TcpStream;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

pub(super) enum LinkStream {
    Plain(TcpStream),
    // Boxed: a TLS session is some kilobytes, the plain stream a few words.
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for LinkStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            LinkStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            LinkStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for LinkStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            LinkStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            LinkStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            LinkStream::Plain(s) => Pin::new(s).poll_flush(cx),
            LinkStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            LinkStream::Plain(s) => Pin::new(s).poll_close(cx),
            LinkStream::Tls(s) => Pin::new(s.as_mut()).poll_close(cx),
        }
    }
}
