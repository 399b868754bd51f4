//! Connection steering on the server side: the listeners of one address, one per core, form one
//! `SO_REUSEPORT` group, and a classic BPF program attached to the group tells the kernel which
//! of them accepts a new connection: listener `(source port / 2) mod cores`
//! ([`aurigraph_wire::steering::core_of_source_port`]). A client that picks its local port
//! (`aurigraph_wire::steering::source_ports_for`) thus reaches the core that owns its shards;
//! clients that do not spread evenly, as ephemeral ports do.
//!
//! The group's index `i` is the `i`-th socket of the group to call `listen()`, so the node makes
//! all the listeners of an address in core order on one thread ([`listen_steered`]) before the
//! executors start, and each core then serves the socket of its own index.

use super::listen::{checked_addr, listen_socket, set_socket_option};
use super::HttpSettings;
use std::io;
use std::net::SocketAddr;

/// Loads of the packet relative to its network (IP) header: a reuseport program for TCP runs
/// with the packet's data past the TCP header, so offsets from the data would miss the ports.
const NET_OFF: i32 = libc::SKF_NET_OFF;
/// An IPv6 header's fixed size: the TCP header follows it (a connection's SYN carries no
/// extension headers in practice; one that did would be steered by the wrong bytes, no worse).
const IPV6_HEADER_BYTES: i32 = 40;

/// One classic BPF instruction without jumps.
fn stmt(code: u32, k: i32) -> libc::sock_filter {
    jump(code, k, 0, 0)
}

/// One classic BPF instruction; `jt`/`jf`: instructions skipped when the test holds / fails.
fn jump(code: u32, k: i32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        // The kernel reads `k` as a signed offset for loads (NET_OFF is negative).
        k: k as u32,
    }
}

/// The program that picks a connection's listener in a group of `cores` sockets: it returns
/// `(TCP source port >> 1) % cores`, the rule of `core_of_source_port`. An index not below the
/// group's size (while the group is still being made) makes the kernel fall back to its hash.
pub fn steering_program(cores: usize) -> Vec<libc::sock_filter> {
    use libc::{
        BPF_A, BPF_ABS, BPF_ALU, BPF_AND, BPF_B, BPF_H, BPF_IND, BPF_JA, BPF_JEQ, BPF_JMP, BPF_K,
        BPF_LD, BPF_LSH, BPF_MISC, BPF_MOD, BPF_RET, BPF_RSH, BPF_TAX,
    };
    let cores = i32::try_from(cores.max(1)).expect("a core count fits a BPF constant");
    vec![
        // 0-2: the IP version (the first byte's high nibble). The socket's family does not tell
        // it: an IPv6 socket also accepts IPv4 connections (dual stack). Version 6 jumps to 9.
        stmt(BPF_LD | BPF_B | BPF_ABS, NET_OFF),
        stmt(BPF_ALU | BPF_RSH | BPF_K, 4),
        jump(BPF_JMP | BPF_JEQ | BPF_K, 6, 6, 0),
        // 3-6: IPv4 headers carry options: X = their length, 4 * IHL (the low nibble, in words).
        stmt(BPF_LD | BPF_B | BPF_ABS, NET_OFF),
        stmt(BPF_ALU | BPF_AND | BPF_K, 0x0f),
        stmt(BPF_ALU | BPF_LSH | BPF_K, 2),
        stmt(BPF_MISC | BPF_TAX, 0),
        // 7-8: A = the TCP source port, the first 16 bits past the IP header (loads convert
        // from network byte order); then skip the IPv6 load.
        stmt(BPF_LD | BPF_H | BPF_IND, NET_OFF),
        stmt(BPF_JMP | BPF_JA, 1),
        // 9: IPv6: the source port right after the fixed header.
        stmt(BPF_LD | BPF_H | BPF_ABS, NET_OFF + IPV6_HEADER_BYTES),
        // 10-12: halve (ephemeral ports come in one parity), reduce to a core, return it.
        stmt(BPF_ALU | BPF_RSH | BPF_K, 1),
        stmt(BPF_ALU | BPF_MOD | BPF_K, cores),
        stmt(BPF_RET | BPF_A, 0),
    ]
}

/// Attaches [`steering_program`] to the reuseport group of `socket` (a listening socket with
/// `SO_REUSEPORT`; the program then serves the whole group, sockets added later included).
pub fn attach_steering(socket: &socket2::Socket, cores: usize) -> io::Result<()> {
    let mut program = steering_program(cores);
    let fprog = libc::sock_fprog {
        len: program.len() as libc::c_ushort,
        filter: program.as_mut_ptr(),
    };
    // The kernel copies the instructions: they need only outlive the call.
    set_socket_option(socket, libc::SO_ATTACH_REUSEPORT_CBPF, &fprog)
}

/// The node's `cores` listening sockets of `settings.addr`, index = core, steered by source
/// port. The address is checked once for the node first, as [`super::bind`] does (taken: an
/// error; port 0: resolved, see [`HttpSettings::bound_addr`]). Made in core order on the calling
/// thread, which gives each socket its index in the group. Errors are the operating system's.
pub fn listen_steered(settings: &HttpSettings, cores: usize) -> io::Result<Vec<socket2::Socket>> {
    listen_group(checked_addr(settings)?, cores)
}

/// `cores` listeners of `addr` in one reuseport group, in group order, the program attached.
fn listen_group(addr: SocketAddr, cores: usize) -> io::Result<Vec<socket2::Socket>> {
    let mut sockets = Vec::with_capacity(cores);
    for core in 0..cores {
        // listen() (inside listen_socket) is what adds a TCP socket to the group.
        let socket = listen_socket(addr)?;
        if core == 0 {
            // Attached once the group exists (the first listen made it), before the others
            // join: a connection that arrives meanwhile falls back to the hash.
            steer_or_warn(&socket, addr, cores);
        }
        sockets.push(socket);
    }
    tracing::debug!(%addr, cores, "listeners bound, steered by source port");
    Ok(sockets)
}

/// Attaches the program; a kernel that refuses it leaves the kernel's hash in force (steering
/// is an optimisation: every core serves every shard), with a warning.
fn steer_or_warn(socket: &socket2::Socket, addr: SocketAddr, cores: usize) {
    if let Err(error) = attach_steering(socket, cores) {
        tracing::warn!(%addr, %error, "connection steering unavailable: the kernel spreads connections by hash");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aurigraph_wire::steering::source_ports_for;
    use std::net::TcpListener;
    use std::time::Duration;

    /// `cores` steered listeners on `addr` (port 0), non-blocking; their address.
    fn listeners(addr: &str, cores: usize) -> (Vec<TcpListener>, SocketAddr) {
        let settings = HttpSettings::new(addr.parse().unwrap());
        let listeners: Vec<TcpListener> = listen_steered(&settings, cores)
            .unwrap()
            .into_iter()
            .map(TcpListener::from)
            .collect();
        for l in &listeners {
            l.set_nonblocking(true).unwrap();
        }
        let bound = settings.bound_addr().unwrap();
        assert_ne!(bound.port(), 0, "port 0 resolved");
        assert_eq!(listeners[cores - 1].local_addr().unwrap(), bound);
        (listeners, bound)
    }

    /// A connection to `server` from the next free port of `ports`; that port.
    fn connect_from(
        server: SocketAddr,
        ports: &mut impl Iterator<Item = u16>,
    ) -> (socket2::Socket, u16) {
        use socket2::{Domain, Socket, Type};
        for port in ports.by_ref() {
            let client = Socket::new(Domain::for_address(server), Type::STREAM, None).unwrap();
            let local = SocketAddr::new(server.ip(), port);
            // A port in use (or lingering from an earlier run): take the next one.
            if client.bind(&local.into()).is_ok() && client.connect(&server.into()).is_ok() {
                return (client, port);
            }
        }
        panic!("no free source port");
    }

    /// The index of the listener that accepts the connection from `port` (polls them all).
    fn accepted_by(listeners: &[TcpListener], port: u16) -> usize {
        for _ in 0..400 {
            for (index, listener) in listeners.iter().enumerate() {
                match listener.accept() {
                    Ok((_, peer)) if peer.port() == port => return index,
                    Ok((_, peer)) => panic!("unexpected connection from {peer}"),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => panic!("accept: {e}"),
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("no listener accepted the connection from port {port}");
    }

    /// A start port away from the ephemeral range (32768-60999 by default) and from other runs.
    fn start_port(salt: u16) -> u16 {
        let pid = std::process::id() as u16;
        20_000 + (pid.wrapping_mul(97).wrapping_add(salt.wrapping_mul(1_009))) % 10_000
    }

    /// Connects 8 times to each core of `cores` steered listeners on `addr` (at `client_ip`)
    /// from that core's ports; every connection must land on its core (by the hash alone:
    /// about 1 in `cores`).
    fn every_connection_lands_on_its_core(addr: &str, client_ip: &str, cores: usize) {
        let (listeners, bound) = listeners(addr, cores);
        let server = SocketAddr::new(client_ip.parse().unwrap(), bound.port());
        for core in 0..cores {
            let mut ports = source_ports_for(core, cores, start_port(core as u16 + cores as u16));
            for _ in 0..8 {
                let (client, port) = connect_from(server, &mut ports);
                assert_eq!(
                    accepted_by(&listeners, port),
                    core,
                    "port {port} of {cores} cores"
                );
                drop(client);
            }
        }
    }

    #[test]
    fn steered_listeners_accept_on_the_core_of_the_source_port_ipv4() {
        every_connection_lands_on_its_core("127.0.0.1:0", "127.0.0.1", 2);
        every_connection_lands_on_its_core("127.0.0.1:0", "127.0.0.1", 3);
    }

    #[test]
    fn steered_listeners_accept_on_the_core_of_the_source_port_ipv6() {
        if TcpListener::bind("[::1]:0").is_err() {
            eprintln!("skipped: no IPv6 loopback on this host");
            return;
        }
        every_connection_lands_on_its_core("[::1]:0", "::1", 2);
        // Dual stack: IPv4 connections to an IPv6 wildcard listener (the program reads the
        // version from the packet, not the socket), where the host allows it.
        let dual = TcpListener::bind("[::]:0").and_then(|l| {
            std::net::TcpStream::connect(("127.0.0.1", l.local_addr()?.port())).map(drop)
        });
        if dual.is_ok() {
            every_connection_lands_on_its_core("[::]:0", "127.0.0.1", 3);
        }
    }

    #[test]
    fn a_taken_address_is_refused_before_any_listener() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let settings = HttpSettings::new(taken.local_addr().unwrap());
        let error = listen_steered(&settings, 2).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::AddrInUse);
    }

    #[test]
    fn the_program_returns_the_accumulator_and_reduces_by_the_core_count() {
        let program = steering_program(5);
        assert_eq!(program.len(), 13);
        let last = program[program.len() - 1];
        assert_eq!(u32::from(last.code), libc::BPF_RET | libc::BPF_A);
        let modulo = program[program.len() - 2];
        assert_eq!(u32::from(modulo.code), 0x94, "BPF_ALU | BPF_MOD | BPF_K");
        assert_eq!(modulo.k, 5);
    }
}
