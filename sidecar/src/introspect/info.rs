//! What `GET /info` says about this pod, for the incident report's gray-versus-stable diff:
//! the sidecar's version and start time, the model file (path, SHA-256, version, input size,
//! classes), ONNX Runtime (version, device, threads), every flag's effective value (secrets
//! redacted) and the host. The facts are gathered once; the JSON is built per call.

use std::io::Read;
use std::path::Path;
use std::time::SystemTime;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::memory::MemoryProbe;
use crate::config::Config;
use crate::model::options::Device;

/// What the loaded model and runtime are.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelFacts {
    /// SHA-256 of the model file, lower-case hex.
    pub sha256: String,
    /// Model input, pixels.
    pub input_w: u32,
    pub input_h: u32,
    /// Class names by id.
    pub classes: Vec<String>,
    /// ONNX Runtime's version (`1.31.1`), or `unknown`.
    pub onnxruntime: String,
    /// Where the model actually runs.
    pub device: Device,
    /// ONNX Runtime intra-op and inter-op threads per session.
    pub intra_threads: usize,
    pub inter_threads: usize,
}

/// The machine the sidecar runs on.
#[derive(Debug, Clone, PartialEq)]
pub struct Host {
    pub hostname: String,
    /// Kernel name and release, e.g. `linux 6.1.0-18-amd64`.
    pub os: String,
    pub arch: &'static str,
    /// CPUs this process may use (affinity and cgroup quota applied).
    pub cpus: usize,
    /// Memory limit, bytes: the cgroup's, or physical memory without one.
    pub memory_bytes: Option<u64>,
}

impl Host {
    /// Reads the host's facts from `/proc` and the cgroup (`unknown` where unreadable).
    pub fn read() -> Host {
        let proc_text = |p: &str| {
            std::fs::read_to_string(p)
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        };
        let hostname = proc_text("/proc/sys/kernel/hostname")
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "unknown".into());
        let release = proc_text("/proc/sys/kernel/osrelease").unwrap_or_else(|| "unknown".into());
        Host {
            hostname,
            os: format!("{} {release}", std::env::consts::OS),
            arch: std::env::consts::ARCH,
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_bytes: MemoryProbe::default().sample().map(|s| s.limit),
        }
    }
}

/// SHA-256 of a file, lower-case hex (read in 1 MiB pieces; models can be large).
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match file.read(&mut buf)? {
            0 => break,
            n => hasher.update(&buf[..n]),
        }
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// RFC 3339 UTC with milliseconds.
pub fn rfc3339(t: SystemTime) -> String {
    jiff::Timestamp::try_from(t).map_or_else(|_| "unknown".into(), |ts| format!("{ts:.3}"))
}

/// The `/info` document. Model and runtime fields are `null` until the model is loaded.
pub fn report(
    cfg: &Config,
    started_at: SystemTime,
    model: Option<&ModelFacts>,
    host: &Host,
) -> Value {
    json!({
        "sidecar": {
            "version": env!("CARGO_PKG_VERSION"),
            "started_at": rfc3339(started_at),
        },
        "model": {
            "path": cfg.model.display().to_string(),
            "sha256": model.map(|m| m.sha256.as_str()),
            "version": cfg.model_version,
            "input": model.map(|m| [m.input_w, m.input_h]),
            "classes": model.map(|m| m.classes.as_slice()),
        },
        "runtime": {
            "onnxruntime": model.map(|m| m.onnxruntime.as_str()),
            "device": model.map(|m| m.device.as_str()),
            "intra_threads": model.map(|m| m.intra_threads),
            "inter_threads": model.map(|m| m.inter_threads),
        },
        "flags": cfg.flags,
        "host": {
            "hostname": host.hostname,
            "os": host.os,
            "arch": host.arch,
            "cpus": host.cpus,
            "memory_bytes": host.memory_bytes,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn config() -> Config {
        let model = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
        crate::config::Args::try_parse_from([
            "x",
            "--model",
            model,
            "--model-version",
            "v10-gray",
            "--control-token",
            "0123456789abcdef-secret",
        ])
        .unwrap()
        .into_config()
    }

    #[test]
    fn sha256_of_a_known_file() {
        let dir = std::env::temp_dir().join(format!("gg-info-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("abc");
        std::fs::write(&f, b"abc").unwrap();
        assert_eq!(
            sha256_file(&f).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(sha256_file(&dir.join("missing")).is_err());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn report_before_and_after_the_model_loads() {
        let cfg = config();
        let host = Host::read();
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_123);
        let cold = report(&cfg, t, None, &host);
        assert_eq!(cold["sidecar"]["started_at"], "2023-11-14T22:13:20.123Z");
        assert_eq!(cold["model"]["version"], "v10-gray");
        assert_eq!(cold["model"]["sha256"], Value::Null);
        assert_eq!(cold["runtime"]["device"], Value::Null);
        let facts = ModelFacts {
            sha256: "ab".repeat(32),
            input_w: 640,
            input_h: 480,
            classes: vec!["Normal".into(), "Fall".into()],
            onnxruntime: "1.31.1".into(),
            device: Device::Cpu,
            intra_threads: 2,
            inter_threads: 1,
        };
        let warm = report(&cfg, t, Some(&facts), &host);
        assert_eq!(warm["model"]["input"], json!([640, 480]));
        assert_eq!(warm["model"]["classes"], json!(["Normal", "Fall"]));
        assert_eq!(warm["runtime"]["onnxruntime"], "1.31.1");
        assert_eq!(warm["runtime"]["intra_threads"], 2);
        assert_eq!(warm["flags"]["control-token"], "<redacted>");
        assert!(!warm.to_string().contains("0123456789abcdef-secret"));
        assert!(warm["host"]["cpus"].as_u64().is_some_and(|n| n >= 1));
        assert_eq!(warm["host"]["arch"], std::env::consts::ARCH);
    }
}
