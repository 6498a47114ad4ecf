//! The promotion report as one self-contained HTML page, like the incident report: inline
//! CSS, inline SVG charts, no scripts, nothing fetched when it is opened. maud escapes every
//! value; only the SVG that plotters produced is inserted as is.

use maud::{DOCTYPE, Markup, PreEscaped, html};
use serde_json::Value;

use grayguard_contract::promotion::Verdict;

use crate::html::{CSS, span, when};
use crate::promotion::{GatewayState, Report, Standing, budget_words};

/// The promotion page's rules on top of the report's style ([`crate::html::CSS`]).
const PROMOTION_CSS: &str = r#"
tr.inside td{background:#e6f4ea}
tr.outside td{background:#fdecea}
.proven{background:#188038;color:#fff}.refuted{background:#d93025;color:#fff}.pending{background:#5f6368;color:#fff}
"#;

fn badge(v: Verdict) -> Markup {
    html! { span class={ "badge " (v.as_str()) } { (v.as_str()) } }
}

/// A number as the page shows it: up to 4 significant decimals, `—` when unknown.
fn num(v: Option<f64>) -> String {
    match v {
        None => "—".into(),
        Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{f:.0}"),
        Some(f) if f.abs() >= 100.0 => format!("{f:.1}"),
        Some(f) => format!("{f:.4}"),
    }
}

/// Seconds as `4m 12s`.
fn seconds(s: f64) -> String {
    span(jiff::SignedDuration::from_secs_f64(s.max(0.0)))
}

/// The page's title and the one-line answer.
fn headline(r: &Report) -> String {
    match r.verdict {
        Verdict::Proven => format!(
            "Gray of rule {} is proven within its budget on every gateway: widen it",
            r.rule
        ),
        Verdict::Refuted => format!(
            "Gray of rule {} is proven outside its budget: do not widen it",
            r.rule
        ),
        Verdict::Pending => format!(
            "Gray of rule {}: no verdict yet on every gateway, the release waits",
            r.rule
        ),
    }
}

/// The whole page.
pub fn render(r: &Report) -> String {
    let title = format!(
        "grayguard promotion: {} {} at {}",
        r.rule,
        r.verdict.as_str(),
        when(r.generated_at)
    );
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                style { (PreEscaped(CSS)) (PreEscaped(PROMOTION_CSS)) }
            }
            body {
                header {
                    h1 { "grayguard promotion report" }
                    p {
                        "rule " b { (r.rule) } " · " (badge(r.verdict))
                        " · generated " (when(r.generated_at))
                    }
                }
                main {
                    (verdict(r))
                    (hypothesis(r))
                    (intervals(r))
                    (charts(r))
                    (meaning())
                    (problems(r))
                    p.note {
                        "Generated " (when(r.generated_at)) " by grayguard-report from Prometheus "
                        code { (r.prometheus) } ", the gateways' operator listeners ("
                        code { "GET /grayguard/promotion" } ") and their logs."
                    }
                }
            }
        }
    }
    .into_string()
}

fn verdict(r: &Report) -> Markup {
    let current = r.current();
    let weighed: f64 = current.iter().filter_map(|s| s.gray_n).sum();
    let gateways = r.fleet.as_ref().map(Vec::len).unwrap_or(0);
    let proven = r
        .fleet
        .as_ref()
        .map(|f| {
            f.iter()
                .filter(|s| s.verdict == Some(Verdict::Proven))
                .count()
        })
        .unwrap_or(0);
    html! {
        section id="verdict" {
            h2 { (headline(r)) }
            div.facts {
                div.fact { span.note { "verdict of the fleet" } b { (badge(r.verdict)) } }
                div.fact { span.note { "gateways proven" } b { (proven) " of " (gateways) } }
                @if let Some((from, to)) = r.time_to_verdict() {
                    div.fact { span.note { "time to verdict" } b { (span(to.duration_since(from))) } }
                    div.fact { span.note { "reached" } b { (to.strftime("%H:%M:%S")) } }
                }
                @if weighed > 0.0 {
                    div.fact { span.note { "gray replies weighed" } b { (format!("{weighed:.0}")) } }
                }
            }
            p.note {
                "Proven: every gateway that reports the rule has proven the hypothesis (Prometheus "
                code { "grayguard_promotion_state" } " = 1 on each). Refuted: one gateway has refuted it (2). "
                "Anything else is pending: Flagger's confirm-promotion webhook answers 200, and Argo Rollouts' promotion analysis measures Successful, only when proven."
            }
            @match &r.fleet {
                Ok(f) if f.is_empty() => p.note { "No gateway reports the rule in Prometheus." },
                Ok(f) => (gateway_table(f, &current)),
                Err(e) => p.note { "Prometheus: " (e) },
            }
        }
    }
}

fn gateway_table(fleet: &[GatewayState], current: &[&Standing]) -> Markup {
    let find = |g: &GatewayState| current.iter().find(|s| s.gateway == g.gateway).copied();
    html! {
        table {
            tr {
                th { "gateway" } th { "state" } th { "gray replies" } th { "epoch started" }
                th { "verdict at" } th { "replies at verdict" } th { "time to verdict" }
            }
            @for g in fleet {
                @let s = find(g);
                tr {
                    td { code { (g.gateway) } @if g.gateway != g.instance { br; small { (g.instance) } } }
                    td { @match g.verdict { Some(v) => (badge(v)), None => "unknown" } }
                    td.num { (num(s.and_then(|s| s.gray_n))) }
                    td { (s.and_then(|s| s.epoch_started).map_or("—".to_string(), when)) }
                    td { (s.and_then(|s| s.verdict_at).map_or("—".to_string(), when)) }
                    td.num { (num(s.and_then(|s| s.verdict_gray_n))) }
                    td.num { (s.and_then(|s| s.time_to_verdict_s).map_or("—".to_string(), seconds)) }
                }
            }
        }
    }
}

fn hypothesis(r: &Report) -> Markup {
    let Some(h) = &r.hypothesis else {
        return html! {
            section id="hypothesis" {
                h2 { "The hypothesis" }
                p.note { "No gateway's operator listener or log said the hypothesis (give --operator, or the gateways' --envoy-log)." }
            }
        };
    };
    let budgets = [
        ("latency_max_increase_ms", "latency_increase_ms"),
        ("latency_max_ratio", "latency_ratio"),
        ("box_count_max_shift", "box_count_shift"),
        ("error_max_excess", "error_excess"),
        ("agreement_min", "agreement"),
    ];
    let value = |k: &str| h.get(k).filter(|v| !v.is_null()).map(Value::to_string);
    html! {
        section id="hypothesis" {
            h2 { "The hypothesis" }
            p.note {
                "What the release owner stated before the release: the budgets gray must be proven within, against stable's replies at the same time (the concurrent control). "
                "A version outside its budget is declared proven with probability at most alpha, however long it is watched."
            }
            table {
                tr { th { "budget" } th { "setting" } th { "in words" } }
                @for (key, effect) in budgets {
                    @if let Some(v) = value(key) {
                        tr { td { code { (effect) } } td { code { (key) } " " (v) } td { (budget_words(effect, Some(h))) } }
                    }
                }
            }
            p.note {
                @for (k, key) in ["alpha", "min_gray_responses", "cap_factor"].iter().enumerate() {
                    @if k > 0 { " · " }
                    code { (key) } " " (value(key).unwrap_or_else(|| "—".into()))
                }
            }
        }
    }
}

fn intervals(r: &Report) -> Markup {
    let current = r.current();
    if current.is_empty() {
        return html! {};
    }
    html! {
        section id="intervals" {
            h2 { "Each effect's interval, per gateway" }
            p.note {
                "The anytime-valid interval of each effect (gray against stable) in natural units, and how far its ends reach into the budget: the worse end at most 100 % on every effect is a proof, the better end above 100 % on any effect a refutation. "
                "Green: wholly inside the budget; red: wholly outside."
            }
            @for s in &current {
                h3 {
                    code { (if s.gateway.is_empty() { "?" } else { &s.gateway }) } " · " (badge(s.state))
                    @if let Some(n) = s.gray_n { " · " (format!("{n:.0}")) " gray replies" }
                }
                table {
                    tr {
                        th { "effect" } th { "budget" } th { "estimate" } th { "lower" } th { "upper" }
                        th { "worse end, % of budget" } th { "better end, % of budget" }
                    }
                    @for e in &s.effects {
                        tr class=[match e.inside { Some(true) => Some("inside"), Some(false) => Some("outside"), None => None }] {
                            td { code { (e.effect) } }
                            td.num { (num(e.budget)) }
                            td.num { (num(e.estimate)) }
                            td.num { (num(e.lower)) }
                            td.num { (num(e.upper)) }
                            td.num { (num(e.upper_pct)) }
                            td.num { (num(e.lower_pct)) }
                        }
                    }
                }
                p.note { "from " code { (s.source) } }
            }
        }
    }
}

fn charts(r: &Report) -> Markup {
    html! {
        section id="charts" {
            h2 { "Narrowing over the gray replies" }
            @if let Some((from, to)) = r.window {
                p.note {
                    "Each gateway's interval for each effect, both ends as % of the budget (Prometheus "
                    code { "grayguard_promotion_budget_pct" } ") against the gray replies that gateway had seen since its epoch began ("
                    code { "grayguard_gray_responses" } ", which counts every rule's), from " (when(from)) " to " (when(to))
                    ", one point every " (r.step_s) " s. The shaded band is the budget; a dashed vertical line marks each gateway's verdict."
                }
            }
            @if r.charts.is_empty() {
                p.note { "No interval in Prometheus for this rule in the window." }
            }
            @for c in &r.charts {
                div.chart {
                    p.ctitle { (c.title) }
                    @if !c.legend.is_empty() {
                        div.legend {
                            @for (name, color) in &c.legend {
                                span { span.swatch style={ "background:" (color) } {} (name) }
                            }
                        }
                    }
                    @match &c.svg {
                        Ok(svg) => (PreEscaped(svg)),
                        Err(e) => p.note { (c.title) ": " (e) },
                    }
                }
            }
        }
    }
}

fn meaning() -> Markup {
    html! {
        section id="meaning" {
            h2 { "How to read it" }
            p.note {
                "Each gateway weighs the gray replies of the rule against stable's replies at the same time, with an empirical-Bernstein confidence sequence per side (latencies and box counts clipped at cap_factor × stable's mean). "
                "The verdict is kept for the epoch; a shed starts a new epoch, pending, at that gateway. "
                "Each gateway decides on its own evidence, so the fleet is proven only when every gateway is."
            }
        }
    }
}

fn problems(r: &Report) -> Markup {
    let mut all = r.problems.clone();
    for c in &r.charts {
        if let Err(e) = &c.svg {
            all.push(format!("{}: {e}", c.title));
        }
    }
    if all.is_empty() {
        return html! {};
    }
    html! {
        section id="problems" {
            h2 { "Problems reading the sources" }
            ul { @for p in &all { li { (p) } } }
        }
    }
}

/// One line for a terminal: the verdict and the time it took.
pub fn summary(r: &Report) -> String {
    let proven = r
        .fleet
        .as_ref()
        .map(|f| {
            f.iter()
                .filter(|s| s.verdict == Some(Verdict::Proven))
                .count()
        })
        .unwrap_or(0);
    let gateways = r.fleet.as_ref().map(Vec::len).unwrap_or(0);
    let took = r
        .time_to_verdict()
        .map(|(from, to)| format!(", time to verdict {}", span(to.duration_since(from))))
        .unwrap_or_default();
    format!(
        "rule {} {} (proven on {proven} of {gateways} gateways){took}",
        r.rule,
        r.verdict.as_str()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::promotion::{GatewayState, scan_records};

    const PROVEN: &str = r#"{"effects":[{"budget":1.1,"effect":"latency_ratio","estimate":0.97,"inside":true,"lower":0.91,"lower_pct":0.0,"upper":1.05,"upper_pct":50.0},{"budget":0.02,"effect":"error_excess","estimate":0.0,"inside":null,"lower":-0.01,"lower_pct":0.0,"upper":0.03,"upper_pct":150.0}],"epoch_started":"2026-12-07T15:10:00.000Z","event":"proven","gateway":"gw-0","gray_n":612.0,"grayguard":"promotion","hypothesis":{"alpha":0.05,"latency_max_ratio":1.1,"error_max_excess":0.02,"latency_max_increase_ms":null,"min_gray_responses":200,"cap_factor":3.0},"rule":"crane-<cameras>","state":"proven","time_to_verdict_s":252.0,"verdict_at":"2026-12-07T15:14:12.000Z","verdict_gray_n":612.0}"#;

    fn report(verdict: Verdict) -> Report {
        let records = scan_records("envoy.log", PROVEN);
        Report {
            generated_at: "2026-12-07T15:20:00Z".parse().unwrap(),
            rule: "crane-<cameras>".into(),
            prometheus: "http://127.0.0.1:9090".into(),
            fleet: Ok(vec![GatewayState {
                instance: "127.0.0.1:9901".into(),
                gateway: "gw-0".into(),
                verdict: Some(verdict),
            }]),
            verdict,
            standings: vec![],
            hypothesis: records[0].hypothesis.clone(),
            records,
            window: None,
            step_s: 5,
            charts: vec![],
            problems: vec![],
        }
    }

    #[test]
    fn a_proven_rule_says_so_with_its_time_to_verdict() {
        let r = report(Verdict::Proven);
        let page = render(&r);
        assert!(page.contains("is proven within its budget on every gateway: widen it"));
        assert!(page.contains("4m 12s"), "time to verdict");
        assert!(page.contains("1 of 1"));
        assert!(page.contains("gray latency at most 1.1 × stable's"));
        assert!(page.contains("<tr class=\"inside\">"));
        // Values from the gateways are escaped, never markup.
        assert!(page.contains("crane-&lt;cameras&gt;"));
        assert!(!page.contains("crane-<cameras>"));
        // latency_max_increase_ms is null: not a stated budget.
        assert!(!page.contains("latency_max_increase_ms"));
        for outside in ["<script", "<link", "src=\"http"] {
            assert!(!page.contains(outside));
        }
        assert_eq!(
            summary(&r),
            "rule crane-<cameras> proven (proven on 1 of 1 gateways), time to verdict 4m 12s"
        );
    }

    #[test]
    fn pending_and_prometheus_trouble_are_said_plainly() {
        let mut r = report(Verdict::Pending);
        r.fleet = Err("GET http://127.0.0.1:9090/api/v1/query: connection refused".into());
        r.problems.push("no Prometheus".into());
        let page = render(&r);
        assert!(page.contains("no verdict yet on every gateway"));
        assert!(page.contains("connection refused"));
        assert!(page.contains("Problems reading the sources"));
        assert!(summary(&r).starts_with("rule crane-<cameras> pending (proven on 0 of 0"));
    }
}
