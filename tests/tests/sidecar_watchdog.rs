//! The sidecar's watchdog raising `x-canary-breach` with the real model under forced breaches
//! (a tiny latency budget, a box baseline nothing matches, a memory fraction every process
//! exceeds), clearing them as the window empties, and self-checks reusing the last real image.

use grayguard_contract::headers;
use std::time::{Duration, Instant};

use grayguard_client::exposition;
use grayguard_e2e::http;
use grayguard_e2e::sidecar::SidecarBuilder;

#[test]
fn forced_breaches_are_stamped_and_clear_with_the_window() {
    let sc = SidecarBuilder::new("v-watchdog")
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
        .start();

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
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let r = http::get(&sc.url("/nope")).unwrap();
        if r.header(headers::BREACH) == Some("memory") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "flags did not clear: {:?}",
            r.header(headers::BREACH)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let text = sc.metrics();
    assert_eq!(
        exposition::value(&text, "grayguard_sidecar_breach_active{reason=\"latency\"}"),
        Some(0.0)
    );
    assert_eq!(
        exposition::value(&text, "grayguard_sidecar_breach_active{reason=\"memory\"}"),
        Some(1.0)
    );

    // With no traffic for a self-check interval, self-checks run on the last real image (the
    // synthetic one only served before the first request arrived).
    let deadline = Instant::now() + Duration::from_secs(20);
    let real_check = |log: &str| {
        log.lines()
            .any(|l| l.contains("self-check passed") && l.contains("last request image"))
    };
    while !real_check(&sc.proc.log()) {
        assert!(
            Instant::now() < deadline,
            "no self-check on the real image:\n{}",
            sc.proc.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
