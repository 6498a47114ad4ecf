//! `grayguard-sidecar`: parses flags, binds the listeners and hands over to the library.

use std::process::ExitCode;

use clap::Parser;
use grayguard_sidecar::{Args, StartError};

fn main() -> ExitCode {
    // A bad flag or environment twin stops here with clap's message naming it (exit 2).
    let args = Args::parse();
    env_logger::Builder::new()
        .parse_filters(&args.log)
        .format_timestamp_millis()
        .init();
    let cfg = args.into_config();
    // The async side only parses HTTP; decoding and the model run on the model workers' own
    // threads (the blocking pool only serves fake detectors in tests).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(cfg.workers + cfg.max_queue + 4)
        .thread_name("gg-sidecar")
        .enable_all()
        .build();
    let result = runtime.map_err(StartError::Runtime).and_then(|runtime| {
        runtime.block_on(async {
            let listeners = grayguard_sidecar::lifecycle::bind(&cfg).await?;
            grayguard_sidecar::run(cfg, listeners).await
        })
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("grayguard-sidecar: {e}");
            ExitCode::FAILURE
        }
    }
}
