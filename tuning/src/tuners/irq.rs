//! Interrupts away from the executors' cores.

use super::Host;
use crate::{format_cpu_list, parse_cpu_list, Finding, State};

/// Each IRQ whose affinity includes an executor's core, moved to the cores the executors
/// leave free. When the node runs on every CPU there is nowhere to move them: advice instead.
pub(super) fn affinity(host: &Host<'_>) -> Vec<Finding> {
    let why = "an interrupt handled on an executor's core preempts the shard running there, \
               in the middle of its turn";
    let free: Vec<usize> = host
        .online
        .iter()
        .copied()
        .filter(|c| !host.executor_cpus.contains(c))
        .collect();
    let irqs: Vec<(String, Vec<usize>)> = host
        .root
        .list("proc/irq")
        .into_iter()
        .filter(|n| n.chars().all(|c| c.is_ascii_digit()))
        .filter_map(|irq| {
            let text = host
                .root
                .read(&format!("proc/irq/{irq}/smp_affinity_list"))
                .ok()?;
            Some((irq, parse_cpu_list(&text).ok()?))
        })
        .filter(|(_, cpus)| cpus.iter().any(|c| host.executor_cpus.contains(c)))
        .collect();
    if irqs.is_empty() {
        return Vec::new();
    }
    if free.is_empty() {
        let mut finding = Finding::compare(
            "irq_affinity",
            format!("{} IRQs", irqs.len()),
            Some(format!(
                "the node's executors use every CPU ({})",
                format_cpu_list(host.executor_cpus)
            )),
            "one CPU or more left to interrupts",
            why,
            |_| false,
        );
        finding.state = State::Advice;
        return vec![finding.lasting(
            "run the node with --cores N-1 (and CPUAffinity= in its unit), then apply again; \
             stop irqbalance or give it IRQBALANCE_BANNED_CPULIST",
        )];
    }
    let target = format_cpu_list(&free);
    irqs.into_iter()
        .map(|(irq, cpus)| {
            Finding::compare(
                "irq_affinity",
                format!("irq {irq}"),
                Some(format_cpu_list(&cpus)),
                target.clone(),
                why,
                |_| false,
            )
            .writing(format!("proc/irq/{irq}/smp_affinity_list"), target.clone())
            .lasting(format!(
                "irqbalance with IRQBALANCE_BANNED_CPULIST={} (or a boot-time script writing \
                 smp_affinity_list)",
                format_cpu_list(host.executor_cpus)
            ))
        })
        .collect()
}
