//! An OCI image run the way a container runtime runs it, without one: its layers unpacked into
//! a root file system (`oci::Layout::unpack`), then its entrypoint and command started there
//! as its user with its environment, in private mount and PID namespaces with /proc, /dev and
//! /sys mounted, chrooted; the whole namespace killed when the guard drops. Needs root (the
//! namespaces, the mounts, chroot, the image's file owners), as `make test` has on CI.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::oci::Layout;
use crate::process::Proc;
use crate::wait::eventually;

/// How long the namespace may take to die once its guard has dropped.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// What an image's config says to run, to be overridden field by field the way a Deployment
/// overrides it (`args:` replace `cmd`, `env:` entries replace the image's).
#[derive(Debug, Clone)]
pub struct Process {
    /// `uid:gid`.
    pub user: String,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<(String, String)>,
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

impl Process {
    /// The `User`, `Entrypoint`, `Cmd` and `Env` of an image config.
    pub fn of(config: &Value) -> Process {
        let c = &config["config"];
        let user = c["User"].as_str().expect("User").to_string();
        assert!(user.contains(':'), "User is not uid:gid: {user}");
        let env = strings(&c["Env"])
            .into_iter()
            .map(|e| {
                let (k, v) = e.split_once('=').unwrap();
                (k.to_string(), v.to_string())
            })
            .collect();
        Process {
            user,
            entrypoint: strings(&c["Entrypoint"]),
            cmd: strings(&c["Cmd"]),
            env,
        }
    }

    /// The numeric user it runs as.
    pub fn uid(&self) -> u32 {
        self.user.split_once(':').unwrap().0.parse().unwrap()
    }

    /// The value of variable `key`, if set.
    pub fn env(&self, key: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Sets variable `key`, replacing the image's value (a Deployment's `env:`).
    pub fn set_env(&mut self, key: &str, value: impl Into<String>) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_string(), value.into()));
    }
}

/// An image's root file system, and the process running in it once started.
pub struct Container {
    // Declared first so it drops first: the namespace dies before its root is removed.
    proc: Option<Proc>,
    rootfs: PathBuf,
    dir: tempfile::TempDir,
}

impl Container {
    /// Unpacks `layout` into a temporary root file system.
    pub fn unpack(layout: &Layout) -> Container {
        assert_eq!(
            euid(),
            0,
            "running an image needs root (namespaces, mounts, chroot, the image's file owners), \
             as make test has on CI"
        );
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("rootfs");
        layout.unpack(&rootfs);
        Container {
            proc: None,
            rootfs,
            dir,
        }
    }

    /// The unpacked root file system.
    pub fn rootfs(&self) -> &Path {
        &self.rootfs
    }

    /// `path` of the image (absolute in the image) on the host.
    pub fn path(&self, path: &str) -> PathBuf {
        self.rootfs.join(path.trim_start_matches('/'))
    }

    /// Starts `process` in the root file system; its output goes to `<name>.log` beside it.
    pub fn start(&mut self, name: &str, process: &Process) -> &mut Proc {
        assert!(self.proc.is_none(), "{name}: already started");
        for d in ["proc", "dev", "sys"] {
            std::fs::create_dir_all(self.rootfs.join(d)).unwrap();
        }
        let r = self.rootfs.display();
        // The shell stays as the namespace's PID 1 (root, so it keeps unshare's --kill-child
        // signal, which the entrypoint loses when chroot drops to the image's user): when the
        // guard kills unshare, PID 1 dies and the kernel kills everything in the namespace.
        let script = format!(
            "mount -t proc proc {r}/proc && mount --rbind /dev {r}/dev && mount --rbind /sys {r}/sys && {{ \"$@\" & wait $!; }}"
        );
        let mut cmd = Command::new("unshare");
        cmd.args([
            "--mount",
            "--pid",
            "--fork",
            "--kill-child",
            "--",
            "sh",
            "-c",
            &script,
            "sh",
        ])
        .arg("/usr/sbin/chroot")
        .arg(format!("--userspec={}", process.user))
        .arg(&self.rootfs)
        .args(&process.entrypoint)
        .args(&process.cmd)
        .env_clear()
        .envs(process.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        self.proc.insert(Proc::spawn(name, cmd, self.dir.path()))
    }

    /// The uid of the process whose root directory is the root file system (the chrooted
    /// entrypoint), while one runs.
    pub fn uid(&self) -> Option<u32> {
        uid_of_process_rooted_at(&self.rootfs)
    }

    /// Kills the namespace and waits until nothing runs in the root file system any more.
    pub fn stop(&mut self) {
        drop(self.proc.take());
        eventually(
            "the image's entrypoint dies with its guard",
            STOP_TIMEOUT,
            || self.uid().is_none(),
        );
    }
}

/// The uid of the process whose root directory is `rootfs`.
fn uid_of_process_rooted_at(rootfs: &Path) -> Option<u32> {
    let rootfs = rootfs.canonicalize().ok()?;
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let root = std::fs::read_link(entry.path().join("root")).ok()?;
            if root != rootfs {
                return None;
            }
            let status = std::fs::read_to_string(entry.path().join("status")).ok()?;
            status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
}

/// The effective uid of this process.
fn euid() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let uids = status.lines().find_map(|l| l.strip_prefix("Uid:")).unwrap();
    uids.split_whitespace().nth(1).unwrap().parse().unwrap()
}
