//! `grayguard-sidecar`: parses flags, binds the listener and hands over to the library.

use std::process::ExitCode;

use clap::Parser;
use grayguard_sidecar::Args;

fn main() -> ExitCode {
    let args = Args::parse();
    env_logger::Builder::new()
        .parse_filters(&args.log)
        .format_timestamp_millis()
        .init();
    let cfg = match args.validate() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("grayguard-sidecar: {e}");
            return ExitCode::from(2);
        }
    };
    // The async side only parses HTTP; the model runs on its own threads and pre-processing on
    // the blocking pool, bounded by the admission limit.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(cfg.workers + cfg.max_queue + 4)
        .thread_name("gg-sidecar")
        .enable_all()
        .build();
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => {
            eprintln!("grayguard-sidecar: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", cfg.listen))?;
        log::info!(
            "listening on http://{}",
            listener.local_addr().map_err(|e| e.to_string())?
        );
        grayguard_sidecar::run(cfg, listener).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("grayguard-sidecar: {e}");
            ExitCode::FAILURE
        }
    }
}
