//! `grayguard-report`: the postmortem of a grayguard incident as one HTML page, written to
//! a file or served on request (`--serve`); a rule's promotion report (`--promotion RULE`,
//! or `GET /promotion?rule=R` when serving) and Flagger's webhooks on its verdict.

use std::process::ExitCode;

use clap::Parser;
use jiff::Timestamp;

use grayguard_client::fetch::Client;
use grayguard_ops::keeper::{Keeper, Mesh};
use grayguard_ops::kept::Shelf;
use grayguard_ops::report_cli::{ArgError, Args};
use grayguard_ops::{html, promotion, promotion_html, report, routes, serve};

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("grayguard-report: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &Args) -> Result<ExitCode, String> {
    let sources = args.sources().map_err(|e: ArgError| e.to_string())?;
    // Checked once up front, so a bad flag fails at start rather than per request.
    args.options(Timestamp::now()).map_err(|e| e.to_string())?;
    let client = Client::new(
        args.timeout().map_err(|e| e.to_string())?,
        args.max_response_bytes,
    );
    let promotion = promotion_routes(args, &client, &sources)?;

    if let Some(addr) = args.serve {
        // The kept reports, when asked for: checked and opened before anything is served.
        let keeper = match &args.kept.reports_dir {
            Some(dir) => {
                let limits = args.kept.limits()?;
                let shelf = Shelf::open(dir, limits).map_err(|e| format!("--reports-dir: {e}"))?;
                let mesh = Mesh {
                    client: client.clone(),
                    sources: sources.clone(),
                    options: args.options(Timestamp::now()).map_err(|e| e.to_string())?,
                };
                Some(Keeper::new(shelf, mesh))
            }
            None => None,
        };
        let server = tiny_http::Server::http(addr).map_err(|e| format!("--serve {addr}: {e}"))?;
        eprintln!("grayguard-report: serving http://{addr}/report?rule=RULE&at=TIME");
        if let Some(dir) = &args.kept.reports_dir {
            eprintln!(
                "grayguard-report: keeping reports in {} (POST /alertmanager; http://{addr}/reports/)",
                dir.display()
            );
        }
        eprintln!(
            "grayguard-report: serving http://{addr}/promotion?rule=RULE and Flagger's POST /flagger/confirm-promotion, /flagger/rollback"
        );
        let more = |request: &mut tiny_http::Request| {
            promotion
                .answer(request)
                .or_else(|| keeper.as_ref()?.answer(request))
        };
        serve::run(&server, more, |req| {
            let mut opts = match args.options(Timestamp::now()) {
                Ok(o) => o,
                Err(e) => return e.to_string(),
            };
            if req.rule.is_some() {
                opts.rule.clone_from(&req.rule);
            }
            if req.at.is_some() {
                opts.at = req.at;
            }
            let r = report::gather(&client, &sources, &opts);
            eprintln!(
                "grayguard-report: report for rule={:?} at={:?}: {}",
                opts.rule,
                opts.at.map(|t| t.to_string()),
                r.incident
                    .as_ref()
                    .map_or("no incident".to_string(), |i| format!(
                        "incident of {} from {}",
                        i.rule, i.start
                    ))
            );
            html::render(&r)
        });
        return Ok(ExitCode::SUCCESS);
    }

    if let Some(rule) = &args.promotion.promotion {
        let opts = routes::options(&promotion.settings, rule.clone(), Timestamp::now());
        let r = promotion::gather(&client, &sources, &promotion.operators, &opts);
        let page = promotion_html::render(&r);
        write_page(args, &page)?;
        for p in &r.problems {
            eprintln!("grayguard-report: warning: {p}");
        }
        println!(
            "wrote {} ({} KB): {}",
            args.out.display(),
            page.len() / 1024,
            promotion_html::summary(&r)
        );
        return Ok(ExitCode::SUCCESS);
    }

    let opts = args.options(Timestamp::now()).map_err(|e| e.to_string())?;
    let r = report::gather(&client, &sources, &opts);
    let page = html::render(&r);
    write_page(args, &page)?;
    for p in &r.problems {
        eprintln!("grayguard-report: warning: {p}");
    }
    match &r.incident {
        Some(i) => println!(
            "wrote {} ({} KB): incident of rule {} ({}) from {}{}",
            args.out.display(),
            page.len() / 1024,
            i.rule,
            i.trigger().unwrap_or("?"),
            i.start,
            i.end
                .map_or(", ongoing".to_string(), |e| format!(" to {e}"))
        ),
        None => println!("wrote {}: no incident found", args.out.display()),
    }
    if args.require_incident && r.incident.is_none() {
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn write_page(args: &Args, page: &str) -> Result<(), String> {
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("--out: cannot create {}: {e}", dir.display()))?;
    }
    std::fs::write(&args.out, page)
        .map_err(|e| format!("--out: cannot write {}: {e}", args.out.display()))
}

/// The promotion page's and the webhooks' sources and settings, from the flags.
fn promotion_routes(
    args: &Args,
    client: &Client,
    sources: &report::Sources,
) -> Result<routes::Promotion, String> {
    let flags = &args.promotion;
    let incident = args.options(Timestamp::now()).map_err(|e| e.to_string())?;
    Ok(routes::Promotion {
        client: client.clone(),
        sources: sources.clone(),
        operators: flags.operators()?,
        settings: routes::Settings {
            lookback: flags.lookback()?,
            max_points: incident.max_points,
            min_step_s: incident.min_step_s,
            max_log_bytes: incident.max_log_bytes,
        },
    })
}
