//! The incident record: one JSON line, logged at warn level when shedding starts and when
//! it ends (and when confirm mode raises or a person dismisses an alert, and when a hold
//! begins on a shedding rule or is released) — what an on-call engineer reads first. The record's type and its JSON are the contract's
//! (`grayguard_contract::record`); this fills it in from the configuration and the
//! detector's view of the unit.

use grayguard_contract::Trigger;
pub use grayguard_contract::record::Event;
use grayguard_contract::record::{
    self, DetectorKind as Kind, Evidence, Incident as Record, Limits, Scope as RecordScope, Window,
};

use crate::config::{Config, DetectorKind, Scope};
use crate::detect::Detail;
use crate::detect::sequential::plan::Finding;

/// The person behind an operator action, and the link they followed.
#[derive(Debug, Clone, Copy, Default)]
pub struct Operator<'a> {
    /// Who confirmed, dismissed, held or released (the identity header, or `anonymous`).
    pub by: Option<&'a str>,
    /// Where the request came from (the operator listener's peer).
    pub from: Option<&'a str>,
    /// AlertStart: the signed one-click link's query string.
    pub link: Option<&'a str>,
    /// Released at another gateway: that gateway, as the gray workload reported it.
    pub via: Option<&'a str>,
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
    /// ShedStart, Held: the shed holds until a person releases it.
    pub held: bool,
    /// Confirm mode's person and link.
    pub operator: Operator<'a>,
    /// The gateway that logs it, and the gray pods it heard from in the epoch.
    pub gateway: &'a str,
    pub gray_pods: &'a [String],
}

/// The JSON line (no newline).
pub fn line(cfg: &Config, i: &Incident) -> String {
    record::render(&record::Record::Incident(Box::new(fill(cfg, i))))
}

/// The record of `i`.
pub fn fill(cfg: &Config, i: &Incident) -> Record {
    let b = &cfg.breach;
    let rule = match b.scope {
        Scope::Rule => cfg
            .rules
            .get(i.unit)
            .map_or("?", |r| r.name.as_str())
            .to_string(),
        Scope::All => "*".into(),
    };
    let op = &i.operator;
    let by = op.by.map(str::to_string);
    let mut r = Record {
        event: i.event,
        trigger: i.trigger,
        flag_reason: i.flag_reason.map(str::to_string),
        rule,
        scope: match b.scope {
            Scope::Rule => RecordScope::Rule,
            Scope::All => RecordScope::All,
        },
        stable: cfg.stable.clone(),
        gray: cfg.gray.clone(),
        dry_run: b.dry_run,
        at: rfc3339(i.at_ns),
        gateway: Some(i.gateway.to_string()),
        gray_pods: i.gray_pods.to_vec(),
        shed_until: None,
        shed_for_s: None,
        after_probe: None,
        shed_since: None,
        shed_duration_s: None,
        held: None,
        confirmed_by: None,
        dismissed_by: None,
        held_by: None,
        released_by: None,
        released_via: op.via.map(str::to_string),
        operator_from: op.from.map(str::to_string),
        confirm: op.link.map(str::to_string),
        detector: Kind::Sequential,
        arl: None,
        evidence: Vec::new(),
        window: None,
        consecutive_failures: i.consecutive,
        limits: limits(cfg, &i.detail),
    };
    match i.event {
        Event::ShedStart => {
            r.shed_until = Some(rfc3339(i.other_ns));
            r.shed_for_s = Some(b.shed_for_ms as f64 / 1000.0);
            r.after_probe = Some(i.probe);
        }
        Event::ShedEnd => {
            r.shed_since = Some(rfc3339(i.other_ns));
            r.shed_duration_s = Some(round3(i.at_ns.saturating_sub(i.other_ns) as f64 / 1e9));
        }
        Event::AlertStart | Event::AlertDismissed | Event::Held | Event::Released => {}
    }
    if i.held && matches!(i.event, Event::ShedStart | Event::Held) {
        r.held = Some(true);
        r.held_by.clone_from(&by);
    }
    match i.event {
        Event::AlertDismissed => r.dismissed_by = by,
        Event::Released => r.released_by = by,
        // A direct shed is held, not confirmed: there was no alert.
        Event::ShedStart if i.trigger == Trigger::Operator => {}
        Event::Held => {}
        _ => r.confirmed_by = by,
    }
    match &i.detail {
        Detail::Window { window, baseline } => {
            r.detector = Kind::Window;
            let mut w = Window {
                consecutive_failures: i.consecutive,
                ..Window::default()
            };
            if let Some(s) = window {
                w.gray_responses = Some(s.responses);
                w.gray_failures = Some(s.failures);
                w.error_rate = num(s.error_rate());
                w.latency_samples = Some(s.lat_n);
                w.latency_mean_ms = num(s.lat_mean());
                w.box_samples = Some(s.box_n);
                w.box_mean = num(s.box_mean());
            }
            if let Some(base) = baseline {
                w.baseline_mean = num(Some(base.mean));
                w.baseline_std = num(Some(base.std));
                w.baseline_samples = Some(base.samples);
                w.baseline_held = Some(base.held);
            }
            r.window = Some(w);
        }
        Detail::Sequential { findings } => {
            r.arl = Some(b.arl);
            r.evidence = findings.iter().map(finding).collect();
        }
    }
    r
}

/// The configured margins and ceilings the detector judged by.
fn limits(cfg: &Config, detail: &Detail) -> Limits {
    let b = &cfg.breach;
    let window = b.detector == DetectorKind::Window;
    let mut l = Limits::default();
    if let Some(t) = &b.latency {
        l.latency_max_mean_ms = t.max_mean_ms;
        if window {
            l.latency_window_s = Some(t.window_ms as f64 / 1000.0);
        } else {
            l.latency_max_ratio = Some(t.max_ratio);
        }
    }
    if let Some(t) = &b.box_count {
        if window {
            l.box_max_sigma = Some(t.max_sigma);
            l.box_min_std = Some(t.min_std);
            l.box_window_s = Some(t.window_ms as f64 / 1000.0);
            if let Detail::Window {
                baseline: Some(base),
                ..
            } = detail
            {
                let band = base.band(t);
                l.box_band = Some([round3(base.mean - band), round3(base.mean + band)]);
            }
        } else {
            l.box_max_shift = Some(t.max_shift);
        }
    }
    if let Some(t) = &b.error_rate {
        l.error_rate_max = t.max;
        if window {
            l.error_rate_window_s = Some(t.window_ms as f64 / 1000.0);
        } else {
            l.error_rate_max_excess = Some(t.max_excess);
        }
    }
    l.agreement_min_mean = b.agreement.as_ref().map(|t| t.min_mean);
    l.consecutive_failures = b.consecutive_failures;
    l
}

/// One test of the sequential detector: the hypothesis, its evidence against the
/// threshold, the sample sizes, the estimated change point, and the effect since then with
/// the bound the same evidence proves.
fn finding(f: &Finding) -> Evidence {
    let bound = num(Some(f.bound));
    let above = f.hypothesis.above();
    Evidence {
        test: f.hypothesis.as_str().into(),
        log_e: round3(f.log_e),
        threshold: round3(f.threshold),
        crossed: f.crossed(),
        gray_n: f.gray_n,
        control_n: round3(f.control_n),
        change_at: f.change_at,
        changed_at: (f.change_ms > 0.0).then(|| rfc3339((f.change_ms * 1e6) as u64)),
        since_n: f.since_n,
        estimate: num(Some(f.estimate)),
        at_least: bound.filter(|_| above),
        at_most: bound.filter(|_| !above),
    }
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// A finite value rounded to 3 decimals (the record has no room for NaN or infinities).
fn num(v: Option<f64>) -> Option<f64> {
    v.filter(|x| x.is_finite()).map(round3)
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
    use serde_json::{Value, json};

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
            held: false,
            operator: Operator::default(),
            gateway: "gw-0",
            gray_pods: &[],
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
            held: false,
            operator: Operator::default(),
            gateway: "gw-0",
            gray_pods: &[],
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
