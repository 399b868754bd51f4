//! Loopback ports for the validators of a test cluster: consecutive, free when picked, never
//! handed out twice in one process.

use std::collections::HashSet;
use std::sync::Mutex;

use aurigraph_client::launcher::PortCursor;

/// Node ports already handed out in this process: never handed out twice, so no two nodes
/// (of one cluster or of two) share one, and a killed node's ports stay its own.
static PORTS: Mutex<Option<(HashSet<u16>, PortCursor)>> = Mutex::new(None);

/// Picks `count` consecutive ports (returns the first): free when picked, never picked
/// before in this process, and below the kernel's ephemeral range when it leaves room, so that
/// the outgoing connections of the proxies and nodes cannot take a killed node's port before
/// it restarts.
pub fn pick_ports(count: u32) -> u16 {
    let count = count.max(1) as usize;
    let mut guard = PORTS.lock().unwrap_or_else(|e| e.into_inner());
    let (taken, cursor) = guard.get_or_insert_with(|| (HashSet::new(), PortCursor::new()));
    // Free when picked; the node binds them itself.
    let (first, _listeners) = cursor
        .bind_next(count, |port| !taken.contains(&port))
        .unwrap_or_else(|e| panic!("{e}"));
    taken.extend(first..first + count as u16);
    first
}
