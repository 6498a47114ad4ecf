//! The promotion verdict reaching people and the rollout tools, end to end: a fleet of three
//! real Envoys running the real filter in front of scripted upstreams that draw every answer
//! from a distribution (`grayguard_filter::simulate::Side`), a real Prometheus scraping the
//! three gateways, and `grayguard-report --serve` answering Flagger's webhooks and serving
//! the promotion page.
//!
//! Two rules under the same hypothesis (at most 8 ms slower than stable, box counts within
//! ±10 %, failures at most 1 point above stable's): `crane-cameras`, whose gray answers as
//! stable does (an A/A), and `yard-cameras`, whose gray is 20 ms slower. The crane cameras'
//! gray is proven on two gateways, then on the third; the yard cameras' gray is refuted at
//! one. At each step Flagger's confirm-promotion and rollback webhooks and Argo Rollouts'
//! promotion analysis (its query read from mesh-config/variants/argo-rollouts, run on the
//! real Prometheus) give the verdict the gateways hold: confirm-promotion non-200 while any
//! gateway is pending and 200 once all three are proven, rollback 200 once one gateway has
//! refuted, the analysis Inconclusive / Successful / Failed. The promotion page renders in
//! headless Chromium (kept in target/test-artifacts/promotion/). Last, the sidecar's breach
//! flag sheds the crane cameras at every gateway: a new epoch, pending again everywhere.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::simulated;

use grayguard_contract::headers;
use grayguard_contract::operator::SECRET_ENV;
use grayguard_contract::promotion::{Effect, Verdict};
use grayguard_contract::record::{self, Promotion, PromotionReply, Record, RuleVerdict};
use grayguard_contract::{Decision, Trigger};
use grayguard_e2e::alerting::ReportServer;
use grayguard_e2e::envoy::{Cluster, Envoy, Filter, Options};
use grayguard_e2e::process::free_port;
use grayguard_e2e::prometheus::{Job, Prometheus};
use grayguard_e2e::upstream::{Seen, Upstream};
use grayguard_e2e::wait::Wait;
use grayguard_e2e::{browser, http, paths};
use grayguard_filter::simulate::Side;
use serde_json::{Value, json};

const CRANE: &str = "crane-cameras";
const YARD: &str = "yard-cameras";
const GATEWAYS: usize = 3;
/// How much slower the yard cameras' gray is, ms (the budget: 8).
const YARD_SLOWER_MS: f64 = 20.0;

/// Both sides as the benchmark's stable (lognormal latency, median 100 ms; 5 ± 2 boxes),
/// without failures: a failure share of 1 % would take thousands of replies to bound
/// within one point.
fn healthy() -> Side {
    Side::STABLE.failing(0.0)
}

/// The plugin configuration of gateway `i`'s: the two rules, the sequential detector with
/// its usual margins (a gray 20 ms slower is far inside them: never shed), a shed that
/// outlasts the test, the hypothesis, and an operator listener on `operator_port`.
fn plugin_config(operator_port: u16) -> String {
    let rule = |name: &str, device: &str| json!({ "name": name, "headers": { (headers::DEVICE_TYPE): { "exact": device } } });
    json!({
        "stable": "v9-prod",
        "gray": "v10-gray",
        "operator": { "port": operator_port, "secret_env": SECRET_ENV },
        "rules": [rule(CRANE, "crane-camera"), rule(YARD, "yard-camera")],
        "breach": {
            "detector": "sequential",
            "arl": 1_000_000,
            "flag_header": headers::BREACH,
            "latency": { "header": headers::INFERENCE_LATENCY_MS, "max_ratio": 1.25, "min_samples": 10 },
            "box_count": { "header": headers::BOX_COUNT, "max_shift": 0.25, "min_samples": 10 },
            "error_rate": { "max_excess": 0.02, "min_samples": 10 },
            "shed_for_s": 600,
            "probe_percent": 0,
        },
        "promote": {
            "latency_max_increase_ms": 8,
            "box_count_max_shift": 0.1,
            "error_max_excess": 0.01,
            "alpha": 0.05,
            "min_gray_responses": 200,
        },
    })
    .to_string()
}

/// The fleet, Prometheus scraping it, and the report server reading both. Dropped in
/// reverse: the report server and Prometheus first.
struct Fixture {
    /// Serving the control for the test's length.
    _stable: Upstream,
    gray: Upstream,
    gateways: Vec<Envoy>,
    prometheus: Prometheus,
    reports: ReportServer,
    /// Argo Rollouts' verdict query, `{{args.rule}}` to be replaced.
    argo_query: String,
    argo_rule_arg: String,
}

impl Fixture {
    fn start() -> Fixture {
        let stable = Upstream::start("v9-prod");
        let gray = Upstream::start("v10-gray");
        stable.set_sampler(Some(Arc::new(|n, _: &Seen| {
            simulated::draw(healthy(), 0x5eed_0000 + n, 0.0)
        })));
        gray.set_sampler(Some(Arc::new(|n, seen: &Seen| {
            let slower = match seen.header(headers::DEVICE_TYPE) {
                Some("yard-camera") => YARD_SLOWER_MS,
                _ => 0.0,
            };
            simulated::draw(healthy(), 0x9a11_0000 + n, slower)
        })));
        let gateways: Vec<Envoy> = (0..GATEWAYS)
            .map(|i| {
                let operator = free_port();
                let mut opts = Options::new(
                    Filter::grayguard(&plugin_config(operator)),
                    Cluster::new("v9-prod", stable.addr),
                    Cluster::new("v10-gray", gray.addr),
                );
                opts.operator_port = Some(operator);
                opts.node = Some(format!("gw-{i}"));
                opts.stats_flush_ms = 200;
                Envoy::start(&opts)
            })
            .collect();
        let prometheus = Prometheus::start(&[Job {
            name: "envoy".into(),
            path: "/stats/prometheus".into(),
            targets: gateways
                .iter()
                .map(|g| format!("127.0.0.1:{}", g.admin))
                .collect(),
        }]);
        prometheus.wait_targets_up(GATEWAYS, Duration::from_secs(30));
        let url = |port: u16| format!("http://127.0.0.1:{port}");
        let mut sources = vec![
            "--prometheus".to_string(),
            url(prometheus.port),
            "--min-step-s".into(),
            "1".into(),
        ];
        for g in &gateways {
            sources.extend([
                "--gateway".into(),
                url(g.admin),
                "--operator".into(),
                url(g.operator.expect("an operator listener")),
                "--envoy-log".into(),
                g.proc.log_path().display().to_string(),
            ]);
        }
        let reports = ReportServer::start(&sources);
        let (argo_query, argo_rule_arg) = argo_verdict_query();
        Fixture {
            _stable: stable,
            gray,
            gateways,
            prometheus,
            reports,
            argo_query,
            argo_rule_arg,
        }
    }

    /// Each gateway's standing on `rule` from its operator listener (`GET
    /// /grayguard/promotion`).
    fn standing(&self, gateway: usize, rule: &str) -> RuleVerdict {
        let url = self.gateways[gateway].operator_url("/grayguard/promotion");
        let r = http::get(&url).expect("the operator listener answers");
        assert_eq!(r.status, 200, "{}", r.text());
        let all: PromotionReply = serde_json::from_str(&r.text())
            .unwrap_or_else(|e| panic!("not the contract's promotion reply ({e}): {}", r.text()));
        assert_eq!(all.gateway, format!("gw-{gateway}"), "{all:?}");
        all.rules
            .into_iter()
            .find(|x| x.rule == rule)
            .unwrap_or_else(|| panic!("no rule {rule} at gw-{gateway}"))
    }

    fn state(&self, gateway: usize, rule: &str) -> Verdict {
        self.standing(gateway, rule).state
    }

    /// The verdict records `gateway` logged for `rule`, read with the contract's type: each
    /// with the bounds as they stood when the verdict was reached (the operator listener shows
    /// them as they stand now, still moving with the replies since).
    fn verdicts_logged(&self, gateway: usize, rule: &str) -> Vec<Promotion> {
        self.gateways[gateway]
            .log()
            .lines()
            .filter_map(|l| match record::parse_line(l)? {
                Ok(Record::Promotion(p)) => (p.verdict.rule == rule).then_some(*p),
                Ok(Record::Incident(_)) => None,
                Err(e) => panic!("a grayguard record that does not parse ({e}): {l}"),
            })
            .collect()
    }

    /// Requests through `gateways`, each round one of every device type in `devices` and one
    /// dock camera's (no rule: stable, the control), on four client threads, until `done`
    /// holds (polled every 100 ms) or `limit` passes. Every reply must be a 200 but for at
    /// most one Envoy timeout (504, `upstream request timeout`: a scripted upstream starved of
    /// the CPU for the route's 5 s on a loaded 2-core machine, which the verdict books as a gray
    /// failure); anything else fails the test.
    fn traffic(
        &self,
        gateways: &[usize],
        devices: &[&str],
        limit: Duration,
        done: impl Fn(&Fixture) -> bool + Sync,
    ) -> usize {
        let stop = AtomicBool::new(false);
        let sent = AtomicUsize::new(0);
        let timed_out = AtomicUsize::new(0);
        let deadline = Instant::now() + limit;
        std::thread::scope(|s| {
            for t in 0..4 {
                let (stop, sent, timed_out) = (&stop, &sent, &timed_out);
                s.spawn(move || {
                    let mut k = t;
                    while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                        let g = gateways[k % gateways.len()];
                        k += 1;
                        for device in devices.iter().chain(&["dock-camera"]) {
                            let id = format!("{device}-{}", k % 8);
                            let r = http::get_with(
                                &self.gateways[g].url("/infer"),
                                &[(headers::DEVICE_TYPE, device), (headers::DEVICE_ID, &id)],
                            )
                            .expect("the gateway answers");
                            sent.fetch_add(1, Ordering::SeqCst);
                            if r.status == 504 && r.text() == "upstream request timeout" {
                                eprintln!("{device} via gw-{g}: Envoy's upstream timeout");
                                timed_out.fetch_add(1, Ordering::SeqCst);
                                continue;
                            }
                            assert_eq!(r.status, 200, "{device} via gw-{g}: {}", r.text());
                        }
                    }
                });
            }
            while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
                if done(self) {
                    stop.store(true, Ordering::SeqCst);
                }
            }
            stop.store(true, Ordering::SeqCst);
        });
        assert!(
            done(self),
            "traffic through {gateways:?} for {devices:?}: not done within {limit:?}; standings: {:#?}",
            (0..GATEWAYS)
                .map(|g| [self.standing(g, CRANE), self.standing(g, YARD)])
                .collect::<Vec<_>>()
        );
        let timed_out = timed_out.load(Ordering::SeqCst);
        assert!(timed_out <= 1, "{timed_out} upstream timeouts");
        sent.load(Ordering::SeqCst)
    }

    /// Every gateway's `grayguard_promotion_state` of `rule` as Prometheus has it, by gateway.
    fn scraped(&self, rule: &str) -> Vec<f64> {
        let url = format!("http://127.0.0.1:{}/api/v1/query", self.prometheus.port);
        let q = format!("grayguard_promotion_state{{rule=\"{rule}\"}}");
        let r = http::post(
            &url,
            &[("content-type", "application/x-www-form-urlencoded")],
            format!("query={}", urlencode(&q)).as_bytes(),
        )
        .expect("Prometheus answers");
        let mut by: Vec<(String, f64)> = r.json()["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["metric"]["instance"].as_str().unwrap().to_string(),
                    s["value"][1].as_str().unwrap().parse().unwrap(),
                )
            })
            .collect();
        let order: Vec<String> = self
            .gateways
            .iter()
            .map(|g| format!("127.0.0.1:{}", g.admin))
            .collect();
        by.sort_by_key(|(i, _)| order.iter().position(|o| o == i));
        by.into_iter().map(|(_, v)| v).collect()
    }

    /// Waits until Prometheus has scraped exactly these states of `rule` (gateway order).
    fn wait_scraped(&self, rule: &str, states: &[Verdict]) {
        let want: Vec<f64> = states.iter().map(|v| v.gauge() as f64).collect();
        Wait::new(
            format!("Prometheus sees {rule} as {states:?}"),
            Duration::from_secs(30),
        )
        .every(Duration::from_millis(250))
        .until(|| {
            let got = self.scraped(rule);
            (got == want).then_some(()).ok_or(format!("{got:?}"))
        });
    }

    /// Argo Rollouts' verdict metric for `rule` on the real Prometheus: its one value and
    /// the measurement it makes (successCondition `result[0] == 1`, failureCondition
    /// `result[0] == 2`).
    fn argo(&self, rule: &str) -> (f64, &'static str) {
        let query = self.argo_query.replace(&self.argo_rule_arg, rule);
        let values = self.prometheus.query(&query);
        assert_eq!(
            values.len(),
            1,
            "Argo needs result[0] in every case: {values:?}\n{query}"
        );
        // successCondition `result[0] == 1`, failureCondition `result[0] == 2`.
        let phase = if values[0] == 1.0 {
            "Successful"
        } else if values[0] == 2.0 {
            "Failed"
        } else {
            "Inconclusive"
        };
        (values[0], phase)
    }

    /// Flagger's call of `hook` as the Canary makes it (the rule in the webhook's metadata),
    /// or with `?rule=` and no body.
    fn flagger(&self, hook: &str, rule: &str, in_query: bool) -> http::Response {
        let base = format!("http://127.0.0.1:{}/flagger/{hook}", self.reports.port);
        let r = if in_query {
            http::post(&format!("{base}?rule={rule}"), &[], b"")
        } else {
            let payload = json!({
                "name": "yolo-detector", "namespace": "yolo", "phase": "Progressing",
                "checksum": "6d5f7c", "metadata": { "rule": rule },
            });
            http::post(
                &base,
                &[("content-type", "application/json")],
                payload.to_string().as_bytes(),
            )
        };
        r.expect("the report server answers")
    }

    /// (confirm-promotion, rollback) status codes for `rule`, both ways of naming it.
    fn webhooks(&self, rule: &str) -> (u16, u16) {
        let confirm = self.flagger("confirm-promotion", rule, false);
        let rollback = self.flagger("rollback", rule, false);
        assert_eq!(
            self.flagger("confirm-promotion", rule, true).status,
            confirm.status
        );
        assert_eq!(self.flagger("rollback", rule, true).status, rollback.status);
        assert_eq!(confirm.json()["rule"], rule, "{}", confirm.text());
        (confirm.status, rollback.status)
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Argo Rollouts' promotion verdict query, as the validator reads it from
/// mesh-config/variants/argo-rollouts, and its rule placeholder.
fn argo_verdict_query() -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("verdicts.json");
    let run = Command::new(paths::python())
        .arg(paths::root().join("tests/validate/validate_mesh.py"))
        .arg("--contract")
        .arg(paths::contract_json())
        .arg("--verdict-queries")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    let verdicts: Vec<Value> = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(verdicts.len(), 1, "one promotion gate: {verdicts:#?}");
    let v = &verdicts[0];
    assert_eq!(
        (v["success"].as_u64(), v["failure"].as_u64()),
        (Some(1), Some(2))
    );
    assert_eq!(
        v["rules"],
        json!([CRANE]),
        "the Rollout gates on the crane cameras"
    );
    (
        v["query"].as_str().unwrap().to_string(),
        v["rule_arg"].as_str().unwrap().to_string(),
    )
}

#[test]
fn the_verdict_reaches_flagger_argo_and_the_promotion_page() {
    use Verdict::*;
    let fx = Fixture::start();
    let started = Instant::now();

    // Nothing weighed yet: every gateway reports both rules pending.
    fx.wait_scraped(CRANE, &[Pending; GATEWAYS]);
    assert_eq!(fx.argo(CRANE), (0.0, "Inconclusive"));
    assert_eq!(fx.webhooks(CRANE), (409, 409));
    // A rule no gateway has: pending, never a promotion (and Argo still gets a value).
    assert_eq!(fx.argo("no-such-rule"), (0.0, "Inconclusive"));
    assert_eq!(fx.webhooks("no-such-rule"), (409, 409));

    // 1. The A/A gray through gw-0 and gw-1 until both have proven it; the slower yard gray
    //    through gw-0 until it is refuted there.
    let sent = fx.traffic(
        &[0, 1],
        &["crane-camera", "yard-camera"],
        Duration::from_secs(240),
        |f| {
            f.state(0, CRANE) == Proven
                && f.state(1, CRANE) == Proven
                && f.state(0, YARD) == Refuted
        },
    );
    eprintln!(
        "proven at gw-0 and gw-1, refuted at gw-0 after {sent} requests, {:?}",
        started.elapsed()
    );
    for g in [0, 1] {
        let s = fx.standing(g, CRANE);
        eprintln!("gw-{g} {CRANE}: {s:?}");
        assert!(s.gray_n >= 200.0, "min_gray_responses: {s:?}");
        let proven = fx.verdicts_logged(g, CRANE);
        assert_eq!(proven.len(), 1, "gw-{g}: {proven:#?}");
        let at = &proven[0].verdict;
        assert!(
            at.verdict_gray_n.unwrap() >= 200.0,
            "min_gray_responses: {at:?}"
        );
        for e in &at.effects {
            assert_eq!(e.inside, Some(true), "{e:?}");
            assert!(e.upper_pct.unwrap() <= 100.0, "{e:?}");
        }
    }
    let refuted = fx.verdicts_logged(0, YARD);
    assert_eq!(refuted.len(), 1, "gw-0: {refuted:#?}");
    let yard = &refuted[0].verdict;
    eprintln!("gw-0 {YARD}: {yard:?}");
    let latency = yard
        .effects
        .iter()
        .find(|e| e.effect == Effect::LatencyIncrease)
        .expect("the latency budget's bounds");
    assert_eq!(latency.inside, Some(false), "{latency:?}");
    assert!(latency.lower.unwrap() > 8.0, "{latency:?}");
    assert!(latency.lower_pct.unwrap() > 100.0, "{latency:?}");
    assert_eq!(fx.state(2, CRANE), Pending, "gw-2 has weighed nothing");

    // Two of three proven: the gate stays shut, and Argo waits.
    fx.wait_scraped(CRANE, &[Proven, Proven, Pending]);
    assert_eq!(fx.argo(CRANE), (0.0, "Inconclusive"));
    let (confirm, rollback) = fx.webhooks(CRANE);
    assert_eq!((confirm, rollback), (409, 409));
    let why = fx.flagger("confirm-promotion", CRANE, false).json();
    assert_eq!(why["answer"], "pending at 1 of 3 gateways: wait", "{why}");
    // Refuted at one gateway: Flagger rolls back, Argo fails, nothing promotes.
    let yard_states = fx.scraped(YARD);
    assert_eq!(yard_states[0], 2.0, "{yard_states:?}");
    assert_eq!(fx.argo(YARD), (2.0, "Failed"));
    assert_eq!(fx.webhooks(YARD), (409, 200));

    // 2. The crane cameras through gw-2 as well, until it has proven it too.
    fx.traffic(&[2], &["crane-camera"], Duration::from_secs(180), |f| {
        f.state(2, CRANE) == Proven
    });
    fx.wait_scraped(CRANE, &[Proven; GATEWAYS]);
    assert_eq!(fx.argo(CRANE), (1.0, "Successful"));
    assert_eq!(fx.webhooks(CRANE), (200, 409));
    let open = fx.flagger("confirm-promotion", CRANE, false).json();
    assert_eq!(open["answer"], "proven on every gateway: promote", "{open}");
    assert_eq!(open["canary"], "yolo/yolo-detector");
    eprintln!("proven on every gateway after {:?}", started.elapsed());

    // Each gateway logged its verdict once, with the time it took.
    for g in 0..fx.gateways.len() {
        let lines = fx.verdicts_logged(g, CRANE);
        assert_eq!(lines.len(), 1, "gw-{g}: {lines:#?}");
        assert_eq!(lines[0].event, Proven);
        assert_eq!(lines[0].gateway, Some(format!("gw-{g}")));
        assert!(lines[0].verdict.time_to_verdict_s.unwrap() > 0.0);
    }

    // 3. The promotion page, as the GrayguardPromotionProven alert links it.
    // Its charts read Prometheus, which has the proven bounds once it scraped them.
    let url = format!(
        "http://127.0.0.1:{}/promotion?rule={CRANE}",
        fx.reports.port
    );
    let html = Wait::new(
        "the promotion page with every chart",
        Duration::from_secs(30),
    )
    .every(Duration::from_millis(250))
    .until(|| {
        let page = http::get(&url).map_err(|e| e.to_string())?;
        let html = page.text();
        match page.status {
            200 if !html.contains("no interval measured") => Ok(html),
            status => Err(format!("{status}: {html}")),
        }
    });
    for expected in [
        "<title>grayguard promotion: crane-cameras proven at ",
        "is proven within its budget on every gateway: widen it",
        "3 of 3",
        "time to verdict",
        "gray at most 8 ms slower than stable",
        "gray boxes per reply within ±10 % of stable's",
        "gray failure share at most stable's + 1 %",
        "Narrowing over the gray replies",
        "gw-0",
        "gw-2",
    ] {
        assert!(html.contains(expected), "the page lacks {expected:?}");
    }
    assert_eq!(html.matches("<svg").count(), 3, "one chart per effect");
    assert!(
        !html.contains("no interval measured"),
        "a chart without data"
    );
    assert!(!html.contains("Problems reading the sources"), "{html}");
    for outside in ["<script", "<link", "src=\"http", "@import"] {
        assert!(
            !html.contains(outside),
            "the page refers outside itself: {outside}"
        );
    }
    let artifacts = paths::root().join("target/test-artifacts/promotion");
    std::fs::create_dir_all(&artifacts).unwrap();
    let file = artifacts.join("promotion.html");
    let png = artifacts.join("promotion.png");
    std::fs::write(&file, &html).unwrap();
    let _ = std::fs::remove_file(&png);
    let dom = browser::dom(&file);
    assert_eq!(dom.matches("<svg").count(), 3, "Chromium's DOM lost charts");
    assert!(dom.contains("latency_increase_ms"));
    browser::screenshot(&file, &png, 1100, 1600);
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(browser::png_size(&bytes), Some((1100, 1600)));
    assert!(bytes.len() > 60_000, "a {} byte screenshot", bytes.len());

    // 4. The sidecar's breach flag sheds the crane cameras at every gateway: a new epoch,
    //    pending everywhere, and the gate shut again.
    fx.gray.set_flag(Some("latency"));
    for (g, gw) in fx.gateways.iter().enumerate() {
        Wait::new(format!("gw-{g} sheds on the flag"), Duration::from_secs(10))
            .every(Duration::ZERO)
            .until(|| {
                let r = http::get_with(
                    &gw.url("/infer"),
                    &[
                        (headers::DEVICE_TYPE, "crane-camera"),
                        (headers::DEVICE_ID, "c-1"),
                    ],
                )
                .unwrap();
                let d = r.header(headers::DECISION).unwrap_or_default().to_string();
                let shed = Decision::parse(&d).ok().and_then(|d| d.shed());
                (shed == Some(Trigger::Flag)).then_some(()).ok_or(d)
            });
    }
    fx.gray.set_flag(None);
    for g in 0..GATEWAYS {
        assert_eq!(fx.state(g, CRANE), Pending, "gw-{g} after the shed");
    }
    fx.wait_scraped(CRANE, &[Pending; GATEWAYS]);
    assert_eq!(fx.argo(CRANE), (0.0, "Inconclusive"));
    assert_eq!(fx.webhooks(CRANE).0, 409);
    // The yard cameras' verdict is theirs: untouched by the crane cameras' shed.
    assert_eq!(fx.state(0, YARD), Refuted);
    eprintln!("the whole path in {:?}", started.elapsed());
}
