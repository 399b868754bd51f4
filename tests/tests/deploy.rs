//! The deployment files: the systemd unit passes `systemd-analyze verify` (with no warning),
//! and the node speaks systemd's notify protocol as the unit expects (`Type=notify`,
//! `WatchdogSec=`): READY=1 once it serves, WATCHDOG=1 while its cores make progress,
//! STOPPING=1 at SIGTERM.

use aurigraph_testkit::{aurigraph_bin, http_request};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::{Duration, Instant};

const UNIT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../deploy/systemd/aurigraph.service"
);

/// `systemd-analyze verify` of the unit with its binary path pointing at `bin`: the exit
/// status and everything it printed.
fn verify(unit_text: &str, bin: &Path, dir: &Path) -> (bool, String) {
    let unit = dir.join("aurigraph.service");
    let text = unit_text.replace("/usr/local/bin/aurigraph", bin.to_str().unwrap());
    std::fs::write(&unit, text).unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .expect("systemd-analyze (Debian package systemd; tests/run installs it)");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), printed)
}

#[test]
fn the_service_unit_passes_systemd_analyze_verify_without_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let unit = std::fs::read_to_string(UNIT).unwrap();
    let (ok, printed) = verify(&unit, &aurigraph_bin(), dir.path());
    assert!(ok && printed.trim().is_empty(), "{printed}");
    // The check sees a mistake (an unknown key is only a warning, hence the empty output).
    let broken = unit.replace("Restart=on-failure", "Restart=on-failure\nRestartEvery=5s");
    let (_, printed) = verify(&broken, &aurigraph_bin(), dir.path());
    assert!(printed.contains("RestartEvery"), "{printed}");
    for key in [
        "Type=notify",
        "WatchdogSec=",
        "LimitMEMLOCK=infinity",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "Restart=on-failure",
    ] {
        assert!(unit.contains(key), "the unit lacks {key}");
    }
}

#[test]
fn the_node_tells_systemd_it_is_ready_alive_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let port = aurigraph_testkit::free_port();
    let log = std::fs::File::create(dir.path().join("node.log")).unwrap();
    let mut child = std::process::Command::new(aurigraph_bin())
        .args(["node", "--cores", "2", "--http-addr"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "400000")
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut seen: Vec<String> = Vec::new();
    let wait_for = |what: &str, seen: &mut Vec<String>| {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut buf = [0u8; 512];
        while Instant::now() < deadline {
            if let Ok(n) = socket.recv(&mut buf) {
                let message = String::from_utf8_lossy(&buf[..n]).into_owned();
                let found = message.lines().any(|l| l == what);
                seen.push(message);
                if found {
                    return;
                }
            }
        }
        panic!("no {what} from the node; got {seen:?}");
    };
    wait_for("READY=1", &mut seen);
    // Ready means serving.
    let health = http_request(port, "GET", "/api/v11/health", None, &[]).unwrap();
    assert_eq!(health.status, 200);
    // Pings every half period (200 ms) while the cores beat.
    wait_for("WATCHDOG=1", &mut seen);
    wait_for("WATCHDOG=1", &mut seen);
    // SIGTERM: the node says it is stopping, then exits 0.
    let pid = child.id() as libc::pid_t;
    // SAFETY: kill(2) with our own child's pid and a valid signal number.
    let killed = unsafe { libc::kill(pid, libc::SIGTERM) };
    assert_eq!(killed, 0);
    wait_for("STOPPING=1", &mut seen);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(seen[0].contains("READY=1"), "READY=1 came first: {seen:?}");
}
