//! The real sidecar binary with the real model and ONNX Runtime on a free loopback port,
//! configured builder-style ([`BLACK_PNG`] is the frame that hangs `paths::hang_model`):
//!
//! ```no_run
//! # use grayguard_e2e::sidecar::SidecarBuilder;
//! let sc = SidecarBuilder::new("v9-prod").flag("--conf", "0.25").start();
//! let r = sc.infer_file("person.jpg");
//! assert_eq!(r.status, 200);
//! ```
//!
//! [`agreement`] reads a gray sidecar's comparison value off a reply.

use std::process::Command;
use std::time::Duration;

use grayguard_contract::headers;

use crate::http::{self, Response};
use crate::paths;
use crate::process::{Proc, free_port};

/// How long loading the model and warming it up may take on a busy 2-core machine.
pub const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// A 32×32 all-black PNG: letterboxed, its input mean is 0, below the hang model's 0.02, so
/// it starts a model run of [`crate::paths::hang_model`] that never returns (any other model
/// answers it with no boxes).
pub const BLACK_PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x20, 0x00, 0x00, 0x00, 0x20, 0x08, 0x02, 0x00, 0x00, 0x00, 0xfc, 0x18, 0xed,
    0xa3, 0x00, 0x00, 0x00, 0x19, 0x49, 0x44, 0x41, 0x54, 0x48, 0xc7, 0xed, 0xc1, 0x31, 0x01, 0x00,
    0x00, 0x00, 0xc2, 0xa0, 0xf5, 0x4f, 0xed, 0x61, 0x0d, 0xa0, 0x00, 0x00, 0x00, 0x6e, 0x0c, 0x20,
    0x00, 0x01, 0x8c, 0x4e, 0x1c, 0xa5, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42,
    0x60, 0x82,
];

/// Flags and environment for one sidecar process.
#[derive(Debug, Clone)]
pub struct SidecarBuilder {
    version: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    model: Option<std::path::PathBuf>,
    control: bool,
}

impl SidecarBuilder {
    /// A sidecar serving the default model as `version`, one warm-up run, two ORT threads.
    pub fn new(version: &str) -> SidecarBuilder {
        SidecarBuilder {
            version: version.to_string(),
            args: Vec::new(),
            env: Vec::new(),
            model: None,
            control: false,
        }
    }

    /// Opens the control listener (the latch endpoint) on a free loopback port.
    pub fn control(mut self) -> SidecarBuilder {
        self.control = true;
        self
    }

    /// Appends `flag value` (e.g. `.flag("--max-queue", "2")`).
    pub fn flag(mut self, flag: &str, value: &str) -> SidecarBuilder {
        self.args.push(flag.to_string());
        self.args.push(value.to_string());
        self
    }

    /// Appends several raw arguments.
    pub fn args(mut self, args: &[&str]) -> SidecarBuilder {
        self.args.extend(args.iter().map(|s| s.to_string()));
        self
    }

    /// Sets an environment variable of the process (e.g. an `GRAYGUARD_SIDECAR_*` twin).
    pub fn env(mut self, key: &str, value: &str) -> SidecarBuilder {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Serves another model file.
    pub fn model(mut self, path: impl Into<std::path::PathBuf>) -> SidecarBuilder {
        self.model = Some(path.into());
        self
    }

    /// The command line (without spawning), listening on `port`.
    pub fn command(&self, port: u16) -> Command {
        let mut cmd = Command::new(paths::sidecar());
        cmd.env("ORT_DYLIB_PATH", paths::ort_dylib())
            .arg("--model")
            .arg(self.model.clone().unwrap_or_else(paths::model))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--model-version", &self.version]);
        // Defaults first: later occurrences of a flag win in clap, so callers can override.
        if !self.args.iter().any(|a| a == "--threads") {
            cmd.args(["--threads", "2"]);
        }
        if !self.args.iter().any(|a| a == "--warmup-runs") {
            cmd.args(["--warmup-runs", "1"]);
        }
        cmd.args(&self.args);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Starts the process on a free port (and the control listener on another, if opened)
    /// without waiting for it to be ready.
    pub fn spawn(self) -> Sidecar {
        let control_port = self.control.then(free_port);
        self.spawn_at(free_port(), control_port)
    }

    /// Starts the process on `port`, its control listener (if [`SidecarBuilder::control`]
    /// opened it) on `control_port` or a free one, without waiting for it to be ready.
    pub fn spawn_at(self, port: u16, control_port: Option<u16>) -> Sidecar {
        let control_port = self.control.then(|| control_port.unwrap_or_else(free_port));
        let mut cmd = self.command(port);
        if let Some(p) = control_port {
            cmd.args(["--control-listen", &format!("127.0.0.1:{p}")]);
        }
        let dir = tempfile::tempdir().expect("temp dir for the sidecar log");
        let proc = Proc::spawn(&self.version, cmd, dir.path()).own_dir(dir);
        Sidecar {
            proc,
            port,
            control_port,
        }
    }

    /// Starts the process and waits until `/ready` answers 200.
    pub fn start(self) -> Sidecar {
        let mut sc = self.spawn();
        sc.wait_ready(READY_TIMEOUT);
        sc
    }
}

/// A running sidecar (killed on drop).
pub struct Sidecar {
    pub proc: Proc,
    pub port: u16,
    /// The control listener's port ([`SidecarBuilder::control`]).
    pub control_port: Option<u16>,
}

impl Sidecar {
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// A URL on the control listener (panics if the builder did not open it).
    pub fn control_url(&self, path: &str) -> String {
        let port = self
            .control_port
            .expect("SidecarBuilder::control() opens the control port");
        format!("http://127.0.0.1:{port}{path}")
    }

    /// Replaces the process with `builder`'s on the same ports, as a rollout replaces a pod
    /// behind the same Service (or a kubelet restarts a crashed one): the old one, if still
    /// running, is stopped (SIGTERM, then killed), the new one is waited for until ready.
    pub fn replace(&mut self, builder: SidecarBuilder) {
        // A crashed one (a kubelet's restart) has nothing left to stop.
        if self.proc.exited().is_none() {
            let _ = self.proc.terminate(Duration::from_secs(10));
        }
        *self = builder.spawn_at(self.port, self.control_port);
        self.wait_ready(READY_TIMEOUT);
    }

    pub fn wait_ready(&mut self, timeout: Duration) {
        let url = self.url("/ready");
        self.proc.wait_for_status(&url, 200, timeout);
    }

    /// `POST /infer` with `body` as `content_type`.
    pub fn infer(&self, body: &[u8], content_type: &str) -> Response {
        http::post(&self.url("/infer"), &[("content-type", content_type)], body)
            .expect("POST /infer")
    }

    /// `POST /infer` of one of the real photos as JPEG.
    pub fn infer_file(&self, image: &str) -> Response {
        let body = std::fs::read(paths::image(image)).expect("read photo");
        self.infer(&body, "image/jpeg")
    }

    /// The `/metrics` text.
    pub fn metrics(&self) -> String {
        http::get(&self.url("/metrics"))
            .expect("GET /metrics")
            .text()
    }
}

/// The `x-canary-agreement` of a gray sidecar's reply (directly or through a gateway),
/// checked against its grammar: a decimal in [0, 1] with three decimals.
pub fn agreement(r: &Response) -> Option<f64> {
    let text = r.header(headers::AGREEMENT)?;
    let (whole, decimals) = text.split_once('.').unwrap_or_else(|| panic!("{text:?}"));
    assert!(
        matches!(whole, "0" | "1") && decimals.len() == 3,
        "{text:?} is not d.ddd"
    );
    let v: f64 = text.parse().unwrap();
    assert!((0.0..=1.0).contains(&v), "{text:?}");
    Some(v)
}
