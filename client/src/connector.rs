//! How the HTTP client opens its connections: from a port the system picks, or from a port that
//! steers the connection to one core of the node (`aurigraph_wire::steering`).
//!
//! A node hands a new connection to core `(source port / 2) mod cores`. A steered connector
//! binds its socket to such a port before connecting, so every connection of its client lands
//! on the core that owns the shards the client sends for. Ports in use are skipped; the search
//! starts at a different port for every connection so that reconnecting does not meet its own
//! earlier sockets (in TIME_WAIT) first.

use aurigraph_wire::steering::source_ports_for;
use hyper::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU16, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::{TcpSocket, TcpStream};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How long a connection may take to establish.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Source ports a steered connection tries before it gives up (each one in use costs a failed
/// `bind` or `connect`, both local and immediate).
const PORT_ATTEMPTS_MAX: usize = 256;
/// Where the search for a free source port starts: inside Linux's default ephemeral range
/// (32768-60999), moved on for every connection.
static NEXT_PORT: AtomicU16 = AtomicU16::new(40_000);
const PORT_SEARCH_FIRST: u16 = 32_768;
const PORT_SEARCH_LAST: u16 = 60_999;

/// Connections to one core of a node of `cores` executors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Steer {
    pub core: usize,
    pub cores: usize,
}

/// The client's connector: the system's choice of source port, or a steered one.
#[derive(Clone)]
pub struct Connector {
    plain: HttpConnector,
    steer: Option<Steer>,
}

impl Connector {
    pub fn new(steer: Option<Steer>) -> Connector {
        assert!(steer.is_none_or(|s| s.core < s.cores));
        let mut plain = HttpConnector::new();
        plain.set_nodelay(true);
        plain.set_connect_timeout(Some(CONNECT_TIMEOUT));
        plain.enforce_http(false); // https:// goes through the TLS layer wrapped around this
        Connector { plain, steer }
    }
}

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.plain.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        match self.steer {
            None => {
                let connecting = self.plain.call(uri);
                Box::pin(async move { connecting.await.map_err(Into::into) })
            }
            Some(steer) => Box::pin(async move {
                let stream = tokio::time::timeout(CONNECT_TIMEOUT, connect_steered(&uri, steer))
                    .await
                    .map_err(|_| format!("connecting to {uri} timed out"))??;
                Ok(TokioIo::new(stream))
            }),
        }
    }
}

/// Connects to `uri`'s host from a source port that the node hands to `steer.core`.
async fn connect_steered(uri: &Uri, steer: Steer) -> Result<TcpStream, BoxError> {
    let host = uri.host().ok_or("the URL has no host")?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("https") {
            443
        } else {
            80
        });
    let mut last_error: Option<io::Error> = None;
    for addr in tokio::net::lookup_host((host, port)).await? {
        match connect_from_core_port(addr, steer).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last_error = Some(e),
        }
    }
    Err(last_error
        .map_or_else(
            || format!("{host} resolves to no address"),
            |e| e.to_string(),
        )
        .into())
}

/// Connects to `addr` from the first free source port of `steer.core`.
async fn connect_from_core_port(addr: SocketAddr, steer: Steer) -> io::Result<TcpStream> {
    let start = next_search_start();
    let mut last_error = None;
    for port in source_ports_for(steer.core, steer.cores, start).take(PORT_ATTEMPTS_MAX) {
        match try_connect(addr, port).await {
            Ok(stream) => {
                stream.set_nodelay(true)?;
                return Ok(stream);
            }
            // The port is bound by another socket, or this 4-tuple is still in use.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::AddrInUse | io::ErrorKind::AddrNotAvailable
                ) =>
            {
                last_error = Some(e)
            }
            Err(e) => return Err(e),
        }
    }
    Err(last_error.unwrap_or_else(|| io::Error::other("no source port to try")))
}

async fn try_connect(addr: SocketAddr, port: u16) -> io::Result<TcpStream> {
    let (socket, any) = match addr {
        SocketAddr::V4(_) => (TcpSocket::new_v4()?, IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        SocketAddr::V6(_) => (TcpSocket::new_v6()?, IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
    };
    // Lets the port be bound while old connections from it linger in TIME_WAIT; `connect`
    // still refuses a 4-tuple in use.
    socket.set_reuseaddr(true)?;
    socket.bind(SocketAddr::new(any, port))?;
    socket.connect(addr).await
}

/// A different starting port for every connection, within the search range.
fn next_search_start() -> u16 {
    let span = PORT_SEARCH_LAST - PORT_SEARCH_FIRST;
    // Odd steps of a few hundred ports: successive connections start far apart.
    let n = NEXT_PORT.fetch_add(331, Ordering::Relaxed);
    PORT_SEARCH_FIRST + n % span
}

#[cfg(test)]
mod tests {
    use super::*;
    use aurigraph_wire::steering::core_of_source_port;

    #[tokio::test]
    async fn steered_connections_come_from_their_core_ports() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accept = tokio::spawn(async move {
            let mut peers = Vec::new();
            for _ in 0..12 {
                let (stream, peer) = listener.accept().await.unwrap();
                peers.push((stream, peer.port()));
            }
            peers
        });
        let mut connections = Vec::new();
        for i in 0..12 {
            let steer = Steer {
                core: i % 3,
                cores: 3,
            };
            let stream = connect_from_core_port(addr, steer).await.unwrap();
            let port = stream.local_addr().unwrap().port();
            assert_eq!(core_of_source_port(port, 3), steer.core);
            connections.push(stream);
        }
        let peers = accept.await.unwrap();
        let mut ports: Vec<u16> = peers.iter().map(|(_, p)| *p).collect();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 12, "every connection has its own port");
    }

    #[test]
    fn search_starts_stay_in_the_ephemeral_range() {
        for _ in 0..1000 {
            let start = next_search_start();
            assert!((PORT_SEARCH_FIRST..PORT_SEARCH_LAST).contains(&start));
        }
    }
}
