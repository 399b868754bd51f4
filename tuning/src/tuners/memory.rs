//! Transparent huge pages and the locked-memory limit.

use super::Host;
use crate::Finding;

const THP: &str = "sys/kernel/mm/transparent_hugepage/enabled";

/// `madvise`: with `always`, every fresh 2 MiB of the heap is a huge page the kernel clears at
/// the first touch, on the core that touched it (profiles of a cold node show it), and
/// khugepaged compacts behind the node's back.
pub(super) fn transparent_hugepages(host: &Host<'_>) -> Finding {
    let current = host.root.read(THP).ok().map(|v| selected(&v));
    Finding::compare(
        "transparent_hugepages",
        "enabled",
        current,
        "madvise",
        "with `always` the kernel clears a 2 MiB page at the first touch of fresh heap, on the \
         core that touched it, and compacts memory in the background; `madvise` leaves huge \
         pages to the code that asks",
        |v| v == "madvise" || v == "never",
    )
    .writing(THP, "madvise")
    .lasting("kernel command line: transparent_hugepage=madvise")
}

/// The bracketed choice of a sysfs selector (`always [madvise] never` → `madvise`).
pub(super) fn selected(value: &str) -> String {
    value
        .split_whitespace()
        .find_map(|w| w.strip_prefix('[').and_then(|w| w.strip_suffix(']')))
        .unwrap_or(value)
        .to_string()
}

/// Locked memory each executor registers with io_uring for its I/O buffers (the engine's
/// `io_memory_bytes`).
const IO_MEMORY_BYTES_PER_EXECUTOR: u64 = 1 << 20;
/// Room for io_uring's own rings (charged to the same limit on kernels before 5.12) and for
/// anything else in the process that locks memory.
const MEMLOCK_MARGIN_BYTES: u64 = 64 << 20;

/// RLIMIT_MEMLOCK, as this process has it (the node started the same way inherits it).
pub(super) fn memlock(host: &Host<'_>) -> Finding {
    let limits = host.root.read("proc/self/limits").ok();
    let current = limits.as_deref().and_then(|text| {
        text.lines()
            .find(|l| l.starts_with("Max locked memory"))
            .and_then(|l| l.split_whitespace().nth(3))
            .map(str::to_string)
    });
    let needed =
        host.executor_cpus.len() as u64 * IO_MEMORY_BYTES_PER_EXECUTOR + MEMLOCK_MARGIN_BYTES;
    Finding::compare(
        "memlock",
        "RLIMIT_MEMLOCK (soft)",
        current,
        format!("unlimited, or at least {needed} bytes"),
        "each executor locks 1 MiB of I/O buffers registered with io_uring, and older kernels \
         charge the rings themselves to the same limit: every executor must fit",
        |v| v == "unlimited" || v.parse::<u64>().is_ok_and(|b| b >= needed),
    )
    .lasting(
        "systemd: LimitMEMLOCK=infinity in the node's unit; or \
         /etc/security/limits.d/aurigraph.conf: aurigraph - memlock unlimited",
    )
}
