//! The incident record: one JSON line, logged at warn level when shedding starts and when
//! it ends — what an on-call engineer reads first.

use serde_json::{Map, Value, json};

use grayguard_contract::Trigger;

use crate::config::{Config, DetectorKind, Scope};
use crate::detect::Detail;
use crate::detect::sequential::plan::Finding;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The breaker opened (from closed, again after a bad probe, or confirmed by a person).
    ShedStart,
    /// Enough healthy probes: the breaker closed.
    ShedEnd,
    /// Confirm mode: a statistical trigger fired; a person is asked.
    AlertStart,
    /// Confirm mode: a person dismissed the alert (no shed; the evidence starts afresh).
    AlertDismissed,
}

/// The person behind an operator action, and the link they followed.
#[derive(Debug, Clone, Copy, Default)]
pub struct Operator<'a> {
    /// Who confirmed or dismissed (the identity header, or `anonymous`).
    pub by: Option<&'a str>,
    /// Where the request came from (the operator listener's peer).
    pub from: Option<&'a str>,
    /// AlertStart: the signed one-click link's query string.
    pub link: Option<&'a str>,
}

/// Everything the record says.
#[derive(Debug, Clone)]
pub struct Incident<'a> {
    pub event: Event,
    pub trigger: Trigger,
    /// The flag's reason list, when the trigger is the flag.
    pub flag_reason: Option<&'a str>,
    /// The unit: a rule index (`scope: rule`) or 0 (`scope: all`).
    pub unit: usize,
    /// Now, ns since the epoch.
    pub at_ns: u64,
    /// ShedStart: end of the open phase; ShedEnd: when shedding started.
    pub other_ns: u64,
    /// What the detector saw.
    pub detail: Detail,
    pub consecutive: u32,
    /// Re-opened by a bad half-open probe.
    pub probe: bool,
    /// Confirm mode's person and link.
    pub operator: Operator<'a>,
}

/// The JSON line (no newline).
pub fn line(cfg: &Config, i: &Incident) -> String {
    let b = &cfg.breach;
    let rule = match b.scope {
        Scope::Rule => cfg
            .rules
            .get(i.unit)
            .map_or("?", |r| r.name.as_str())
            .to_string(),
        Scope::All => "*".into(),
    };
    let mut o = Map::new();
    o.insert("grayguard".into(), json!("incident"));
    o.insert(
        "event".into(),
        json!(match i.event {
            Event::ShedStart => "shed_start",
            Event::ShedEnd => "shed_end",
            Event::AlertStart => "alert_start",
            Event::AlertDismissed => "alert_dismissed",
        }),
    );
    o.insert("trigger".into(), json!(i.trigger.as_str()));
    if let Some(r) = i.flag_reason {
        o.insert("flag_reason".into(), json!(r));
    }
    o.insert("rule".into(), json!(rule));
    o.insert(
        "scope".into(),
        json!(match b.scope {
            Scope::Rule => "rule",
            Scope::All => "all",
        }),
    );
    o.insert("stable".into(), json!(cfg.stable));
    o.insert("gray".into(), json!(cfg.gray));
    o.insert("dry_run".into(), json!(b.dry_run));
    o.insert("at".into(), json!(rfc3339(i.at_ns)));
    match i.event {
        Event::ShedStart => {
            o.insert("shed_until".into(), json!(rfc3339(i.other_ns)));
            o.insert("shed_for_s".into(), json!(b.shed_for_ms as f64 / 1000.0));
            o.insert("after_probe".into(), json!(i.probe));
        }
        Event::ShedEnd => {
            o.insert("shed_since".into(), json!(rfc3339(i.other_ns)));
            o.insert(
                "shed_duration_s".into(),
                json!(round3(i.at_ns.saturating_sub(i.other_ns) as f64 / 1e9)),
            );
        }
        Event::AlertStart | Event::AlertDismissed => {}
    }
    let op = &i.operator;
    if let Some(by) = op.by {
        let key = match i.event {
            Event::AlertDismissed => "dismissed_by",
            _ => "confirmed_by",
        };
        o.insert(key.into(), json!(by));
    }
    if let Some(from) = op.from {
        o.insert("operator_from".into(), json!(from));
    }
    if let Some(link) = op.link {
        o.insert("confirm".into(), json!(link));
    }
    match &i.detail {
        Detail::Window { window, baseline } => {
            o.insert("detector".into(), json!("window"));
            let mut w = Map::new();
            if let Some(s) = window {
                w.insert("gray_responses".into(), json!(s.responses));
                w.insert("gray_failures".into(), json!(s.failures));
                w.insert("error_rate".into(), num(s.error_rate()));
                w.insert("latency_samples".into(), json!(s.lat_n));
                w.insert("latency_mean_ms".into(), num(s.lat_mean()));
                w.insert("box_samples".into(), json!(s.box_n));
                w.insert("box_mean".into(), num(s.box_mean()));
            }
            if let Some(base) = baseline {
                w.insert("baseline_mean".into(), num(Some(base.mean)));
                w.insert("baseline_std".into(), num(Some(base.std)));
                w.insert("baseline_samples".into(), json!(base.samples));
                w.insert("baseline_held".into(), json!(base.held));
            }
            w.insert("consecutive_failures".into(), json!(i.consecutive));
            o.insert("window".into(), Value::Object(w));
        }
        Detail::Sequential { findings } => {
            o.insert("detector".into(), json!("sequential"));
            o.insert("arl".into(), json!(b.arl));
            let tests: Vec<Value> = findings.iter().map(finding).collect();
            o.insert("evidence".into(), Value::Array(tests));
            o.insert("consecutive_failures".into(), json!(i.consecutive));
        }
    }
    let mut lim = Map::new();
    let window = b.detector == DetectorKind::Window;
    if let Some(t) = &b.latency {
        if let Some(max) = t.max_mean_ms {
            lim.insert("latency_max_mean_ms".into(), json!(max));
        }
        if window {
            lim.insert(
                "latency_window_s".into(),
                json!(t.window_ms as f64 / 1000.0),
            );
        } else {
            lim.insert("latency_max_ratio".into(), json!(t.max_ratio));
        }
    }
    if let Some(t) = &b.box_count {
        if window {
            lim.insert("box_max_sigma".into(), json!(t.max_sigma));
            lim.insert("box_min_std".into(), json!(t.min_std));
            lim.insert("box_window_s".into(), json!(t.window_ms as f64 / 1000.0));
            if let Detail::Window {
                baseline: Some(base),
                ..
            } = &i.detail
            {
                let band = base.band(t);
                lim.insert(
                    "box_band".into(),
                    json!([round3(base.mean - band), round3(base.mean + band)]),
                );
            }
        } else {
            lim.insert("box_max_shift".into(), json!(t.max_shift));
        }
    }
    if let Some(t) = &b.error_rate {
        if let Some(max) = t.max {
            lim.insert("error_rate_max".into(), json!(max));
        }
        if window {
            lim.insert(
                "error_rate_window_s".into(),
                json!(t.window_ms as f64 / 1000.0),
            );
        } else {
            lim.insert("error_rate_max_excess".into(), json!(t.max_excess));
        }
    }
    if let Some(t) = &b.agreement {
        lim.insert("agreement_min_mean".into(), json!(t.min_mean));
    }
    if let Some(n) = b.consecutive_failures {
        lim.insert("consecutive_failures".into(), json!(n));
    }
    o.insert("limits".into(), Value::Object(lim));
    Value::Object(o).to_string()
}

/// One test of the sequential detector: the hypothesis, its evidence against the
/// threshold, the sample sizes, the estimated change point, and the effect since then with
/// the bound the same evidence proves.
fn finding(f: &Finding) -> Value {
    let mut o = Map::new();
    o.insert("test".into(), json!(f.hypothesis.as_str()));
    o.insert("log_e".into(), num(Some(f.log_e)));
    o.insert("threshold".into(), num(Some(f.threshold)));
    o.insert("crossed".into(), json!(f.crossed()));
    o.insert("gray_n".into(), json!(f.gray_n));
    o.insert("control_n".into(), num(Some(f.control_n)));
    o.insert("change_at".into(), json!(f.change_at));
    if f.change_ms > 0.0 {
        o.insert(
            "changed_at".into(),
            json!(rfc3339((f.change_ms * 1e6) as u64)),
        );
    }
    o.insert("since_n".into(), json!(f.since_n));
    o.insert("estimate".into(), num(Some(f.estimate)));
    let side = if f.hypothesis.above() {
        "at_least"
    } else {
        "at_most"
    };
    o.insert(side.into(), num(Some(f.bound)));
    Value::Object(o)
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

fn num(v: Option<f64>) -> Value {
    v.filter(|x| x.is_finite())
        .map_or(Value::Null, |x| json!(round3(x)))
}

/// `2024-05-01T03:04:05.678Z` from ns since the epoch (proleptic Gregorian, UTC).
pub fn rfc3339(epoch_ns: u64) -> String {
    let secs = epoch_ns / 1_000_000_000;
    let ms = (epoch_ns / 1_000_000) % 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;
    use crate::detect::window::breach::Baseline;
    use crate::detect::window::windows::Stats;

    #[test]
    fn timestamps() {
        let cases = [
            (0, "1970-01-01T00:00:00.000Z"),
            (951_782_400_000_000_000, "2000-02-29T00:00:00.000Z"),
            (1_704_151_800_123_456_789, "2024-01-01T23:30:00.123Z"),
            (4_107_542_399_999_000_000, "2100-02-28T23:59:59.999Z"),
        ];
        for (ns, want) in cases {
            assert_eq!(rfc3339(ns), want);
        }
    }

    #[test]
    fn start_and_end_records() {
        let cfg = parse(
            br#"{"stable":"v9","gray":"v10","rules":[{"name":"night-cranes"}],"breach":{
              "detector":"window",
              "box_count":{"header":"b","max_sigma":3,"window_s":10,"min_samples":10},
              "latency":{"header":"l","max_mean_ms":100,"window_s":10,"min_samples":10},
              "shed_for_s":30}}"#,
        )
        .unwrap();
        let mut w = Stats::default();
        for _ in 0..20 {
            w.add_boxes(40.0);
            w.add_latency(12.0);
        }
        w.responses = 20;
        let start = Incident {
            event: Event::ShedStart,
            trigger: Trigger::BoxCount,
            flag_reason: None,
            unit: 0,
            at_ns: 1_704_151_800_000_000_000,
            other_ns: 1_704_151_830_000_000_000,
            detail: Detail::Window {
                window: Some(w),
                baseline: Some(Baseline {
                    mean: 4.0,
                    std: 0.5,
                    samples: 50,
                    held: false,
                }),
            },
            consecutive: 0,
            probe: false,
            operator: Operator::default(),
        };
        let text = line(&cfg, &start);
        assert!(!text.contains('\n'));
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["event"], "shed_start");
        assert_eq!(v["trigger"], "box_count");
        assert_eq!(v["rule"], "night-cranes");
        assert_eq!(v["at"], "2024-01-01T23:30:00.000Z");
        assert_eq!(v["shed_until"], "2024-01-01T23:30:30.000Z");
        assert_eq!(v["window"]["box_mean"], 40.0);
        assert_eq!(v["window"]["gray_responses"], 20);
        assert_eq!(v["window"]["error_rate"], 0.0);
        assert_eq!(v["window"]["baseline_mean"], 4.0);
        assert_eq!(v["window"]["baseline_held"], false);
        assert_eq!(v["limits"]["box_band"], json!([1.0, 7.0]));
        assert_eq!(v["limits"]["latency_max_mean_ms"], 100.0);
        assert!(v.get("flag_reason").is_none());

        let end = Incident {
            event: Event::ShedEnd,
            trigger: Trigger::Flag,
            flag_reason: Some("box_count"),
            at_ns: start.other_ns + 2_500_000_000,
            other_ns: start.at_ns,
            detail: Detail::Window {
                window: None,
                baseline: None,
            },
            ..start.clone()
        };
        let v: Value = serde_json::from_str(&line(&cfg, &end)).unwrap();
        assert_eq!(v["event"], "shed_end");
        assert_eq!(v["flag_reason"], "box_count");
        assert_eq!(v["shed_duration_s"], 32.5);
        assert_eq!(v["window"]["consecutive_failures"], 0);
        assert_eq!(v["detector"], "window");
    }

    #[test]
    fn sequential_records_carry_the_evidence() {
        use crate::detect::sequential::plan::Hypothesis;
        let cfg = parse(
            br#"{"stable":"v9","gray":"v10","rules":[{"name":"cranes"}],"breach":{
              "box_count":{"header":"b"}}}"#,
        )
        .unwrap();
        let f = Finding {
            hypothesis: Hypothesis::BoxesAbove,
            log_e: 19.5,
            threshold: 18.7,
            gray_n: 442.0,
            control_n: 130.0,
            min_samples: 20.0,
            change_at: 400.0,
            change_ms: 1_700_000_000_000.0,
            since_n: 42.0,
            estimate: 2.5,
            bound: 1.5,
        };
        let i = Incident {
            event: Event::ShedStart,
            trigger: Trigger::BoxCount,
            flag_reason: None,
            unit: 0,
            at_ns: 0,
            other_ns: 0,
            detail: Detail::Sequential { findings: vec![f] },
            consecutive: 0,
            probe: false,
            operator: Operator::default(),
        };
        let v: Value = serde_json::from_str(&line(&cfg, &i)).unwrap();
        assert_eq!(v["detector"], "sequential");
        assert_eq!(v["arl"], 1e6);
        let e = &v["evidence"][0];
        assert_eq!(e["test"], "box_count_above");
        assert_eq!(
            (e["log_e"].as_f64(), e["threshold"].as_f64()),
            (Some(19.5), Some(18.7))
        );
        assert_eq!(e["crossed"], true);
        assert_eq!(
            (e["change_at"].as_f64(), e["since_n"].as_f64()),
            (Some(400.0), Some(42.0))
        );
        assert_eq!(e["changed_at"], "2023-11-14T22:13:20.000Z");
        assert_eq!(e["at_least"], 1.5);
        assert_eq!(v["limits"]["box_max_shift"], 0.25);
    }
}
