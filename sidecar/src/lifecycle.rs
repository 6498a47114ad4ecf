//! The life of the process: serve at once (health answers while the model loads), load the
//! model, warm it up, set the stall deadline, flip `/ready`, run the self-check and memory
//! loops, and drain on SIGTERM.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::oneshot;

use crate::clock::SystemClock;
use crate::config::Config;
use crate::detect::{BatchConfig, Batcher, Detector, Pipeline, PipelineConfig};
use crate::http::{App, Listeners, serve};
use crate::introspect::info::{ModelFacts, sha256_file};
use crate::introspect::memory::MemoryProbe;
use crate::introspect::metrics::Metrics;
use crate::introspect::selfcheck::{Verdict, due, judge};
use crate::model::gpu::GpuProbe;
use crate::model::onnx::{self, LoadError};
use crate::model::options::Device;

/// Why the sidecar could not start; reported in one line on stderr, exit status 1.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot read model {}: {source}", path.display())]
    ModelFile {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error(transparent)]
    Model(#[from] LoadError),
    #[error("model loading crashed: {0}")]
    LoadCrashed(String),
    #[error("cannot start model workers: {0}")]
    Workers(#[source] std::io::Error),
    #[error("warm-up run {run} failed: {reason}")]
    Warmup { run: u32, reason: String },
}

/// Binds the public listener and, with `--control-listen`, the control listener.
pub async fn bind(cfg: &Config) -> Result<Listeners, StartError> {
    async fn one(addr: std::net::SocketAddr) -> Result<tokio::net::TcpListener, StartError> {
        let listen = |source| StartError::Listen { addr, source };
        let l = tokio::net::TcpListener::bind(addr).await.map_err(listen)?;
        log::info!("listening on http://{}", l.local_addr().map_err(listen)?);
        Ok(l)
    }
    let public = one(cfg.listen).await?;
    let control = match cfg.control_listen {
        Some(addr) => {
            let l = one(addr).await?;
            let auth = if cfg.control_token.is_some() {
                "bearer token required"
            } else {
                "no token"
            };
            log::info!(
                "control listener: {} ({auth})",
                grayguard_contract::latch::PATH
            );
            Some(l)
        }
        None => None,
    };
    Ok(Listeners { public, control })
}

/// Runs the sidecar on `listeners` until SIGTERM or SIGINT, then drains and returns. An
/// error is a start-up failure (bad model, missing runtime).
pub async fn run(cfg: Config, listeners: Listeners) -> Result<(), StartError> {
    run_until(cfg, listeners, shutdown_signal()).await
}

/// [`run`] with an explicit shutdown trigger.
pub async fn run_until(
    cfg: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let gpu = match cfg.device {
        Device::Cuda => match GpuProbe::open(cfg.cuda_device) {
            Ok(p) => Some(p),
            Err(e) => {
                log::info!("GPU metrics (memory, utilisation) off: {e}");
                None
            }
        },
        Device::Cpu => None,
    };
    let metrics = Metrics::new(gpu.is_some())?;
    let app = Arc::new(App::new(cfg, metrics, Arc::new(SystemClock)));
    let (fatal_tx, fatal_rx) = oneshot::channel::<StartError>();
    tokio::spawn(start_model(Arc::clone(&app), fatal_tx));
    tokio::spawn(memory_loop(Arc::clone(&app), gpu));
    let fatal = Arc::new(std::sync::Mutex::new(None::<StartError>));
    let stop = {
        let fatal = Arc::clone(&fatal);
        async move {
            tokio::select! {
                () = shutdown => {}
                Ok(msg) = fatal_rx => {
                    if let Ok(mut f) = fatal.lock() {
                        *f = Some(msg);
                    }
                }
            }
        }
    };
    serve(Arc::clone(&app), listeners, stop).await;
    match fatal.lock().ok().and_then(|mut f| f.take()) {
        Some(msg) => Err(msg),
        None => Ok(()),
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => log::info!("SIGTERM received"),
                _ = int.recv() => log::info!("SIGINT received"),
            }
        }
        _ => {
            log::warn!("cannot install signal handlers; stop with SIGKILL");
            std::future::pending::<()>().await;
        }
    }
}

/// Loads the model, warms it up and starts the self-checks; a failure ends the process.
async fn start_model(app: Arc<App>, fatal: oneshot::Sender<StartError>) {
    let opts = app.cfg.model_options();
    let t0 = app.clock.now();
    // The file's digest (for /info) from the same bytes the runtime then loads.
    let loading = tokio::task::spawn_blocking(move || {
        let sha256 = sha256_file(&opts.path).map_err(|source| StartError::ModelFile {
            path: opts.path.clone(),
            source,
        })?;
        Ok::<_, StartError>((sha256, onnx::load(&opts)?))
    });
    let (sha256, loaded) = match loading.await {
        Ok(Ok(l)) => l,
        Ok(Err(e)) => return drop(fatal.send(e)),
        Err(e) => return drop(fatal.send(StartError::LoadCrashed(e.to_string()))),
    };
    let cfg = &app.cfg;
    let spec = &loaded.spec;
    log::info!(
        "model {} ({}) loaded in {:.1} s: input {}x{}, {} classes [{}], {} layout, {} on {} worker(s) x {} thread(s), ONNX Runtime {} ({})",
        cfg.model.display(),
        cfg.model_version,
        app.clock.ms_since(t0) / 1000.0,
        spec.input_w,
        spec.input_h,
        spec.names.len(),
        spec.names
            .iter()
            .take(8)
            .map(|n| n.as_ref())
            .collect::<Vec<_>>()
            .join(", "),
        spec.layout.as_str(),
        loaded.device.as_str(),
        cfg.workers,
        cfg.threads,
        loaded.runtime_version,
        loaded.runtime_build,
    );
    app.metrics
        .info
        .with_label_values(&[cfg.model_version.as_str(), loaded.device.as_str()])
        .set(1);
    app.set_model_facts(ModelFacts {
        sha256,
        input_w: spec.input_w,
        input_h: spec.input_h,
        classes: spec.names.iter().map(|n| n.to_string()).collect(),
        onnxruntime: loaded.runtime_version.clone(),
        device: loaded.device,
        intra_threads: cfg.threads,
        inter_threads: onnx::INTER_THREADS,
    });
    let pipeline = Pipeline::new(
        loaded.spec,
        PipelineConfig {
            conf: cfg.conf,
            iou: cfg.iou,
            max_det: cfg.max_det,
            max_pixels: cfg.max_pixels,
        },
    );
    let batching = BatchConfig {
        max_batch: cfg.max_batch,
        batch_wait: cfg.batch_wait,
        overlap_decoding: loaded.device == Device::Cuda,
    };
    let batcher = match Batcher::new(pipeline, batching, loaded.runners, Arc::clone(&app.clock)) {
        Ok(d) => d,
        Err(e) => return drop(fatal.send(StartError::Workers(e))),
    };
    match (batcher.spec().dynamic_batch, batcher.batch_limit()) {
        (true, 1) => log::info!("dynamic batch axis; batching off (--max-batch 1)"),
        (true, n) => log::info!(
            "dynamic batching: up to {n} images per run, waiting up to {} us for a batch to fill",
            cfg.batch_wait.as_micros()
        ),
        (false, _) => log::info!("fixed batch of 1: one image per model run"),
    }
    if batching.overlap_decoding {
        log::info!("two threads per session: decoding overlaps the model run");
    }
    let detector: Arc<dyn Detector> = Arc::new(batcher);
    app.set_detector(Arc::clone(&detector));
    // A fixed stall deadline holds from the first run; a derived one needs the warm-up.
    if let Some(deadline) = cfg.stall.deadline {
        app.arm_stall(deadline);
    }
    let mut times = Vec::with_capacity(cfg.warmup_runs as usize);
    for i in 0..cfg.warmup_runs {
        let (image, _) = app.images.current();
        let d = Arc::clone(&detector);
        let t = app.clock.now();
        match tokio::task::spawn_blocking(move || d.detect(&image)).await {
            Ok(Ok(_)) => times.push(app.clock.ms_since(t)),
            Ok(Err(e)) => {
                let reason = e.to_string();
                return drop(fatal.send(StartError::Warmup { run: i + 1, reason }));
            }
            Err(e) => {
                let reason = format!("crashed: {e}");
                return drop(fatal.send(StartError::Warmup { run: i + 1, reason }));
            }
        }
    }
    times.sort_by(f64::total_cmp);
    let baseline = times.get(times.len() / 2).copied();
    let deadline = cfg.stall.deadline_for(baseline);
    app.arm_stall(deadline);
    let rule = match cfg.stall.deadline {
        Some(_) => "--stall-deadline-s".to_string(),
        None => format!(
            "{} x the warm-up median, at least {:.1} s",
            cfg.stall.factor,
            cfg.stall.min.as_secs_f64()
        ),
    };
    log::info!(
        "stall deadline {:.1} s ({rule}): a model run still going after it fails /healthz",
        deadline.as_secs_f64()
    );
    app.set_warmed();
    match baseline {
        Some(b) => log::info!(
            "ready after {} warm-up run(s), median {b:.1} ms",
            times.len()
        ),
        None => log::info!("ready (no warm-up runs)"),
    }
    tokio::spawn(self_check_loop(app, detector, baseline));
}

/// A self-check handed to the model and not answered yet.
struct Pending {
    answer: oneshot::Receiver<Result<(), String>>,
    sent: std::time::Instant,
    real: bool,
}

impl Pending {
    fn send(app: &App, detector: &Arc<dyn Detector>) -> Pending {
        let (image, real) = app.images.current();
        let (tx, answer) = oneshot::channel();
        Arc::clone(detector).submit(
            image,
            Box::new(move |r| {
                let _ = tx.send(r.map(|_| ()).map_err(|e| e.to_string()));
            }),
        );
        Pending {
            answer,
            sent: app.clock.now(),
            real,
        }
    }
}

async fn self_check_loop(app: Arc<App>, detector: Arc<dyn Detector>, warmup_ms: Option<f64>) {
    let Some(interval) = app.cfg.self_check_interval else {
        return;
    };
    // A check stuck behind a hung run is waited for again, never queued a second time.
    let mut pending: Option<Pending> = None;
    loop {
        tokio::time::sleep(interval).await;
        if !due(
            app.clock.now(),
            app.last_success(),
            interval,
            app.check_ok(),
        ) {
            continue;
        }
        let mut check = pending
            .take()
            .unwrap_or_else(|| Pending::send(&app, &detector));
        // The stall deadline bounds a check as it bounds a model run (it is armed by now).
        let deadline = app.stall_deadline().unwrap_or(interval);
        let left = deadline.saturating_sub(app.clock.now().saturating_duration_since(check.sent));
        let (result, unanswered) = match tokio::time::timeout(left, &mut check.answer).await {
            Ok(Ok(r)) => (r, false),
            Ok(Err(_)) => (
                Err("self-check crashed: the model worker dropped it".into()),
                false,
            ),
            Err(_) => (
                Err(format!(
                    "no answer within the stall deadline ({:.1} s)",
                    deadline.as_secs_f64()
                )),
                true,
            ),
        };
        let latency = app.clock.ms_since(check.sent);
        let real = check.real;
        if unanswered {
            pending = Some(check);
        }
        let reference = app
            .with_watchdog(|w| w.mean_latency_ms(app.clock.now()))
            .or(warmup_ms);
        let verdict = judge(result, latency, reference, app.cfg.self_check_slow_factor);
        let healthy = verdict == Verdict::Healthy;
        let source = if real {
            "last request image"
        } else {
            "synthetic image"
        };
        match (&verdict, app.check_ok()) {
            (Verdict::Healthy, false) => {
                log::info!("self-check passed again ({latency:.1} ms, {source}); ready")
            }
            (Verdict::Healthy, true) => {
                log::debug!("self-check passed ({latency:.1} ms, {source})")
            }
            (Verdict::Failed(e), _) => log::error!("self-check failed ({source}): {e}; not ready"),
            (
                Verdict::TooSlow {
                    latency_ms,
                    limit_ms,
                },
                _,
            ) => log::error!(
                "self-check took {latency_ms:.1} ms, over {limit_ms:.1} ms ({source}); not ready"
            ),
        }
        app.set_check_ok(healthy);
    }
}

async fn memory_loop(app: Arc<App>, gpu: Option<GpuProbe>) {
    let probe = MemoryProbe::default();
    loop {
        let sample = probe.sample();
        if let Some(s) = sample {
            app.metrics
                .memory_bytes
                .set(i64::try_from(s.used).unwrap_or(i64::MAX));
            app.metrics
                .memory_limit_bytes
                .set(i64::try_from(s.limit).unwrap_or(i64::MAX));
        }
        let gpu_sample = gpu.as_ref().and_then(GpuProbe::sample);
        if let Some(g) = gpu_sample {
            app.metrics
                .gpu_memory_used_bytes
                .set(i64::try_from(g.used).unwrap_or(i64::MAX));
            app.metrics
                .gpu_memory_total_bytes
                .set(i64::try_from(g.total).unwrap_or(i64::MAX));
            if let Some(busy) = g.busy {
                app.metrics.gpu_utilisation.set(busy);
            }
        }
        // The fuller of host (cgroup) and GPU memory decides the `memory` rule.
        let fraction = [
            sample.and_then(|s| s.fraction()),
            gpu_sample.and_then(|g| g.fraction()),
        ]
        .into_iter()
        .flatten()
        .reduce(f64::max);
        let now = app.clock.now();
        app.with_watchdog(|w| w.record_memory(now, fraction));
        // Also lets flags clear (and their gauges drop) when no traffic arrives.
        app.breaches(now);
        app.refresh_gauges();
        tokio::time::sleep(app.cfg.memory_poll).await;
    }
}
