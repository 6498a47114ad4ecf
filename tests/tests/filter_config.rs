//! Plugin configurations through `envoy --mode validate` (which runs the filter's
//! `on_configure`): the canonical mesh configuration loads; bad ones make Envoy exit
//! non-zero with the field and the reason in its output.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use grayguard_e2e::envoy::validate;

/// The canonical plugin configuration of the local and Istio meshes.
const CANONICAL: &str = r#"{
  "route_header": "x-canary-route",
  "stable": "v9-prod",
  "gray": "v10-gray",
  "utc_offset": "+00:00",
  "trust_time_header": false,
  "rules": [
    { "name": "crane-cameras",
      "headers": { "x-device-type": { "exact": "crane-camera" } },
      "percent": 100,
      "sticky_header": "x-device-id" }
  ],
  "breach": {
    "flag_header": "x-canary-breach",
    "latency":   { "header": "x-inference-latency-ms", "max_mean_ms": 1500, "window_s": 30, "min_samples": 10 },
    "box_count": { "header": "x-box-count", "max_sigma": 3, "window_s": 30, "min_samples": 10 },
    "error_rate": { "max": 0.2, "window_s": 30, "min_samples": 10 },
    "consecutive_failures": 5,
    "shed_for_s": 30,
    "probe_percent": 10,
    "scope": "rule",
    "dry_run": false
  }
}"#;

#[test]
fn canonical_config_validates() {
    let (ok, out) = validate(CANONICAL);
    assert!(ok, "{out}");
    assert!(out.contains("grayguard configured: 1 rule(s)"), "{out}");
}

#[test]
fn bad_configs_fail_validation_with_field_and_reason() {
    let cases = [
        (
            CANONICAL.replace(r#""percent": 100"#, r#""percent": 150"#),
            "field `rules[0].percent`: must be 0..=100, got 150",
        ),
        (
            CANONICAL.replace(r#""exact": "crane-camera""#, r#""regex": "crane-(camera""#),
            "field `rules[0].headers.x-device-type.regex`: bad regex",
        ),
        (
            CANONICAL.replace(
                r#""percent": 100,"#,
                r#""percent": 100, "hours": { "from": "6am", "to": "18:00" },"#,
            ),
            "field `rules[0].hours.from`: expected HH:MM",
        ),
        (
            CANONICAL.replace(
                r#""dry_run": false"#,
                r#""dry_run": false, "cooldown_s": 5"#,
            ),
            "field `breach.cooldown_s`: unknown field",
        ),
        (
            CANONICAL.replace(
                r#""window_s": 30, "min_samples": 10 },
    "consecutive_failures""#,
                r#""window_s": -30, "min_samples": 10 },
    "consecutive_failures""#,
            ),
            "field `breach.error_rate.window_s`: must be 0.1..=86400 seconds, got -30",
        ),
    ];
    for (config, reason) in cases {
        assert_ne!(
            config, CANONICAL,
            "the case must change the config ({reason})"
        );
        let (ok, out) = validate(&config);
        assert!(!ok, "accepted: {config}");
        assert!(out.contains(reason), "wanted {reason:?} in:\n{out}");
        let lines = out
            .lines()
            .filter(|l| l.contains("invalid grayguard config"))
            .count();
        assert_eq!(lines, 1, "one line names the problem:\n{out}");
    }
}
