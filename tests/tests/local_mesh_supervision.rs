//! `make run`'s script (mesh-config/local/run.sh) supervises its processes like a kubelet:
//! the gray sidecar killed with SIGKILL mid-traffic is logged and started again after its
//! back-off, with its control listener and latch token, while the front Envoy and the stable
//! sidecar keep serving (the stable cohort sees no error, no request goes unanswered); a
//! killed front Envoy comes back on its ports too; Ctrl-C still stops everything, the
//! restarted processes included.
//!
//! run.sh listens on fixed ports (8081, 8082, 9092, 9090, 9093, 9095, 9096, 9901, 10000, 10100):
//! when one is taken (a `make run` in another terminal, a Prometheus service) it refuses to
//! start and names the port, and this test fails with that message. Its files go to a
//! temporary folder (GRAYGUARD_RUN_DIR), never to the checkout's .run/. Each test starts its
//! own run.sh ([`LocalMesh`]) and ends with Ctrl-C, which must stop every process.

use grayguard_contract::latch::PATH as LATCH_PATH;
use grayguard_contract::{Decision, Side, headers};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use grayguard_e2e::http;
use grayguard_e2e::load::{Lane, Load, describe};
use grayguard_e2e::mesh::{GRAY, local_plugin_config};
use grayguard_e2e::paths;
use grayguard_e2e::process::{Proc, alive, send_signal};
use grayguard_e2e::wait::eventually;

const FRONT: &str = "http://127.0.0.1:10000/infer";
const ADMIN_READY: &str = "http://127.0.0.1:9901/ready";
const GRAY_SIDECAR: &str = "http://127.0.0.1:8082";
const GRAY_CONTROL: &str = "http://127.0.0.1:9092";
/// The latch token the gateways send and the gray sidecar requires (run.sh takes it from the
/// environment when set).
const LATCH_TOKEN: &str = "grayguard-supervision-test-token";

/// run.sh in the background; on drop (a failed test too) it gets Ctrl-C and the time its
/// clean-up takes, so that no process of the mesh outlives the test.
struct LocalMesh {
    proc: Proc,
    run_dir: PathBuf,
    _dir: tempfile::TempDir,
}

impl LocalMesh {
    /// Starts run.sh and waits until it says it is ready, with every process it supervises
    /// running and none restarted yet.
    fn start() -> LocalMesh {
        let dir = tempfile::tempdir().unwrap();
        let run_dir = dir.path().join("run");
        // Ctrl-C reaches run.sh as it does from a terminal even when this test was started
        // in the background of a non-interactive shell (as CI may), which leaves SIGINT
        // ignored, and a signal ignored on entry cannot be trapped by bash.
        let mut cmd = Command::new("env");
        cmd.arg("--default-signal=INT")
            .arg("bash")
            .arg(paths::root().join("mesh-config/local/run.sh"))
            .current_dir(paths::root())
            .env("GRAYGUARD_RUN_DIR", &run_dir)
            .env("GRAYGUARD_RUN_BACKOFF_S", "1")
            .env("GRAYGUARD_ENVOY", paths::envoy())
            .env("GRAYGUARD_SIDECAR", paths::sidecar())
            .env("GRAYGUARD_MODEL", paths::model())
            .env("ORT_DYLIB_PATH", paths::ort_dylib())
            .env("GRAYGUARD_WASM", paths::wasm())
            .env("GRAYGUARD_REPORT", paths::report())
            .env("GRAYGUARD_ALERT_SINK", paths::alert_sink())
            .env("GRAYGUARD_LATCH_TOKEN", LATCH_TOKEN)
            // A healthy gray release (stable's threshold), so that the crash is all that
            // happens to the gray cohort.
            .env("GRAYGUARD_GRAY_CONF", "0.25");
        let mut proc = Proc::spawn("run.sh", cmd, dir.path());
        eventually("run.sh is ready", Duration::from_secs(240), || {
            if let Some(status) = proc.exited() {
                panic!(
                    "mesh-config/local/run.sh did not start ({status}); it needs its fixed ports free:\n{}",
                    proc.log()
                );
            }
            proc.log()
                .contains("[run] ready")
                .then_some(())
                .ok_or_else(|| format!("its log:\n{}", proc.log()))
        });
        let mesh = LocalMesh {
            proc,
            run_dir,
            _dir: dir,
        };
        let status = mesh.status();
        assert!(
            status.len() >= 7 && status.iter().all(|(_, pid, n)| pid.is_some() && *n == 0),
            "{status:?}"
        );
        mesh
    }

    /// The pid run.sh's supervisor has for `name` now (`None` while it waits to restart it).
    fn pid(&self, name: &str) -> Option<u32> {
        read_pid(&self.run_dir.join("pids").join(format!("{name}.pid")))
    }

    /// Every `NAME PID RESTARTS` line of run.sh's status file.
    fn status(&self) -> Vec<(String, Option<u32>, u32)> {
        std::fs::read_to_string(self.run_dir.join("status"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                Some((
                    w.next()?.to_string(),
                    w.next()?.parse().ok(),
                    w.next()?.parse().ok()?,
                ))
            })
            .collect()
    }

    fn restarts(&self, name: &str) -> u32 {
        self.status()
            .into_iter()
            .find(|(n, _, _)| n == name)
            .map_or(0, |s| s.2)
    }

    /// Kills `name` with SIGKILL, waits until it runs again under another pid and `url`
    /// answers 200; the old and the new pid.
    fn kill_and_wait_restarted(&self, name: &str, url: &str) -> (u32, u32) {
        let old = self.pid(name).unwrap();
        assert!(send_signal(old, "KILL"));
        let new = eventually(
            &format!("{name} restarted"),
            Duration::from_secs(90),
            || match self.pid(name) {
                Some(pid) if pid != old && http::get(url).is_ok_and(|r| r.status == 200) => Ok(pid),
                pid => Err(format!("pid {pid:?}; run.sh's log:\n{}", self.proc.log())),
            },
        );
        (old, new)
    }

    /// Ctrl-C, then waits for run.sh to stop everything.
    fn interrupt(&mut self) -> Option<std::process::ExitStatus> {
        send_signal(self.proc.pid(), "INT");
        self.proc.wait_exit(Duration::from_secs(30))
    }

    /// Ctrl-C stops run.sh and every process it supervises, the restarted ones included.
    fn assert_ctrl_c_stops_everything(mut self) {
        let last = self.status();
        let status = self.interrupt().expect("run.sh stops on Ctrl-C");
        assert!(status.success(), "{status}\n{}", self.proc.log());
        for (name, pid, _) in last {
            let pid = pid.unwrap();
            assert!(!alive(pid), "{name} (pid {pid}) outlived run.sh");
        }
        assert!(http::get(ADMIN_READY).is_err(), "nothing listens any more");
    }
}

impl Drop for LocalMesh {
    /// Stops the mesh even when the test failed on the way, Ctrl-C handling included: then
    /// SIGTERM, and at last SIGKILL to every process the supervisor listed, so that nothing
    /// keeps the fixed ports after the test.
    fn drop(&mut self) {
        if self.proc.exited().is_some() || self.interrupt().is_some() {
            return;
        }
        let listed = self.status();
        send_signal(self.proc.pid(), "TERM");
        self.proc.wait_exit(Duration::from_secs(30));
        for (_, pid, _) in listed {
            if let Some(pid) = pid.filter(|&p| alive(p)) {
                send_signal(pid, "KILL");
            }
        }
    }
}

fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[test]
fn a_killed_gray_sidecar_comes_back_with_its_control_port_while_the_rest_keeps_serving() {
    let mesh = LocalMesh::start();
    let config: serde_json::Value = serde_json::from_str(&local_plugin_config()).unwrap();
    let streak = config["breach"]["consecutive_failures"].as_u64().unwrap() as usize;
    let before = mesh.status();

    // Traffic from both cohorts, then the gray sidecar crashes.
    let pace = Duration::from_millis(400);
    let load = Load::start(
        &[FRONT.to_string()],
        &[
            Lane::new("crane-camera", pace, 300),
            Lane::new("dock-camera", pace, 300),
        ],
        Duration::from_secs(120),
    );
    load.wait_until("gray serves its cohort", Duration::from_secs(30), |all| {
        all.iter()
            .filter(|o| o.lane == 0 && o.served_by(GRAY))
            .count()
            >= 3
    });
    let (gray, restarted) =
        mesh.kill_and_wait_restarted("v10-gray", &format!("{GRAY_SIDECAR}/ready"));
    let back_at = load.now();
    load.wait_until(
        "traffic after the restart",
        Duration::from_secs(30),
        |all| {
            all.iter()
                .filter(|o| o.sent > back_at && o.lane == 1)
                .count()
                >= 5
        },
    );
    let all = load.stop();

    let log = mesh.proc.log();
    for line in [
        "[run] v10-gray exited (killed by SIGKILL)",
        "[run] v10-gray restarted (pid",
        "[run] v10-gray ready again after restart 1",
    ] {
        assert!(log.contains(line), "run.sh's log lacks {line:?}:\n{log}");
    }
    assert_eq!(mesh.restarts("v10-gray"), 1);
    assert!(!alive(gray) && alive(restarted));
    // Nobody else was touched.
    for (name, pid, _) in &before {
        if name != "v10-gray" {
            assert_eq!(mesh.pid(name), *pid, "{name} changed");
        }
    }
    // Every request was answered; the stable cohort saw no error; the gray cohort at most
    // the filter's streak before it was shed to stable.
    let lost: Vec<_> = all.iter().filter(|o| o.status.is_none()).cloned().collect();
    assert!(lost.is_empty(), "{}", describe(&lost));
    let stable_errors: Vec<_> = all
        .iter()
        .filter(|o| o.lane == 1 && !o.ok())
        .cloned()
        .collect();
    assert!(stable_errors.is_empty(), "{}", describe(&stable_errors));
    let gray_errors: Vec<_> = all
        .iter()
        .filter(|o| o.lane == 0 && !o.ok())
        .cloned()
        .collect();
    assert!(gray_errors.len() <= streak, "{}", describe(&gray_errors));
    // The restarted sidecar serves.
    let direct = http::post(
        &format!("{GRAY_SIDECAR}/infer"),
        &[("content-type", "image/jpeg")],
        &paths::photo("dog.jpg"),
    )
    .unwrap();
    assert_eq!(direct.status, 200, "{}", direct.text());
    // With the same control listener and token: the latches answer to the run's token only.
    let latches = |token: &str| {
        http::get_with(
            &format!("{GRAY_CONTROL}{LATCH_PATH}"),
            &[("authorization", &format!("Bearer {token}"))],
        )
        .expect("the restarted gray sidecar's control listener answers")
        .status
    };
    assert_eq!(latches(LATCH_TOKEN), 200);
    assert_ne!(latches("not-the-token"), 200);

    mesh.assert_ctrl_c_stops_everything();
}

#[test]
fn a_killed_front_envoy_comes_back_on_its_ports_with_the_filter() {
    let mesh = LocalMesh::start();
    mesh.kill_and_wait_restarted("envoy", ADMIN_READY);
    assert_eq!(mesh.restarts("envoy"), 1);
    let r = http::post(
        FRONT,
        &[
            ("content-type", "image/jpeg"),
            (headers::DEVICE_TYPE, "dock-camera"),
            (headers::DEVICE_ID, "dock-1"),
        ],
        &paths::photo("dog.jpg"),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let decision = Decision::parse(r.header(headers::DECISION).expect("a decision")).unwrap();
    assert!(
        decision.side == Side::Stable && decision.rule.is_none(),
        "{decision}"
    );

    mesh.assert_ctrl_c_stops_everything();
}
