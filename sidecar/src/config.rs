//! Command line (every flag has a `GRAYGUARD_SIDECAR_*` environment twin) into a typed
//! [`Config`]. Every range is checked by clap's value parsers, so a bad value stops the
//! process at start with clap's message naming the flag (exit 2).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::{RangedU64ValueParser, TypedValueParser};
use clap::{Parser, ValueEnum, value_parser};
use serde::{Serialize, Serializer};

use crate::model::options::{Device, InputSize, ModelOptions};
use crate::signals::stall::StallConfig;
use crate::signals::watchdog::{BoxBaseline, WatchdogConfig};
use crate::vision::layout::OutputLayout;

/// `--output-layout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LayoutArg {
    /// Decide from the output shape.
    Auto,
    /// `[1, 4+C, N]` (YOLOv5u / v8 / 11).
    Anchors,
    /// `[1, N, 6]` (YOLOv10 end-to-end).
    End2end,
}

/// A secret from the command line or the environment: never printed (`Debug`, `/info`, clap's
/// errors and `--help` all leave it out).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Shortest secret accepted, bytes.
    pub const MIN_BYTES: usize = 16;
    /// Longest secret accepted, bytes (it travels in a header).
    pub const MAX_BYTES: usize = 1024;

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

/// Parses a [`Secret`]: 16–1024 visible ASCII bytes (a bearer token in a header). Its error
/// names the flag but not the value, which would otherwise land in logs.
#[derive(Debug, Clone, Copy)]
struct SecretParser;

impl TypedValueParser for SecretParser {
    type Value = Secret;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<Secret, clap::Error> {
        let why = match value.to_str() {
            Some(s) if s.len() < Secret::MIN_BYTES => "is shorter than 16 bytes",
            Some(s) if s.len() > Secret::MAX_BYTES => "is longer than 1024 bytes",
            Some(s) if !s.bytes().all(|b| b.is_ascii_graphic()) => {
                "must be visible ASCII (it is sent as a bearer token)"
            }
            Some(s) => return Ok(Secret(s.to_string())),
            None => "is not UTF-8",
        };
        let name = arg.map_or_else(|| "the secret".to_string(), |a| format!("'{a}'"));
        Err(clap::Error::raw(
            clap::error::ErrorKind::ValueValidation,
            format!("invalid value for {name}: the value {why} (not shown)\n"),
        )
        .with_cmd(cmd))
    }
}

/// An `http://host:port/path` URL: the stable workload's inference endpoint the gray sidecar
/// compares with (`--compare-with`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint(pub hyper::Uri);

impl Serialize for Endpoint {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_string())
    }
}

fn serialize_secs<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

fn serialize_opt_secs<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_f64(d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

/// grayguard sidecar: a YOLO inference server on ONNX Runtime that stamps grayguard's
/// in-band canary signals on every reply. ONNX Runtime is loaded from ORT_DYLIB_PATH.
///
/// Serialises (for `GET /info`) as the flags' names and values, secrets redacted.
#[derive(Debug, Clone, Parser, Serialize)]
#[command(name = "grayguard-sidecar", version, about, long_about = None)]
#[serde(rename_all = "kebab-case")]
pub struct Args {
    /// Ultralytics detection model (.onnx).
    #[arg(long, env = "GRAYGUARD_SIDECAR_MODEL", value_parser = readable_file)]
    pub model: PathBuf,
    /// Address to listen on.
    #[arg(
        long,
        env = "GRAYGUARD_SIDECAR_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    pub listen: SocketAddr,
    /// Version reported in x-model-version and the JSON (default: the model file's stem).
    #[arg(long, env = "GRAYGUARD_SIDECAR_MODEL_VERSION", value_parser = header_text)]
    pub model_version: Option<String>,
    /// Confidence threshold: boxes must score above it, in [0, 1).
    #[arg(long, env = "GRAYGUARD_SIDECAR_CONF", default_value_t = 0.25, value_parser = confidence)]
    pub conf: f32,
    /// IoU above which NMS suppresses a same-class box, in (0, 1].
    #[arg(long, env = "GRAYGUARD_SIDECAR_IOU", default_value_t = 0.45, value_parser = iou)]
    pub iou: f32,
    /// Most boxes per image.
    #[arg(long, env = "GRAYGUARD_SIDECAR_MAX_DET", default_value_t = 300,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..=100_000))]
    pub max_det: usize,
    /// ONNX Runtime intra-op threads per model worker (default: available cores / workers).
    #[arg(long, env = "GRAYGUARD_SIDECAR_THREADS",
          value_parser = RangedU64ValueParser::<usize>::new().range(1..=1024))]
    pub threads: Option<usize>,
    /// Model workers (ONNX sessions) running requests in parallel.
    #[arg(long, env = "GRAYGUARD_SIDECAR_WORKERS", default_value_t = 1,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..=64))]
    pub workers: usize,
    /// Most requests one model run takes together, when the model has a dynamic batch axis
    /// (1: no batching; fixed-batch models always run one image at a time).
    #[arg(long, env = "GRAYGUARD_SIDECAR_MAX_BATCH", default_value_t = 8,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..=256))]
    pub max_batch: usize,
    /// How long a worker holding a request waits for more to fill a batch, microseconds
    /// (0: batch only what is already queued, adding no latency).
    #[arg(long, env = "GRAYGUARD_SIDECAR_BATCH_WAIT_US", default_value_t = 0,
          value_parser = value_parser!(u64).range(0..=1_000_000))]
    pub batch_wait_us: u64,
    /// Execution device; `cuda` falls back to CPU (one log line) when CUDA is unavailable.
    #[arg(long, env = "GRAYGUARD_SIDECAR_DEVICE", value_enum, default_value_t = Device::Cpu)]
    pub device: Device,
    /// CUDA device ordinal.
    #[arg(long, env = "GRAYGUARD_SIDECAR_CUDA_DEVICE", default_value_t = 0,
          value_parser = value_parser!(u32).range(0..=1024))]
    pub cuda_device: u32,
    /// Model input size override, `S` or `H,W` pixels, multiples of 32 (default: the model's).
    #[arg(long, env = "GRAYGUARD_SIDECAR_IMGSZ", value_parser = parse_imgsz)]
    pub imgsz: Option<InputSize>,
    /// Output layout override.
    #[arg(long, env = "GRAYGUARD_SIDECAR_OUTPUT_LAYOUT", value_enum, default_value_t = LayoutArg::Auto)]
    pub output_layout: LayoutArg,
    /// Largest accepted request body, bytes.
    #[arg(long, env = "GRAYGUARD_SIDECAR_MAX_BODY_BYTES", default_value_t = 16 * 1024 * 1024,
          value_parser = RangedU64ValueParser::<usize>::new().range(64..))]
    pub max_body_bytes: usize,
    /// Largest accepted image, pixels (width × height), checked from the header before decoding.
    #[arg(long, env = "GRAYGUARD_SIDECAR_MAX_PIXELS", default_value_t = 40_000_000,
          value_parser = value_parser!(u64).range(1..))]
    pub max_pixels: u64,
    /// Requests allowed to wait for a model worker; beyond it /infer answers 503 + Retry-After.
    #[arg(long, env = "GRAYGUARD_SIDECAR_MAX_QUEUE", default_value_t = 16,
          value_parser = RangedU64ValueParser::<usize>::new().range(0..=100_000))]
    pub max_queue: usize,
    /// Model runs before /ready turns 200.
    #[arg(long, env = "GRAYGUARD_SIDECAR_WARMUP_RUNS", default_value_t = 3,
          value_parser = value_parser!(u32).range(0..=1000))]
    pub warmup_runs: u32,
    /// Seconds between self-checks when no request succeeded meanwhile (0: off).
    #[arg(long, env = "GRAYGUARD_SIDECAR_SELF_CHECK_INTERVAL_S", default_value = "30",
          value_parser = seconds_or_zero)]
    #[serde(serialize_with = "serialize_secs")]
    pub self_check_interval_s: Duration,
    /// A self-check slower than this many times the reference latency flips /ready to 503.
    #[arg(long, env = "GRAYGUARD_SIDECAR_SELF_CHECK_SLOW_FACTOR", default_value_t = 5.0,
          value_parser = above_one)]
    pub self_check_slow_factor: f64,
    /// Seconds a model run may take before the sidecar is stalled: /healthz and /ready
    /// answer 503 and replies carry `x-canary-breach: stalled` until the run returns
    /// (default: --stall-factor × the warm-up median, at least --stall-min-s).
    #[arg(long, env = "GRAYGUARD_SIDECAR_STALL_DEADLINE_S", value_parser = seconds)]
    #[serde(serialize_with = "serialize_opt_secs")]
    pub stall_deadline_s: Option<Duration>,
    /// Without --stall-deadline-s, the deadline is this many warm-up medians ...
    #[arg(long, env = "GRAYGUARD_SIDECAR_STALL_FACTOR", default_value_t = 20.0,
          value_parser = above_one)]
    pub stall_factor: f64,
    /// ... and at least this many seconds.
    #[arg(long, env = "GRAYGUARD_SIDECAR_STALL_MIN_S", default_value = "5",
          value_parser = seconds)]
    #[serde(serialize_with = "serialize_secs")]
    pub stall_min_s: Duration,
    /// On SIGTERM, seconds to let in-flight requests finish.
    #[arg(long, env = "GRAYGUARD_SIDECAR_DRAIN_TIMEOUT_S", default_value = "30",
          value_parser = seconds_or_zero)]
    #[serde(serialize_with = "serialize_secs")]
    pub drain_timeout_s: Duration,
    /// Milliseconds between memory readings.
    #[arg(long, env = "GRAYGUARD_SIDECAR_MEMORY_POLL_MS", default_value_t = 1000,
          value_parser = value_parser!(u64).range(10..=3_600_000))]
    pub memory_poll_ms: u64,
    /// Raise `latency` when the window's mean request latency exceeds this, ms.
    #[arg(long, env = "GRAYGUARD_SIDECAR_WATCHDOG_LATENCY_BUDGET_MS", default_value_t = 1000.0,
          value_parser = positive)]
    pub watchdog_latency_budget_ms: f64,
    /// Expected mean boxes per image (with --watchdog-box-std enables the `box_count` rule).
    #[arg(long, env = "GRAYGUARD_SIDECAR_WATCHDOG_BOX_MEAN", requires = "watchdog_box_std",
          value_parser = non_negative)]
    pub watchdog_box_mean: Option<f64>,
    /// Standard deviation of boxes per image.
    #[arg(long, env = "GRAYGUARD_SIDECAR_WATCHDOG_BOX_STD", requires = "watchdog_box_mean",
          value_parser = non_negative)]
    pub watchdog_box_std: Option<f64>,
    /// Raise `box_count` when the window mean is more than this many std from the mean
    /// (given without --watchdog-box-mean it would do nothing: refused).
    #[arg(long, env = "GRAYGUARD_SIDECAR_WATCHDOG_BOX_SIGMA", default_value_t = 3.0,
          requires = "watchdog_box_mean", value_parser = positive)]
    pub watchdog_box_sigma: f64,
    /// Raise `errors` when the share of server-side failures exceeds this, in (0, 1].
    #[arg(long, env = "GRAYGUARD_SIDECAR_WATCHDOG_MAX_ERROR_RATE", default_value_t = 0.2,
          value_parser = fraction)]
    pub watchdog_max_error_rate: f64,
    /// Length of the watchdog's rolling windows, seconds.
    #[arg(long, env = "GRAYGUARD_SIDECAR_WATCHDOG_WINDOW_S", default_value = "30",
          value_parser = seconds)]
    #[serde(serialize_with = "serialize_secs")]
    pub watchdog_window_s: Duration,
    /// Fewest samples in a window before its rule may fire.
    #[arg(long, env = "GRAYGUARD_SIDECAR_WATCHDOG_MIN_SAMPLES", default_value_t = 10,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..=1_000_000))]
    pub watchdog_min_samples: usize,
    /// Raise `memory` when usage / limit stays above this fraction ...
    #[arg(long, env = "GRAYGUARD_SIDECAR_WATCHDOG_MEMORY_FRACTION", default_value_t = 0.95,
          value_parser = fraction)]
    pub watchdog_memory_fraction: f64,
    /// ... for this many seconds.
    #[arg(long, env = "GRAYGUARD_SIDECAR_WATCHDOG_MEMORY_HOLD_S", default_value = "60",
          value_parser = seconds_or_zero)]
    #[serde(serialize_with = "serialize_secs")]
    pub watchdog_memory_hold_s: Duration,
    /// Address of the control listener, which serves the latch endpoint to the gateways
    /// (default: none, no control listener).
    #[arg(long, env = "GRAYGUARD_SIDECAR_CONTROL_LISTEN")]
    pub control_listen: Option<SocketAddr>,
    /// Bearer token every control call must carry, 16-1024 visible ASCII bytes (prefer the
    /// environment variable: a flag shows in the process list).
    #[arg(long, env = grayguard_contract::latch::WORKLOAD_TOKEN_ENV, hide_env_values = true,
          value_parser = SecretParser)]
    pub control_token: Option<Secret>,
    /// Most latches held at once; the one ending first makes room for a new one.
    #[arg(long, env = "GRAYGUARD_SIDECAR_LATCH_MAX_ENTRIES", default_value_t = 64,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..=100_000))]
    pub latch_max_entries: usize,
    /// Longest latch, seconds; longer requests are cut to it.
    #[arg(long, env = "GRAYGUARD_SIDECAR_LATCH_MAX_S", default_value = "3600",
          value_parser = seconds)]
    #[serde(serialize_with = "serialize_secs")]
    pub latch_max_s: Duration,
    /// Stable's inference endpoint, `http://host:port/infer`: a share of this sidecar's
    /// successful replies (--compare-percent) is compared with stable's answer on the same
    /// frame, in the background (default: none, no comparisons).
    #[arg(long, env = "GRAYGUARD_SIDECAR_COMPARE_WITH", value_parser = endpoint)]
    pub compare_with: Option<Endpoint>,
    /// Share of successful /infer replies whose frame is compared with stable, percent, in
    /// [0, 100]; stable serves this share of this sidecar's traffic once more.
    #[arg(long, env = "GRAYGUARD_SIDECAR_COMPARE_PERCENT", default_value_t = 10.0,
          value_parser = percent, requires = "compare_with")]
    pub compare_percent: f64,
    /// Longest wait for stable's whole answer to a comparison, milliseconds.
    #[arg(long, env = "GRAYGUARD_SIDECAR_COMPARE_TIMEOUT_MS", default_value_t = 2000,
          value_parser = value_parser!(u64).range(1..=60_000), requires = "compare_with")]
    pub compare_timeout_ms: u64,
    /// Most comparisons waiting for stable at once; further drawn frames are skipped.
    #[arg(long, env = "GRAYGUARD_SIDECAR_COMPARE_MAX_INFLIGHT", default_value_t = 4,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..=1024),
          requires = "compare_with")]
    pub compare_max_inflight: usize,
    /// Most finished agreements waiting for a reply to carry them; the oldest is dropped.
    #[arg(long, env = "GRAYGUARD_SIDECAR_COMPARE_MAX_PENDING", default_value_t = 64,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..=100_000),
          requires = "compare_with")]
    pub compare_max_pending: usize,
    /// Largest reply body read from stable, bytes.
    #[arg(long, env = "GRAYGUARD_SIDECAR_COMPARE_MAX_REPLY_BYTES", default_value_t = 256 * 1024,
          value_parser = RangedU64ValueParser::<usize>::new().range(1024..=16 * 1024 * 1024),
          requires = "compare_with")]
    pub compare_max_reply_bytes: usize,
    /// Most class names the confusion metrics label; further ones are counted as `other`.
    #[arg(long, env = "GRAYGUARD_SIDECAR_COMPARE_MAX_CLASSES", default_value_t = 64,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..=10_000),
          requires = "compare_with")]
    pub compare_max_classes: usize,
    /// Most open client connections per listener; more are answered 503 and closed.
    #[arg(long, env = "GRAYGUARD_SIDECAR_MAX_CONNECTIONS", default_value_t = 256,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..=1_000_000))]
    pub max_connections: usize,
    /// Seconds a client may take to send a request head (request line and headers), counted
    /// from the connection's start or from the first byte of a later request.
    #[arg(long, env = "GRAYGUARD_SIDECAR_HEADER_READ_TIMEOUT_S", default_value = "10",
          value_parser = seconds)]
    #[serde(serialize_with = "serialize_secs")]
    pub header_read_timeout_s: Duration,
    /// Seconds a keep-alive connection may stay idle between requests.
    #[arg(long, env = "GRAYGUARD_SIDECAR_IDLE_TIMEOUT_S", default_value = "90",
          value_parser = seconds)]
    #[serde(serialize_with = "serialize_secs")]
    pub idle_timeout_s: Duration,
    /// Seconds a client may take to send a request body; slower ones get 408.
    #[arg(long, env = "GRAYGUARD_SIDECAR_BODY_READ_TIMEOUT_S", default_value = "30",
          value_parser = seconds)]
    #[serde(serialize_with = "serialize_secs")]
    pub body_read_timeout_s: Duration,
    /// Largest request head (request line and headers), bytes; larger ones get 431.
    #[arg(long, env = "GRAYGUARD_SIDECAR_MAX_HEADER_BYTES", default_value_t = 16 * 1024,
          value_parser = RangedU64ValueParser::<usize>::new().range(1024..=256 * 1024))]
    pub max_header_bytes: usize,
    /// Log filter (env_logger syntax), e.g. `info` or `grayguard_sidecar=debug`.
    #[arg(long, env = "GRAYGUARD_SIDECAR_LOG", default_value = "info")]
    pub log: String,
}

/// The configuration: every value already range-checked by the parser.
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
    /// Most images per model run (batching needs a dynamic batch axis too).
    pub max_batch: usize,
    /// Longest wait for a batch to fill.
    pub batch_wait: Duration,
    pub device: Device,
    pub cuda_device: u32,
    pub imgsz: Option<InputSize>,
    pub output_layout: Option<OutputLayout>,
    pub max_body_bytes: usize,
    pub max_pixels: u64,
    pub max_queue: usize,
    pub warmup_runs: u32,
    /// `None`: self-checks off.
    pub self_check_interval: Option<Duration>,
    pub self_check_slow_factor: f64,
    /// How long a model run may take before the sidecar is stalled.
    pub stall: StallConfig,
    pub drain_timeout: Duration,
    pub memory_poll: Duration,
    pub watchdog: WatchdogConfig,
    /// The control listener's address (`None`: no control listener).
    pub control_listen: Option<SocketAddr>,
    /// Bearer token of control calls (`None`: none required).
    pub control_token: Option<Secret>,
    /// Most latches held.
    pub latch_max_entries: usize,
    /// Longest latch.
    pub latch_max: Duration,
    /// What one client connection may cost.
    pub limits: ConnLimits,
    /// The paired comparison with stable (`None`: no `--compare-with`).
    pub compare: Option<CompareConfig>,
    /// Every flag's effective value, secrets redacted (for `GET /info`).
    pub flags: serde_json::Value,
}

/// Limits on client connections (the hostile-client defences).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// Open connections per listener.
    pub max_connections: usize,
    /// From a connection's start, or a later request's first byte, to its complete head.
    pub header_read: Duration,
    /// Between a reply and the next request's first byte.
    pub idle: Duration,
    /// From the head to the end of the body.
    pub body_read: Duration,
    /// Request line and headers, bytes.
    pub max_header_bytes: usize,
}

/// The paired comparison with stable (`--compare-*`).
#[derive(Debug, Clone, PartialEq)]
pub struct CompareConfig {
    /// Stable's inference endpoint.
    pub with: hyper::Uri,
    /// Share of successful replies compared, percent.
    pub percent: f64,
    /// Longest wait for stable's whole answer.
    pub timeout: Duration,
    /// Comparisons waiting for stable at once.
    pub max_inflight: usize,
    /// Finished agreements waiting for a reply.
    pub max_pending: usize,
    /// Largest reply body read from stable.
    pub max_reply_bytes: usize,
    /// Class names the confusion metrics label.
    pub max_classes: usize,
}

type Parsed<T> = Result<T, String>;

fn number<T: std::str::FromStr>(s: &str) -> Parsed<T> {
    s.trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number"))
}

fn finite(s: &str) -> Parsed<f64> {
    let v: f64 = number(s)?;
    if v.is_finite() {
        Ok(v)
    } else {
        Err(format!("{v} is not a finite number"))
    }
}

fn readable_file(s: &str) -> Parsed<PathBuf> {
    let p = PathBuf::from(s);
    if p.is_file() {
        Ok(p)
    } else {
        Err("is not a readable file".into())
    }
}

/// A header value (it is stamped into `x-model-version`).
fn header_text(s: &str) -> Parsed<String> {
    if !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(s.to_string())
    } else {
        Err("must be 1-128 visible ASCII characters (it is a header value)".into())
    }
}

/// `http://host[:port]/path` (plain HTTP: in a mesh the sidecar proxy adds mTLS).
fn endpoint(s: &str) -> Parsed<Endpoint> {
    let uri: hyper::Uri = s
        .parse()
        .map_err(|_| "is not a URL like http://host:port/infer".to_string())?;
    if uri.scheme_str() != Some("http") {
        return Err("must be an http:// URL (in a mesh, the sidecar proxy adds mTLS)".into());
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("must name a host, like http://host:port/infer".into());
    }
    if uri.path() == "/" {
        return Err("must name the path, like http://host:port/infer".into());
    }
    Ok(Endpoint(uri))
}

fn percent(s: &str) -> Parsed<f64> {
    match finite(s)? {
        v if (0.0..=100.0).contains(&v) => Ok(v),
        v => Err(format!("must be in [0, 100], got {v}")),
    }
}

fn confidence(s: &str) -> Parsed<f32> {
    match finite(s)? {
        v if (0.0..1.0).contains(&v) => Ok(v as f32),
        v => Err(format!("must be in [0, 1), got {v}")),
    }
}

fn iou(s: &str) -> Parsed<f32> {
    fraction(s).map(|v| v as f32)
}

fn fraction(s: &str) -> Parsed<f64> {
    match finite(s)? {
        v if v > 0.0 && v <= 1.0 => Ok(v),
        v => Err(format!("must be in (0, 1], got {v}")),
    }
}

fn positive(s: &str) -> Parsed<f64> {
    match finite(s)? {
        v if v > 0.0 => Ok(v),
        v => Err(format!("must be positive, got {v}")),
    }
}

fn non_negative(s: &str) -> Parsed<f64> {
    match finite(s)? {
        v if v >= 0.0 => Ok(v),
        v => Err(format!("must be >= 0, got {v}")),
    }
}

fn above_one(s: &str) -> Parsed<f64> {
    match finite(s)? {
        v if v > 1.0 => Ok(v),
        v => Err(format!("must be greater than 1, got {v}")),
    }
}

/// Seconds, positive, at most ~115 days.
fn seconds(s: &str) -> Parsed<Duration> {
    match finite(s)? {
        v if v > 0.0 && v <= 1e7 => Ok(Duration::from_secs_f64(v)),
        v => Err(format!("must be a positive number of seconds, got {v}")),
    }
}

fn seconds_or_zero(s: &str) -> Parsed<Duration> {
    if finite(s)? == 0.0 {
        Ok(Duration::ZERO)
    } else {
        seconds(s)
    }
}

/// `S` or `H,W` (also `HxW`), each a positive multiple of 32 up to 8192.
pub fn parse_imgsz(s: &str) -> Parsed<InputSize> {
    let bad = || format!("{s:?} is not S or H,W with multiples of 32 up to 8192");
    let parts: Vec<&str> = s.split([',', 'x']).map(str::trim).collect();
    let (h, w): (u32, u32) = match parts.as_slice() {
        [s] => (s.parse().map_err(|_| bad())?, s.parse().map_err(|_| bad())?),
        [h, w] => (h.parse().map_err(|_| bad())?, w.parse().map_err(|_| bad())?),
        _ => return Err(bad()),
    };
    let ok = |v: u32| v > 0 && v.is_multiple_of(32) && v <= 8192;
    if ok(h) && ok(w) {
        Ok(InputSize {
            height: h,
            width: w,
        })
    } else {
        Err(bad())
    }
}

impl Args {
    /// The typed configuration (values were checked while parsing; this fills in defaults
    /// that depend on other values).
    pub fn into_config(self) -> Config {
        let flags = self.effective_flags();
        let model_version = self.effective_model_version();
        let threads = self.effective_threads();
        let output_layout = match self.output_layout {
            LayoutArg::Auto => None,
            LayoutArg::Anchors => Some(OutputLayout::Anchors),
            LayoutArg::End2end => Some(OutputLayout::EndToEnd),
        };
        let box_baseline = match (self.watchdog_box_mean, self.watchdog_box_std) {
            (Some(mean), Some(std)) => Some(BoxBaseline {
                mean,
                std,
                sigma: self.watchdog_box_sigma,
            }),
            // clap's `requires` makes the two flags come together.
            _ => None,
        };
        let watchdog = WatchdogConfig {
            latency_budget_ms: self.watchdog_latency_budget_ms,
            box_baseline,
            max_error_rate: self.watchdog_max_error_rate,
            window: self.watchdog_window_s,
            min_samples: self.watchdog_min_samples,
            memory_fraction: self.watchdog_memory_fraction,
            memory_hold: self.watchdog_memory_hold_s,
        };
        Config {
            model: self.model,
            listen: self.listen,
            model_version,
            conf: self.conf,
            iou: self.iou,
            max_det: self.max_det,
            threads,
            workers: self.workers,
            max_batch: self.max_batch,
            batch_wait: Duration::from_micros(self.batch_wait_us),
            device: self.device,
            cuda_device: self.cuda_device,
            imgsz: self.imgsz,
            output_layout,
            max_body_bytes: self.max_body_bytes,
            max_pixels: self.max_pixels,
            max_queue: self.max_queue,
            warmup_runs: self.warmup_runs,
            self_check_interval: (!self.self_check_interval_s.is_zero())
                .then_some(self.self_check_interval_s),
            self_check_slow_factor: self.self_check_slow_factor,
            stall: StallConfig {
                deadline: self.stall_deadline_s,
                factor: self.stall_factor,
                min: self.stall_min_s,
            },
            drain_timeout: self.drain_timeout_s,
            memory_poll: Duration::from_millis(self.memory_poll_ms),
            watchdog,
            control_listen: self.control_listen,
            control_token: self.control_token,
            latch_max_entries: self.latch_max_entries,
            latch_max: self.latch_max_s,
            limits: ConnLimits {
                max_connections: self.max_connections,
                header_read: self.header_read_timeout_s,
                idle: self.idle_timeout_s,
                body_read: self.body_read_timeout_s,
                max_header_bytes: self.max_header_bytes,
            },
            compare: self.compare_with.map(|Endpoint(with)| CompareConfig {
                with,
                percent: self.compare_percent,
                timeout: Duration::from_millis(self.compare_timeout_ms),
                max_inflight: self.compare_max_inflight,
                max_pending: self.compare_max_pending,
                max_reply_bytes: self.compare_max_reply_bytes,
                max_classes: self.compare_max_classes,
            }),
            flags,
        }
    }

    /// Every flag by name with its effective value (defaults filled in, secrets redacted).
    fn effective_flags(&self) -> serde_json::Value {
        let mut flags = serde_json::to_value(self).unwrap_or_default();
        let threads = self.effective_threads();
        let model_version = self.effective_model_version();
        if let Some(map) = flags.as_object_mut() {
            map.insert("threads".into(), threads.into());
            map.insert("model-version".into(), model_version.into());
        }
        flags
    }

    fn effective_threads(&self) -> usize {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        self.threads.unwrap_or((cores / self.workers).max(1))
    }

    fn effective_model_version(&self) -> String {
        self.model_version.clone().unwrap_or_else(|| {
            self.model
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .filter(|s| header_text(s).is_ok())
                .unwrap_or_else(|| "unknown".into())
        })
    }
}

impl Config {
    pub fn model_options(&self) -> ModelOptions {
        ModelOptions {
            path: self.model.clone(),
            threads: self.threads,
            workers: self.workers,
            device: self.device,
            cuda_device: self.cuda_device,
            imgsz: self.imgsz,
            output_layout: self.output_layout,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Result<Config, String> {
        // Cargo.toml is a file that surely exists; it is not opened as a model here.
        let model = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
        let argv = ["grayguard-sidecar", "--model", model]
            .into_iter()
            .chain(extra.iter().copied());
        Args::try_parse_from(argv)
            .map(Args::into_config)
            .map_err(|e| e.to_string())
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
        assert_eq!((c.max_batch, c.batch_wait), (8, Duration::ZERO));
        assert_eq!(c.max_queue, 16);
        assert_eq!(c.warmup_runs, 3);
        assert_eq!(c.watchdog.window, Duration::from_secs(30));
        assert_eq!(c.watchdog.box_baseline, None);
        assert_eq!(c.self_check_interval, Some(Duration::from_secs(30)));
        assert_eq!(
            c.stall,
            StallConfig {
                deadline: None,
                factor: 20.0,
                min: Duration::from_secs(5),
            }
        );
        assert_eq!((c.control_listen, c.control_token.as_ref()), (None, None));
        assert_eq!(c.latch_max_entries, 64);
        assert_eq!(c.latch_max, Duration::from_secs(3600));
        assert_eq!(c.compare, None);
        assert_eq!(
            c.limits,
            ConnLimits {
                max_connections: 256,
                header_read: Duration::from_secs(10),
                idle: Duration::from_secs(90),
                body_read: Duration::from_secs(30),
                max_header_bytes: 16 * 1024,
            }
        );
    }

    #[test]
    fn bad_values_name_their_flag() {
        let cases: &[&[&str]] = &[
            &["--conf", "1.5"],
            &["--iou", "0"],
            &["--listen", "nowhere"],
            &["--threads", "0"],
            &["--workers", "0"],
            &["--max-batch", "0"],
            &["--batch-wait-us", "2000000"],
            &["--imgsz", "100"],
            &["--max-body-bytes", "1"],
            &["--max-pixels", "0"],
            &["--model-version", "a b"],
            &["--watchdog-window-s", "0"],
            &["--watchdog-max-error-rate", "2"],
            &["--watchdog-memory-fraction", "NaN"],
            &["--watchdog-min-samples", "0"],
            &["--watchdog-box-mean", "3", "--watchdog-box-std=-1"],
            &["--self-check-slow-factor", "1"],
            &["--stall-deadline-s", "0"],
            &["--stall-factor", "0.5"],
            &["--stall-min-s=-5"],
            &["--cuda-device=-1"],
            &["--control-listen", "9092"],
            &["--control-token", "too-short"],
            &["--control-token", "sixteen bytes or more, but with spaces"],
            &["--latch-max-entries", "0"],
            &["--latch-max-s", "0"],
            &["--max-connections", "0"],
            &["--header-read-timeout-s=-1"],
            &["--idle-timeout-s", "0"],
            &["--body-read-timeout-s", "inf"],
            &["--max-header-bytes", "100"],
            &["--compare-with", "stable:8080/infer"],
            &["--compare-with", "https://stable:8080/infer"],
            &["--compare-with", "http:///infer"],
            &["--compare-with", "http://stable:8080"],
            &[
                "--compare-percent",
                "101",
                "--compare-with",
                "http://s/infer",
            ],
            &["--compare-percent=-1", "--compare-with", "http://s/infer"],
            &[
                "--compare-timeout-ms",
                "0",
                "--compare-with",
                "http://s/infer",
            ],
            &[
                "--compare-max-inflight",
                "0",
                "--compare-with",
                "http://s/infer",
            ],
            &[
                "--compare-max-pending",
                "0",
                "--compare-with",
                "http://s/infer",
            ],
            &[
                "--compare-max-reply-bytes",
                "10",
                "--compare-with",
                "http://s/infer",
            ],
            &[
                "--compare-max-classes",
                "0",
                "--compare-with",
                "http://s/infer",
            ],
        ];
        for extra in cases {
            let e = args(extra).unwrap_err();
            let flag = extra[0].split('=').next().unwrap_or_default();
            let flag = if flag == "--watchdog-box-mean" {
                "--watchdog-box-std"
            } else {
                flag
            };
            assert!(
                e.contains("invalid value") && e.contains(&format!("'{flag} <")),
                "{extra:?}: {e}"
            );
        }
        let e = Args::try_parse_from(["x", "--model", "/nonexistent.onnx"]).unwrap_err();
        assert!(
            e.to_string().contains(
                "invalid value '/nonexistent.onnx' for '--model <MODEL>': is not a readable file"
            ),
            "{e}"
        );
    }

    #[test]
    fn secrets_never_show() {
        let token = "s3cret-token-0123456789";
        let c = args(&[
            "--control-token",
            token,
            "--control-listen",
            "127.0.0.1:9092",
        ])
        .unwrap();
        assert_eq!(c.control_token.as_ref().map(Secret::expose), Some(token));
        assert!(!format!("{c:?}").contains(token));
        assert_eq!(c.flags["control-token"], "<redacted>");
        assert_eq!(c.flags["control-listen"], "127.0.0.1:9092");
        // A refused value is not echoed either (clap's own errors quote the value).
        let e = args(&["--control-token", "short-secret"]).unwrap_err();
        assert!(!e.contains("short-secret"), "{e}");
        assert!(e.contains("shorter than 16 bytes"), "{e}");
    }

    #[test]
    fn flags_report_every_flag_with_its_effective_value() {
        use clap::CommandFactory;
        let c = args(&["--idle-timeout-s", "2.5", "--workers", "2"]).unwrap();
        let flags = c.flags.as_object().unwrap();
        for arg in Args::command().get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if long != "help" && long != "version" {
                assert!(flags.contains_key(long), "--{long} missing from {flags:?}");
            }
        }
        assert_eq!(flags["idle-timeout-s"], 2.5);
        assert_eq!(flags["model-version"], "Cargo");
        assert_eq!(flags["threads"], c.threads);
        assert_eq!(flags["control-token"], serde_json::Value::Null);
        assert_eq!(flags["device"], "cpu");
        assert_eq!(flags["output-layout"], "auto");
    }

    #[test]
    fn comparison_flags() {
        let c = args(&["--compare-with", "http://127.0.0.1:8081/infer"]).unwrap();
        let cmp = c.compare.unwrap();
        assert_eq!(cmp.with, "http://127.0.0.1:8081/infer");
        assert_eq!((cmp.percent, cmp.timeout), (10.0, Duration::from_secs(2)));
        assert_eq!((cmp.max_inflight, cmp.max_pending), (4, 64));
        assert_eq!((cmp.max_reply_bytes, cmp.max_classes), (256 * 1024, 64));
        assert_eq!(
            c.flags["compare-with"], "http://127.0.0.1:8081/infer",
            "{:?}",
            c.flags
        );
        let c = args(&[
            "--compare-with",
            "http://yolo-detector.yolo.svc.cluster.local:8080/infer",
            "--compare-percent",
            "2.5",
            "--compare-timeout-ms",
            "800",
        ])
        .unwrap();
        let cmp = c.compare.unwrap();
        assert_eq!(
            (cmp.percent, cmp.timeout),
            (2.5, Duration::from_millis(800))
        );
        // The limits mean nothing without the endpoint: refused, not ignored.
        let e = args(&["--compare-percent", "50"]).unwrap_err();
        assert!(e.contains("--compare-with"), "{e}");
    }

    #[test]
    fn box_baseline_needs_both_flags() {
        assert!(args(&["--watchdog-box-mean", "3"]).is_err());
        // A threshold without the baseline it applies to is refused, not ignored.
        let e = args(&["--watchdog-box-sigma", "2"]).unwrap_err();
        assert!(e.contains("--watchdog-box-mean"), "{e}");
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
        let size = |height, width| Ok(InputSize { height, width });
        assert_eq!(parse_imgsz("640"), size(640, 640));
        assert_eq!(parse_imgsz("480,640"), size(480, 640));
        assert_eq!(parse_imgsz("384x640"), size(384, 640));
        assert!(parse_imgsz("641").is_err());
        assert!(parse_imgsz("0").is_err());
        assert!(parse_imgsz("1,2,3").is_err());
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
            "--batch-wait-us",
            "1500",
        ])
        .unwrap();
        assert_eq!(c.output_layout, Some(OutputLayout::EndToEnd));
        assert_eq!(
            c.imgsz,
            Some(InputSize {
                height: 320,
                width: 320
            })
        );
        assert_eq!(c.self_check_interval, None);
        assert_eq!(c.batch_wait, Duration::from_micros(1500));
        let c = args(&["--stall-deadline-s", "2.5"]).unwrap();
        assert_eq!(c.stall.deadline, Some(Duration::from_millis(2500)));
        assert_eq!(c.flags["stall-deadline-s"], 2.5);
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
