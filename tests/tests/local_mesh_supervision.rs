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
//! temporary folder (GRAYGUARD_RUN_DIR), never to the checkout's .run/.

use grayguard_contract::latch::PATH as LATCH_PATH;
use grayguard_contract::{Decision, Side, headers};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use grayguard_e2e::http;
use grayguard_e2e::load::{Lane, Load, describe};
use grayguard_e2e::mesh::{GRAY, local_plugin_config};
use grayguard_e2e::paths;
use grayguard_e2e::process::{Proc, alive, send_signal};

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
        let deadline = Instant::now() + Duration::from_secs(240);
        while !proc.log().contains("[run] ready") {
            if let Some(status) = proc.exited() {
                panic!(
                    "mesh-config/local/run.sh did not start ({status}); it needs its fixed ports free:\n{}",
                    proc.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "run.sh was not ready:\n{}",
                proc.log()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
        LocalMesh {
            proc,
            run_dir,
            _dir: dir,
        }
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

    /// Waits until `name` runs again under a pid other than `old` and `url` answers 200.
    fn wait_restarted(&self, name: &str, old: u32, url: &str) -> u32 {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Some(pid) = self.pid(name)
                && pid != old
                && http::get(url).is_ok_and(|r| r.status == 200)
            {
                return pid;
            }
            assert!(
                Instant::now() < deadline,
                "{name} was not restarted:\n{}",
                self.proc.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Ctrl-C, then waits for run.sh to stop everything.
    fn interrupt(&mut self) -> Option<std::process::ExitStatus> {
        send_signal(self.proc.pid(), "INT");
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(s) = self.proc.exited() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
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
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.proc.exited().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
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
fn run_sh_restarts_a_killed_sidecar_and_envoy_while_the_rest_keeps_serving() {
    let mut mesh = LocalMesh::start();
    let config: serde_json::Value = serde_json::from_str(&local_plugin_config()).unwrap();
    let streak = config["breach"]["consecutive_failures"].as_u64().unwrap() as usize;
    let before = mesh.status();
    assert!(
        before.len() >= 7 && before.iter().all(|(_, pid, n)| pid.is_some() && *n == 0),
        "{before:?}"
    );

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
    let gray = mesh.pid("v10-gray").unwrap();
    assert!(send_signal(gray, "KILL"));
    let restarted = mesh.wait_restarted("v10-gray", gray, &format!("{GRAY_SIDECAR}/ready"));
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
    let photo = std::fs::read(paths::image("dog.jpg")).unwrap();
    let direct = http::post(
        &format!("{GRAY_SIDECAR}/infer"),
        &[("content-type", "image/jpeg")],
        &photo,
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

    // The front Envoy crashes too: it is back on its ports, with the filter.
    let envoy = mesh.pid("envoy").unwrap();
    assert!(send_signal(envoy, "KILL"));
    mesh.wait_restarted("envoy", envoy, ADMIN_READY);
    let r = http::post(
        FRONT,
        &[
            ("content-type", "image/jpeg"),
            (headers::DEVICE_TYPE, "dock-camera"),
            (headers::DEVICE_ID, "dock-1"),
        ],
        &photo,
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let decision = Decision::parse(r.header(headers::DECISION).expect("a decision")).unwrap();
    assert!(
        decision.side == Side::Stable && decision.rule.is_none(),
        "{decision}"
    );

    // Ctrl-C stops every process, the restarted ones included.
    let last = mesh.status();
    let status = mesh.interrupt().expect("run.sh stops on Ctrl-C");
    assert!(status.success(), "{status}\n{}", mesh.proc.log());
    for (name, pid, _) in last {
        let pid = pid.unwrap();
        assert!(!alive(pid), "{name} (pid {pid}) outlived run.sh");
    }
    assert!(http::get(ADMIN_READY).is_err(), "nothing listens any more");
}
