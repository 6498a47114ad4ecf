//! `make run`'s script (mesh-config/local/run.sh) started by a test, as it runs on a
//! developer's machine: the binaries and model of `make setup build`, the fixed ports of
//! `make run`, its files in a temporary folder (GRAYGUARD_RUN_DIR, never the checkout's
//! .run/), in a process group of its own, launched from a terminal or as a script's
//! background job ([`Launch`]). The supervisor's status file (`NAME PID RESTARTS` per
//! component) is read back, signals go to run.sh or to its whole group, and on drop (a failed
//! test too) the group gets SIGTERM and every component still running SIGKILL, so that no
//! process of the mesh outlives the test.
//!
//! run.sh listens on fixed ports (8081, 8082, 9092, 9090, 9093, 9095, 9096, 9901, 10000,
//! 10100): when one is taken (a `make run` in another terminal, a Prometheus service) it
//! refuses to start and names the port, and [`LocalMesh::start`] fails with that message.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::paths;
use crate::process::{Proc, running, send_signal};
use crate::wait::{Wait, eventually};

/// The front Envoy's inference URL, its admin's readiness URL, and the sidecars' base URLs.
pub const FRONT: &str = "http://127.0.0.1:10000/infer";
pub const ADMIN: &str = "http://127.0.0.1:9901";
pub const STABLE_SIDECAR: &str = "http://127.0.0.1:8081";
pub const GRAY_SIDECAR: &str = "http://127.0.0.1:8082";
pub const GRAY_CONTROL: &str = "http://127.0.0.1:9092";

/// How long run.sh may take to start everything on a busy 2-core machine.
const READY: Duration = Duration::from_secs(240);

/// How run.sh was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Launch {
    /// In the foreground of a terminal: run.sh leads its process group, SIGINT as usual.
    Terminal,
    /// As a script's background job (`bash run.sh &` in a non-interactive shell): SIGINT is
    /// ignored on entry, in run.sh and in everything it starts.
    BackgroundJob,
}

/// One line of run.sh's status file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Component {
    pub name: String,
    /// `None` while the supervisor waits to restart it.
    pub pid: Option<u32>,
    pub restarts: u32,
}

/// run.sh and its mesh.
pub struct LocalMesh {
    /// The process the test spawned: run.sh itself, or the shell whose job it is.
    pub launcher: Proc,
    /// run.sh's pid.
    pub script: u32,
    run_dir: PathBuf,
    _dir: tempfile::TempDir,
}

fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

impl LocalMesh {
    /// Starts run.sh `launch`'s way with `env` on top of the harness's binaries, and waits
    /// until it says it is ready and its status file lists every component running, none
    /// restarted.
    pub fn start(launch: Launch, env: &[(&str, &str)]) -> LocalMesh {
        let dir = tempfile::tempdir().unwrap();
        let run_dir = dir.path().join("run");
        let script_pid = dir.path().join("run.sh.pid");
        let run_sh = paths::root().join("mesh-config/local/run.sh");
        // Both start from a default SIGINT: the test itself may run in the background of a
        // non-interactive shell (as CI may), which leaves SIGINT ignored, and a signal
        // ignored on entry cannot be trapped by bash.
        let mut cmd = Command::new("env");
        cmd.arg("--default-signal=INT").arg("bash");
        match launch {
            Launch::Terminal => {
                cmd.arg(&run_sh);
            }
            Launch::BackgroundJob => {
                cmd.arg("-c")
                    .arg("bash \"$1\" & echo $! > \"$2\"; wait")
                    .arg("launcher")
                    .arg(&run_sh)
                    .arg(&script_pid);
            }
        }
        cmd.current_dir(paths::root())
            .process_group(0)
            .env("GRAYGUARD_RUN_DIR", &run_dir)
            .env("GRAYGUARD_ENVOY", paths::envoy())
            .env("GRAYGUARD_SIDECAR", paths::sidecar())
            .env("GRAYGUARD_MODEL", paths::model())
            .env("ORT_DYLIB_PATH", paths::ort_dylib())
            .env("GRAYGUARD_WASM", paths::wasm())
            .env("GRAYGUARD_REPORT", paths::report())
            .env("GRAYGUARD_ALERT_SINK", paths::alert_sink());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut launcher = Proc::spawn("run.sh", cmd, dir.path());
        eventually("run.sh is ready", READY, || {
            if let Some(status) = launcher.exited() {
                panic!(
                    "mesh-config/local/run.sh did not start ({status}); it needs its fixed ports free:\n{}",
                    launcher.log()
                );
            }
            launcher.log().contains("[run] ready")
        });
        let script = match launch {
            Launch::Terminal => launcher.pid(),
            Launch::BackgroundJob => read_pid(&script_pid).expect("the job's pid"),
        };
        let mesh = LocalMesh {
            launcher,
            script,
            run_dir,
            _dir: dir,
        };
        // The status file is written by the supervisor's first pass, just after "ready".
        eventually(
            "run.sh's status lists every component running",
            Duration::from_secs(10),
            || {
                let status = mesh.status();
                if status.len() >= 7 && status.iter().all(|c| c.pid.is_some() && c.restarts == 0) {
                    Ok(())
                } else {
                    Err(format!("{status:?}"))
                }
            },
        );
        mesh
    }

    /// Everything run.sh (and its launcher) printed so far.
    pub fn log(&self) -> String {
        self.launcher.log()
    }

    /// Every line of run.sh's status file.
    pub fn status(&self) -> Vec<Component> {
        std::fs::read_to_string(self.run_dir.join("status"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                Some(Component {
                    name: w.next()?.to_string(),
                    pid: w.next()?.parse().ok(),
                    restarts: w.next()?.parse().ok()?,
                })
            })
            .collect()
    }

    /// The pid run.sh's supervisor has for `name` now (`None` while it waits to restart it).
    pub fn pid(&self, name: &str) -> Option<u32> {
        read_pid(&self.run_dir.join("pids").join(format!("{name}.pid")))
    }

    /// How often the supervisor restarted `name`.
    pub fn restarts(&self, name: &str) -> u32 {
        self.status()
            .into_iter()
            .find(|c| c.name == name)
            .map_or(0, |c| c.restarts)
    }

    /// The log file run.sh keeps for component `name`.
    pub fn component_log(&self, name: &str) -> String {
        std::fs::read_to_string(self.run_dir.join("logs").join(format!("{name}.log")))
            .unwrap_or_default()
    }

    /// Sends `signal` to run.sh alone (as `kill` from another terminal does).
    pub fn signal(&self, signal: &str) -> bool {
        send_signal(self.script, signal)
    }

    /// Sends `signal` to the whole process group, as a terminal or a job control does.
    pub fn signal_group(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), "--".into()])
            .arg(format!("-{}", self.launcher.pid()))
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} to the group failed");
    }

    /// Waits until run.sh has exited; false after `timeout`.
    pub fn wait_stopped(&mut self, timeout: Duration) -> bool {
        Wait::new("run.sh stopped", timeout)
            .poll(|| {
                // Reaps the launcher when it is run.sh itself (or the shell it ran under).
                let _ = self.launcher.exited();
                !running(self.script)
            })
            .is_ok()
    }
}

impl Drop for LocalMesh {
    fn drop(&mut self) {
        if !running(self.script) {
            return;
        }
        let listed = self.status();
        let _ = Command::new("kill")
            .args(["-TERM", "--"])
            .arg(format!("-{}", self.launcher.pid()))
            .status();
        self.wait_stopped(Duration::from_secs(30));
        for pid in listed.into_iter().filter_map(|c| c.pid) {
            if running(pid) {
                send_signal(pid, "KILL");
            }
        }
        send_signal(self.script, "KILL");
    }
}
