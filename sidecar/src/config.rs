//! Command line (every flag has a `GRAYGUARD_SIDECAR_*` environment twin) and its validation
//! into a typed [`Config`]; a bad value is reported with the flag that holds it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::layout::OutputLayout;
use crate::watchdog::{BoxBaseline, WatchdogConfig};

/// Execution device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Device {
    Cpu,
    Cuda,
}

impl Device {
    pub fn as_str(self) -> &'static str {
        match self {
            Device::Cpu => "cpu",
            Device::Cuda => "cuda",
        }
    }
}

/// `--output-layout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LayoutArg {
    /// Decide from the output shape.
    Auto,
    /// `[1, 4+C, N]` (YOLOv5u / v8 / 11).
    Anchors,
    /// `[1, N, 6]` (YOLOv10 end-to-end).
    End2end,
}

/// grayguard sidecar: a YOLO inference server on ONNX Runtime that stamps grayguard's
/// in-band canary signals on every reply. ONNX Runtime is loaded from ORT_DYLIB_PATH.
#[derive(Debug, Clone, Parser)]
#[command(name = "grayguard-sidecar", version, about, long_about = None)]
pub struct Args {
    /// Ultralytics detection model (.onnx).
    #[arg(long, env = "GRAYGUARD_SIDECAR_MODEL")]
    pub model: PathBuf,
    /// Address to listen on.
    #[arg(
        long,
        env = "GRAYGUARD_SIDECAR_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    pub listen: String,
    /// Version reported in x-model-version and the JSON (default: the model file's stem).
    #[arg(long, env = "GRAYGUARD_SIDECAR_MODEL_VERSION")]
    pub model_version: Option<String>,
    /// Confidence threshold: boxes must score above it.
    #[arg(long, env = "GRAYGUARD_SIDECAR_CONF", default_value_t = 0.25)]
    pub conf: f32,
    /// IoU above which NMS suppresses a same-class box.
    #[arg(long, env = "GRAYGUARD_SIDECAR_IOU", default_value_t = 0.45)]
    pub iou: f32,
    /// Most boxes per image.
    #[arg(long, env = "GRAYGUARD_SIDECAR_MAX_DET", default_value_t = 300)]
    pub max_det: usize,
    /// ONNX Runtime intra-op threads per model worker (default: available cores / workers).
    #[arg(long, env = "GRAYGUARD_SIDECAR_THREADS")]
    pub threads: Option<usize>,
    /// Model workers (ONNX sessions) running requests in parallel.
    #[arg(long, env = "GRAYGUARD_SIDECAR_WORKERS", default_value_t = 1)]
    pub workers: usize,
    /// Execution device; `cuda` falls back to CPU (one log line) when CUDA is unavailable.
    #[arg(long, env = "GRAYGUARD_SIDECAR_DEVICE", value_enum, default_value_t = Device::Cpu)]
    pub device: Device,
    /// CUDA device ordinal.
    #[arg(long, env = "GRAYGUARD_SIDECAR_CUDA_DEVICE", default_value_t = 0)]
    pub cuda_device: i32,
    /// Model input size override, `S` or `H,W` pixels (default: the model's `imgsz` metadata).
    #[arg(long, env = "GRAYGUARD_SIDECAR_IMGSZ")]
    pub imgsz: Option<String>,
    /// Output layout override.
    #[arg(long, env = "GRAYGUARD_SIDECAR_OUTPUT_LAYOUT", value_enum, default_value_t = LayoutArg::Auto)]
    pub output_layout: LayoutArg,
    /// Largest accepted request body, bytes.
    #[arg(long, env = "GRAYGUARD_SIDECAR_MAX_BODY_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Largest accepted image, pixels (width × height), checked from the header before decoding.
    #[arg(
        long,
        env = "GRAYGUARD_SIDECAR_MAX_PIXELS",
        default_value_t = 40_000_000
    )]
    pub max_pixels: u64,
    /// Requests allowed to wait for a model worker; beyond it /infer answers 503 + Retry-After.
    #[arg(long, env = "GRAYGUARD_SIDECAR_MAX_QUEUE", default_value_t = 16)]
    pub max_queue: usize,
    /// Model runs before /ready turns 200.
    #[arg(long, env = "GRAYGUARD_SIDECAR_WARMUP_RUNS", default_value_t = 3)]
    pub warmup_runs: u32,
    /// Seconds between self-checks when no request succeeded meanwhile (0: off).
    #[arg(
        long,
        env = "GRAYGUARD_SIDECAR_SELF_CHECK_INTERVAL_S",
        default_value_t = 30.0
    )]
    pub self_check_interval_s: f64,
    /// A self-check slower than this many times the reference latency flips /ready to 503.
    #[arg(
        long,
        env = "GRAYGUARD_SIDECAR_SELF_CHECK_SLOW_FACTOR",
        default_value_t = 5.0
    )]
    pub self_check_slow_factor: f64,
    /// On SIGTERM, seconds to let in-flight requests finish.
    #[arg(
        long,
        env = "GRAYGUARD_SIDECAR_DRAIN_TIMEOUT_S",
        default_value_t = 30.0
    )]
    pub drain_timeout_s: f64,
    /// Milliseconds between memory readings.
    #[arg(long, env = "GRAYGUARD_SIDECAR_MEMORY_POLL_MS", default_value_t = 1000)]
    pub memory_poll_ms: u64,
    /// Raise `latency` when the window's mean request latency exceeds this, ms.
    #[arg(
        long,
        env = "GRAYGUARD_SIDECAR_WATCHDOG_LATENCY_BUDGET_MS",
        default_value_t = 1000.0
    )]
    pub watchdog_latency_budget_ms: f64,
    /// Expected mean boxes per image (with --watchdog-box-std enables the `box_count` rule).
    #[arg(
        long,
        env = "GRAYGUARD_SIDECAR_WATCHDOG_BOX_MEAN",
        requires = "watchdog_box_std"
    )]
    pub watchdog_box_mean: Option<f64>,
    /// Standard deviation of boxes per image.
    #[arg(
        long,
        env = "GRAYGUARD_SIDECAR_WATCHDOG_BOX_STD",
        requires = "watchdog_box_mean"
    )]
    pub watchdog_box_std: Option<f64>,
    /// Raise `box_count` when the window mean is more than this many std from the mean.
    #[arg(
        long,
        env = "GRAYGUARD_SIDECAR_WATCHDOG_BOX_SIGMA",
        default_value_t = 3.0
    )]
    pub watchdog_box_sigma: f64,
    /// Raise `errors` when the share of server-side failures exceeds this.
    #[arg(
        long,
        env = "GRAYGUARD_SIDECAR_WATCHDOG_MAX_ERROR_RATE",
        default_value_t = 0.2
    )]
    pub watchdog_max_error_rate: f64,
    /// Length of the watchdog's rolling windows, seconds.
    #[arg(
        long,
        env = "GRAYGUARD_SIDECAR_WATCHDOG_WINDOW_S",
        default_value_t = 30.0
    )]
    pub watchdog_window_s: f64,
    /// Fewest samples in a window before its rule may fire.
    #[arg(
        long,
        env = "GRAYGUARD_SIDECAR_WATCHDOG_MIN_SAMPLES",
        default_value_t = 10
    )]
    pub watchdog_min_samples: usize,
    /// Raise `memory` when usage / limit stays above this fraction ...
    #[arg(
        long,
        env = "GRAYGUARD_SIDECAR_WATCHDOG_MEMORY_FRACTION",
        default_value_t = 0.95
    )]
    pub watchdog_memory_fraction: f64,
    /// ... for this many seconds.
    #[arg(
        long,
        env = "GRAYGUARD_SIDECAR_WATCHDOG_MEMORY_HOLD_S",
        default_value_t = 60.0
    )]
    pub watchdog_memory_hold_s: f64,
    /// Log filter (env_logger syntax), e.g. `info` or `grayguard_sidecar=debug`.
    #[arg(long, env = "GRAYGUARD_SIDECAR_LOG", default_value = "info")]
    pub log: String,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub model: PathBuf,
    pub listen: SocketAddr,
    pub model_version: String,
    pub conf: f32,
    pub iou: f32,
    pub max_det: usize,
    pub threads: usize,
    pub workers: usize,
    pub device: Device,
    pub cuda_device: i32,
    /// `(height, width)` override of the model input, pixels.
    pub imgsz: Option<(u32, u32)>,
    pub output_layout: Option<OutputLayout>,
    pub max_body_bytes: usize,
    pub max_pixels: u64,
    pub max_queue: usize,
    pub warmup_runs: u32,
    /// `None`: self-checks off.
    pub self_check_interval: Option<Duration>,
    pub self_check_slow_factor: f64,
    pub drain_timeout: Duration,
    pub memory_poll: Duration,
    pub watchdog: WatchdogConfig,
}

/// A flag with an unusable value.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub flag: &'static str,
    pub reason: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "--{}: {}", self.flag, self.reason)
    }
}

impl std::error::Error for ConfigError {}

fn err<T>(flag: &'static str, reason: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError {
        flag,
        reason: reason.into(),
    })
}

fn seconds(flag: &'static str, v: f64, allow_zero: bool) -> Result<Duration, ConfigError> {
    if !v.is_finite() || v < 0.0 || (!allow_zero && v == 0.0) || v > 1e7 {
        return err(
            flag,
            format!("must be a positive number of seconds, got {v}"),
        );
    }
    Ok(Duration::from_secs_f64(v))
}

fn fraction(flag: &'static str, v: f64) -> Result<f64, ConfigError> {
    if !(v.is_finite() && v > 0.0 && v <= 1.0) {
        return err(flag, format!("must be in (0, 1], got {v}"));
    }
    Ok(v)
}

/// `S` or `H,W` (also `HxW`), each a positive multiple of 32.
pub fn parse_imgsz(s: &str) -> Option<(u32, u32)> {
    let parts: Vec<&str> = s.split([',', 'x']).map(str::trim).collect();
    let (h, w) = match parts.as_slice() {
        [s] => (s.parse().ok()?, s.parse().ok()?),
        [h, w] => (h.parse().ok()?, w.parse().ok()?),
        _ => return None,
    };
    let ok = |v: u32| v > 0 && v.is_multiple_of(32) && v <= 8192;
    (ok(h) && ok(w)).then_some((h, w))
}

impl Args {
    /// Checks every value and builds the typed configuration.
    pub fn validate(self) -> Result<Config, ConfigError> {
        if !self.model.is_file() {
            return err(
                "model",
                format!("{} is not a readable file", self.model.display()),
            );
        }
        let listen: SocketAddr = match self.listen.parse() {
            Ok(a) => a,
            Err(e) => {
                return err(
                    "listen",
                    format!("{:?} is not HOST:PORT ({e})", self.listen),
                );
            }
        };
        let model_version = match self.model_version {
            Some(v) => v,
            None => self
                .model
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "unknown".into()),
        };
        if model_version.is_empty()
            || model_version.len() > 128
            || !model_version.bytes().all(|b| b.is_ascii_graphic())
        {
            return err(
                "model-version",
                format!(
                    "{model_version:?} must be 1-128 visible ASCII characters (it is a header value)"
                ),
            );
        }
        if !(self.conf.is_finite() && self.conf >= 0.0 && self.conf < 1.0) {
            return err("conf", format!("must be in [0, 1), got {}", self.conf));
        }
        if !(self.iou.is_finite() && self.iou > 0.0 && self.iou <= 1.0) {
            return err("iou", format!("must be in (0, 1], got {}", self.iou));
        }
        if self.max_det == 0 || self.max_det > 100_000 {
            return err(
                "max-det",
                format!("must be 1..=100000, got {}", self.max_det),
            );
        }
        if self.workers == 0 || self.workers > 64 {
            return err("workers", format!("must be 1..=64, got {}", self.workers));
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = match self.threads {
            Some(0) => return err("threads", "must be at least 1"),
            Some(t) if t > 1024 => return err("threads", format!("must be at most 1024, got {t}")),
            Some(t) => t,
            None => (cores / self.workers).max(1),
        };
        if self.cuda_device < 0 {
            return err(
                "cuda-device",
                format!("must be >= 0, got {}", self.cuda_device),
            );
        }
        let imgsz = match self.imgsz.as_deref() {
            None => None,
            Some(s) => match parse_imgsz(s) {
                Some(v) => Some(v),
                None => {
                    return err(
                        "imgsz",
                        format!("{s:?} is not S or H,W with multiples of 32 up to 8192"),
                    );
                }
            },
        };
        let output_layout = match self.output_layout {
            LayoutArg::Auto => None,
            LayoutArg::Anchors => Some(OutputLayout::Anchors),
            LayoutArg::End2end => Some(OutputLayout::EndToEnd),
        };
        if self.max_body_bytes < 64 {
            return err(
                "max-body-bytes",
                format!("must be at least 64, got {}", self.max_body_bytes),
            );
        }
        if self.max_pixels == 0 {
            return err("max-pixels", "must be at least 1");
        }
        if self.max_queue > 100_000 {
            return err(
                "max-queue",
                format!("must be at most 100000, got {}", self.max_queue),
            );
        }
        if self.warmup_runs > 1000 {
            return err(
                "warmup-runs",
                format!("must be at most 1000, got {}", self.warmup_runs),
            );
        }
        let interval = seconds("self-check-interval-s", self.self_check_interval_s, true)?;
        let self_check_interval = (!interval.is_zero()).then_some(interval);
        if !(self.self_check_slow_factor.is_finite() && self.self_check_slow_factor > 1.0) {
            return err(
                "self-check-slow-factor",
                format!(
                    "must be greater than 1, got {}",
                    self.self_check_slow_factor
                ),
            );
        }
        let drain_timeout = seconds("drain-timeout-s", self.drain_timeout_s, true)?;
        if self.memory_poll_ms < 10 {
            return err(
                "memory-poll-ms",
                format!("must be at least 10, got {}", self.memory_poll_ms),
            );
        }
        if !(self.watchdog_latency_budget_ms.is_finite() && self.watchdog_latency_budget_ms > 0.0) {
            return err(
                "watchdog-latency-budget-ms",
                format!("must be positive, got {}", self.watchdog_latency_budget_ms),
            );
        }
        let box_baseline = match (self.watchdog_box_mean, self.watchdog_box_std) {
            (Some(mean), Some(std)) => {
                if !(mean.is_finite() && mean >= 0.0) {
                    return err("watchdog-box-mean", format!("must be >= 0, got {mean}"));
                }
                if !(std.is_finite() && std >= 0.0) {
                    return err("watchdog-box-std", format!("must be >= 0, got {std}"));
                }
                if !(self.watchdog_box_sigma.is_finite() && self.watchdog_box_sigma > 0.0) {
                    return err(
                        "watchdog-box-sigma",
                        format!("must be positive, got {}", self.watchdog_box_sigma),
                    );
                }
                Some(BoxBaseline {
                    mean,
                    std,
                    sigma: self.watchdog_box_sigma,
                })
            }
            (None, None) => None,
            (Some(_), None) => {
                return err("watchdog-box-std", "is required with --watchdog-box-mean");
            }
            (None, Some(_)) => {
                return err("watchdog-box-mean", "is required with --watchdog-box-std");
            }
        };
        let watchdog = WatchdogConfig {
            latency_budget_ms: self.watchdog_latency_budget_ms,
            box_baseline,
            max_error_rate: fraction("watchdog-max-error-rate", self.watchdog_max_error_rate)?,
            window: seconds("watchdog-window-s", self.watchdog_window_s, false)?,
            min_samples: match self.watchdog_min_samples {
                0 => return err("watchdog-min-samples", "must be at least 1"),
                n => n,
            },
            memory_fraction: fraction("watchdog-memory-fraction", self.watchdog_memory_fraction)?,
            memory_hold: seconds("watchdog-memory-hold-s", self.watchdog_memory_hold_s, true)?,
        };
        Ok(Config {
            model: self.model,
            listen,
            model_version,
            conf: self.conf,
            iou: self.iou,
            max_det: self.max_det,
            threads,
            workers: self.workers,
            device: self.device,
            cuda_device: self.cuda_device,
            imgsz,
            output_layout,
            max_body_bytes: self.max_body_bytes,
            max_pixels: self.max_pixels,
            max_queue: self.max_queue,
            warmup_runs: self.warmup_runs,
            self_check_interval,
            self_check_slow_factor: self.self_check_slow_factor,
            drain_timeout,
            memory_poll: Duration::from_millis(self.memory_poll_ms),
            watchdog,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Result<Config, String> {
        // Cargo.toml is a file that surely exists; validation does not open it as a model.
        let model = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
        let argv = ["grayguard-sidecar", "--model", model]
            .into_iter()
            .chain(extra.iter().copied());
        let parsed = Args::try_parse_from(argv).map_err(|e| e.to_string())?;
        parsed.validate().map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = args(&[]).unwrap();
        assert_eq!(c.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(c.model_version, "Cargo");
        assert_eq!((c.conf, c.iou, c.max_det), (0.25, 0.45, 300));
        assert_eq!(c.device, Device::Cpu);
        assert_eq!(c.workers, 1);
        assert!(c.threads >= 1);
        assert_eq!(c.max_queue, 16);
        assert_eq!(c.warmup_runs, 3);
        assert_eq!(c.watchdog.window, Duration::from_secs(30));
        assert_eq!(c.watchdog.box_baseline, None);
        assert_eq!(c.self_check_interval, Some(Duration::from_secs(30)));
    }

    #[test]
    fn bad_values_name_their_flag() {
        let cases: &[(&[&str], &str)] = &[
            (&["--conf", "1.5"], "--conf:"),
            (&["--iou", "0"], "--iou:"),
            (&["--listen", "nowhere"], "--listen:"),
            (&["--threads", "0"], "--threads:"),
            (&["--workers", "0"], "--workers:"),
            (&["--imgsz", "100"], "--imgsz:"),
            (&["--max-body-bytes", "1"], "--max-body-bytes:"),
            (&["--max-pixels", "0"], "--max-pixels:"),
            (&["--model-version", "a b"], "--model-version:"),
            (&["--watchdog-window-s", "0"], "--watchdog-window-s:"),
            (
                &["--watchdog-max-error-rate", "2"],
                "--watchdog-max-error-rate:",
            ),
            (
                &["--watchdog-memory-fraction", "NaN"],
                "--watchdog-memory-fraction:",
            ),
            (&["--watchdog-min-samples", "0"], "--watchdog-min-samples:"),
            (
                &["--watchdog-box-mean", "3", "--watchdog-box-std=-1"],
                "--watchdog-box-std:",
            ),
            (
                &["--self-check-slow-factor", "1"],
                "--self-check-slow-factor:",
            ),
        ];
        for (extra, want) in cases {
            let e = args(extra).unwrap_err();
            assert!(e.starts_with(want), "{extra:?}: {e}");
        }
        let e = Args::try_parse_from(["x", "--model", "/nonexistent.onnx"])
            .unwrap()
            .validate()
            .unwrap_err();
        assert_eq!(e.flag, "model");
    }

    #[test]
    fn box_baseline_needs_both_flags() {
        assert!(args(&["--watchdog-box-mean", "3"]).is_err());
        let c = args(&[
            "--watchdog-box-mean",
            "3",
            "--watchdog-box-std",
            "1.5",
            "--watchdog-box-sigma",
            "2",
        ])
        .unwrap();
        assert_eq!(
            c.watchdog.box_baseline,
            Some(BoxBaseline {
                mean: 3.0,
                std: 1.5,
                sigma: 2.0
            })
        );
    }

    #[test]
    fn imgsz_forms() {
        assert_eq!(parse_imgsz("640"), Some((640, 640)));
        assert_eq!(parse_imgsz("480,640"), Some((480, 640)));
        assert_eq!(parse_imgsz("384x640"), Some((384, 640)));
        assert_eq!(parse_imgsz("641"), None);
        assert_eq!(parse_imgsz("0"), None);
        assert_eq!(parse_imgsz("1,2,3"), None);
    }

    #[test]
    fn overrides_and_env_twins() {
        let c = args(&[
            "--output-layout",
            "end2end",
            "--imgsz",
            "320",
            "--self-check-interval-s",
            "0",
        ])
        .unwrap();
        assert_eq!(c.output_layout, Some(OutputLayout::EndToEnd));
        assert_eq!(c.imgsz, Some((320, 320)));
        assert_eq!(c.self_check_interval, None);
        // Every flag has an env twin named GRAYGUARD_SIDECAR_<FLAG>.
        use clap::CommandFactory;
        for arg in Args::command().get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if long == "help" || long == "version" {
                continue;
            }
            let want = format!(
                "GRAYGUARD_SIDECAR_{}",
                long.to_uppercase().replace('-', "_")
            );
            let got = arg.get_env().map(|e| e.to_string_lossy().into_owned());
            assert_eq!(got.as_deref(), Some(want.as_str()), "--{long}");
        }
    }
}
