//! Host tuners: the counterpart of Redpanda's `rpk redpanda tune` and Seastar's `perftune.py`
//! for a thread-per-core, io_uring, fdatasync-bound node.
//!
//! Every tuner reads (and, when applied, writes) through a [`Root`]: `/` on a real host, a
//! temporary tree of the same shape in tests. A check reports, per item, the current value, the
//! recommended one and why ([`Finding`]); applying writes only what can change at runtime and
//! what differs, and every finding that differs carries the persistent form (a sysctl.d line,
//! a udev rule, a kernel command-line parameter, a systemd setting) for the operator to install.
//!
//! Nothing here guesses: a value that cannot be read is `Unknown` (a VM without cpufreq, a
//! container without /sys), never assumed.

mod cpus;
mod finding;
mod root;
mod tuners;

pub use cpus::{format_cpu_list, parse_cpu_list};
pub use finding::{Finding, State, Write};
pub use root::Root;

use std::path::PathBuf;

/// Exit status of `aurigraph tune check` when some item differs from its recommendation.
pub const EXIT_DIFFERS: i32 = 3;
/// Exit status of `aurigraph tune apply` when a write failed (permissions, a read-only file).
pub const EXIT_WRITE_FAILED: i32 = 4;

/// What the node will run with on this host.
#[derive(Clone, Debug)]
pub struct Options {
    /// `/` on a real host.
    pub root: PathBuf,
    /// Executor cores the node runs (`aurigraph node --cores`): it pins executor i to CPU i.
    /// `None`: every online CPU, the node's default.
    pub cores: Option<usize>,
    /// The node's data directory, as an absolute path on the host (its file system's mount
    /// options are read from the root's `proc/self/mounts`); `None`: not checked.
    pub data_dir: Option<PathBuf>,
}

/// Every finding of every tuner, in a fixed order.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Report {
    /// CPUs the node's executors run on.
    pub executor_cpus: Vec<usize>,
    pub findings: Vec<Finding>,
}

impl Report {
    /// Whether some item differs from its recommendation (advice and unknowns do not count).
    pub fn differs(&self) -> bool {
        self.findings.iter().any(|f| f.state == State::Differs)
    }
}

/// Runs every tuner's check. Reads only.
pub fn check(options: &Options) -> Report {
    let root = Root::new(&options.root);
    let online = root
        .read("sys/devices/system/cpu/online")
        .ok()
        .and_then(|s| parse_cpu_list(&s).ok())
        .unwrap_or_default();
    let executor_cpus: Vec<usize> = match options.cores {
        Some(n) => (0..n).collect(),
        None => online.clone(),
    };
    let host = tuners::Host {
        root: &root,
        online: &online,
        executor_cpus: &executor_cpus,
        data_dir: options.data_dir.as_deref(),
    };
    Report {
        findings: tuners::all(&host),
        executor_cpus,
    }
}

/// The mount point of `path`'s file system when it is mounted with online `discard` (the
/// `mount_discard` finding), read from the host's `/proc/self/mounts`: a node warns of it at
/// start. `None` when it is not, or cannot be read.
pub fn online_discard_mount(path: &std::path::Path) -> Option<String> {
    tuners::mount::online_discard_mount(&Root::new(std::path::Path::new("/")), &host_path(path))
}

/// `path` as the host's mount table names it: absolute, and with symbolic links resolved
/// where it exists (a data directory linked onto another disk is on that disk's mount).
pub fn host_path(path: &std::path::Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    std::fs::canonicalize(&absolute).unwrap_or(absolute)
}

/// What applying a report did (or, in a dry run, would do).
#[derive(Clone, Debug)]
pub struct Applied {
    pub write: Write,
    /// `None`: written (or would be, in a dry run); `Some`: the error.
    pub error: Option<String>,
}

/// Writes the runtime fixes of the findings that differ; in a dry run, writes nothing and
/// returns what it would write.
pub fn apply(options: &Options, report: &Report, dry_run: bool) -> Vec<Applied> {
    let root = Root::new(&options.root);
    report
        .findings
        .iter()
        .filter(|f| f.state == State::Differs)
        .flat_map(|f| f.writes.iter().cloned())
        .map(|write| {
            let error = if dry_run {
                None
            } else {
                root.write(&write.path, &write.value)
                    .err()
                    .map(|e| e.to_string())
            };
            Applied { write, error }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_path_is_absolute_with_links_resolved() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("disk");
        std::fs::create_dir(&target).unwrap();
        let link = dir.path().join("data");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let real = std::fs::canonicalize(&target).unwrap();
        assert_eq!(host_path(&link), real);
        // Not there yet: absolute, as given.
        assert_eq!(host_path(&link.join("new")), link.join("new"));
        let relative = host_path(std::path::Path::new("some-dir"));
        assert!(relative.is_absolute() && relative.ends_with("some-dir"));
    }
}
