//! A short soak in `make test`: the real `grayguard-soak` (what `make soak` runs for ten
//! minutes against `make run`) for under a minute against the same mesh on free ports — the
//! shipped front Envoy configuration (the canonical plugin configuration, the gray route's
//! fallback onto stable), the stable sidecar and the incident's gray sidecar (confidence
//! 0.001, shed and probed as in `make run`), one ONNX Runtime thread each — with real photos
//! and a tenth of bad inputs. Every soak target must be met (the binary's `--check`: no error
//! in any cohort, the counts of the clients, Envoy, the filter and the sidecars agreeing with
//! the gray route's retries onto stable accounted), and its summary must show that the soak
//! really measured something.

use std::process::Command;
use std::time::Duration;

use grayguard_e2e::mesh::{Fleet, Front, GRAY, STABLE, local_plugin_config};
use grayguard_e2e::paths;
use grayguard_e2e::process::Proc;
use grayguard_e2e::sidecar::SidecarBuilder;
use serde_json::Value;

const RATE: f64 = 3.0;
const DURATION_S: u64 = 30;

#[test]
fn a_short_soak_of_the_local_mesh_meets_every_target() {
    // As `make run`: the shipped configuration, the gray sidecar with its control listener
    // (the latch's target), one gateway.
    let mesh = Fleet::start_on(
        Front::Shipped,
        &local_plugin_config(),
        SidecarBuilder::new(STABLE).args(&["--threads", "1", "--conf", "0.25"]),
        SidecarBuilder::new(GRAY).args(&["--threads", "1", "--conf", "0.001"]),
        1,
        2,
    );
    let envoy = &mesh.gateways[0];
    let out = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(paths::soak());
    cmd.args(["--target", &envoy.url("/infer")])
        .args(["--admin", &envoy.admin_url("")])
        .args(["--sidecar", &format!("{STABLE}={}", mesh.stable.url(""))])
        .args(["--sidecar", &format!("{GRAY}={}", mesh.gray.url(""))])
        .args(["--process", &format!("envoy={}", envoy.proc.pid())])
        .args(["--process", &format!("{STABLE}={}", mesh.stable.proc.pid())])
        .args(["--process", &format!("{GRAY}={}", mesh.gray.proc.pid())])
        .args([
            "--rate",
            &RATE.to_string(),
            "--duration-s",
            &DURATION_S.to_string(),
        ])
        .args(["--warmup-s", "10", "--sample-s", "2", "--check"])
        .arg("--images")
        .arg(paths::images_dir())
        .arg("--out")
        .arg(out.path());
    let mut soak = Proc::spawn("grayguard-soak", cmd, out.path());
    // The soak ends on its own: its schedule, then at most one request timeout (30 s).
    let status = soak
        .wait_exit(Duration::from_secs(DURATION_S + 60))
        .unwrap_or_else(|| panic!("the soak did not end:\n{}", soak.log()));
    let log = soak.log();
    eprintln!("{log}");
    assert!(status.success(), "a soak target was not met ({status})");

    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("summary.json")).unwrap())
            .unwrap();
    let scheduled = (RATE * DURATION_S as f64) as u64;
    assert_eq!(summary["scheduled"], scheduled);
    assert_eq!(summary["answered"], scheduled);
    for cohort in summary["cohorts"].as_array().unwrap() {
        // Both cohorts got bad inputs, and each got its 4xx.
        assert!(cohort["bad_sent"].as_u64().unwrap() > 0, "{cohort}");
        assert_eq!(cohort["bad_sent"], cohort["bad_as_expected"], "{cohort}");
    }
    let processes = summary["processes"].as_array().unwrap();
    assert_eq!(processes.len(), 3, "{processes:?}");
    for p in processes {
        assert!(p["growth"].is_number(), "{p}");
    }
    let counts = summary["counts"].as_array().unwrap();
    assert_eq!(counts.len(), 3, "to gray, to stable, fallbacks: {counts:?}");
    for c in counts {
        assert_eq!(c["agree"], true, "{c}");
    }
    // Envoy's gray route was read: its retries onto stable, none refused.
    assert!(summary["retries"]["sent"].is_number(), "{summary}");
    assert_eq!(summary["retries"]["overflow"], 0.0, "{summary}");
    // The incident's gray version was shed during the soak, as in `make run`.
    assert!(
        summary["breaker_open_s"].as_f64().unwrap() > 0.0,
        "{summary}"
    );
    let png = std::fs::read(out.path().join("soak.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
}
