//! Listening sockets: the node's address checked once, a listening socket of it (one per
//! core, `SO_REUSEPORT`), and one core's glommio listener. The steered group of every core's
//! sockets is made in `steering`.

use super::HttpSettings;
use glommio::net::TcpListener;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd};
use std::time::{Duration, Instant};

/// How long a starting node waits for its address while something listens on it: a node
/// killed a moment ago can leave its listeners open briefly after its process is gone (the
/// kernel tears down its io_uring instances, whose pending accepts hold the listeners,
/// asynchronously); a node restarted at once would otherwise find its own port taken.
const ADDR_IN_USE_WAIT: Duration = Duration::from_secs(5);
const ADDR_IN_USE_RETRY: Duration = Duration::from_millis(20);

/// Checks that `addr` can be listened on and resolves port 0 to a concrete free port. Binds
/// without `SO_REUSEPORT`, so it fails while anything listens on the port, another node that
/// uses `SO_REUSEPORT` included (which the cores' own `SO_REUSEPORT` binds would silently share).
/// A port in use is tried again for up to [`ADDR_IN_USE_WAIT`].
fn check_addr(addr: SocketAddr) -> io::Result<SocketAddr> {
    let deadline = Instant::now() + ADDR_IN_USE_WAIT;
    let mut logged = false;
    loop {
        match std::net::TcpListener::bind(addr) {
            Ok(listener) => return listener.local_addr(),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                if !logged {
                    let wait_s = ADDR_IN_USE_WAIT.as_secs();
                    tracing::info!(%addr, wait_s, "address in use: waiting for it");
                    logged = true;
                }
                std::thread::sleep(ADDR_IN_USE_RETRY);
            }
            Err(e) => return Err(e),
        }
    }
}

/// Binds this core's listener on `settings.addr` (`SO_REUSEPORT`: every core of the node binds
/// the same address and the kernel spreads connections over them). The first core of a node
/// checks the address for the whole node first (see `check_addr`); the others wait for that
/// check and bind the address it resolved. Must run inside a glommio executor. Errors are the
/// operating system's (e.g. `Address already in use`), without the address.
pub fn bind(settings: &HttpSettings) -> io::Result<TcpListener> {
    let addr = checked_addr(settings)?;
    let socket = listen_socket(addr)?;
    // SAFETY: the descriptor is a bound, listening TCP socket that we own; its ownership moves
    // into the listener, which closes it on drop.
    let listener = unsafe { TcpListener::from_raw_fd(socket.into_raw_fd()) };
    tracing::debug!(%addr, "HTTP listener bound");
    Ok(listener)
}

/// The address every listener of `settings` binds: checked (see `check_addr`) by the first
/// caller for the whole node, the same outcome (port 0 resolved, or the error) for the others.
pub(crate) fn checked_addr(settings: &HttpSettings) -> io::Result<SocketAddr> {
    let checked = settings
        .checked_addr
        .get_or_init(|| check_addr(settings.addr).map_err(|e| (e.kind(), e.to_string())));
    match checked {
        Ok(addr) => Ok(*addr),
        Err((kind, message)) => Err(io::Error::new(*kind, message.clone())),
    }
}

/// Pending connections the kernel queues per core (capped by `net.core.somaxconn`).
const LISTEN_BACKLOG: i32 = 4096;

/// A listening socket with `SO_REUSEPORT` (share the port across cores) and `SO_REUSEADDR`
/// (rebind while connections of a previous run linger in TIME_WAIT). Close-on-exec, blocking
/// (glommio accepts through io_uring or a non-blocking attempt of its own).
pub(crate) fn listen_socket(addr: SocketAddr) -> io::Result<socket2::Socket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    set_socket_option(&socket, libc::SO_REUSEPORT, &(1 as libc::c_int))?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket)
}

/// `setsockopt(SOL_SOCKET, name, value)` on `socket`.
pub(crate) fn set_socket_option<T>(
    socket: &socket2::Socket,
    name: libc::c_int,
    value: &T,
) -> io::Result<()> {
    // SAFETY: a valid socket descriptor, and a pointer to a `T` with its size, alive for the
    // call.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            name,
            value as *const T as *const libc::c_void,
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
