//! The records a gateway logs, one JSON line each in Envoy's log, and the operator's
//! promotion answer: the incident record (`{"grayguard":"incident",...}`) an on-call
//! engineer reads first, and the promotion verdict (`{"grayguard":"promotion",...}`).
//!
//! One type per record: the filter writes them with serde, and everything that reads them
//! back — the report, the alert sink, the tests — reads them with the same types
//! ([`parse_line`] finds one in an Envoy log line). Readers keep working when a newer
//! filter adds a field (unknown fields are ignored; every field added later is optional).

use serde::{Deserialize, Serialize};

use crate::promotion::{Effect, Verdict};
use crate::reason::Trigger;

/// Any record a gateway logs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "grayguard", rename_all = "snake_case")]
pub enum Record {
    Incident(Box<Incident>),
    Promotion(Box<Promotion>),
}

/// What happened to a rule's breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// The breaker opened (from closed, again after a bad probe, or confirmed by a person).
    ShedStart,
    /// Enough healthy probes: the breaker closed.
    ShedEnd,
    /// Confirm mode: a statistical trigger fired; a person is asked.
    AlertStart,
    /// Confirm mode: a person dismissed the alert (no shed; the evidence starts afresh).
    AlertDismissed,
    /// A rule that was already shedding now holds until a person releases it (a person
    /// shed it directly, or the workload says it is held). A hold that opens a closed
    /// breaker is a `shed_start` with `held: true` instead.
    Held,
    /// A person released the hold (here, or at another gateway: `released_via`); the
    /// breaker goes half-open and probes judge gray again.
    Released,
}

impl Event {
    pub fn as_str(self) -> &'static str {
        match self {
            Event::ShedStart => "shed_start",
            Event::ShedEnd => "shed_end",
            Event::AlertStart => "alert_start",
            Event::AlertDismissed => "alert_dismissed",
            Event::Held => "held",
            Event::Released => "released",
        }
    }
}

/// Which breakers a breach sheds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Rule,
    All,
}

/// Which detector judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DetectorKind {
    Sequential,
    Window,
}

impl DetectorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DetectorKind::Sequential => "sequential",
            DetectorKind::Window => "window",
        }
    }
}

/// The incident record: logged when a rule's shedding starts and ends, when confirm mode
/// raises or a person dismisses an alert, and when a hold begins on a shedding rule or is
/// released.
///
/// A person's hold, step by step: `shed_start` with `held: true` (and `confirmed_by` or
/// `held_by`), or `held` when the rule was shedding already; then `released` (with
/// `released_by` where the person clicked, `released_via` at the other gateways); then the
/// half-open probes' `shed_end`, or a `shed_start` with `after_probe`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub event: Event,
    pub trigger: Trigger,
    /// The flag's reason list, when the trigger is the flag or the latch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flag_reason: Option<String>,
    /// The rule, or `*` for `breach.scope: all`.
    pub rule: String,
    pub scope: Scope,
    /// The two route values.
    pub stable: String,
    pub gray: String,
    pub dry_run: bool,
    /// When, RFC 3339 with milliseconds, UTC.
    pub at: String,
    /// The gateway that logged it (Envoy's node id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// The gray pods (their `x-served-by`) this gateway heard from lately, first seen first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gray_pods: Vec<String>,
    /// Shed start: until when the rule goes to stable before probing, and for how long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shed_until: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shed_for_s: Option<f64>,
    /// Shed start: re-opened by a bad half-open probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_probe: Option<bool>,
    /// Shed end: since when the rule was shed, and for how long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shed_since: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shed_duration_s: Option<f64>,
    /// Shed start, held: the shed holds until a person releases it (no half-open phase);
    /// `shed_until` and `shed_for_s` then say what an unheld shed would have lasted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<bool>,
    /// A person's action: who (the identity header, or `anonymous`) and from where.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmed_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dismissed_by: Option<String>,
    /// Who held the rule: a confirmed shed's person, or a direct shed's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_by: Option<String>,
    /// Released: who released it at this gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released_by: Option<String>,
    /// Released: the gateway where a person released it, as the gray workload reported it
    /// (this gateway learned the release from its check).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released_via: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator_from: Option<String>,
    /// Alert start: the signed one-click link's query string (`crate::operator`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirm: Option<String>,
    pub detector: DetectorKind,
    /// Sequential: gray replies per false shed the detector was configured for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arl: Option<f64>,
    /// Sequential: the trigger's tests as last evaluated.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<Evidence>,
    /// Window: the unit's merged window and baseline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<Window>,
    /// Gray failures in a row when it was logged.
    pub consecutive_failures: u32,
    /// The configured margins and ceilings.
    pub limits: Limits,
}

/// One test of the sequential detector: its evidence against the threshold, the sample
/// sizes, the estimated change point, and the effect since then with the bound the same
/// evidence proves (`at_least` when gray went above its margin, `at_most` below).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// The hypothesis (`latency_ratio`, `box_count_below`, ...).
    pub test: String,
    pub log_e: f64,
    pub threshold: f64,
    pub crossed: bool,
    pub gray_n: f64,
    pub control_n: f64,
    /// Gray replies of the epoch before the change point, and when it was seen.
    pub change_at: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_at: Option<String>,
    /// Gray replies since the change point.
    pub since_n: f64,
    pub estimate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_least: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_most: Option<f64>,
}

/// The window detector's view of a unit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Window {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gray_responses: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gray_failures: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_samples: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_mean_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub box_samples: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub box_mean: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_mean: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_std: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_samples: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_held: Option<bool>,
    pub consecutive_failures: u32,
}

/// The configured margins and ceilings, as the record states them (each present when its
/// trigger is on).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_max_mean_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_max_ratio: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_window_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub box_max_shift: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub box_max_sigma: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub box_min_std: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub box_window_s: Option<f64>,
    /// Window detector: the baseline band, `[low, high]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub box_band: Option<[f64; 2]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate_max: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate_max_excess: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate_window_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agreement_min_mean: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_failures: Option<u32>,
}

/// A release owner's hypothesis, as the verdict states it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Hypothesis {
    pub latency_max_increase_ms: Option<f64>,
    pub latency_max_ratio: Option<f64>,
    pub box_count_max_shift: Option<f64>,
    pub error_max_excess: Option<f64>,
    pub agreement_min: Option<f64>,
    pub alpha: f64,
    pub min_gray_responses: u32,
    pub cap_factor: f64,
}

/// One stated effect's interval against its budget, in the effect's units (ms, a ratio, a
/// share, a mean agreement).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EffectBounds {
    pub effect: Effect,
    pub budget: f64,
    pub estimate: Option<f64>,
    pub lower: Option<f64>,
    pub upper: Option<f64>,
    /// Wholly inside the budget (`true`), wholly outside (`false`), or undecided (`null`).
    pub inside: Option<bool>,
    /// The interval's worse and better end as a share of the budget, percent (see
    /// `crate::metrics::filter::PROMOTION_BUDGET_PCT`).
    pub upper_pct: Option<f64>,
    pub lower_pct: Option<f64>,
}

/// One rule's promotion verdict as it stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleVerdict {
    pub rule: String,
    pub state: Verdict,
    /// Gray replies weighed in this epoch.
    pub gray_n: f64,
    pub hypothesis: Option<Hypothesis>,
    pub effects: Vec<EffectBounds>,
    /// When the epoch's evidence began and when the verdict came (RFC 3339), the gray
    /// replies it took and the seconds from one to the other.
    pub epoch_started: Option<String>,
    pub verdict_at: Option<String>,
    pub verdict_gray_n: Option<f64>,
    pub time_to_verdict_s: Option<f64>,
}

/// The line a gateway logs when a rule's verdict is reached.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Promotion {
    /// `proven` or `refuted`.
    pub event: Verdict,
    #[serde(flatten)]
    pub verdict: RuleVerdict,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gray: Option<String>,
}

/// The operator listener's `GET /grayguard/promotion` answer: every rule's verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromotionReply {
    pub gateway: String,
    pub at: String,
    pub rules: Vec<RuleVerdict>,
}

/// The JSON of a record (one line).
pub fn render(r: &Record) -> String {
    // A record of these types always serializes (no maps with non-string keys).
    serde_json::to_string(r).unwrap_or_default()
}

/// The record in one line of Envoy's log (the filter logs `... grayguard: {"grayguard":...}`),
/// if the line carries one: `Some(Err(_))` for a record that does not parse.
pub fn parse_line(line: &str) -> Option<Result<Record, serde_json::Error>> {
    let start = line.find("{\"grayguard\":")?;
    Some(serde_json::from_str(line[start..].trim_end()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incident() -> Incident {
        Incident {
            event: Event::ShedStart,
            trigger: Trigger::BoxCount,
            flag_reason: None,
            rule: "crane-cameras".into(),
            scope: Scope::Rule,
            stable: "v9-prod".into(),
            gray: "v10-gray".into(),
            dry_run: false,
            at: "2026-12-07T02:03:04.005Z".into(),
            gateway: Some("gw-0".into()),
            gray_pods: vec!["yolo-v10-gray-7d9f-x2".into()],
            shed_until: Some("2026-12-07T02:08:04.005Z".into()),
            shed_for_s: Some(300.0),
            after_probe: Some(false),
            shed_since: None,
            shed_duration_s: None,
            held: None,
            confirmed_by: None,
            dismissed_by: None,
            held_by: None,
            released_by: None,
            released_via: None,
            operator_from: None,
            confirm: None,
            detector: DetectorKind::Sequential,
            arl: Some(1e6),
            evidence: vec![Evidence {
                test: "box_count_above".into(),
                log_e: 16.1,
                threshold: 15.6,
                crossed: true,
                gray_n: 40.0,
                control_n: 130.0,
                change_at: 25.0,
                changed_at: None,
                since_n: 15.0,
                estimate: Some(2.8),
                at_least: Some(0.31),
                at_most: None,
            }],
            window: None,
            consecutive_failures: 0,
            limits: Limits {
                box_max_shift: Some(0.25),
                ..Limits::default()
            },
        }
    }

    #[test]
    fn records_round_trip_through_one_log_line() {
        let r = Record::Incident(Box::new(incident()));
        let json = render(&r);
        assert!(
            json.starts_with(r#"{"grayguard":"incident","event":"shed_start""#),
            "{json}"
        );
        let line = format!(
            "[2026-12-07 02:03:04.005][12][warning][wasm] wasm log grayguard grayguard: {json}\n"
        );
        assert_eq!(parse_line(&line).unwrap().unwrap(), r);
        assert!(parse_line("[info] grayguard configured: 1 rule(s)").is_none());
        assert!(
            parse_line(r#"x {"grayguard":"incident","event":"nonsense"}"#)
                .unwrap()
                .is_err()
        );
    }

    #[test]
    fn holds_and_releases_read_back() {
        let held = Incident {
            held: Some(true),
            confirmed_by: Some("ana@ops".into()),
            held_by: Some("ana@ops".into()),
            operator_from: Some("10.0.0.7:5123".into()),
            ..incident()
        };
        let released = Incident {
            event: Event::Released,
            released_via: Some("gw-0".into()),
            ..incident()
        };
        for i in [held, released] {
            let r = Record::Incident(Box::new(i));
            let json = render(&r);
            assert_eq!(parse_line(&json).unwrap().unwrap(), r, "{json}");
        }
        assert!(
            render(&Record::Incident(Box::new(incident())))
                .find("held")
                .is_none()
        );
        assert_eq!(
            [Event::Held, Event::Released].map(Event::as_str),
            ["held", "released"]
        );
        let v: Event = serde_json::from_str("\"released\"").unwrap();
        assert_eq!(v, Event::Released);
    }

    #[test]
    fn a_newer_record_with_more_fields_still_reads() {
        let mut v = serde_json::to_value(Record::Incident(Box::new(incident()))).unwrap();
        v["a_field_from_a_newer_filter"] = "x".into();
        let back: Record = serde_json::from_value(v).unwrap();
        assert_eq!(back, Record::Incident(Box::new(incident())));
    }

    #[test]
    fn a_promotion_verdict_carries_its_rule_flat() {
        let p = Record::Promotion(Box::new(Promotion {
            event: Verdict::Proven,
            verdict: RuleVerdict {
                rule: "crane-cameras".into(),
                state: Verdict::Proven,
                gray_n: 812.0,
                hypothesis: None,
                effects: vec![EffectBounds {
                    effect: Effect::LatencyIncrease,
                    budget: 8.0,
                    estimate: Some(2.9),
                    lower: Some(-0.8),
                    upper: Some(6.4),
                    inside: Some(true),
                    upper_pct: Some(80.0),
                    lower_pct: Some(0.0),
                }],
                epoch_started: None,
                verdict_at: None,
                verdict_gray_n: Some(812.0),
                time_to_verdict_s: Some(95.5),
            },
            gateway: Some("gw-1".into()),
            stable: None,
            gray: None,
        }));
        let json = render(&p);
        assert!(
            json.contains(r#""rule":"crane-cameras""#)
                && json.contains(r#""effect":"latency_increase_ms""#),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<Record>(&json).unwrap(), p);
    }
}
