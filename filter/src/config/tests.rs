//! The configuration contract: the README's example, the defaults, and one rejection per
//! field naming the field and the reason.

use crate::config::*;
use crate::schedule::Window;

/// The example of the README (every key set).
pub const FULL: &str = r#"{
  "route_header": "x-canary-route",
  "stable": "v9-prod",
  "gray": "v10-gray",
  "utc_offset": "+08:00",
  "trust_time_header": false,
  "rules": [
    { "name": "night-cranes",
      "headers": { "x-device-type": { "exact": "crane-camera" } },
      "hours": { "from": "00:00", "to": "06:00" },
      "percent": 100,
      "sticky_header": "x-device-id" }
  ],
  "breach": {
    "flag_header": "x-canary-breach",
    "latency":   { "header": "x-inference-latency-ms", "max_mean_ms": 100, "window_s": 120, "min_samples": 20 },
    "box_count": { "header": "x-box-count", "max_sigma": 3, "window_s": 120, "min_samples": 20 },
    "error_rate": { "max": 0.05, "window_s": 60, "min_samples": 20 },
    "consecutive_failures": 3,
    "shed_for_s": 300,
    "probe_percent": 1,
    "scope": "rule",
    "dry_run": false
  }
}"#;

#[test]
fn full_example_parses() {
    let c = parse(FULL.as_bytes()).unwrap();
    assert_eq!(c.route_header, "x-canary-route");
    assert_eq!(c.utc_offset_min, 480);
    assert_eq!(c.rules.len(), 1);
    let r = &c.rules[0];
    assert_eq!(r.hours, Some(Window { from: 0, to: 360 }));
    assert_eq!(r.percent_bp, 10_000);
    assert_eq!(r.sticky_header.as_deref(), Some("x-device-id"));
    let b = &c.breach;
    assert_eq!(b.latency.as_ref().unwrap().window_ms, 120_000);
    assert_eq!(b.box_count.as_ref().unwrap().min_std, DEFAULT_MIN_STD);
    assert_eq!(b.error_rate.as_ref().unwrap().max, Some(0.05));
    assert_eq!(b.consecutive_failures, Some(3));
    assert_eq!(b.shed_for_ms, 300_000);
    assert_eq!(b.probe_bp, 100);
    assert_eq!(b.scope, Scope::Rule);
    assert_eq!(c.max_window_ms(), 120_000);
    assert_eq!(c.min_window_ms(), 60_000);
}

#[test]
fn minimal_config_gets_defaults() {
    let c = parse(br#"{"stable":"a","gray":"b","rules":[{"name":"r"}]}"#).unwrap();
    assert_eq!(c.route_header, "x-canary-route");
    assert_eq!(c.utc_offset_min, 0);
    assert!(!c.trust_time_header);
    assert_eq!(c.rules[0].percent_bp, 10_000);
    assert!(c.rules[0].hours.is_none());
    assert!(c.rules[0].headers.is_empty());
    let b = &c.breach;
    assert_eq!(b.flag_header, "x-canary-breach");
    assert!(b.latency.is_none() && b.box_count.is_none() && b.error_rate.is_none());
    assert!(b.consecutive_failures.is_none());
    assert_eq!(b.shed_for_ms, 300_000);
    assert_eq!(b.probe_bp, 100);
    assert_eq!(b.probe_successes, DEFAULT_PROBE_SUCCESSES);
    assert_eq!(b.scope, Scope::Rule);
    assert!(!b.dry_run);
    assert_eq!(c.sync_ms, DEFAULT_SYNC_MS);
    assert_eq!(c.max_window_ms(), 0);
}

#[test]
fn sequential_settings_and_their_defaults() {
    let c = parse(
        br#"{"stable":"a","gray":"b","rules":[{"name":"r"}],"breach":{
             "latency":{"header":"l"},"box_count":{"header":"b"},"error_rate":{}}}"#,
    )
    .unwrap();
    let b = &c.breach;
    assert_eq!(b.detector, DetectorKind::Sequential);
    assert_eq!(b.arl, DEFAULT_ARL);
    assert_eq!(b.control, Control::All);
    assert_eq!(b.control_memory, DEFAULT_CONTROL_MEMORY as f64);
    assert!(b.agreement.is_none() && c.promote.is_none());
    let l = b.latency.as_ref().unwrap();
    assert_eq!((l.max_mean_ms, l.max_ratio), (None, DEFAULT_MAX_RATIO));
    assert_eq!(l.min_samples, DEFAULT_MIN_SAMPLES as u32);
    let x = b.box_count.as_ref().unwrap();
    assert_eq!(
        (x.max_shift, x.max_sigma),
        (DEFAULT_MAX_SHIFT, DEFAULT_MAX_SIGMA)
    );
    let e = b.error_rate.as_ref().unwrap();
    assert_eq!((e.max, e.max_excess), (None, DEFAULT_MAX_EXCESS));
    assert!(!c.time_header_upstream);
    let set = parse(
        br#"{"stable":"a","gray":"b","rules":[],"time_header_upstream":true,"breach":{
             "detector":"window","arl":1e5,"control":"cohort","control_memory":500,
             "latency":{"header":"l","max_mean_ms":80,"max_ratio":1.5},
             "error_rate":{"max":0.1,"max_excess":0.05}}}"#,
    )
    .unwrap();
    let b = &set.breach;
    assert_eq!(
        (b.detector, b.arl, b.control, b.control_memory),
        (DetectorKind::Window, 1e5, Control::Cohort, 500.0)
    );
    assert_eq!(b.latency.as_ref().unwrap().max_mean_ms, Some(80.0));
    assert_eq!(b.error_rate.as_ref().unwrap().max_excess, 0.05);
    assert!(set.time_header_upstream);
}

#[test]
fn operator_secrets_come_inline_or_from_the_environment_and_never_print() {
    let inline = parse(
        br#"{"stable":"a","gray":"b","rules":[{"name":"r","action":"confirm"}],
             "operator":{"port":10100,"secret":"0123456789abcdef!"}}"#,
    )
    .unwrap();
    assert_eq!(inline.rules[0].action, Action::Confirm);
    let op = inline.operator.as_ref().unwrap();
    assert_eq!(
        (op.port, op.secret.as_slice(), op.link_ttl_s),
        (10100, &b"0123456789abcdef!"[..], 3600)
    );
    assert!(
        !format!("{inline:?}").contains("0123456789abcdef"),
        "redacted in Debug"
    );
    let json = br#"{"stable":"a","gray":"b","rules":[],"breach":{"action":"confirm"},
                    "operator":{"port":1,"secret_env":"GG_SECRET"}}"#;
    let mut c = parse(json).unwrap();
    assert_eq!(c.breach.action, Action::Confirm);
    let err = c.clone().resolve_secret(|_| None).unwrap_err();
    assert_eq!(err.field(), "operator.secret_env");
    assert!(err.to_string().contains("GG_SECRET is not set"), "{err}");
    let short = c.clone().resolve_secret(|_| Some("x".into())).unwrap_err();
    assert!(short.to_string().contains("at least 16"));
    c.resolve_secret(|n| (n == "GG_SECRET").then(|| "s".repeat(20)))
        .unwrap();
    assert_eq!(c.operator.unwrap().secret, b"s".repeat(20));
}

#[test]
fn header_names_are_lower_cased() {
    let c = parse(
        br#"{"stable":"a","gray":"b","route_header":"X-Route",
             "rules":[{"name":"r","headers":{"X-Device-Type":{"prefix":"cr"}}}]}"#,
    )
    .unwrap();
    assert_eq!(c.route_header, "x-route");
    assert_eq!(c.rules[0].headers[0].0, "x-device-type");
}

#[test]
fn regex_is_anchored() {
    let c = parse(
        br#"{"stable":"a","gray":"b",
             "rules":[{"name":"r","headers":{"x":{"regex":"crane-(cam|lidar)"}}}]}"#,
    )
    .unwrap();
    let m = &c.rules[0].headers[0].1;
    assert!(m.matches("crane-cam"));
    assert!(m.matches("crane-lidar"));
    assert!(!m.matches("big-crane-cam"));
    assert!(!m.matches("crane-camera"));
}

/// Rejections: (config, field named, words in the reason).
#[test]
fn rejections_name_field_and_reason() {
    let base = |rules: &str, breach: &str| {
        format!(r#"{{"stable":"v9","gray":"v10","rules":[{rules}],"breach":{{{breach}}}}}"#)
    };
    let r = |extra: &str| base(&format!(r#"{{"name":"r"{extra}}}"#), "");
    let b = |breach: &str| base(r#"{"name":"r"}"#, breach);
    let cases: Vec<(String, &str, &str)> = vec![
        ("not json".into(), ".", "expected"),
        (
            r#"{"stable":"a","gray":"b"}"#.into(),
            ".",
            "missing field `rules`",
        ),
        (
            r#"{"stable":"a","gray":"b","rules":[],"color":1}"#.into(),
            "color",
            "unknown field",
        ),
        (
            r#"{"stable":"a","gray":"a","rules":[]}"#.into(),
            "gray",
            "differ",
        ),
        (
            r#"{"stable":"a b","gray":"c","rules":[]}"#.into(),
            "stable",
            "expected",
        ),
        (
            r#"{"stable":"a","gray":"b","rules":[],"utc_offset":"8"}"#.into(),
            "utc_offset",
            "+HH:MM",
        ),
        (
            r#"{"stable":"a","gray":"b","rules":[],"route_header":"bad header"}"#.into(),
            "route_header",
            "header name",
        ),
        (
            r#"{"stable":"a","gray":"b","rules":[],"sync_ms":1}"#.into(),
            "sync_ms",
            "10..=10000",
        ),
        (
            r#"{"stable":"a","gray":"b","rules":{}}"#.into(),
            "rules",
            "expected a sequence",
        ),
        (
            r(r#","hours":{"from":"25:00","to":"06:00"}"#),
            "rules[0].hours.from",
            "HH:MM",
        ),
        (
            r(r#","hours":{"from":"01:00","to":"6"}"#),
            "rules[0].hours.to",
            "HH:MM",
        ),
        (
            r(r#","hours":{"from":"01:00","to":"01:00"}"#),
            "rules[0].hours",
            "empty",
        ),
        (
            r(r#","hours":{"from":"01:00"}"#),
            "rules[0].hours",
            "missing field `to`",
        ),
        (r(r#","percent":101"#), "rules[0].percent", "0..=100"),
        (r(r#","percent":-1"#), "rules[0].percent", "0..=100"),
        (r(r#","percent":"50""#), "rules[0].percent", "invalid type"),
        (
            r(r#","headers":{"x":{"regex":"(unclosed"}}"#),
            "rules[0].headers.x.regex",
            "bad regex",
        ),
        (
            r(r#","headers":{"x":{"exact":"a","prefix":"b"}}"#),
            "rules[0].headers.x",
            "exactly one",
        ),
        (
            r(r#","headers":{"x":{}}"#),
            "rules[0].headers.x",
            "exactly one",
        ),
        (
            r(r#","headers":{"x":{"glob":"*"}}"#),
            "rules[0].headers.x.glob",
            "unknown field",
        ),
        (
            r(r#","sticky_header":"""#),
            "rules[0].sticky_header",
            "header name",
        ),
        (r(r#","extra":true"#), "rules[0].extra", "unknown field"),
        (
            base(r#"{"name":"r"},{"name":"r"}"#, ""),
            "rules[1].name",
            "duplicate",
        ),
        (
            base(r#"{"name":"has space"}"#, ""),
            "rules[0].name",
            "expected",
        ),
        (
            b(r#""latency":{"header":"l","max_mean_ms":0,"window_s":1,"min_samples":1}"#),
            "breach.latency.max_mean_ms",
            "positive",
        ),
        (
            b(r#""latency":{"header":"l","max_mean_ms":1,"window_s":-5,"min_samples":1}"#),
            "breach.latency.window_s",
            "seconds",
        ),
        (
            b(r#""latency":{"header":"l","max_mean_ms":1,"window_s":1,"min_samples":0}"#),
            "breach.latency.min_samples",
            "1..=",
        ),
        (
            b(r#""latency":{"max_mean_ms":1}"#),
            "breach.latency",
            "missing field `header`",
        ),
        (
            b(r#""detector":"window","latency":{"header":"l"}"#),
            "breach.latency.max_mean_ms",
            "required by the window detector",
        ),
        (
            b(r#""detector":"window","error_rate":{}"#),
            "breach.error_rate.max",
            "required by the window detector",
        ),
        (
            b(r#""detector":"bayes""#),
            "breach.detector",
            "unknown variant",
        ),
        (b(r#""arl":10"#), "breach.arl", "must be in"),
        (b(r#""arl":1e13"#), "breach.arl", "must be in"),
        (
            b(r#""alpha":0.01"#),
            "breach.alpha",
            "replaced by `breach.arl`",
        ),
        (
            b(r#""agreement":{"min_mean":1.5}"#),
            "breach.agreement.min_mean",
            "must be in",
        ),
        (
            b(r#""detector":"window","agreement":{}"#),
            "breach.agreement",
            "a sequential trigger",
        ),
        (
            b(r#""control":"cohorts""#),
            "breach.control",
            "unknown variant",
        ),
        (b(r#""control_memory":5"#), "breach.control_memory", "10..="),
        (
            b(r#""control_memory":50,"latency":{"header":"l","max_ratio":1.5,"min_samples":60}"#),
            "breach.latency.min_samples",
            "more than breach.control_memory",
        ),
        (
            b(r#""latency":{"header":"l","max_ratio":0.9}"#),
            "breach.latency.max_ratio",
            "must be in [1",
        ),
        (
            b(r#""box_count":{"header":"b","max_shift":0}"#),
            "breach.box_count.max_shift",
            "must be in",
        ),
        (
            b(r#""error_rate":{"max_excess":1}"#),
            "breach.error_rate.max_excess",
            "[0, 1)",
        ),
        (
            b(r#""box_count":{"header":"b","max_sigma":-3,"window_s":1,"min_samples":1}"#),
            "breach.box_count.max_sigma",
            "positive",
        ),
        (
            b(
                r#""box_count":{"header":"b","max_sigma":3,"window_s":1,"min_samples":1,"baseline":{"mean":-1,"std":1}}"#,
            ),
            "breach.box_count.baseline.mean",
            "≥ 0",
        ),
        (
            b(
                r#""box_count":{"header":"b","max_sigma":3,"window_s":1,"min_samples":1,"min_std":-0.5}"#,
            ),
            "breach.box_count.min_std",
            "≥ 0",
        ),
        (
            b(r#""error_rate":{"max":1.5,"window_s":1,"min_samples":1}"#),
            "breach.error_rate.max",
            "[0, 1)",
        ),
        (
            b(r#""consecutive_failures":0"#),
            "breach.consecutive_failures",
            "1..=",
        ),
        (b(r#""shed_for_s":0"#), "breach.shed_for_s", "(0,"),
        (
            b(r#""probe_percent":200"#),
            "breach.probe_percent",
            "0..=100",
        ),
        (
            b(r#""probe_successes":0"#),
            "breach.probe_successes",
            "1..=",
        ),
        (b(r#""scope":"cluster""#), "breach.scope", "unknown variant"),
        (b(r#""dry_run":"yes""#), "breach.dry_run", "invalid type"),
        (
            b(r#""flag_header":"a:b""#),
            "breach.flag_header",
            "header name",
        ),
    ];
    for (json, field, reason) in cases {
        let err = match parse(json.as_bytes()) {
            Ok(_) => panic!("accepted {json}"),
            Err(e) => e,
        };
        assert_eq!(err.field(), field, "{json}\n→ {err}");
        let text = err.to_string();
        assert!(
            text.contains(reason),
            "{json}\n→ {text} (wanted {reason:?})"
        );
        assert!(text.contains(&format!("`{field}`")), "{text}");
        assert!(!text.contains('\n'), "one line: {text}");
    }
}
