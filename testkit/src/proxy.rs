//! A fault-injecting TCP proxy for real-process cluster tests, on plain std threads.
//!
//! One [`Proxy`] listens on a free loopback port and forwards every accepted connection to one
//! target address (a byte copy in each direction, one thread per direction). [`Proxy::cut`]
//! closes every current connection and closes each new one right after accepting it, until
//! [`Proxy::heal`]; a cut proxy between two validators is a network partition of that ordered
//! pair. Dropping the proxy stops it: it wakes its accept loop, closes every connection and
//! joins every thread it started.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long the proxy waits to connect to its target before dropping the client.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

pub struct Proxy {
    addr: SocketAddr,
    inner: Arc<Inner>,
    accept: Option<JoinHandle<()>>,
}

struct Inner {
    target: SocketAddr,
    stop: AtomicBool,
    /// Live connections by id: (client side, target side) — clones used only to shut them down.
    /// The `cut` flag lives under the same lock so that a connection accepted while `cut()`
    /// runs is either registered before the cut (and closed by it) or refused after it.
    state: Mutex<State>,
    next_id: AtomicU64,
    accepted: AtomicU64,
    refused: AtomicU64,
    bytes: AtomicU64,
}

struct State {
    cut: bool,
    conns: HashMap<u64, (TcpStream, TcpStream)>,
    threads: Vec<JoinHandle<()>>,
}

impl Proxy {
    /// Starts a proxy on a free `127.0.0.1` port that forwards to `target`.
    pub fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy: bind 127.0.0.1:0");
        Proxy::start_on(listener, target)
    }

    /// Starts a proxy on an already bound listener.
    pub fn start_on(listener: TcpListener, target: SocketAddr) -> Proxy {
        let addr = listener.local_addr().expect("proxy: local_addr");
        let inner = Arc::new(Inner {
            target,
            stop: AtomicBool::new(false),
            state: Mutex::new(State {
                cut: false,
                conns: HashMap::new(),
                threads: Vec::new(),
            }),
            next_id: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        });
        let accept = {
            let inner = inner.clone();
            std::thread::Builder::new()
                .name(format!("proxy-{}", addr.port()))
                .spawn(move || accept_loop(listener, inner))
                .expect("proxy: spawn accept thread")
        };
        Proxy {
            addr,
            inner,
            accept: Some(accept),
        }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn target(&self) -> SocketAddr {
        self.inner.target
    }

    /// Closes every current connection; new ones are closed as soon as accepted until `heal`.
    pub fn cut(&self) {
        let mut state = self.inner.lock();
        state.cut = true;
        for (client, server) in state.conns.values() {
            let _ = client.shutdown(Shutdown::Both);
            let _ = server.shutdown(Shutdown::Both);
        }
        // The copy threads remove their entries as they finish.
    }

    /// Forwards new connections again.
    pub fn heal(&self) {
        self.inner.lock().cut = false;
    }

    pub fn is_cut(&self) -> bool {
        self.inner.lock().cut
    }

    /// Connections currently forwarded.
    pub fn connections(&self) -> usize {
        self.inner.lock().conns.len()
    }

    /// Connections accepted and forwarded since the start.
    pub fn accepted(&self) -> u64 {
        self.inner.accepted.load(Ordering::Relaxed)
    }

    /// Connections accepted and closed at once because the proxy was cut (or the target down).
    pub fn refused(&self) -> u64 {
        self.inner.refused.load(Ordering::Relaxed)
    }

    /// Bytes forwarded, both directions together.
    pub fn bytes(&self) -> u64 {
        self.inner.bytes.load(Ordering::Relaxed)
    }

    /// One line for panic messages.
    pub fn describe(&self) -> String {
        format!(
            "proxy {} -> {}: {}, {} open, {} accepted, {} refused, {} bytes",
            self.addr,
            self.inner.target,
            if self.is_cut() { "CUT" } else { "up" },
            self.connections(),
            self.accepted(),
            self.refused(),
            self.bytes()
        )
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop (blocked in accept) with a connection of our own.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        let threads = {
            let mut state = self.inner.lock();
            for (client, server) in state.conns.values() {
                let _ = client.shutdown(Shutdown::Both);
                let _ = server.shutdown(Shutdown::Both);
            }
            std::mem::take(&mut state.threads)
        };
        for t in threads {
            let _ = t.join();
        }
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn accept_loop(listener: TcpListener, inner: Arc<Inner>) {
    loop {
        let client = match listener.accept() {
            Ok((client, _)) => client,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => {
                if inner.stop.load(Ordering::SeqCst) {
                    return;
                }
                // EMFILE and the like: back off instead of spinning.
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        if inner.stop.load(Ordering::SeqCst) {
            return;
        }
        if inner.lock().cut {
            inner.refused.fetch_add(1, Ordering::Relaxed);
            let _ = client.shutdown(Shutdown::Both);
            continue;
        }
        let server = match TcpStream::connect_timeout(&inner.target, CONNECT_TIMEOUT) {
            Ok(s) => s,
            Err(_) => {
                // Target down (e.g. a killed validator): the client sees the connection close.
                inner.refused.fetch_add(1, Ordering::Relaxed);
                let _ = client.shutdown(Shutdown::Both);
                continue;
            }
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        // Two clones for the copy threads, two for the registry (to shut the connection down).
        let clones = (|| {
            Some((
                client.try_clone().ok()?,
                server.try_clone().ok()?,
                client.try_clone().ok()?,
                server.try_clone().ok()?,
            ))
        })();
        let Some((client2, server2, client3, server3)) = clones else {
            let _ = client.shutdown(Shutdown::Both);
            let _ = server.shutdown(Shutdown::Both);
            continue;
        };
        let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
        let mut state = inner.lock();
        if state.cut || inner.stop.load(Ordering::SeqCst) {
            // Cut (or stopped) while connecting to the target.
            drop(state);
            inner.refused.fetch_add(1, Ordering::Relaxed);
            let _ = client.shutdown(Shutdown::Both);
            let _ = server.shutdown(Shutdown::Both);
            if inner.stop.load(Ordering::SeqCst) {
                return;
            }
            continue;
        }
        state.conns.insert(id, (client3, server3));
        inner.accepted.fetch_add(1, Ordering::Relaxed);
        // Forget threads that already finished, so that the list stays bounded.
        state.threads.retain(|t| !t.is_finished());
        for (from, to) in [(client, server2), (server, client2)] {
            let inner = inner.clone();
            match std::thread::Builder::new()
                .name(format!("proxy-copy-{id}"))
                .spawn(move || copy(from, to, id, inner))
            {
                Ok(t) => state.threads.push(t),
                Err(_) => {
                    // Out of threads: close this connection (the other thread, if any, ends).
                    if let Some((c, s)) = state.conns.remove(&id) {
                        let _ = c.shutdown(Shutdown::Both);
                        let _ = s.shutdown(Shutdown::Both);
                    }
                }
            }
        }
    }
}

/// Copies `from` to `to` until either side ends, then closes the whole connection (both
/// sockets, both directions), which also ends the copy thread of the other direction.
fn copy(mut from: TcpStream, mut to: TcpStream, id: u64, inner: Arc<Inner>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        inner.bytes.fetch_add(n as u64, Ordering::Relaxed);
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
    inner.lock().conns.remove(&id);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// An echo server on its own thread; it stops when the returned flag is set and it is
    /// woken by one more connection.
    struct Echo {
        addr: SocketAddr,
        stop: Arc<AtomicBool>,
        thread: Option<JoinHandle<()>>,
    }

    impl Echo {
        fn start() -> Echo {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let stop = Arc::new(AtomicBool::new(false));
            let flag = stop.clone();
            let thread = std::thread::spawn(move || {
                let mut workers = Vec::new();
                for conn in listener.incoming() {
                    if flag.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(mut conn) = conn else { continue };
                    workers.push(std::thread::spawn(move || {
                        let mut buf = [0u8; 4096];
                        loop {
                            match conn.read(&mut buf) {
                                Ok(0) | Err(_) => return,
                                Ok(n) => {
                                    if conn.write_all(&buf[..n]).is_err() {
                                        return;
                                    }
                                }
                            }
                        }
                    }));
                }
                drop(workers); // Detached: each ends when its client closes.
            });
            Echo {
                addr,
                stop,
                thread: Some(thread),
            }
        }
    }

    impl Drop for Echo {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::SeqCst);
            let _ = TcpStream::connect(self.addr);
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }

    fn connect(proxy: &Proxy) -> TcpStream {
        let s = TcpStream::connect(proxy.local_addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s
    }

    /// Sends `msg` and reads the echo; `Err` when the connection is closed or reset.
    fn round_trip(s: &mut TcpStream, msg: &[u8]) -> std::io::Result<Vec<u8>> {
        s.write_all(msg)?;
        let mut got = vec![0u8; msg.len()];
        let mut read = 0;
        while read < got.len() {
            match s.read(&mut got[read..])? {
                0 => return Err(ErrorKind::UnexpectedEof.into()),
                n => read += n,
            }
        }
        Ok(got)
    }

    /// True when the peer closed the connection (EOF or reset) within a few seconds.
    fn closed(s: &mut TcpStream) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut buf = [0u8; 16];
        while Instant::now() < deadline {
            // A write to a closed connection may succeed once (it is the RST that follows).
            let _ = s.write_all(b"?");
            match s.read(&mut buf) {
                Ok(0) => return true,
                Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {}
                Err(_) => return true,
                Ok(_) => {} // An echo of "?" from before the close: keep reading.
            }
        }
        false
    }

    fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn proxy_forwards_both_ways() {
        let echo = Echo::start();
        let proxy = Proxy::start(echo.addr);
        assert_ne!(proxy.local_addr(), echo.addr);
        assert_eq!(proxy.target(), echo.addr);
        let mut a = connect(&proxy);
        let mut b = connect(&proxy);
        assert_eq!(round_trip(&mut a, b"hello").unwrap(), b"hello");
        assert_eq!(round_trip(&mut b, b"world").unwrap(), b"world");
        // A large message crosses several reads and writes.
        let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        let mut writer = a.try_clone().unwrap();
        let sent = big.clone();
        let t = std::thread::spawn(move || writer.write_all(&sent).unwrap());
        let mut got = vec![0u8; big.len()];
        a.read_exact(&mut got).unwrap();
        t.join().unwrap();
        assert!(got == big, "a large message came back altered");
        assert_eq!(proxy.accepted(), 2);
        // The counter is bumped just after each write, so it may trail the echo a moment.
        let expected = 2 * (big.len() as u64 + 10);
        wait_until("the byte count", || proxy.bytes() == expected);
        // Closing the client closes the proxied connection too.
        drop(b);
        wait_until("the closed connection to be forgotten", || {
            proxy.connections() == 1
        });
    }

    #[test]
    fn cut_closes_and_refuses_until_healed() {
        let echo = Echo::start();
        let proxy = Proxy::start(echo.addr);
        let mut before = connect(&proxy);
        assert_eq!(round_trip(&mut before, b"ping").unwrap(), b"ping");
        proxy.cut();
        assert!(proxy.is_cut());
        assert!(closed(&mut before), "cut left a connection open");
        // New connections are accepted by the kernel, then closed without forwarding anything.
        let mut during = connect(&proxy);
        assert!(
            round_trip(&mut during, b"ping").is_err(),
            "a cut proxy forwarded a new connection"
        );
        wait_until("the refused connection to be counted", || {
            proxy.refused() >= 1
        });
        // The copy threads of the cut connection forget it as they end.
        wait_until("the cut connection to be forgotten", || {
            proxy.connections() == 0
        });
        proxy.heal();
        assert!(!proxy.is_cut());
        let mut after = connect(&proxy);
        assert_eq!(round_trip(&mut after, b"pong").unwrap(), b"pong");
        assert_eq!(proxy.accepted(), 2);
        // And cut again: the healed connection is closed as well.
        proxy.cut();
        assert!(closed(&mut after), "a second cut left a connection open");
    }

    #[test]
    fn a_down_target_closes_the_client_and_drop_stops_everything() {
        let echo = Echo::start();
        let target = echo.addr;
        let proxy = Proxy::start(target);
        let mut open = connect(&proxy);
        assert_eq!(round_trip(&mut open, b"x").unwrap(), b"x");
        drop(echo); // The echo server stops listening (its open worker lives on).
        let mut refused = connect(&proxy);
        assert!(round_trip(&mut refused, b"y").is_err());
        // Drop returns (joins its threads) even with a connection still open.
        let addr = proxy.local_addr();
        let started = Instant::now();
        drop(proxy);
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(closed(&mut open), "drop left a connection open");
        assert!(
            TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(),
            "a dropped proxy still accepts connections"
        );
    }
}
