//! `grayguard-alert-sink`: receives Alertmanager's notifications for the local mesh and
//! shows what a person would receive (see `grayguard_ops::sink`).

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;

use grayguard_ops::sink_server::{self, Limits};

/// Receives Alertmanager's webhook, Slack and WeChat Work notifications on loopback, logs
/// each as one line, and shows them at `GET /` (clickable) and `GET /messages` (JSON).
#[derive(Debug, Parser)]
#[command(name = "grayguard-alert-sink", version)]
struct Args {
    /// Address to listen on (loopback unless --allow-remote).
    #[arg(long, default_value = "127.0.0.1:9095")]
    listen: SocketAddr,
    /// Listen on an address that is not loopback.
    #[arg(long)]
    allow_remote: bool,
    /// Messages kept in memory (the oldest are dropped), 1..=100000.
    #[arg(long, default_value_t = 1000)]
    max_messages: usize,
    /// Largest notification accepted, bytes (larger: 413).
    #[arg(long, default_value_t = 1024 * 1024)]
    max_body_bytes: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if !args.listen.ip().is_loopback() && !args.allow_remote {
        eprintln!(
            "grayguard-alert-sink: --listen: {} is not loopback; pass --allow-remote",
            args.listen
        );
        return ExitCode::from(2);
    }
    if !(1..=100_000).contains(&args.max_messages) {
        eprintln!("grayguard-alert-sink: --max-messages: must be 1..=100000");
        return ExitCode::from(2);
    }
    let server = match tiny_http::Server::http(args.listen) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("grayguard-alert-sink: --listen {}: {e}", args.listen);
            return ExitCode::from(2);
        }
    };
    println!(
        "grayguard-alert-sink: listening on http://{} (POST /webhook, /slack, /wechat/; GET /, /messages)",
        args.listen
    );
    sink_server::run(
        &server,
        Limits {
            max_messages: args.max_messages,
            max_body_bytes: args.max_body_bytes,
        },
        std::io::stdout(),
    );
    ExitCode::SUCCESS
}
