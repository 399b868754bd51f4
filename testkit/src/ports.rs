//! Loopback ports for the validators of a test cluster: consecutive, free when picked, never
//! handed out twice in one process.

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::Mutex;

/// Node ports already handed out in this process: never handed out twice, so no two nodes
/// (of one cluster or of two) share one, and a killed node's ports stay its own.
static PORTS: Mutex<Option<(HashSet<u16>, u16)>> = Mutex::new(None);

/// Picks `count` consecutive ports (returns the first): free when picked, never picked
/// before in this process, and below the kernel's ephemeral range when it leaves room, so that
/// the outgoing connections of the proxies and nodes cannot take a killed node's port before
/// it restarts.
pub fn pick_ports(count: u32) -> u16 {
    let count = count.max(1) as u16;
    let (low, high) = aurigraph_client::launcher::node_port_range();
    let mut guard = PORTS.lock().unwrap_or_else(|e| e.into_inner());
    let (taken, cursor) = guard.get_or_insert_with(|| {
        // Start at a per-process offset so that concurrent test processes rarely meet.
        let seed = u64::from(std::process::id()) * 7919
            + std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| u64::from(d.subsec_nanos()));
        (HashSet::new(), low + (seed % u64::from(high - low)) as u16)
    });
    for _ in 0..(high - low) {
        let first = *cursor;
        if u32::from(first) + u32::from(count) > u32::from(high) {
            *cursor = low;
            continue;
        }
        *cursor = first + count;
        let range = first..first + count;
        if range.clone().any(|p| taken.contains(&p)) {
            continue;
        }
        if range
            .clone()
            .all(|p| TcpListener::bind(("127.0.0.1", p)).is_ok())
        {
            taken.extend(range);
            return first;
        }
    }
    panic!("no free loopback ports in {low}..{high}");
}
