//! `grayguard-demo`: replays the gray-release incident against a running local mesh
//! (`make run`) and writes `timeline.png`, `summary.txt` and `requests.csv`.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};

use grayguard_client::decision::DecisionExt;
use grayguard_client::exposition;
use grayguard_client::sample::{Outcome, Sample};
use grayguard_client::traffic::{self, Plan};
use grayguard_contract::Trigger;
use grayguard_contract::metrics::filter as names;
use grayguard_demo::chart;
use grayguard_demo::config::Args;
use grayguard_demo::summary::Summary;

/// The filter's counters shown at the end, read from Envoy's admin.
fn envoy_counters() -> [String; 7] {
    [
        names::ROUTED_GRAY.into(),
        names::ROUTED_STABLE.into(),
        names::SHED_REQUESTS.into(),
        names::PROBE_REQUESTS.into(),
        names::breaches(Trigger::BoxCount),
        names::breaches(Trigger::Flag),
        names::BREAKER_STATE.into(),
    ]
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("grayguard-demo: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &Args) -> Result<ExitCode, String> {
    let plan = args.plan().map_err(|e| e.to_string())?;
    let imgs = args.photos.load().map_err(|e| e.to_string())?;
    std::fs::create_dir_all(&args.out)
        .map_err(|e| format!("--out: cannot create {}: {e}", args.out.display()))?;

    let cohorts: Vec<String> = plan
        .mix
        .cohorts()
        .iter()
        .map(|c| {
            format!(
                "{} ({} devices, weight {})",
                c.device_type, c.devices, c.weight
            )
        })
        .collect();
    let targets: Vec<&str> = plan.gateways.iter().map(|g| g.target.as_str()).collect();
    let admins: Vec<&str> = plan
        .gateways
        .iter()
        .map(|g| g.admin_metrics.as_str())
        .collect();
    println!(
        "grayguard demo: {} requests at {}/s for {} s to {}\n  cohorts: {}\n  photos: {} from {}\n  breaker from {}",
        plan.requests,
        args.rate,
        args.duration_s,
        targets.join(", "),
        cohorts.join(", "),
        imgs.len(),
        args.photos.images.display(),
        admins.join(", "),
    );

    let bar = ProgressBar::new(plan.requests);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} replies  {msg}")
            .map_err(|e| e.to_string())?
            .progress_chars("=> "),
    );
    let result = traffic::run(&plan, Arc::new(imgs), &bar);
    bar.finish_and_clear();

    let summary = Summary::compute(&result.samples, &result.breaker);
    let mut text = summary.render();
    if result.skipped > 0 {
        let _ = writeln!(
            text,
            "skipped (all {} senders busy)    {}",
            plan.concurrency, result.skipped
        );
    }
    for (gateway, admin) in plan.gateways.iter().zip(&result.last_admin) {
        let Some(admin) = admin else { continue };
        let _ = writeln!(text, "Envoy filter metrics at the end ({})", gateway.name);
        for name in envoy_counters() {
            let v = exposition::value(admin, &name).map_or("-".to_string(), |v| format!("{v}"));
            let _ = writeln!(text, "  {name:<40} {v}");
        }
    }
    let failed = summary.failed_checks();
    if !failed.is_empty() {
        let _ = writeln!(text, "not as expected:");
        for f in &failed {
            let _ = writeln!(text, "  - {f}");
        }
    }

    let png = args.out.join("timeline.png");
    let title = format!(
        "grayguard: {} vs {}, {} req/s",
        plan.gray_version, plan.stable_version, args.rate
    );
    let names: Vec<String> = plan
        .mix
        .cohorts()
        .iter()
        .map(|c| c.device_type.clone())
        .collect();
    let gateway_names: Vec<String> = plan.gateways.iter().map(|g| g.name.clone()).collect();
    chart::draw(
        &png,
        result.timeline.seconds(),
        &names,
        &chart::Breakers {
            gateways: &gateway_names,
            readings: &result.readings,
        },
        summary.shed_at,
        &title,
    )?;
    write(&args.out.join("summary.txt"), &text)?;
    write(&args.out.join("requests.csv"), &csv(&plan, &result.samples))?;

    println!("\n{text}");
    println!(
        "wrote {}, {}, {}",
        png.display(),
        args.out.join("summary.txt").display(),
        args.out.join("requests.csv").display()
    );
    if args.check && !failed.is_empty() {
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// One line per request: times in seconds from the start of the run.
fn csv(plan: &Plan, samples: &[Sample]) -> String {
    let mut out =
        String::from("sent_s,done_s,device_type,status,decision,served_by,boxes,breach\n");
    let mut sorted: Vec<&Sample> = samples.iter().collect();
    sorted.sort_by_key(|s| s.sent);
    for s in sorted {
        let cohort = &plan.mix.cohorts()[s.cohort].device_type;
        let (status, decision, served, boxes, breach) = match &s.outcome {
            Outcome::Reply(r) => (
                r.status.to_string(),
                match &r.decision {
                    Some(Ok(d)) => d.label(),
                    Some(Err(_)) => "malformed".to_string(),
                    None => String::new(),
                },
                r.route().map_or("", |r| r.as_str()).to_string(),
                r.box_count.map_or(String::new(), |b| b.to_string()),
                r.breach.clone().unwrap_or_default(),
            ),
            Outcome::Transport(_) => (
                "transport-error".to_string(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
            ),
        };
        let _ = writeln!(
            out,
            "{:.3},{:.3},{cohort},{status},{decision},{served},{boxes},{}",
            s.sent.as_secs_f64(),
            s.done.as_secs_f64(),
            breach.replace(',', ";")
        );
    }
    out
}
