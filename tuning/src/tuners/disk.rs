//! Block devices: the I/O scheduler and request merging.

use super::memory::selected;
use super::Host;
use crate::Finding;

/// Devices that are not disks: loop devices, RAM disks, compressed swap.
fn is_disk(name: &str) -> bool {
    !["loop", "ram", "zram"].iter().any(|p| name.starts_with(p))
}

pub(super) fn all(host: &Host<'_>) -> Vec<Finding> {
    let mut findings = Vec::new();
    for device in host
        .root
        .list("sys/block")
        .into_iter()
        .filter(|d| is_disk(d))
    {
        let queue = format!("sys/block/{device}/queue");
        let rotational = host.root.read(&format!("{queue}/rotational")).ok();
        let solid_state = rotational.as_deref() == Some("0");
        let scheduler_path = format!("{queue}/scheduler");
        if let Ok(value) = host.root.read(&scheduler_path) {
            let offered: Vec<String> = value
                .split_whitespace()
                .map(|w| w.trim_matches(|c| c == '[' || c == ']').to_string())
                .collect();
            let wanted = if solid_state { "none" } else { "mq-deadline" };
            if offered.iter().any(|o| o == wanted) {
                findings.push(
                    Finding::compare(
                        "disk_scheduler",
                        device.clone(),
                        Some(selected(&value)),
                        wanted,
                        "the WAL writes one large group commit at a time and waits for its \
                         fdatasync: on a solid-state disk a scheduler only adds latency; on a \
                         spinning one mq-deadline bounds it",
                        |v| v == wanted,
                    )
                    .writing(scheduler_path, wanted)
                    .lasting(format!(
                        "udev rule (/etc/udev/rules.d/60-aurigraph.rules): \
                         ACTION==\"add|change\", KERNEL==\"{device}\", \
                         ATTR{{queue/scheduler}}=\"{wanted}\""
                    )),
                );
            }
        }
        let nomerges_path = format!("{queue}/nomerges");
        if solid_state {
            if let Ok(value) = host.root.read(&nomerges_path) {
                findings.push(
                    Finding::compare(
                        "disk_nomerges",
                        device.clone(),
                        Some(value),
                        "2",
                        "group commits are already one contiguous write: looking for requests \
                         to merge them with is wasted work per I/O",
                        |v| v == "2",
                    )
                    .writing(nomerges_path, "2")
                    .lasting(format!(
                        "udev rule: ACTION==\"add|change\", KERNEL==\"{device}\", \
                         ATTR{{queue/nomerges}}=\"2\""
                    )),
                );
            }
        }
    }
    findings
}
