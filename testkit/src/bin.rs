//! The `aurigraph` binary for process tests.
//!
//! A test of another package cannot name the binary of `aurigraph-cli` (Cargo only tells a
//! package's own tests where its binaries are), so the first call in a test process runs
//! `cargo build -p aurigraph-cli --bin aurigraph` in the profile and target directory the tests
//! were built in (the test executable lives in `<target>/<profile>/deps/`), and returns
//! `<target>/<profile>/aurigraph`. Cargo makes it a no-op when the binary is up to date.
//! `AURIGRAPH_BIN` names a binary to use instead (nothing is built then).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The path of an up-to-date `aurigraph` binary; builds it at the first call (panics with
/// Cargo's message if the build fails).
pub fn aurigraph_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| match std::env::var_os("AURIGRAPH_BIN") {
        Some(path) => PathBuf::from(path),
        None => build(),
    })
    .clone()
}

fn build() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let profile_dir = exe
        .parent()
        .filter(|deps| deps.file_name().is_some_and(|n| n == "deps"))
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("{} is not in <target>/<profile>/deps", exe.display()));
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .or_else(|| profile_dir.parent().map(Path::to_path_buf))
        .expect("the target directory");
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev",
        Some(name) => name,
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root");
    let mut command = Command::new(cargo);
    // Cargo sets these for the test process; a build script that reads one (ring's does) would
    // see it change between this build and one from a shell, and both would rebuild it and
    // everything above it.
    for (name, _) in std::env::vars_os() {
        let name_text = name.to_string_lossy();
        if name_text.starts_with("CARGO_PKG_")
            || name_text.starts_with("CARGO_MANIFEST_")
            || matches!(
                &*name_text,
                "CARGO_CRATE_NAME" | "CARGO_PRIMARY_PACKAGE" | "CARGO_TARGET_TMPDIR"
            )
        {
            command.env_remove(&name);
        }
    }
    let status = command
        .current_dir(workspace)
        .args([
            "build",
            "--quiet",
            "-p",
            "aurigraph-cli",
            "--bin",
            "aurigraph",
        ])
        .args(["--profile", profile])
        .env("CARGO_TARGET_DIR", &target_dir)
        .status()
        .expect("run cargo build");
    assert!(
        status.success(),
        "cargo build -p aurigraph-cli --bin aurigraph --profile {profile} failed ({status})"
    );
    let bin = target_dir
        .join(profile_dir.file_name().expect("profile directory"))
        .join("aurigraph");
    assert!(bin.exists(), "{} was not built", bin.display());
    bin
}
