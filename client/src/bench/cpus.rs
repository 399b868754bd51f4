//! `aurigraph bench --node-cpus`: which CPUs the started node runs on and which the benchmark's
//! own threads get, so that a many-core host measures the node at 1, 2, 4, … cores without the
//! client stealing the node's cores (and the node pins one executor per CPU of its set).
//!
//! How: the calling thread's affinity is set to the node's CPUs just before the node is
//! spawned (a child inherits it), then to the other CPUs of the host (all of them when the
//! node has every one), before any client thread exists; threads inherit their creator's
//! affinity, so the runtime, the signers and the verify-ceiling threads stay off the node's
//! CPUs.

use std::fmt;

/// The most CPUs a list may name (the kernel's default `cpu_set_t` size).
pub const CPU_LIST_MAX: usize = libc::CPU_SETSIZE as usize;

/// A set of CPU numbers, in increasing order, without repeats.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CpuList(Vec<usize>);

impl CpuList {
    pub fn cpus(&self) -> &[usize] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Parses the kernel's list format (`0-3,8,10-11`), as `taskset -c` takes it.
    pub fn parse(text: &str) -> Result<CpuList, String> {
        let mut cpus = Vec::new();
        for part in text.split(',') {
            let part = part.trim();
            let (first, last) = match part.split_once('-') {
                Some((a, b)) => (cpu_number(a)?, cpu_number(b)?),
                None => {
                    let n = cpu_number(part)?;
                    (n, n)
                }
            };
            if first > last {
                return Err(format!("{part:?}: a range goes upwards (e.g. 0-3)"));
            }
            cpus.extend(first..=last);
        }
        cpus.sort_unstable();
        cpus.dedup();
        Ok(CpuList(cpus))
    }

    /// The CPUs this thread may run on now.
    pub fn of_this_thread() -> std::io::Result<CpuList> {
        // SAFETY: a zeroed cpu_set_t is a valid empty set.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: the kernel writes at most the size given, which is the set's own.
        let rc = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let cpus = (0..CPU_LIST_MAX)
            // SAFETY: c < CPU_SETSIZE, the set's capacity.
            .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
            .collect();
        Ok(CpuList(cpus))
    }

    /// The CPUs of `self` that are not in `other`.
    pub fn without(&self, other: &CpuList) -> CpuList {
        CpuList(
            self.0
                .iter()
                .copied()
                .filter(|c| !other.0.contains(c))
                .collect(),
        )
    }

    /// Restricts the calling thread (and the threads and processes it creates from now on) to
    /// these CPUs.
    pub fn bind_this_thread(&self) -> std::io::Result<()> {
        assert!(!self.0.is_empty(), "an empty CPU set cannot run anything");
        // SAFETY: a zeroed cpu_set_t is a valid empty set.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        for &c in &self.0 {
            assert!(c < CPU_LIST_MAX);
            // SAFETY: c < CPU_SETSIZE, the set's capacity (asserted).
            unsafe { libc::CPU_SET(c, &mut set) };
        }
        // SAFETY: the kernel reads the set's own size.
        let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

impl fmt::Display for CpuList {
    /// The list format again, ranges merged (`0-3,8`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut i = 0;
        let mut separator = "";
        while i < self.0.len() {
            let first = self.0[i];
            let mut last = first;
            while i + 1 < self.0.len() && self.0[i + 1] == last + 1 {
                i += 1;
                last = self.0[i];
            }
            f.write_str(separator)?;
            separator = ",";
            if first == last {
                write!(f, "{first}")?;
            } else {
                write!(f, "{first}-{last}")?;
            }
            i += 1;
        }
        Ok(())
    }
}

fn cpu_number(text: &str) -> Result<usize, String> {
    let n: usize = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a CPU number (the format is e.g. 0-3,8)"))?;
    if n >= CPU_LIST_MAX {
        return Err(format!(
            "CPU {n}: CPU numbers go up to {}",
            CPU_LIST_MAX - 1
        ));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_parse_and_print_in_the_kernels_format() {
        let l = CpuList::parse("8,0-3,2, 10-11").unwrap();
        assert_eq!(l.cpus(), &[0, 1, 2, 3, 8, 10, 11]);
        assert_eq!(l.to_string(), "0-3,8,10-11");
        assert_eq!(CpuList::parse("5").unwrap().to_string(), "5");
        for bad in ["", "a", "3-1", "0-", "-1", "1,,2", "99999"] {
            assert!(CpuList::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn without_keeps_the_rest_in_order() {
        let all = CpuList::parse("0-7").unwrap();
        let node = CpuList::parse("0-2,5").unwrap();
        assert_eq!(all.without(&node).to_string(), "3-4,6-7");
        assert!(node.without(&all).is_empty());
    }

    #[test]
    fn a_thread_bound_to_one_cpu_reports_that_cpu() {
        let mine = CpuList::of_this_thread().unwrap();
        assert!(!mine.is_empty());
        let last = CpuList(vec![*mine.cpus().last().unwrap()]);
        // In a thread of its own, so that the test's other threads keep their CPUs.
        let seen = std::thread::spawn(move || {
            last.bind_this_thread().unwrap();
            let inherited = std::thread::spawn(CpuList::of_this_thread)
                .join()
                .unwrap()
                .unwrap();
            (CpuList::of_this_thread().unwrap(), inherited, last)
        })
        .join()
        .unwrap();
        assert_eq!(seen.0, seen.2);
        assert_eq!(seen.1, seen.2, "a thread inherits its creator's CPUs");
    }
}
