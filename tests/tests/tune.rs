//! `aurigraph tune` as an operator runs it: against a fake /proc and /sys (`--root`), its exit
//! statuses, a dry run that writes nothing, `--yes` that writes, and a write that fails.

use aurigraph_testkit::aurigraph_bin;
use std::path::Path;
use std::process::Output;

fn tune(args: &[&str]) -> Output {
    std::process::Command::new(aurigraph_bin())
        .arg("tune")
        .args(args)
        .output()
        .expect("aurigraph runs")
}

fn put(root: &Path, path: &str, contents: &str) {
    let path = root.join(path);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, format!("{contents}\n")).unwrap();
}

fn read(root: &Path, path: &str) -> String {
    std::fs::read_to_string(root.join(path)).unwrap()
}

#[test]
fn check_exits_3_on_a_difference_apply_is_a_dry_run_until_yes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let r = root.to_str().unwrap();
    put(root, "sys/devices/system/cpu/online", "0-1");
    put(root, "proc/sys/vm/swappiness", "60");
    put(
        root,
        "sys/kernel/mm/transparent_hugepage/enabled",
        "always [madvise] never",
    );

    let check = tune(&["check", "--root", r, "--cores", "1"]);
    let stdout = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(3), "{stdout}");
    assert!(
        stdout.contains("DIFFERS") && stdout.contains("vm.swappiness"),
        "{stdout}"
    );
    assert!(stdout.contains("why:"), "{stdout}");

    let dry = tune(&["apply", "--root", r]);
    let stdout = String::from_utf8_lossy(&dry.stdout);
    assert_eq!(dry.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("would write \"1\""), "{stdout}");
    assert!(
        stdout.contains("/etc/sysctl.d/60-aurigraph.conf: vm.swappiness = 1"),
        "{stdout}"
    );
    assert_eq!(
        read(root, "proc/sys/vm/swappiness"),
        "60\n",
        "a dry run wrote"
    );

    let yes = tune(&["apply", "--root", r, "--yes"]);
    assert_eq!(yes.status.code(), Some(0), "{yes:?}");
    assert_eq!(read(root, "proc/sys/vm/swappiness"), "1\n");
    let again = tune(&["check", "--root", r, "--json"]);
    assert_eq!(again.status.code(), Some(0), "{again:?}");
    let report: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert!(report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["state"] != "DIFFERS"));
}

#[test]
fn a_write_that_fails_exits_4_and_says_which() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    put(root, "sys/devices/system/cpu/online", "0");
    // Readable, and not writable even by root: the write fails as it would without privileges.
    let swappiness = root.join("proc/sys/vm/swappiness");
    std::fs::create_dir_all(swappiness.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink("/proc/version", &swappiness).unwrap();
    let out = tune(&["apply", "--root", root.to_str().unwrap(), "--yes"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains("aurigraph: error: writing \"1\"") && stderr.contains("swappiness"),
        "{stderr}"
    );
}

#[test]
fn bad_arguments_are_usage_errors() {
    let out = tune(&["check", "--cores", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--cores"));
}
