//! CPU frequency, boost, the clock source, and core isolation.

use super::Host;
use crate::{format_cpu_list, Finding, State};

const CPU_DIR: &str = "sys/devices/system/cpu";

/// Every CPU at full speed: a governor that ramps up on load adds latency to the first
/// microseconds of every burst, and a shard's turn is a burst.
pub(super) fn governor(host: &Host<'_>) -> Option<Finding> {
    let cpus: Vec<usize> = host
        .online
        .iter()
        .copied()
        .filter(|cpu| host.root.exists(&governor_path(*cpu)))
        .collect();
    if cpus.is_empty() {
        return Some(Finding::compare(
            "cpu_governor",
            "all CPUs",
            None,
            "performance",
            "no cpufreq governor here (a VM, or no frequency driver): nothing to tune",
            |_| true,
        ));
    }
    let governors: Vec<String> = cpus
        .iter()
        .map(|cpu| host.root.read(&governor_path(*cpu)).unwrap_or_default())
        .collect();
    let mut distinct = governors.clone();
    distinct.sort();
    distinct.dedup();
    let mut finding = Finding::compare(
        "cpu_governor",
        format!("cpu{}", format_cpu_list(&cpus)),
        Some(distinct.join(",")),
        "performance",
        "the executors' cores at full speed: a governor that ramps up on load delays the \
         start of every burst of work",
        |_| governors.iter().all(|g| g == "performance"),
    );
    for (cpu, governor) in cpus.iter().zip(&governors) {
        if governor != "performance" {
            finding = finding.writing(governor_path(*cpu), "performance");
        }
    }
    Some(finding.lasting(
        "cpupower frequency-set -g performance (at boot, e.g. from a systemd unit), or \
         tuned-adm profile latency-performance",
    ))
}

fn governor_path(cpu: usize) -> String {
    format!("{CPU_DIR}/cpu{cpu}/cpufreq/scaling_governor")
}

/// Boost (turbo) on: the executors are CPU-bound and get the higher clock.
pub(super) fn boost(host: &Host<'_>) -> Option<Finding> {
    let why = "executors are CPU-bound (signature verification, apply): boost clocks shorten \
               every turn";
    if let Ok(value) = host.root.read("sys/devices/system/cpu/cpufreq/boost") {
        let path = format!("{CPU_DIR}/cpufreq/boost");
        let finding = Finding::compare("cpu_boost", "cpufreq/boost", Some(value), "1", why, |v| {
            v == "1"
        });
        return Some(finding.writing(path, "1").lasting(
            "/etc/tmpfiles.d/aurigraph.conf: w /sys/devices/system/cpu/cpufreq/boost - - - - 1",
        ));
    }
    if let Ok(value) = host
        .root
        .read("sys/devices/system/cpu/intel_pstate/no_turbo")
    {
        let path = format!("{CPU_DIR}/intel_pstate/no_turbo");
        let finding = Finding::compare(
            "cpu_boost",
            "intel_pstate/no_turbo",
            Some(value),
            "0",
            why,
            |v| v == "0",
        );
        return Some(finding.writing(path, "0").lasting(
            "/etc/tmpfiles.d/aurigraph.conf: \
             w /sys/devices/system/cpu/intel_pstate/no_turbo - - - - 0",
        ));
    }
    None
}

/// The TSC: the node reads the clock on every stage of every batch (vDSO, no system call with
/// the TSC; a system call with the HPET or ACPI PM timer).
pub(super) fn clocksource(host: &Host<'_>) -> Finding {
    let dir = "sys/devices/system/clocksource/clocksource0";
    let current = host.root.read(&format!("{dir}/current_clocksource")).ok();
    let available = host
        .root
        .read(&format!("{dir}/available_clocksource"))
        .unwrap_or_default();
    let tsc = available.split_whitespace().any(|c| c == "tsc");
    let why = "the node reads the clock at every stage of every batch: with the TSC that is a \
               vDSO read, with other clock sources a system call";
    if !tsc {
        let mut finding =
            Finding::compare("clocksource", "clocksource0", current, "tsc", why, |_| true);
        if finding.state == State::Ok {
            finding.state = State::Advice;
            finding.recommended = "tsc (not offered by this host)".into();
        }
        return finding;
    }
    Finding::compare("clocksource", "clocksource0", current, "tsc", why, |c| {
        c == "tsc"
    })
    .writing(format!("{dir}/current_clocksource"), "tsc")
    .lasting("kernel command line: clocksource=tsc tsc=reliable")
}

/// Dedicated hosts: keep the kernel's own work off the executors' cores.
pub(super) fn isolation(host: &Host<'_>) -> Finding {
    let cmdline = host.root.read("proc/cmdline").ok();
    let executors = format_cpu_list(host.executor_cpus);
    let isolated = cmdline
        .as_deref()
        .is_some_and(|c| c.contains("isolcpus=") && c.contains("nohz_full="));
    let mut finding = Finding::compare(
        "cpu_isolation",
        "kernel command line",
        cmdline.map(|c| {
            c.split_whitespace()
                .filter(|p| p.starts_with("isolcpus=") || p.starts_with("nohz_full="))
                .collect::<Vec<_>>()
                .join(" ")
        }),
        format!("isolcpus={executors} nohz_full={executors} (dedicated hosts)"),
        "on a host that runs only the node, the scheduler's and the timer tick's work stays off \
         the executors' cores; needs a spare core for everything else",
        |_| isolated,
    );
    if finding.current.is_empty() {
        finding.current = "(none)".into();
    }
    if finding.state == State::Differs {
        finding.state = State::Advice;
    }
    finding.lasting(format!(
        "kernel command line: isolcpus={executors} nohz_full={executors} rcu_nocbs={executors}"
    ))
}
