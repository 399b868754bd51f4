//! A real PostgreSQL server for tests: Debian's server binaries (`initdb`, `pg_ctl`) on a free
//! loopback port, its data and socket in a temporary directory; stopped when dropped.
//! As root, the server runs as the `postgres` user (PostgreSQL refuses to run as root).

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct PgServer {
    bin: PathBuf,
    dir: tempfile::TempDir,
    pub port: u16,
}

/// The directory of Debian's PostgreSQL server binaries (`/usr/lib/postgresql/N/bin`, the
/// newest), if installed.
pub fn server_bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop()
}

impl PgServer {
    /// Creates a cluster and starts it; panics with the server's message when it cannot.
    pub fn start() -> PgServer {
        let bin = server_bin_dir().expect(
            "PostgreSQL server binaries (Debian package postgresql; tests/run installs it)",
        );
        let dir = tempfile::tempdir().unwrap();
        if is_root() {
            // SAFETY: getpwnam with a NUL-terminated name; the result is read at once.
            let pw = unsafe { libc::getpwnam(c"postgres".as_ptr()) };
            assert!(!pw.is_null(), "running as root needs the postgres user");
            // SAFETY: pw is non-null and points to the static passwd record just returned.
            let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        }
        let server = PgServer {
            bin,
            dir,
            port: crate::free_port(),
        };
        server.run(
            "initdb",
            &[
                "-D",
                server.data().to_str().unwrap(),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        server.start_again();
        server
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A server binary's command, run as `postgres` when this is root.
    fn command(&self, tool: &str) -> Command {
        let path = self.bin.join(tool);
        if is_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(path);
            command
        } else {
            Command::new(path)
        }
    }

    /// Runs a server binary; panics with its output when it fails.
    fn run(&self, tool: &str, args: &[&str]) {
        let out = self
            .command(tool)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{tool}: {e}"));
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts the (stopped) server on its port and waits until it accepts connections.
    pub fn start_again(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("server.log");
        self.run(
            "pg_ctl",
            &[
                "-D",
                self.data().to_str().unwrap(),
                "-o",
                &options,
                "-l",
                log.to_str().unwrap(),
                "-w",
                "start",
            ],
        );
    }

    /// Stops the server like a crash (`-m immediate`: no checkpoint; recovery at the next start).
    pub fn crash(&self) {
        self.run(
            "pg_ctl",
            &[
                "-D",
                self.data().to_str().unwrap(),
                "-m",
                "immediate",
                "stop",
            ],
        );
    }

    /// A connection string for the `postgres` database as user `postgres`.
    pub fn url(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            self.port
        )
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let data = self.data();
        let _ = self
            .command("pg_ctl")
            .args(["-D", data.to_str().unwrap(), "-m", "immediate", "stop"])
            .output();
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}
