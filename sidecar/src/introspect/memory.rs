//! Memory in use against the limit that would get the process killed: the cgroup (v2, then v1)
//! limit and working set when one is set, otherwise process RSS against physical memory.

use std::fs;
use std::path::{Path, PathBuf};

/// Where a sample came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    CgroupV2,
    CgroupV1,
    Process,
}

/// One reading, bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemorySample {
    pub used: u64,
    pub limit: u64,
    pub source: Source,
}

impl MemorySample {
    /// `used / limit`, or `None` without a usable limit.
    pub fn fraction(&self) -> Option<f64> {
        (self.limit > 0).then(|| self.used as f64 / self.limit as f64)
    }
}

/// A cgroup v2 `memory.max` / v1 `memory.limit_in_bytes` value; `None` when unlimited. v1
/// reports "unlimited" as a huge page-aligned number, so anything above 2^60 counts as none.
pub fn parse_limit(text: &str) -> Option<u64> {
    let t = text.trim();
    if t == "max" {
        return None;
    }
    t.parse::<u64>().ok().filter(|&v| v > 0 && v < 1 << 60)
}

/// A `key value` line from `memory.stat`.
pub fn stat_value(stat: &str, key: &str) -> Option<u64> {
    stat.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// Working set = usage minus reclaimable page cache (what the OOM killer and kubelet look at).
pub fn working_set(usage: u64, stat: &str, inactive_file_key: &str) -> u64 {
    usage.saturating_sub(stat_value(stat, inactive_file_key).unwrap_or(0))
}

/// A `Key:   123 kB` line of `/proc/*/status` or `/proc/meminfo`, in bytes.
pub fn proc_kb(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?.strip_prefix(':')?;
        let kb: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kb * 1024)
    })
}

/// The cgroup v2 directory of this process, from a `/proc/self/cgroup` text (`0::/path`).
pub fn cgroup_v2_dir(proc_cgroup: &str, root: &Path) -> Option<PathBuf> {
    let path = proc_cgroup.lines().find_map(|l| l.strip_prefix("0::"))?;
    Some(root.join(path.trim_start_matches('/')))
}

/// Reads memory state from the real filesystem.
#[derive(Debug, Clone)]
pub struct MemoryProbe {
    cgroup_root: PathBuf,
    proc_root: PathBuf,
}

impl Default for MemoryProbe {
    fn default() -> Self {
        MemoryProbe {
            cgroup_root: PathBuf::from("/sys/fs/cgroup"),
            proc_root: PathBuf::from("/proc"),
        }
    }
}

impl MemoryProbe {
    pub fn new(cgroup_root: PathBuf, proc_root: PathBuf) -> MemoryProbe {
        MemoryProbe {
            cgroup_root,
            proc_root,
        }
    }

    fn read(path: &Path) -> Option<String> {
        fs::read_to_string(path).ok()
    }

    fn cgroup_v2(&self) -> Option<MemorySample> {
        let own = Self::read(&self.proc_root.join("self/cgroup"))
            .and_then(|t| cgroup_v2_dir(&t, &self.cgroup_root));
        // Inside a container the own path is often not mounted; the root is the container's.
        let dirs = own.into_iter().chain([self.cgroup_root.clone()]);
        for dir in dirs {
            let Some(limit) = Self::read(&dir.join("memory.max")) else {
                continue;
            };
            let limit = parse_limit(&limit)?;
            let usage: u64 = Self::read(&dir.join("memory.current"))?
                .trim()
                .parse()
                .ok()?;
            let stat = Self::read(&dir.join("memory.stat")).unwrap_or_default();
            return Some(MemorySample {
                used: working_set(usage, &stat, "inactive_file"),
                limit,
                source: Source::CgroupV2,
            });
        }
        None
    }

    fn cgroup_v1(&self) -> Option<MemorySample> {
        let dir = self.cgroup_root.join("memory");
        let limit = parse_limit(&Self::read(&dir.join("memory.limit_in_bytes"))?)?;
        let usage: u64 = Self::read(&dir.join("memory.usage_in_bytes"))?
            .trim()
            .parse()
            .ok()?;
        let stat = Self::read(&dir.join("memory.stat")).unwrap_or_default();
        Some(MemorySample {
            used: working_set(usage, &stat, "total_inactive_file"),
            limit,
            source: Source::CgroupV1,
        })
    }

    fn process(&self) -> Option<MemorySample> {
        let used = proc_kb(&Self::read(&self.proc_root.join("self/status"))?, "VmRSS")?;
        let limit = Self::read(&self.proc_root.join("meminfo"))
            .and_then(|t| proc_kb(&t, "MemTotal"))
            .unwrap_or(0);
        Some(MemorySample {
            used,
            limit,
            source: Source::Process,
        })
    }

    /// The best available reading: a cgroup with a limit, else the process.
    pub fn sample(&self) -> Option<MemorySample> {
        self.cgroup_v2()
            .or_else(|| self.cgroup_v1())
            .or_else(|| self.process())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse_and_unlimited_is_none() {
        assert_eq!(parse_limit("max\n"), None);
        assert_eq!(parse_limit("536870912\n"), Some(536_870_912));
        assert_eq!(parse_limit("9223372036854771712"), None);
        assert_eq!(parse_limit("0"), None);
        assert_eq!(parse_limit("junk"), None);
    }

    #[test]
    fn working_set_subtracts_inactive_file() {
        let stat = "anon 100\nfile 900\ninactive_file 300\nactive_file 600\n";
        assert_eq!(working_set(1000, stat, "inactive_file"), 700);
        assert_eq!(working_set(100, stat, "inactive_file"), 0);
        assert_eq!(working_set(1000, "", "inactive_file"), 1000);
    }

    #[test]
    fn proc_values_in_bytes() {
        let status = "Name:\tx\nVmRSS:\t   2048 kB\nVmSwap:\t0 kB\n";
        assert_eq!(proc_kb(status, "VmRSS"), Some(2 * 1024 * 1024));
        assert_eq!(
            proc_kb("MemTotal:       24000 kB\n", "MemTotal"),
            Some(24000 * 1024)
        );
        assert_eq!(proc_kb(status, "VmHWM"), None);
    }

    #[test]
    fn cgroup_path_from_proc_self_cgroup() {
        let root = Path::new("/sys/fs/cgroup");
        assert_eq!(
            cgroup_v2_dir("0::/kubepods/pod1/abc\n", root),
            Some(PathBuf::from("/sys/fs/cgroup/kubepods/pod1/abc"))
        );
        assert_eq!(
            cgroup_v2_dir("0::/\n", root),
            Some(PathBuf::from("/sys/fs/cgroup/"))
        );
        assert_eq!(cgroup_v2_dir("4:memory:/x\n", root), None);
    }

    #[test]
    fn probe_reads_a_fake_cgroup_v2_tree_then_falls_back_to_the_process() {
        let dir = std::env::temp_dir().join(format!("gg-mem-{}", std::process::id()));
        let cg = dir.join("cg");
        let proc_ = dir.join("proc");
        fs::create_dir_all(cg.join("pod")).unwrap();
        fs::create_dir_all(proc_.join("self")).unwrap();
        fs::write(proc_.join("self/cgroup"), "0::/pod\n").unwrap();
        fs::write(proc_.join("self/status"), "VmRSS:\t100 kB\n").unwrap();
        fs::write(proc_.join("meminfo"), "MemTotal:\t1000 kB\n").unwrap();
        fs::write(cg.join("pod/memory.max"), "1000\n").unwrap();
        fs::write(cg.join("pod/memory.current"), "960\n").unwrap();
        fs::write(cg.join("pod/memory.stat"), "inactive_file 10\n").unwrap();
        let probe = MemoryProbe::new(cg.clone(), proc_.clone());
        let s = probe.sample().unwrap();
        assert_eq!((s.used, s.limit, s.source), (950, 1000, Source::CgroupV2));
        assert!((s.fraction().unwrap() - 0.95).abs() < 1e-9);
        // Unlimited cgroup: the process against physical memory.
        fs::write(cg.join("pod/memory.max"), "max\n").unwrap();
        let s = probe.sample().unwrap();
        assert_eq!(
            (s.used, s.limit, s.source),
            (100 * 1024, 1000 * 1024, Source::Process)
        );
        let _ = fs::remove_dir_all(&dir);
    }
}
