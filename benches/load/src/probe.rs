//! The server's CPU time and memory, read from `/proc/<pid>` (Linux).
//!
//! CPU time is user plus system time of all the process's threads, from
//! `/proc/<pid>/stat`; memory is the resident set (`VmRSS`) and its peak
//! (`VmHWM`) from `/proc/<pid>/status`.

use std::io;
use std::time::Duration;

/// Reads one process's resource use.
#[derive(Clone, Copy, Debug)]
pub struct Probe {
    pid: u32,
}

/// Resident memory of the process, in bytes.
#[derive(Clone, Copy, Debug)]
pub struct Memory {
    /// Resident now (`VmRSS`).
    pub rss: u64,
    /// The most it was ever resident (`VmHWM`).
    pub peak: u64,
}

impl Probe {
    pub fn new(pid: u32) -> Self {
        Probe { pid }
    }

    /// CPU time the process has used so far, user plus system.
    pub fn cpu_time(&self) -> io::Result<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid))?;
        let ticks = parse_cpu_ticks(&stat)
            .ok_or_else(|| io::Error::other(format!("unexpected /proc/{}/stat", self.pid)))?;
        // SAFETY: sysconf only reads a system constant.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        let per_second = if per_second > 0 {
            per_second as u64
        } else {
            100
        };
        Ok(Duration::from_nanos(ticks * 1_000_000_000 / per_second))
    }

    /// The process's resident memory now and at its peak.
    pub fn memory(&self) -> io::Result<Memory> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        let field = |name| {
            parse_kib_field(&status, name)
                .ok_or_else(|| io::Error::other(format!("no {name} in /proc/{}/status", self.pid)))
        };
        Ok(Memory {
            rss: field("VmRSS:")? * 1024,
            peak: field("VmHWM:")? * 1024,
        })
    }
}

/// utime + stime, the 14th and 15th fields of `/proc/<pid>/stat`. The
/// second field (the command name) may hold spaces and parentheses, so
/// fields are counted from the last `)`.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace();
    // Field 3 is the first after the name; utime is field 14.
    let utime: u64 = fields.nth(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The value of a `Name:   1234 kB` line of `/proc/<pid>/status`.
fn parse_kib_field(status: &str, name: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with(name))?;
    line[name.len()..].split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_counted_after_the_command_name() {
        let stat = "42 (a b) c) S 1 2 3 4 5 6 7 8 9 10 111 222 13 14 15";
        assert_eq!(parse_cpu_ticks(stat), Some(333));
    }

    #[test]
    fn status_fields_are_read_in_kib() {
        let status = "Name:\tchinwag\nVmHWM:\t    2048 kB\nVmRSS:\t    1024 kB\n";
        assert_eq!(parse_kib_field(status, "VmRSS:"), Some(1024));
        assert_eq!(parse_kib_field(status, "VmHWM:"), Some(2048));
        assert_eq!(parse_kib_field(status, "VmSwap:"), None);
    }

    #[test]
    fn this_process_can_be_probed() {
        let probe = Probe::new(std::process::id());
        assert!(probe.memory().unwrap().rss > 0);
        probe.cpu_time().unwrap();
    }
}
