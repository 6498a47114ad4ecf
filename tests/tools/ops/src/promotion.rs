//! The promotion report: a rule's verdict on the release owner's hypothesis ("the gray
//! version adds at most 8 ms and loses no detections"), as every gateway holds it. The
//! filter decides per gateway and epoch (`pending` → `proven` or `refuted`, kept until a
//! shed starts a new epoch) and publishes it three ways, all read here:
//!
//! - the gauges `grayguard_promotion_state{rule}` and
//!   `grayguard_promotion_budget_pct{rule,effect,bound}`, through Prometheus: the fleet's
//!   verdict now ([`read_fleet`], what the Flagger webhooks answer on, see `webhook`) and,
//!   over the epoch, each effect's interval narrowing into or out of its budget (the
//!   charts, against the gateways' `grayguard_gray_responses`);
//! - `GET /grayguard/promotion` on each gateway's operator listener: the hypothesis and
//!   each effect's interval in natural units as that gateway sees them now;
//! - one `{"grayguard":"promotion",...}` line in the gateway's Envoy log when a verdict is
//!   reached, with the same fields and the time it took.
//!
//! Every source that fails becomes a line under "Problems" and the page is still written.

use std::collections::BTreeMap;
use std::path::Path;

use jiff::{SignedDuration, Timestamp};
use serde_json::{Map, Value};

use grayguard_client::fetch::Client;
use grayguard_client::prometheus::{Prometheus, Series};
use grayguard_contract::metrics::filter;
use grayguard_contract::promotion::{Bound, Effect, PATH, Verdict};

use crate::chart::{Line, Marker};
use crate::promotion_chart::{self, IntervalChart};
use crate::record;
use crate::report::{ChartOut, Sources, step};

/// Longest look back for the charts, seconds (a week).
pub const MAX_LOOKBACK_S: u64 = 7 * 86_400;

/// A `grayguard_promotion_budget_pct` at or above this is the filter's mark for "no
/// interval yet" (it publishes `u64::MAX >> 12` while a side has no value).
pub const UNMEASURED_PCT: f64 = 1e12;

/// The flags of the promotion report (flattened into `grayguard-report`'s).
#[derive(Debug, Clone, clap::Args)]
pub struct Flags {
    /// Base URL of a gateway's operator listener (repeatable): its `GET
    /// /grayguard/promotion` gives each rule's hypothesis and each effect's interval as
    /// that gateway sees them now.
    #[arg(long = "operator", default_values_t = ["http://127.0.0.1:10100".to_string()])]
    pub operators: Vec<String>,
    /// Write the promotion report of this rule (its verdict on every gateway, each effect's
    /// interval narrowing over the gray replies) to --out instead of an incident report.
    #[arg(long, value_name = "RULE")]
    pub promotion: Option<String>,
    /// How far back the promotion report's charts reach at most, seconds (at most a week);
    /// they start at the earliest epoch a gateway reports, when one does.
    #[arg(long, default_value_t = 3600)]
    pub promotion_lookback_s: u64,
}

impl Flags {
    /// The operator URLs, checked.
    pub fn operators(&self) -> Result<Vec<String>, String> {
        self.operators
            .iter()
            .map(|u| {
                if u.starts_with("http://") && u.len() > "http://".len() {
                    Ok(u.trim_end_matches('/').to_string())
                } else {
                    Err(format!("--operator: {u:?} is not an http:// URL"))
                }
            })
            .collect()
    }

    pub fn lookback(&self) -> Result<SignedDuration, String> {
        if self.promotion_lookback_s == 0 || self.promotion_lookback_s > MAX_LOOKBACK_S {
            return Err(format!(
                "--promotion-lookback-s: must be 1..={MAX_LOOKBACK_S}"
            ));
        }
        Ok(SignedDuration::from_secs(self.promotion_lookback_s as i64))
    }
}

/// A rule name as a PromQL string literal's content.
pub fn quote(rule: &str) -> String {
    rule.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Every gateway's `grayguard_promotion_state` of `rule`, one series per gateway: the query
/// the Flagger webhooks and this report read the fleet's verdict with.
pub fn state_query(rule: &str) -> String {
    format!("{}{{rule=\"{}\"}}", filter::PROMOTION_STATE, quote(rule))
}

/// One gateway's verdict of a rule, as Prometheus last scraped it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayState {
    /// The scrape's `instance` (the gateway's admin address).
    pub instance: String,
    /// The `gateway` target label where the scrape sets one (the local mesh's `gw-i`), else
    /// the instance.
    pub gateway: String,
    /// `None`: a value the contract does not define.
    pub verdict: Option<Verdict>,
}

impl GatewayState {
    fn from_series(s: &Series) -> Option<GatewayState> {
        let value = s.points.last()?.1;
        let instance = s.label("instance").to_string();
        let gateway = match s.label("gateway") {
            "" => instance.clone(),
            g => g.to_string(),
        };
        let verdict = (value >= 0.0 && value.fract() == 0.0)
            .then(|| Verdict::from_gauge(value as u64))
            .flatten();
        Some(GatewayState {
            instance,
            gateway,
            verdict,
        })
    }
}

/// The fleet's verdict from each gateway's: `refuted` when any gateway refuted, `proven`
/// when at least one reports the rule and every one that does has proven it, else
/// `pending` (the same arithmetic as the alert rules and Argo Rollouts' analysis:
/// `(max(state) == 2) or min(state)`).
pub fn fleet(states: &[GatewayState]) -> Verdict {
    if states.iter().any(|s| s.verdict == Some(Verdict::Refuted)) {
        Verdict::Refuted
    } else if !states.is_empty() && states.iter().all(|s| s.verdict == Some(Verdict::Proven)) {
        Verdict::Proven
    } else {
        Verdict::Pending
    }
}

/// Every gateway's verdict of `rule` at `at`, from Prometheus (sorted by gateway). The query
/// is evaluated at the next whole second (the API is given seconds), so that a scrape in the
/// second before `at` is seen.
pub fn read_fleet(
    prom: &Prometheus,
    rule: &str,
    at: Timestamp,
) -> Result<Vec<GatewayState>, String> {
    let next = Timestamp::from_second(at.as_second() + 1).unwrap_or(at);
    let mut states: Vec<GatewayState> = prom
        .instant(&state_query(rule), next)?
        .iter()
        .filter_map(GatewayState::from_series)
        .collect();
    states.sort_by(|a, b| (&a.gateway, &a.instance).cmp(&(&b.gateway, &b.instance)));
    Ok(states)
}

/// One effect's interval against its budget, in natural units, as a gateway reported it.
#[derive(Debug, Clone, PartialEq)]
pub struct EffectRow {
    pub effect: String,
    pub budget: Option<f64>,
    pub estimate: Option<f64>,
    pub lower: Option<f64>,
    pub upper: Option<f64>,
    /// `Some(true)` wholly inside the budget, `Some(false)` wholly outside.
    pub inside: Option<bool>,
    /// The worse end as % of the budget (proven at most 100), the better end (refuted above).
    pub upper_pct: Option<f64>,
    pub lower_pct: Option<f64>,
}

/// One gateway's standing on one rule: from its operator listener now, or from the log
/// line it wrote when the verdict was reached.
#[derive(Debug, Clone, PartialEq)]
pub struct Standing {
    /// The operator URL or the log file it came from.
    pub source: String,
    /// The gateway's own id (its node id), when it says.
    pub gateway: String,
    pub rule: String,
    pub state: Verdict,
    /// Gray replies weighed in this epoch.
    pub gray_n: Option<f64>,
    pub hypothesis: Option<Map<String, Value>>,
    pub effects: Vec<EffectRow>,
    pub epoch_started: Option<Timestamp>,
    pub verdict_at: Option<Timestamp>,
    pub verdict_gray_n: Option<f64>,
    pub time_to_verdict_s: Option<f64>,
}

fn time(v: &Value) -> Option<Timestamp> {
    v.as_str()?.parse().ok()
}

/// A rule's object as the filter renders it (`GET /grayguard/promotion`'s `rules[]`, and
/// the verdict's log line); `gateway` where the object carries none.
pub fn parse_standing(source: &str, gateway: &str, v: &Value) -> Option<Standing> {
    let rule = v["rule"].as_str()?.to_string();
    let state = Verdict::parse(v["state"].as_str()?)?;
    let num = |x: &Value| x.as_f64();
    let effects = v["effects"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|e| {
                    Some(EffectRow {
                        effect: e["effect"].as_str()?.to_string(),
                        budget: num(&e["budget"]),
                        estimate: num(&e["estimate"]),
                        lower: num(&e["lower"]),
                        upper: num(&e["upper"]),
                        inside: e["inside"].as_bool(),
                        upper_pct: num(&e["upper_pct"]),
                        lower_pct: num(&e["lower_pct"]),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    Some(Standing {
        source: source.to_string(),
        gateway: v["gateway"].as_str().unwrap_or(gateway).to_string(),
        rule,
        state,
        gray_n: num(&v["gray_n"]),
        hypothesis: v["hypothesis"].as_object().cloned(),
        effects,
        epoch_started: time(&v["epoch_started"]),
        verdict_at: time(&v["verdict_at"]),
        verdict_gray_n: num(&v["verdict_gray_n"]),
        time_to_verdict_s: num(&v["time_to_verdict_s"]),
    })
}

/// `GET /grayguard/promotion`'s answer: `{"gateway","at","rules":[...]}`.
pub fn parse_operator(source: &str, body: &str) -> Result<Vec<Standing>, String> {
    let v: Value = serde_json::from_str(body).map_err(|e| format!("{source}: not JSON: {e}"))?;
    let gateway = v["gateway"].as_str().unwrap_or("");
    let rules = v["rules"]
        .as_array()
        .ok_or_else(|| format!("{source}: no `rules` list"))?;
    Ok(rules
        .iter()
        .filter_map(|r| parse_standing(source, gateway, r))
        .collect())
}

/// The member every verdict line carries (keys are written in sorted order).
const MARKER: &str = r#""grayguard":"promotion""#;

/// The verdict lines (`{"grayguard":"promotion",...}`) in an Envoy log's text, in order.
pub fn scan_records(source: &str, text: &str) -> Vec<Standing> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(marker) = line.find(MARKER) else {
            continue;
        };
        for (start, _) in line[..marker].match_indices('{') {
            let mut objects =
                serde_json::Deserializer::from_str(&line[start..]).into_iter::<Value>();
            if let Some(Ok(v)) = objects.next()
                && v["grayguard"] == "promotion"
            {
                out.extend(parse_standing(source, "", &v));
                break;
            }
        }
    }
    out
}

/// What the promotion report is about and how much of the past it charts.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub rule: String,
    pub now: Timestamp,
    /// The charts reach back at most this far.
    pub lookback: SignedDuration,
    pub max_points: u32,
    pub min_step_s: u32,
    pub max_log_bytes: u64,
}

/// Everything the promotion page shows.
#[derive(Debug, Clone)]
pub struct Report {
    pub generated_at: Timestamp,
    pub rule: String,
    pub prometheus: String,
    /// Each gateway's verdict, from Prometheus.
    pub fleet: Result<Vec<GatewayState>, String>,
    /// The fleet's verdict (pending when Prometheus could not say).
    pub verdict: Verdict,
    /// Each gateway's standing now, from its operator listener.
    pub standings: Vec<Standing>,
    /// The verdicts the gateways logged for this rule, oldest first.
    pub records: Vec<Standing>,
    /// The hypothesis in force (the gateways', which come from one configuration).
    pub hypothesis: Option<Map<String, Value>>,
    /// The charted span.
    pub window: Option<(Timestamp, Timestamp)>,
    pub step_s: u32,
    pub charts: Vec<ChartOut>,
    pub problems: Vec<String>,
}

impl Report {
    /// When the current epochs began (the earliest gateway's) and when the fleet's verdict
    /// was reached: the last gateway's proof, or the first refutation. `None` while pending
    /// or without the times.
    pub fn time_to_verdict(&self) -> Option<(Timestamp, Timestamp)> {
        let current = self.current();
        let start = current.iter().filter_map(|s| s.epoch_started).min()?;
        let at = match self.verdict {
            Verdict::Proven => current
                .iter()
                .filter(|s| s.state == Verdict::Proven)
                .filter_map(|s| s.verdict_at)
                .max()?,
            Verdict::Refuted => current
                .iter()
                .filter(|s| s.state == Verdict::Refuted)
                .filter_map(|s| s.verdict_at)
                .min()?,
            Verdict::Pending => return None,
        };
        Some((start, at))
    }

    /// Each gateway's latest standing: its operator's now, else its last logged verdict.
    pub fn current(&self) -> Vec<&Standing> {
        let mut by_gateway: BTreeMap<&str, &Standing> = BTreeMap::new();
        for r in &self.records {
            by_gateway.insert(&r.gateway, r);
        }
        for s in &self.standings {
            by_gateway.insert(&s.gateway, s);
        }
        by_gateway.into_values().collect()
    }
}

/// Reads every source and assembles the promotion report of `opts.rule`.
pub fn gather(client: &Client, sources: &Sources, operators: &[String], opts: &Options) -> Report {
    let mut problems = Vec::new();
    let prom = Prometheus::new(&sources.prometheus, client.clone());
    let rule = opts.rule.clone();

    let mut standings = Vec::new();
    for base in operators {
        let url = format!("{base}{PATH}");
        match client
            .get(&url, &[])
            .map_err(|e| e.to_string())
            .and_then(|body| parse_operator(&url, &body))
        {
            Ok(all) => standings.extend(all.into_iter().filter(|s| s.rule == rule)),
            Err(e) => problems.push(e),
        }
    }
    let mut records = Vec::new();
    for path in &sources.envoy_logs {
        match record::read_tail(path, opts.max_log_bytes) {
            Ok((text, _)) => records.extend(
                scan_records(&short(path), &text)
                    .into_iter()
                    .filter(|s| s.rule == rule),
            ),
            Err(e) => problems.push(format!("{}: {e}", path.display())),
        }
    }
    records.sort_by_key(|r| r.verdict_at);
    let aliases = aliases(&sources.gateways, operators, &standings);
    let fleet = read_fleet(&prom, &rule, opts.now).map(|states| {
        states
            .into_iter()
            .map(|mut s| {
                if s.gateway == s.instance
                    && let Some(id) = aliases.get(&s.instance)
                {
                    s.gateway.clone_from(id);
                }
                s
            })
            .collect::<Vec<_>>()
    });
    let fleet = fleet.map(|mut f| {
        f.sort_by(|a, b| (&a.gateway, &a.instance).cmp(&(&b.gateway, &b.instance)));
        f
    });
    if let Err(e) = &fleet {
        problems.push(e.clone());
    }
    let verdict = fleet.as_deref().map_or(Verdict::Pending, self::fleet);
    let hypothesis = standings
        .iter()
        .chain(records.iter().rev())
        .find_map(|s| s.hypothesis.clone());

    // The charts: from the earliest epoch a gateway reports (one step before), within the
    // lookback.
    let earliest = opts.now.checked_sub(opts.lookback).unwrap_or(opts.now);
    let epoch = standings
        .iter()
        .chain(&records)
        .filter_map(|s| s.epoch_started)
        .min();
    let from = epoch
        .and_then(|t| t.checked_sub(SignedDuration::from_secs(60)).ok())
        .map_or(earliest, |t| t.max(earliest));
    let to = opts.now;
    let step_s = step(from, to, opts.max_points, opts.min_step_s);
    let mut report = Report {
        generated_at: opts.now,
        rule,
        prometheus: sources.prometheus.clone(),
        fleet,
        verdict,
        standings,
        records,
        hypothesis,
        window: Some((from, to)),
        step_s,
        charts: Vec::new(),
        problems,
    };
    match fetch_intervals(&prom, &report, &aliases, from, to, step_s) {
        Ok(charts) => report.charts = charts,
        Err(e) => report.problems.push(e),
    }
    report
}

fn short(path: &Path) -> String {
    path.display().to_string()
}

/// Which Prometheus instance (`host:port` of a gateway's admin) is which gateway (its own
/// id, as its operator listener says): `--gateway` and `--operator` given in the same order,
/// one pair per gateway (as `make run` and the tests give them). Empty otherwise; a scrape's
/// `gateway` target label says it too.
pub fn aliases(
    admins: &[String],
    operators: &[String],
    standings: &[Standing],
) -> BTreeMap<String, String> {
    if admins.len() != operators.len() {
        return BTreeMap::new();
    }
    admins
        .iter()
        .zip(operators)
        .filter_map(|(admin, op)| {
            let instance = admin.strip_prefix("http://")?.trim_end_matches('/');
            let id = standings
                .iter()
                .find(|s| s.source.starts_with(op.as_str()) && !s.gateway.is_empty())?;
            Some((instance.to_string(), id.gateway.clone()))
        })
        .collect()
}

/// A series' gateway name: the `gateway` target label, else what [`aliases`] says of its
/// instance, else the instance.
fn gateway_of(s: &Series, aliases: &BTreeMap<String, String>) -> String {
    match s.label("gateway") {
        "" => aliases
            .get(s.label("instance"))
            .cloned()
            .unwrap_or_else(|| s.label("instance").to_string()),
        g => g.to_string(),
    }
}

/// Each effect's chart: every gateway's interval (both ends, as % of the budget) against
/// the gray replies that gateway had weighed.
fn fetch_intervals(
    prom: &Prometheus,
    r: &Report,
    aliases: &BTreeMap<String, String>,
    from: Timestamp,
    to: Timestamp,
    step_s: u32,
) -> Result<Vec<ChartOut>, String> {
    let pct = prom.range(
        &format!(
            "{}{{rule=\"{}\"}}",
            filter::PROMOTION_BUDGET_PCT,
            quote(&r.rule)
        ),
        from,
        to,
        step_s,
    )?;
    let replies = prom.range(filter::GRAY_RESPONSES, from, to, step_s)?;
    // When each gateway's epoch began (its operator's or record's word), by gateway id.
    let epochs: BTreeMap<String, Timestamp> = r
        .current()
        .iter()
        .filter_map(|s| Some((s.gateway.clone(), s.epoch_started?)))
        .collect();
    let verdicts: Vec<(String, Verdict, Timestamp)> = r
        .current()
        .iter()
        .filter_map(|s| Some((s.gateway.clone(), s.state, s.verdict_at?)))
        .collect();
    let counters: BTreeMap<String, &Series> = replies
        .iter()
        .map(|s| (gateway_of(s, aliases), s))
        .collect();

    let mut effects: Vec<String> = pct.iter().map(|s| s.label("effect").to_string()).collect();
    effects.sort_by_key(|e| {
        Effect::ALL
            .iter()
            .position(|x| x.as_str() == e)
            .unwrap_or(usize::MAX)
    });
    effects.dedup();
    let mut out = Vec::new();
    for effect in effects {
        let mut lines = Vec::new();
        let mut markers = Vec::new();
        let mut gateways: Vec<String> = pct
            .iter()
            .filter(|s| s.label("effect") == effect)
            .map(|s| gateway_of(s, aliases))
            .collect();
        gateways.sort();
        gateways.dedup();
        for g in &gateways {
            let Some(counter) = counters.get(g) else {
                continue;
            };
            let base = baseline(counter, epochs.get(g).copied());
            for bound in Bound::ALL {
                let Some(s) = pct.iter().find(|s| {
                    s.label("effect") == effect
                        && s.label("bound") == bound.as_str()
                        && gateway_of(s, aliases) == *g
                }) else {
                    continue;
                };
                lines.push(Line {
                    legend: format!("{g} {}", bound_name(bound)),
                    points: against_replies(s, counter, base),
                });
            }
            for (who, v, at) in &verdicts {
                if who == g
                    && let Some(x) = replies_at(counter, *at).map(|n| n - base)
                {
                    markers.push(Marker {
                        x,
                        label: format!("{} ({g})", v.as_str()),
                    });
                }
            }
        }
        let budget = budget_words(&effect, r.hypothesis.as_ref());
        let chart = IntervalChart {
            title: format!("{effect}: {budget}"),
            lines,
            markers,
        };
        out.push(ChartOut {
            legend: promotion_chart::legend(&chart),
            svg: promotion_chart::svg(&chart),
            title: chart.title,
        });
    }
    Ok(out)
}

fn bound_name(b: Bound) -> &'static str {
    match b {
        Bound::Upper => "worse end (upper)",
        Bound::Lower => "better end (lower)",
    }
}

/// The counter's value where the epoch began (its first sample at or after `epoch`), else
/// its first sample in the window.
pub fn baseline(counter: &Series, epoch: Option<Timestamp>) -> f64 {
    let first = counter.points.first().map_or(0.0, |p| p.1);
    epoch
        .and_then(|t| counter.points.iter().find(|p| p.0 >= t).map(|p| p.1))
        .unwrap_or(first)
}

/// The counter's value at `t` (its last sample at or before it).
pub fn replies_at(counter: &Series, t: Timestamp) -> Option<f64> {
    counter
        .points
        .iter()
        .take_while(|p| p.0 <= t)
        .last()
        .or(counter.points.first())
        .map(|p| p.1)
}

/// The percentages of `pct` against the gray replies since `base`: one point per sample
/// both series have, none while the interval is not measured yet (the filter's mark) or
/// before the epoch (fewer replies than the baseline).
pub fn against_replies(pct: &Series, counter: &Series, base: f64) -> Vec<(f64, f64)> {
    let at: BTreeMap<i64, f64> = counter
        .points
        .iter()
        .map(|p| (p.0.as_second(), p.1))
        .collect();
    let mut out: Vec<(f64, f64)> = pct
        .points
        .iter()
        .filter(|p| p.1 < UNMEASURED_PCT)
        .filter_map(|p| {
            let n = at.get(&p.0.as_second())? - base;
            (n >= 0.0).then_some((n, p.1))
        })
        .collect();
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// A budget in words: `latency_increase_ms` 8 → "gray at most 8 ms slower than stable".
pub fn budget_words(effect: &str, hypothesis: Option<&Map<String, Value>>) -> String {
    let key = match Effect::parse(effect) {
        Some(Effect::LatencyIncrease) => "latency_max_increase_ms",
        Some(Effect::LatencyRatio) => "latency_max_ratio",
        Some(Effect::BoxShift) => "box_count_max_shift",
        Some(Effect::ErrorExcess) => "error_max_excess",
        Some(Effect::Agreement) => "agreement_min",
        None => return effect.to_string(),
    };
    let Some(b) = hypothesis.and_then(|h| h.get(key)).and_then(Value::as_f64) else {
        return "budget unknown".to_string();
    };
    let pct = |x: f64| format!("{}", (x * 1000.0).round() / 10.0);
    match Effect::parse(effect) {
        Some(Effect::LatencyIncrease) => format!("gray at most {b} ms slower than stable"),
        Some(Effect::LatencyRatio) => format!("gray latency at most {b} × stable's"),
        Some(Effect::BoxShift) => format!("gray boxes per reply within ±{} % of stable's", pct(b)),
        Some(Effect::ErrorExcess) => format!("gray failure share at most stable's + {} %", pct(b)),
        Some(Effect::Agreement) => format!("gray agrees with stable at least {b} (box F1)"),
        None => effect.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    fn series(labels: &[(&str, &str)], points: &[(i64, f64)]) -> Series {
        Series {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            points: points.iter().map(|&(s, v)| (t(s), v)).collect(),
        }
    }

    fn state(gateway: &str, v: f64) -> GatewayState {
        GatewayState::from_series(&series(
            &[("instance", "127.0.0.1:9901"), ("gateway", gateway)],
            &[(0, v)],
        ))
        .unwrap()
    }

    #[test]
    fn the_fleet_is_proven_only_when_every_gateway_is_and_refuted_when_any_is() {
        use Verdict::*;
        assert_eq!(fleet(&[]), Pending, "nobody reports the rule");
        assert_eq!(fleet(&[state("a", 1.0), state("b", 1.0)]), Proven);
        assert_eq!(fleet(&[state("a", 1.0), state("b", 0.0)]), Pending);
        assert_eq!(fleet(&[state("a", 1.0), state("b", 2.0)]), Refuted);
        assert_eq!(fleet(&[state("a", 0.0), state("b", 2.0)]), Refuted);
        // A value the contract does not define proves nothing.
        assert_eq!(fleet(&[state("a", 1.0), state("b", 7.0)]), Pending);
        assert_eq!(state("a", 1.5).verdict, None);
        let bare =
            GatewayState::from_series(&series(&[("instance", "10.0.0.1:15090")], &[(0, 1.0)]));
        assert_eq!(bare.unwrap().gateway, "10.0.0.1:15090");
        assert_eq!(
            state_query("a\"b"),
            "grayguard_promotion_state{rule=\"a\\\"b\"}"
        );
    }

    const PROVEN: &str = r#"[2026-12-07 15:20:01.000][31][info][wasm] [source/extensions/common/wasm/context.cc:1192] wasm log grayguard grayguard: {"effects":[{"budget":1.1,"effect":"latency_ratio","estimate":0.97,"inside":true,"lower":0.91,"lower_pct":0.0,"upper":1.05,"upper_pct":50.0}],"epoch_started":"2026-12-07T15:10:00.000Z","event":"proven","gateway":"gw-0","gray":"v10-gray","gray_n":612.0,"grayguard":"promotion","hypothesis":{"alpha":0.05,"latency_max_ratio":1.1,"min_gray_responses":200},"rule":"crane-cameras","stable":"v9-prod","state":"proven","time_to_verdict_s":601.0,"verdict_at":"2026-12-07T15:20:01.000Z","verdict_gray_n":612.0}"#;

    #[test]
    fn reads_the_verdict_line_and_the_operator_answer() {
        let text = format!("noise {{\"x\":1}}\n{PROVEN}\n{{\"grayguard\":\"incident\"}}\n");
        let recs = scan_records("envoy.log", &text);
        assert_eq!(recs.len(), 1);
        let r = &recs[0];
        assert_eq!(
            (r.rule.as_str(), r.gateway.as_str()),
            ("crane-cameras", "gw-0")
        );
        assert_eq!(r.state, Verdict::Proven);
        assert_eq!(r.time_to_verdict_s, Some(601.0));
        assert_eq!(r.verdict_at, Some("2026-12-07T15:20:01Z".parse().unwrap()));
        assert_eq!(r.effects[0].upper_pct, Some(50.0));
        assert_eq!(r.effects[0].inside, Some(true));
        assert_eq!(r.hypothesis.as_ref().unwrap()["latency_max_ratio"], 1.1);

        let body = r#"{"gateway":"gw-2","at":"2026-12-07T15:21:00Z","rules":[{"rule":"crane-cameras","state":"pending","gray_n":12.0,"hypothesis":null,"effects":[{"effect":"error_excess","budget":0.02,"estimate":null,"lower":null,"upper":null,"inside":null,"upper_pct":null,"lower_pct":0.0}],"epoch_started":null,"verdict_at":null,"verdict_gray_n":null,"time_to_verdict_s":null}]}"#;
        let s = parse_operator("http://x/grayguard/promotion", body).unwrap();
        assert_eq!(s[0].gateway, "gw-2");
        assert_eq!(s[0].state, Verdict::Pending);
        assert_eq!(s[0].effects[0].upper, None);
        assert!(parse_operator("u", "nope").is_err());
        assert!(parse_operator("u", "{}").unwrap_err().contains("rules"));
    }

    #[test]
    fn intervals_are_charted_against_the_gray_replies_of_the_epoch() {
        let counter = series(
            &[("gateway", "gw-0")],
            &[(0, 100.0), (5, 150.0), (10, 220.0), (15, 300.0)],
        );
        let pct = series(
            &[("gateway", "gw-0")],
            &[(0, 4.5e15), (5, 900.0), (10, 180.0), (15, 90.0)],
        );
        // The epoch began at t = 5: 150 replies before it.
        let base = baseline(&counter, Some(t(5)));
        assert_eq!(base, 150.0);
        assert_eq!(
            against_replies(&pct, &counter, base),
            vec![(0.0, 900.0), (70.0, 180.0), (150.0, 90.0)]
        );
        assert_eq!(baseline(&counter, None), 100.0);
        assert_eq!(replies_at(&counter, t(12)), Some(220.0));
        assert_eq!(replies_at(&counter, t(-3)), Some(100.0));
    }

    #[test]
    fn gateways_are_named_by_the_operator_listener_given_beside_their_admin() {
        let body = |g: &str| {
            format!(
                r#"{{"gateway":"{g}","rules":[{{"rule":"r","state":"pending","effects":[]}}]}}"#
            )
        };
        let mut standings =
            parse_operator("http://127.0.0.1:10100/grayguard/promotion", &body("gw-0")).unwrap();
        standings.extend(
            parse_operator("http://127.0.0.1:10101/grayguard/promotion", &body("gw-1")).unwrap(),
        );
        let admins = [
            "http://127.0.0.1:9901".to_string(),
            "http://127.0.0.1:9902/".to_string(),
        ];
        let operators = [
            "http://127.0.0.1:10100".to_string(),
            "http://127.0.0.1:10101".to_string(),
        ];
        let a = aliases(&admins, &operators, &standings);
        assert_eq!(a["127.0.0.1:9901"], "gw-0");
        assert_eq!(a["127.0.0.1:9902"], "gw-1");
        // Unpaired lists say nothing; a target label wins.
        assert!(aliases(&admins[..1], &operators, &standings).is_empty());
        let labelled = series(
            &[("instance", "127.0.0.1:9901"), ("gateway", "edge-a")],
            &[(0, 1.0)],
        );
        assert_eq!(gateway_of(&labelled, &a), "edge-a");
        let bare = series(&[("instance", "127.0.0.1:9902")], &[(0, 1.0)]);
        assert_eq!(gateway_of(&bare, &a), "gw-1");
    }

    #[test]
    fn budgets_read_as_words() {
        let h: Map<String, Value> = serde_json::from_str(
            r#"{"latency_max_increase_ms":8,"box_count_max_shift":0.1,"error_max_excess":0.005,"agreement_min":0.9,"latency_max_ratio":1.1}"#,
        )
        .unwrap();
        assert_eq!(
            budget_words("latency_increase_ms", Some(&h)),
            "gray at most 8 ms slower than stable"
        );
        assert_eq!(
            budget_words("box_count_shift", Some(&h)),
            "gray boxes per reply within ±10 % of stable's"
        );
        assert_eq!(
            budget_words("error_excess", Some(&h)),
            "gray failure share at most stable's + 0.5 %"
        );
        assert_eq!(budget_words("agreement", None), "budget unknown");
        assert_eq!(budget_words("colour", Some(&h)), "colour");
    }

    #[test]
    fn time_to_verdict_is_the_last_proof_or_the_first_refutation() {
        let mut s = scan_records("a", PROVEN);
        let mut other = s[0].clone();
        other.gateway = "gw-1".into();
        other.epoch_started = Some("2026-12-07T15:09:30Z".parse().unwrap());
        other.verdict_at = Some("2026-12-07T15:25:00Z".parse().unwrap());
        s.push(other);
        let mut r = Report {
            generated_at: t(0),
            rule: "crane-cameras".into(),
            prometheus: String::new(),
            fleet: Ok(vec![]),
            verdict: Verdict::Proven,
            standings: vec![],
            records: s,
            hypothesis: None,
            window: None,
            step_s: 5,
            charts: vec![],
            problems: vec![],
        };
        let (from, to) = r.time_to_verdict().unwrap();
        assert_eq!(
            to.duration_since(from),
            SignedDuration::from_secs(15 * 60 + 30)
        );
        r.verdict = Verdict::Pending;
        assert_eq!(r.time_to_verdict(), None);
    }
}
