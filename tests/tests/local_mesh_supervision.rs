//! `make run`'s script (mesh-config/local/run.sh) supervises its processes like a kubelet:
//! the gray sidecar killed with SIGKILL mid-traffic is logged and started again after its
//! back-off, with its control listener and latch token, while the front Envoy and the stable
//! sidecar keep serving (no client sees an error: the gray cohort's requests are answered by
//! stable meanwhile, no request goes unanswered); a killed front Envoy comes back on its ports
//! too; Ctrl-C still stops everything, the restarted processes included.
//!
//! Each test starts its own run.sh on the fixed ports of `make run` (`LocalMesh`; it fails
//! naming the port when one is taken) and ends with Ctrl-C, which must stop every process.

use grayguard_contract::latch::PATH as LATCH_PATH;
use grayguard_contract::{Decision, Side, headers};
use std::time::Duration;

use grayguard_e2e::http;
use grayguard_e2e::load::{Lane, Load, describe};
use grayguard_e2e::local_mesh::{ADMIN, FRONT, GRAY_CONTROL, GRAY_SIDECAR, Launch, LocalMesh};
use grayguard_e2e::mesh::{GRAY, STABLE};
use grayguard_e2e::paths;
use grayguard_e2e::process::{alive, send_signal};
use grayguard_e2e::wait::eventually;

/// The latch token the gateways send and the gray sidecar requires (run.sh takes it from the
/// environment when set).
const LATCH_TOKEN: &str = "grayguard-supervision-test-token";

/// run.sh with a one-second back-off, a known latch token and a healthy gray release
/// (stable's threshold), so that a fault is all that happens to the gray cohort.
fn start() -> LocalMesh {
    LocalMesh::start(
        Launch::Terminal,
        &[
            ("GRAYGUARD_RUN_BACKOFF_S", "1"),
            ("GRAYGUARD_LATCH_TOKEN", LATCH_TOKEN),
            ("GRAYGUARD_GRAY_CONF", "0.25"),
        ],
    )
}

/// Kills `name` with SIGKILL, waits until it runs again under another pid and `url`
/// answers 200; the old and the new pid.
fn kill_and_wait_restarted(mesh: &LocalMesh, name: &str, url: &str) -> (u32, u32) {
    let old = mesh.pid(name).unwrap();
    assert!(send_signal(old, "KILL"));
    let new = eventually(
        &format!("{name} restarted"),
        Duration::from_secs(90),
        || match mesh.pid(name) {
            Some(pid) if pid != old && http::get(url).is_ok_and(|r| r.status == 200) => Ok(pid),
            pid => Err(format!("pid {pid:?}; run.sh's log:\n{}", mesh.log())),
        },
    );
    (old, new)
}

/// Ctrl-C stops run.sh and every process it supervises, the restarted ones included.
fn assert_ctrl_c_stops_everything(mut mesh: LocalMesh) {
    let last = mesh.status();
    assert!(mesh.signal("INT"));
    assert!(
        mesh.wait_stopped(Duration::from_secs(30)),
        "run.sh stops on Ctrl-C:\n{}",
        mesh.log()
    );
    let status = mesh.launcher.exited().expect("run.sh exited");
    assert!(status.success(), "{status}\n{}", mesh.log());
    for c in last {
        let pid = c.pid.unwrap();
        assert!(!alive(pid), "{} (pid {pid}) outlived run.sh", c.name);
    }
    assert!(
        http::get(&format!("{ADMIN}/ready")).is_err(),
        "nothing listens any more"
    );
}

#[test]
fn a_killed_gray_sidecar_comes_back_with_its_control_port_while_no_client_sees_an_error() {
    let mesh = start();
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
    let killed_at = load.now();
    let (gray, restarted) =
        kill_and_wait_restarted(&mesh, "v10-gray", &format!("{GRAY_SIDECAR}/ready"));
    let back_at = load.now();
    load.wait_for_replies_after(
        "the stable cohort after the restart",
        Duration::from_secs(30),
        1,
        back_at,
        5,
    );
    let all = load.stop();

    let log = mesh.log();
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
    for c in &before {
        if c.name != "v10-gray" {
            assert_eq!(mesh.pid(&c.name), c.pid, "{} changed", c.name);
        }
    }
    // Every request was answered, and no client of either cohort saw an error: while gray
    // was down its cohort's requests were answered by stable (fallbacks, then shed).
    let errors: Vec<_> = all.iter().filter(|o| !o.ok()).cloned().collect();
    assert!(errors.is_empty(), "{}", describe(&errors));
    let fallbacks = all.iter().filter(|o| o.fallback()).count();
    assert!(
        fallbacks >= 1,
        "no request met the dead gray sidecar:\n{}",
        describe(&all)
    );
    let from_gray: Vec<_> = all
        .iter()
        .filter(|o| o.sent > killed_at && o.done < back_at && o.served_by(GRAY))
        .cloned()
        .collect();
    assert!(from_gray.is_empty(), "{}", describe(&from_gray));
    assert!(
        all.iter()
            .filter(|o| o.lane == 1)
            .all(|o| o.served_by(STABLE))
    );
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
    eprintln!(
        "run.sh, gray SIGKILL: {} requests, 0 errors, {fallbacks} answered by stable for gray",
        all.len()
    );

    assert_ctrl_c_stops_everything(mesh);
}

#[test]
fn a_killed_front_envoy_comes_back_on_its_ports_with_the_filter() {
    let mesh = start();
    kill_and_wait_restarted(&mesh, "envoy", &format!("{ADMIN}/ready"));
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

    assert_ctrl_c_stops_everything(mesh);
}
