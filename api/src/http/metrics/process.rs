//! Figures of this process read from `/proc` and the C library: resident memory, CPU time,
//! threads, file descriptors, start time, disk space of the data directory.

/// Resident set size from `/proc/self/statm` (second field, in pages).
pub fn read_rss_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = text.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * if page > 0 { page as u64 } else { 4096 })
}

/// utime + stime of this process from `/proc/self/stat`, in clock ticks.
pub fn read_cpu_ticks() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/stat").ok()?;
    parse_cpu_ticks(&text)
}

/// Fields 14 and 15 (utime, stime) of `/proc/<pid>/stat`; the command name (field 2) may hold
/// spaces and parentheses, so fields are counted after its last `)`.
pub(super) fn parse_cpu_ticks(text: &str) -> Option<u64> {
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11); // field 3 is the first after ')'
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The standard `process_*` figures of the Prometheus client libraries.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProcessFigures {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub threads: u64,
    pub open_fds: u64,
    pub max_fds: u64,
    /// Unix time the process started, seconds.
    pub start_time_seconds: f64,
}

/// Reads this process's figures from `/proc` (fields that cannot be read stay 0).
pub fn read_process() -> ProcessFigures {
    let mut p = ProcessFigures {
        resident_bytes: read_rss_bytes().unwrap_or(0),
        ..ProcessFigures::default()
    };
    let ticks = clock_ticks_per_second();
    if let Ok(text) = std::fs::read_to_string("/proc/self/stat") {
        p.cpu_seconds = parse_cpu_ticks(&text).map_or(0.0, |t| t as f64 / ticks);
        if let Some(close) = text.rfind(')') {
            // Fields after the command name, starting with field 3 (state) at index 0.
            let fields: Vec<&str> = text[close + 1..].split_whitespace().collect();
            let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
            p.threads = field(20).unwrap_or(0);
            p.virtual_bytes = field(23).unwrap_or(0);
            let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|stat| {
                stat.lines()
                    .find_map(|l| l.strip_prefix("btime "))
                    .and_then(|v| v.trim().parse::<u64>().ok())
            });
            if let (Some(boot), Some(start)) = (boot, field(22)) {
                p.start_time_seconds = boot as f64 + start as f64 / ticks;
            }
        }
    }
    p.open_fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64);
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        p.max_fds = limit.rlim_cur;
    }
    p
}

/// Capacity and space available to this (unprivileged) process on the file system of `path`.
pub fn disk_space(path: &std::path::Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: `statvfs` is plain old data, for which all-zero bytes are a valid value.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: statvfs writes into the struct we pass; the path is NUL-terminated.
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut st) } != 0 {
        return None;
    }
    let unit = st.f_frsize as u64;
    Some((st.f_blocks as u64 * unit, st.f_bavail as u64 * unit))
}

pub(super) fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// CPUs this process may run on (affinity and cgroup aware).
pub fn cpus_available() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
