//! A node started as a child process of this binary (used by `aurigraph bench` when it is not
//! given --addresses): the benchmark client and the node it measures are separate processes,
//! as in production.

use aurigraph_engine::genesis::Genesis;
use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long the child node may take to recover and start listening.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Starts `aurigraph node` on a free loopback port with `genesis` in `dir`; returns its base URL
/// and a function that stops it (SIGTERM, then wait).
pub fn start(genesis: &Genesis, dir: &Path) -> Result<crate::bench::StartedNode, String> {
    let shards = genesis
        .shards
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()) as u32);
    let genesis_path = dir.join("bench-genesis.json");
    std::fs::write(&genesis_path, genesis.to_canonical_json(shards))
        .map_err(|e| format!("cannot write {}: {e}", genesis_path.display()))?;
    let port = free_port()?;
    let addr = format!("127.0.0.1:{port}");
    let log_path = dir.join("node.log");
    let log = std::fs::File::create(&log_path)
        .map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find own binary: {e}"))?;
    let mut child = Command::new(exe)
        .arg("node")
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--genesis")
        .arg(&genesis_path)
        .arg("--http-addr")
        .arg(&addr)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start the node: {e}"))?;
    let url = format!("http://{addr}");
    if let Err(e) = wait_until_listening(&mut child, port) {
        let _ = child.kill();
        let _ = child.wait();
        let mut text = String::new();
        let _ = std::fs::File::open(&log_path).and_then(|mut f| f.read_to_string(&mut text));
        return Err(format!("{e}; node log:\n{text}"));
    }
    eprintln!("bench: node started at {url} (log: {})", log_path.display());
    let stop = Box::new(move || {
        // SAFETY: sending a signal to our own child process.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        let _ = child.wait();
    });
    Ok((vec![url], stop))
}

fn free_port() -> Result<u16, String> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free loopback port: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

fn wait_until_listening(child: &mut Child, port: u16) -> Result<(), String> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("the node exited during start-up ({status})"));
        }
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("the node did not listen within {START_TIMEOUT:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
