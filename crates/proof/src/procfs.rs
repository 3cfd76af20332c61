//! Memory and CPU of a process, read from `/proc` (Linux).

use std::time::Duration;

/// One reading of a process.
#[derive(Debug, Clone, Copy, Default)]
pub struct Reading {
    /// Resident memory now, bytes.
    pub rss: u64,
    /// Peak resident memory over the process's life, bytes.
    pub peak_rss: u64,
    /// User and system CPU time used so far.
    pub cpu: Duration,
}

/// The kernel's clock ticks per second for `/proc/<pid>/stat` (USER_HZ: 100 on Linux).
const TICKS_PER_SECOND: u64 = 100;

fn kib_field(status: &str, name: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(name))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Reads `/proc/<pid>`; None when the process is gone.
pub fn read(pid: u32) -> Option<Reading> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name: state is the 3rd field, utime the 14th.
    let after_name = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Reading {
        rss: kib_field(&status, "VmRSS:")?,
        peak_rss: kib_field(&status, "VmHWM:")?,
        cpu: Duration::from_millis(ticks * 1000 / TICKS_PER_SECOND),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_this_process() {
        let me = super::read(std::process::id()).expect("/proc of this process");
        assert!(me.rss > 0 && me.peak_rss >= me.rss, "{me:?}");
        assert!(super::read(u32::MAX).is_none());
    }
}
