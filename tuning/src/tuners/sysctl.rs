//! Kernel parameters with a bound the node needs.

use super::Host;
use crate::Finding;

/// One sysctl and its bound.
struct Sysctl {
    name: &'static str,
    /// At least this (`false`: at most).
    at_least: bool,
    bound: u64,
    why: &'static str,
}

const SYSCTLS: &[Sysctl] = &[
    Sysctl {
        name: "vm.swappiness",
        at_least: false,
        bound: 1,
        why: "a swapped-out page of the ledger or of the raft log stalls a core for a disk read",
    },
    Sysctl {
        name: "vm.max_map_count",
        at_least: true,
        bound: 262_144,
        why: "the default (65530) bounds the memory regions a process maps; allocators and \
              io_uring buffers on many cores use many (ScyllaDB and Redpanda raise it alike)",
    },
    Sysctl {
        name: "fs.aio-max-nr",
        at_least: true,
        bound: 1_048_576,
        why: "the system-wide bound on asynchronous I/O requests; the default is reached by a \
              few I/O-heavy services on one host (Seastar-based ones ask for this value)",
    },
    Sysctl {
        name: "net.core.somaxconn",
        at_least: true,
        bound: 4096,
        why: "each core's listener takes bursts of new client connections",
    },
    Sysctl {
        name: "net.ipv4.tcp_max_syn_backlog",
        at_least: true,
        bound: 4096,
        why: "connection bursts are not dropped while the cores are busy",
    },
    Sysctl {
        name: "net.core.netdev_max_backlog",
        at_least: true,
        bound: 16_384,
        why: "packets queued per CPU before the network stack drops them under load",
    },
];

pub(super) fn all(host: &Host<'_>) -> Vec<Finding> {
    SYSCTLS
        .iter()
        .map(|s| {
            let path = format!("proc/sys/{}", s.name.replace('.', "/"));
            let current = host.root.read(&path).ok();
            let (recommended, ok): (String, Box<dyn Fn(u64) -> bool>) = if s.at_least {
                (format!(">= {}", s.bound), Box::new(move |v| v >= s.bound))
            } else {
                (format!("<= {}", s.bound), Box::new(move |v| v <= s.bound))
            };
            Finding::compare("sysctl", s.name, current, recommended, s.why, |v| {
                v.parse::<u64>().is_ok_and(&ok)
            })
            .writing(path, s.bound.to_string())
            .lasting(format!(
                "/etc/sysctl.d/60-aurigraph.conf: {} = {}",
                s.name, s.bound
            ))
        })
        .collect()
}
