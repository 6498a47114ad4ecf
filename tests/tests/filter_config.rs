//! Plugin configurations through `envoy --mode validate` (which runs the filter's
//! `on_configure`): the canonical mesh configuration loads; bad ones make Envoy exit
//! non-zero with the field and the reason in its output.

use grayguard_e2e::envoy::validate;
use grayguard_e2e::mesh::local_plugin_config;

#[test]
fn canonical_config_validates() {
    let (ok, out) = validate(&local_plugin_config());
    assert!(ok, "{out}");
    assert!(out.contains("grayguard configured: 1 rule(s)"), "{out}");
}

#[test]
fn bad_configs_fail_validation_with_field_and_reason() {
    let canonical = local_plugin_config();
    let cases = [
        (
            canonical.replace(r#""percent": 100"#, r#""percent": 150"#),
            "field `rules[0].percent`: must be 0..=100, got 150",
        ),
        (
            canonical.replace(r#""exact": "crane-camera""#, r#""regex": "crane-(camera""#),
            "field `rules[0].headers.x-device-type.regex`: bad regex",
        ),
        (
            canonical.replace(r#""from": "00:00""#, r#""from": "6am""#),
            "field `rules[0].hours.from`: expected HH:MM",
        ),
        (
            canonical.replace(
                r#""dry_run": false"#,
                r#""dry_run": false, "cooldown_s": 5"#,
            ),
            "field `breach.cooldown_s`: unknown field",
        ),
        (
            canonical.replace(r#""max_excess": 0.02"#, r#""max_excess": 1.5"#),
            "field `breach.error_rate.max_excess`: must be a share in [0, 1), got 1.5",
        ),
        (
            canonical.replace(r#""arl": 1000000"#, r#""arl": 0"#),
            "field `breach.arl`: must be in [100, 1000000000000], got 0",
        ),
        (
            canonical
                .replace(r#""detector": "sequential""#, r#""detector": "window""#)
                .replace(r#""max_mean_ms": 1500, "#, ""),
            "field `breach.latency.max_mean_ms`: required by the window detector",
        ),
    ];
    for (config, reason) in cases {
        assert_ne!(
            config, canonical,
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
