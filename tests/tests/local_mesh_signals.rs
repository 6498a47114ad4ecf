//! `make run`'s script (mesh-config/local/run.sh) stops the whole mesh on a SIGINT or SIGTERM
//! sent to its process group, however it was launched: from a terminal (Ctrl-C reaches every
//! process of the foreground group), and as a background job of a script (`make run &` in a
//! non-interactive shell), where bash starts it with SIGINT ignored. The group's signal reaches
//! the components too; they exit, and the supervisor must not take that for crashes and start
//! them again. Each launch mode starts the real mesh, signals its group, and checks that
//! run.sh and every process it listed are gone, that nothing was restarted, and that the
//! ports are free.
//!
//! run.sh listens on the fixed ports of `make run` (see local_mesh_supervision.rs): never run
//! this test beside another that starts it. Its files go to a temporary folder.
//!
//! Test code may panic freely: a failed expectation is a failed test.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use grayguard_e2e::process::{Proc, send_signal};
use grayguard_e2e::wait::{Wait, eventually};
use grayguard_e2e::{http, paths};

const ADMIN_READY: &str = "http://127.0.0.1:9901/ready";

/// How the mesh was started.
#[derive(Debug, Clone, Copy)]
enum Launch {
    /// In the foreground of a terminal: run.sh leads its process group, SIGINT as usual.
    Terminal,
    /// As a script's background job (`bash run.sh &` in a non-interactive shell): SIGINT is
    /// ignored on entry, in run.sh and in everything it starts.
    BackgroundJob,
}

/// Whether `pid` runs (a zombie, which only waits to be reaped, does not).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().to_string())
        })
        .is_some_and(|rest| !rest.starts_with('Z'))
}

fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// run.sh started one way, in a process group of its own; on drop (a failed test too) the
/// group gets SIGTERM, then every listed process SIGKILL, so no process outlives the test.
struct Mesh {
    /// The process the test spawned: run.sh itself, or the shell whose job it is.
    launcher: Proc,
    /// run.sh's pid.
    script: u32,
    run_dir: PathBuf,
    _dir: tempfile::TempDir,
}

impl Mesh {
    fn start(launch: Launch) -> Mesh {
        let dir = tempfile::tempdir().unwrap();
        let run_dir = dir.path().join("run");
        let script_pid = dir.path().join("run.sh.pid");
        let run_sh = paths::root().join("mesh-config/local/run.sh");
        // Both start from a default SIGINT (the test itself may run in a background job).
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
        let mut launcher = Proc::spawn("run.sh", cmd, dir.path());
        eventually("run.sh ready", Duration::from_secs(240), || {
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
        Mesh {
            launcher,
            script,
            run_dir,
            _dir: dir,
        }
    }

    /// Every component's pid from run.sh's status file.
    fn components(&self) -> Vec<(String, u32)> {
        std::fs::read_to_string(self.run_dir.join("status"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                Some((w.next()?.to_string(), w.next()?.parse().ok()?))
            })
            .collect()
    }

    /// Sends `signal` to the whole process group, as a terminal or a job control does.
    fn signal_group(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), "--".into()])
            .arg(format!("-{}", self.launcher.pid()))
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} to the group failed");
    }

    /// Waits until run.sh has exited; false after `timeout`.
    fn wait_stopped(&mut self, timeout: Duration) -> bool {
        Wait::new("run.sh stopped", timeout)
            .poll(|| {
                // Reaps the launcher when it is run.sh itself (or the shell it ran under).
                let _ = self.launcher.exited();
                !running(self.script)
            })
            .is_ok()
    }
}

impl Drop for Mesh {
    fn drop(&mut self) {
        if !running(self.script) {
            return;
        }
        let listed = self.components();
        let _ = Command::new("kill")
            .args(["-TERM", "--"])
            .arg(format!("-{}", self.launcher.pid()))
            .status();
        self.wait_stopped(Duration::from_secs(30));
        for (_, pid) in listed {
            if running(pid) {
                send_signal(pid, "KILL");
            }
        }
        send_signal(self.script, "KILL");
    }
}

/// Starts the mesh `launch`'s way, sends `signal` to its group, and checks everything stopped.
fn stops_on(launch: Launch, signal: &str) {
    let mut mesh = Mesh::start(launch);
    let components = mesh.components();
    assert!(components.len() >= 7, "{components:?}");
    let before = mesh.launcher.log().len();
    let sent = Instant::now();
    mesh.signal_group(signal);
    assert!(
        mesh.wait_stopped(Duration::from_secs(60)),
        "{launch:?}: run.sh still runs 60 s after SIG{signal} to its group:\n{}",
        mesh.launcher.log()
    );
    eprintln!(
        "{launch:?}, SIG{signal} to the group: run.sh stopped in {:.1} s",
        sent.elapsed().as_secs_f64()
    );
    let log = mesh.launcher.log();
    let after = &log[before..];
    assert!(
        after.contains("[run] stopped"),
        "{launch:?}: no clean stop:\n{log}"
    );
    assert!(
        !after.contains("restarted (pid"),
        "{launch:?}: the supervisor restarted components after SIG{signal}:\n{after}"
    );
    for (name, pid) in components {
        assert!(
            !running(pid),
            "{launch:?}: {name} (pid {pid}) outlived run.sh"
        );
    }
    assert!(http::get(ADMIN_READY).is_err(), "nothing listens any more");
}

#[test]
fn a_group_sigint_or_sigterm_stops_the_mesh_however_it_was_launched() {
    // A script's background job: SIGINT ignored on entry (the case that restarted every
    // component instead of stopping), then SIGTERM, then Ctrl-C in a terminal.
    stops_on(Launch::BackgroundJob, "INT");
    stops_on(Launch::BackgroundJob, "TERM");
    stops_on(Launch::Terminal, "INT");
}
