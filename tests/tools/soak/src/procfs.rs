//! A process's resident memory and open file descriptors, from Linux's `/proc`.

use std::path::Path;

/// What one process holds at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Resident set size, bytes (`VmRSS`).
    pub rss_bytes: u64,
    /// Open file descriptors (sockets included).
    pub fds: u64,
}

/// `VmRSS` of a `/proc/PID/status` text, bytes.
pub fn rss_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut words = line["VmRSS:".len()..].split_whitespace();
    let value: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") => value.checked_mul(1024),
        _ => None,
    }
}

/// Reads `pid`'s usage under `proc_root` (`/proc` on Linux); `None` when the process is gone
/// (or is a zombie, which has no memory left to measure).
pub fn read_at(proc_root: &Path, pid: u32) -> Option<Usage> {
    let dir = proc_root.join(pid.to_string());
    let status = std::fs::read_to_string(dir.join("status")).ok()?;
    let rss_bytes = rss_bytes(&status)?;
    let fds = std::fs::read_dir(dir.join("fd")).ok()?.count() as u64;
    Some(Usage { rss_bytes, fds })
}

/// Reads `pid`'s usage from `/proc`.
pub fn read(pid: u32) -> Option<Usage> {
    read_at(Path::new("/proc"), pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_vmrss_in_kilobytes() {
        let status = "Name:\tenvoy\nVmPeak:\t  999 kB\nVmRSS:\t   51200 kB\nThreads:\t9\n";
        assert_eq!(rss_bytes(status), Some(51200 * 1024));
        assert_eq!(rss_bytes("Name:\tx\n"), None);
        assert_eq!(rss_bytes("VmRSS:\t12 MB\n"), None);
        assert_eq!(rss_bytes("VmRSS:\tlots kB\n"), None);
    }

    #[test]
    fn reads_a_fake_proc_tree_and_this_process() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("42");
        std::fs::create_dir_all(dir.join("fd")).unwrap();
        std::fs::write(dir.join("status"), "VmRSS:\t8 kB\n").unwrap();
        for fd in ["0", "1", "7"] {
            std::fs::write(dir.join("fd").join(fd), "").unwrap();
        }
        assert_eq!(
            read_at(root.path(), 42),
            Some(Usage {
                rss_bytes: 8192,
                fds: 3
            })
        );
        assert_eq!(read_at(root.path(), 43), None);
        let me = read(std::process::id()).unwrap();
        assert!(me.rss_bytes > 0 && me.fds >= 3, "{me:?}");
    }
}
