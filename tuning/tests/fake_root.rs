//! The tuners against a fake /proc and /sys in a temporary directory: what check reports, that
//! a dry run writes nothing, that apply writes exactly what differs; and a read-only check of
//! the real host.

use aurigraph_tuning::{apply, check, Options, State};
use std::collections::BTreeMap;
use std::path::Path;

/// A 4-CPU host with everything left at distribution defaults.
fn fake_host(root: &Path) {
    let files: &[(&str, &str)] = &[
        ("sys/devices/system/cpu/online", "0-3"),
        (
            "sys/devices/system/cpu/cpu0/cpufreq/scaling_governor",
            "performance",
        ),
        (
            "sys/devices/system/cpu/cpu1/cpufreq/scaling_governor",
            "powersave",
        ),
        (
            "sys/devices/system/cpu/cpu2/cpufreq/scaling_governor",
            "powersave",
        ),
        (
            "sys/devices/system/cpu/cpu3/cpufreq/scaling_governor",
            "schedutil",
        ),
        ("sys/devices/system/cpu/cpufreq/boost", "0"),
        (
            "sys/devices/system/clocksource/clocksource0/current_clocksource",
            "hpet",
        ),
        (
            "sys/devices/system/clocksource/clocksource0/available_clocksource",
            "tsc hpet acpi_pm",
        ),
        (
            "sys/kernel/mm/transparent_hugepage/enabled",
            "[always] madvise never",
        ),
        (
            "proc/self/limits",
            "Limit                     Soft Limit           Hard Limit           Units\n\
             Max locked memory         8388608              8388608              bytes",
        ),
        ("proc/sys/vm/swappiness", "60"),
        ("proc/sys/vm/max_map_count", "65530"),
        ("proc/sys/fs/aio-max-nr", "65536"),
        ("proc/sys/net/core/somaxconn", "4096"),
        ("proc/sys/net/ipv4/tcp_max_syn_backlog", "2048"),
        ("proc/sys/net/core/netdev_max_backlog", "1000"),
        ("sys/block/nvme0n1/queue/rotational", "0"),
        (
            "sys/block/nvme0n1/queue/scheduler",
            "[mq-deadline] kyber none",
        ),
        ("sys/block/nvme0n1/queue/nomerges", "0"),
        ("sys/block/sda/queue/rotational", "1"),
        ("sys/block/sda/queue/scheduler", "[mq-deadline] none"),
        ("sys/block/loop0/queue/scheduler", "[none]"),
        ("proc/irq/24/smp_affinity_list", "0-3"),
        ("proc/irq/25/smp_affinity_list", "3"),
        ("proc/irq/default_smp_affinity", "f"),
        ("proc/cmdline", "BOOT_IMAGE=/vmlinuz root=/dev/sda1 ro"),
        (
            "proc/self/mounts",
            "/dev/sda1 / ext4 rw,relatime 0 0\n/dev/nvme0n1p1 /var/lib ext4 rw,relatime,discard 0 0",
        ),
    ];
    for (path, contents) in files {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, format!("{contents}\n")).unwrap();
    }
}

/// Every file under `dir`, with its contents.
fn snapshot(dir: &Path) -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let name = path.strip_prefix(dir).unwrap().display().to_string();
                files.insert(name, std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    files
}

fn options(root: &Path) -> Options {
    Options {
        root: root.to_path_buf(),
        cores: Some(2),
        data_dir: Some("/var/lib/aurigraph".into()),
    }
}

#[test]
fn check_reports_each_item_against_its_recommendation() {
    let dir = tempfile::tempdir().unwrap();
    fake_host(dir.path());
    let report = check(&options(dir.path()));
    assert_eq!(report.executor_cpus, vec![0, 1]);
    let state = |tuner: &str, item: &str| {
        report
            .findings
            .iter()
            .find(|f| f.tuner == tuner && f.item == item)
            .unwrap_or_else(|| panic!("no finding {tuner} {item}: {:#?}", report.findings))
            .state
    };
    assert_eq!(state("cpu_governor", "cpu0-3"), State::Differs);
    assert_eq!(state("cpu_boost", "cpufreq/boost"), State::Differs);
    assert_eq!(state("clocksource", "clocksource0"), State::Differs);
    assert_eq!(state("transparent_hugepages", "enabled"), State::Differs);
    assert_eq!(state("memlock", "RLIMIT_MEMLOCK (soft)"), State::Differs);
    assert_eq!(state("sysctl", "vm.swappiness"), State::Differs);
    assert_eq!(state("sysctl", "net.core.somaxconn"), State::Ok);
    assert_eq!(state("disk_scheduler", "nvme0n1"), State::Differs);
    assert_eq!(state("disk_nomerges", "nvme0n1"), State::Differs);
    // A spinning disk keeps mq-deadline; loop devices are not disks.
    assert_eq!(state("disk_scheduler", "sda"), State::Ok);
    assert!(report.findings.iter().all(|f| f.item != "loop0"));
    // IRQ 24 lands on the executors' cores 0-1: moved to 2-3. IRQ 25 is on CPU 3 already.
    assert_eq!(state("irq_affinity", "irq 24"), State::Differs);
    assert!(report.findings.iter().all(|f| f.item != "irq 25"));
    assert_eq!(state("cpu_isolation", "kernel command line"), State::Advice);
    // The data directory's file system trims online.
    assert_eq!(
        state("mount_discard", "/var/lib/aurigraph (on /var/lib)"),
        State::Differs
    );
    assert!(report.differs());
    // Only the governors that differ are written; every differing item says how to persist.
    let governor = report
        .findings
        .iter()
        .find(|f| f.tuner == "cpu_governor")
        .unwrap();
    assert_eq!(governor.writes.len(), 3);
    assert!(report
        .findings
        .iter()
        .filter(|f| f.state == State::Differs)
        .all(|f| f.persistent.is_some()));
}

#[test]
fn a_dry_run_writes_nothing_and_apply_writes_exactly_what_differs() {
    let dir = tempfile::tempdir().unwrap();
    fake_host(dir.path());
    let before = snapshot(dir.path());
    let report = check(&options(dir.path()));
    let planned = apply(&options(dir.path()), &report, true);
    assert!(!planned.is_empty());
    assert_eq!(snapshot(dir.path()), before, "a dry run changed files");

    let applied = apply(&options(dir.path()), &report, false);
    assert!(applied.iter().all(|a| a.error.is_none()), "{applied:?}");
    let after = snapshot(dir.path());
    let changed: BTreeMap<&String, &String> = after
        .iter()
        .filter(|(path, contents)| before.get(*path) != Some(*contents))
        .collect();
    let expected: BTreeMap<String, String> = [
        (
            "sys/devices/system/cpu/cpu1/cpufreq/scaling_governor",
            "performance",
        ),
        (
            "sys/devices/system/cpu/cpu2/cpufreq/scaling_governor",
            "performance",
        ),
        (
            "sys/devices/system/cpu/cpu3/cpufreq/scaling_governor",
            "performance",
        ),
        ("sys/devices/system/cpu/cpufreq/boost", "1"),
        (
            "sys/devices/system/clocksource/clocksource0/current_clocksource",
            "tsc",
        ),
        ("sys/kernel/mm/transparent_hugepage/enabled", "madvise"),
        ("proc/sys/vm/swappiness", "1"),
        ("proc/sys/vm/max_map_count", "262144"),
        ("proc/sys/fs/aio-max-nr", "1048576"),
        ("proc/sys/net/ipv4/tcp_max_syn_backlog", "4096"),
        ("proc/sys/net/core/netdev_max_backlog", "16384"),
        ("sys/block/nvme0n1/queue/scheduler", "none"),
        ("sys/block/nvme0n1/queue/nomerges", "2"),
        ("proc/irq/24/smp_affinity_list", "2-3"),
    ]
    .into_iter()
    .map(|(p, v)| (p.to_string(), format!("{v}\n")))
    .collect();
    assert_eq!(
        changed
            .into_iter()
            .map(|(p, v)| (p.clone(), v.clone()))
            .collect::<BTreeMap<_, _>>(),
        expected
    );
    // What remains differs only where no runtime change exists (the locked-memory limit).
    let again = check(&options(dir.path()));
    let left: Vec<&str> = again
        .findings
        .iter()
        .filter(|f| f.state == State::Differs)
        .map(|f| f.tuner)
        .collect();
    assert_eq!(left, vec!["memlock", "mount_discard"]);
}

#[test]
fn an_empty_root_is_unknown_not_guessed_and_the_real_host_is_only_read() {
    let dir = tempfile::tempdir().unwrap();
    let report = check(&Options {
        root: dir.path().to_path_buf(),
        cores: None,
        data_dir: Some("/var/lib/aurigraph".into()),
    });
    assert!(!report.differs());
    assert!(report
        .findings
        .iter()
        .all(|f| matches!(f.state, State::Unknown | State::Advice)));
    // The real host: a check reads, never writes, and never panics.
    let real = check(&Options {
        root: "/".into(),
        cores: None,
        data_dir: Some(std::env::temp_dir()),
    });
    assert!(!real.findings.is_empty());
}
