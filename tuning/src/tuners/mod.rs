//! The tuners, one module per part of the host.

mod cpu;
mod disk;
mod irq;
mod memory;
pub(crate) mod mount;
mod sysctl;

use crate::{Finding, Root};

/// What every tuner looks at.
pub(crate) struct Host<'a> {
    pub root: &'a Root,
    /// Online CPUs (`sys/devices/system/cpu/online`; empty when unreadable).
    pub online: &'a [usize],
    /// CPUs the node's executors run on.
    pub executor_cpus: &'a [usize],
    /// The node's data directory, as the host names it (`None`: not known).
    pub data_dir: Option<&'a std::path::Path>,
}

/// Every tuner's findings, in a fixed order.
pub(crate) fn all(host: &Host<'_>) -> Vec<Finding> {
    let mut findings = Vec::new();
    findings.extend(cpu::governor(host));
    findings.extend(cpu::boost(host));
    findings.push(cpu::clocksource(host));
    findings.push(memory::transparent_hugepages(host));
    findings.push(memory::memlock(host));
    findings.extend(sysctl::all(host));
    findings.extend(disk::all(host));
    findings.extend(mount::discard(host));
    findings.extend(irq::affinity(host));
    findings.push(cpu::isolation(host));
    findings
}
