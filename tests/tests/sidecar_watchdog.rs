//! The sidecar's watchdog raising `x-canary-breach` with the real model under forced breaches
//! (a tiny latency budget, a box baseline nothing matches, a memory fraction every process
//! exceeds), clearing them as the window empties, and self-checks reusing the last real image;
//! asked for CUDA where there is none, it says so once and runs on the CPU.

use grayguard_contract::headers;
use std::time::Duration;

use grayguard_client::exposition;
use grayguard_e2e::http;
use grayguard_e2e::sidecar::{Sidecar, SidecarBuilder};
use grayguard_e2e::wait::eventually;

/// A sidecar whose watchdog breaches on every reason but errors, self-checking every half
/// second, asked for CUDA.
fn watchdog_sidecar() -> Sidecar {
    SidecarBuilder::new("v-watchdog")
        // The environment twin of --watchdog-latency-budget-ms: 1 ms, which no CPU run meets.
        .env("GRAYGUARD_SIDECAR_WATCHDOG_LATENCY_BUDGET_MS", "1")
        .flag("--watchdog-min-samples", "2")
        // Long enough that two requests on a loaded 2-core machine share it.
        .flag("--watchdog-window-s", "8")
        // Two boxes expected per person.jpg; a baseline of 50 ± 1 cannot hold.
        .flag("--watchdog-box-mean", "50")
        .flag("--watchdog-box-std", "1")
        .flag("--watchdog-memory-fraction", "0.000001")
        .flag("--watchdog-memory-hold-s", "0")
        .flag("--memory-poll-ms", "50")
        .flag("--self-check-interval-s", "0.5")
        .flag("--log", "info,grayguard_sidecar::lifecycle=debug")
        // No CUDA in this build or on this machine: one log line, then CPU.
        .flag("--device", "cuda")
        .start()
}

#[test]
fn asked_for_cuda_without_one_it_says_so_once_and_serves_on_the_cpu() {
    let sc = watchdog_sidecar();
    let log = sc.proc.log();
    assert_eq!(log.matches("falling back to CPU").count(), 1, "{log}");
    let text = sc.metrics();
    assert_eq!(
        exposition::value(
            &text,
            "grayguard_sidecar_info{device=\"cpu\",model_version=\"v-watchdog\"}"
        ),
        Some(1.0)
    );
    assert_eq!(sc.infer_file("person.jpg").status, 200);
}

#[test]
fn forced_breaches_are_stamped_on_every_reply_and_clear_with_the_window() {
    let sc = watchdog_sidecar();
    // Memory breaches on its own (hold 0); latency and box count need two samples.
    let first = sc.infer_file("person.jpg");
    assert_eq!(first.status, 200);
    assert_eq!(first.header(headers::BREACH), Some("memory"));
    let second = sc.infer_file("person.jpg");
    assert_eq!(second.status, 200);
    assert_eq!(
        second.header(headers::BREACH),
        Some("latency,box_count,memory")
    );
    let text = sc.metrics();
    for (reason, want) in [
        ("latency", 1.0),
        ("box_count", 1.0),
        ("errors", 0.0),
        ("memory", 1.0),
    ] {
        let series = format!("grayguard_sidecar_breach_active{{reason=\"{reason}\"}}");
        assert_eq!(exposition::value(&text, &series), Some(want), "{series}");
    }
    // Error replies carry the flags too.
    let nope = http::get(&sc.url("/nope")).unwrap();
    assert_eq!(nope.status, 404);
    assert_eq!(
        nope.header(headers::BREACH),
        Some("latency,box_count,memory")
    );

    // Once the 8 s window has no samples, latency and box count clear; memory stays.
    eventually(
        "latency and box count clear",
        Duration::from_secs(40),
        || {
            let r = http::get(&sc.url("/nope")).unwrap();
            match r.header(headers::BREACH) {
                Some("memory") => Ok(()),
                flags => Err(format!("{}: {flags:?}", headers::BREACH)),
            }
        },
    );
    let text = sc.metrics();
    assert_eq!(
        exposition::value(&text, "grayguard_sidecar_breach_active{reason=\"latency\"}"),
        Some(0.0)
    );
    assert_eq!(
        exposition::value(&text, "grayguard_sidecar_breach_active{reason=\"memory\"}"),
        Some(1.0)
    );
}

#[test]
fn without_traffic_self_checks_run_on_the_last_real_image() {
    let sc = watchdog_sidecar();
    assert_eq!(sc.infer_file("person.jpg").status, 200);
    // With no traffic for a self-check interval, self-checks run on the last real image (the
    // synthetic one only served before the first request arrived).
    eventually(
        "a self-check on the last real image",
        Duration::from_secs(20),
        || {
            let log = sc.proc.log();
            log.lines()
                .any(|l| l.contains("self-check passed") && l.contains("last request image"))
                .then_some(())
                .ok_or_else(|| format!("the log:\n{log}"))
        },
    );
}
