//! The whole local mesh on free loopback ports, for end-to-end tests and benchmarks: a stable
//! and a gray sidecar serving the real model, and a front Envoy running the filter with a
//! caller-chosen plugin configuration. Every process dies with the [`Mesh`].

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::http;
use crate::paths;
use crate::process::{Proc, free_port};

/// The Envoy cluster (and subset) names of the two versions.
pub const STABLE: &str = "v9-prod";
pub const GRAY: &str = "v10-gray";

/// How long a sidecar may take to load the model and warm up.
const SIDECAR_READY: Duration = Duration::from_secs(120);
const ENVOY_READY: Duration = Duration::from_secs(60);

/// One sidecar process and its port.
pub struct Sidecar {
    pub proc: Proc,
    pub port: u16,
}

impl Sidecar {
    /// Starts the real sidecar with the real model as `version` on a free port and waits for
    /// `/ready`. `extra` flags are appended (e.g. `--conf 0.01`).
    pub fn start(version: &str, extra: &[&str], dir: &Path) -> Sidecar {
        let port = free_port();
        let mut cmd = Command::new(paths::sidecar());
        cmd.env("ORT_DYLIB_PATH", paths::ort_dylib())
            .arg("--model")
            .arg(paths::model())
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--model-version", version])
            .args(extra);
        let mut proc = Proc::spawn(version, cmd, dir);
        proc.wait_for_status(
            &format!("http://127.0.0.1:{port}/ready"),
            200,
            SIDECAR_READY,
        );
        Sidecar { proc, port }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The sidecar's `/metrics` text.
    pub fn metrics(&self) -> String {
        http::get(&self.url("/metrics"))
            .expect("sidecar /metrics")
            .text()
    }
}

/// The front Envoy of the mesh.
pub struct FrontEnvoy {
    pub proc: Proc,
    pub port: u16,
    pub admin_port: u16,
}

impl FrontEnvoy {
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin_port)
    }

    /// Envoy's admin `/stats/prometheus` text.
    pub fn stats(&self) -> String {
        http::get(&self.admin_url("/stats/prometheus"))
            .expect("envoy admin /stats/prometheus")
            .text()
    }
}

/// The front Envoy's bootstrap: listener, the filter with `plugin_config` (JSON), and a
/// route on the filter's route header (`x-canary-route: v10-gray` → gray, else stable),
/// the same route shape as `mesh-config/local/envoy.yaml`, on the given ports.
pub fn envoy_config(
    listen: u16,
    admin: u16,
    stable_port: u16,
    gray_port: u16,
    wasm: &Path,
    plugin_config: &str,
) -> String {
    // A JSON string literal is also a valid YAML double-quoted scalar.
    let value = serde_json::to_string(plugin_config).expect("a string serialises");
    let wasm = serde_json::to_string(&wasm.display().to_string()).expect("a string serialises");
    let cluster = |name: &str, port: u16| {
        format!(
            r#"  - name: {name}
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: {name}
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: {{ address: 127.0.0.1, port_value: {port} }}
"#
        )
    };
    format!(
        r#"admin:
  address:
    socket_address: {{ address: 127.0.0.1, port_value: {admin} }}
stats_flush_interval: 1s
static_resources:
  listeners:
  - name: ingress
    address:
      socket_address: {{ address: 127.0.0.1, port_value: {listen} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          codec_type: AUTO
          route_config:
            name: yolo
            virtual_hosts:
            - name: yolo
              domains: ["*"]
              routes:
              - name: gray
                match:
                  prefix: /
                  headers:
                  - name: x-canary-route
                    string_match: {{ exact: {GRAY} }}
                route: {{ cluster: {GRAY}, timeout: 15s }}
              - name: stable
                match: {{ prefix: / }}
                route: {{ cluster: {STABLE}, timeout: 15s }}
          http_filters:
          - name: envoy.filters.http.wasm
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: grayguard
                root_id: grayguard
                failure_policy: FAIL_OPEN
                vm_config:
                  vm_id: grayguard
                  runtime: envoy.wasm.runtime.v8
                  code:
                    local: {{ filename: {wasm} }}
                configuration:
                  "@type": type.googleapis.com/google.protobuf.StringValue
                  value: {value}
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
{stable}{gray}"#,
        stable = cluster(STABLE, stable_port),
        gray = cluster(GRAY, gray_port),
    )
}

/// Starts Envoy with `config` on `port`/`admin_port`, `workers` worker threads, and waits
/// until the admin says ready and the listener accepts connections.
pub fn start_envoy(
    name: &str,
    config: &str,
    port: u16,
    admin_port: u16,
    workers: u32,
    dir: &Path,
) -> FrontEnvoy {
    let cfg = dir.join(format!("{name}.yaml"));
    std::fs::write(&cfg, config).expect("write the Envoy config");
    let mut cmd = Command::new(paths::envoy());
    cmd.arg("-c")
        .arg(&cfg)
        .args(["--disable-hot-restart", "--log-level", "warn"])
        .args(["--concurrency", &workers.to_string()]);
    let mut proc = Proc::spawn(name, cmd, dir);
    proc.wait_for_status(
        &format!("http://127.0.0.1:{admin_port}/ready"),
        200,
        ENVOY_READY,
    );
    proc.wait_for_port(
        SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(10),
    );
    FrontEnvoy {
        proc,
        port,
        admin_port,
    }
}

/// Both sidecars and the front Envoy. Fields drop in declaration order: Envoy first.
pub struct Mesh {
    pub envoy: FrontEnvoy,
    pub stable: Sidecar,
    pub gray: Sidecar,
    pub dir: tempfile::TempDir,
}

impl Mesh {
    /// Starts the stable sidecar with `stable_flags`, the gray one with `gray_flags`, and the
    /// front Envoy (`workers` worker threads) with `plugin_config`.
    pub fn start(
        plugin_config: &str,
        stable_flags: &[&str],
        gray_flags: &[&str],
        workers: u32,
    ) -> Mesh {
        let dir = tempfile::tempdir().expect("temp dir");
        let stable = Sidecar::start(STABLE, stable_flags, dir.path());
        let gray = Sidecar::start(GRAY, gray_flags, dir.path());
        let (port, admin) = (free_port(), free_port());
        let config = envoy_config(
            port,
            admin,
            stable.port,
            gray.port,
            &paths::wasm(),
            plugin_config,
        );
        let envoy = start_envoy("front-envoy", &config, port, admin, workers, dir.path());
        Mesh {
            envoy,
            stable,
            gray,
            dir,
        }
    }

    /// POSTs `image` to the front Envoy as device `device_id` of type `device_type`, plus
    /// `extra` headers.
    pub fn infer(
        &self,
        device_type: &str,
        device_id: &str,
        image: &[u8],
        extra: &[(&str, &str)],
    ) -> http::Response {
        let mut headers = vec![
            ("content-type", "image/jpeg"),
            ("x-device-type", device_type),
            ("x-device-id", device_id),
        ];
        headers.extend_from_slice(extra);
        http::post(&self.envoy.url("/infer"), &headers, image)
            .unwrap_or_else(|e| panic!("front Envoy: transport error: {e}"))
    }
}

/// The canonical plugin configuration, as `mesh-config/local/envoy.yaml` ships it (the
/// block scalar under `configuration: ... value: |`).
pub fn local_plugin_config() -> String {
    let path = paths::root().join("mesh-config/local/envoy.yaml");
    let yaml = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    plugin_block(&yaml).unwrap_or_else(|| panic!("{}: no `value: |` block", path.display()))
}

/// The first `value: |` block scalar of `yaml`, dedented.
fn plugin_block(yaml: &str) -> Option<String> {
    let mut lines = yaml.lines();
    let key_indent = lines
        .by_ref()
        .find_map(|l| (l.trim() == "value: |").then(|| l.len() - l.trim_start().len()))?;
    let body: Vec<&str> = lines
        .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > key_indent)
        .collect();
    let indent = body
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()?;
    let text: Vec<&str> = body.iter().map(|l| l.get(indent..).unwrap_or("")).collect();
    Some(text.join("\n").trim_end().to_string())
}

/// The sum over every series called exactly `name` in a Prometheus text exposition.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let rest = match rest.strip_prefix('{') {
                Some(r) => &r[r.find('}')? + 1..],
                None if rest.starts_with(' ') => rest,
                None => return None,
            };
            rest.split_whitespace().next()?.parse::<f64>().ok()
        })
        .reduce(|a, b| a + b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_sums_series_of_exactly_that_name() {
        let text = "# TYPE a counter\na{} 2\na{x=\"1\"} 3\na_count 7\nab 1\n";
        assert_eq!(metric(text, "a"), Some(5.0));
        assert_eq!(metric(text, "a_count"), Some(7.0));
        assert_eq!(metric(text, "b"), None);
    }

    #[test]
    fn plugin_block_is_extracted_and_dedented() {
        let yaml =
            "a:\n  configuration:\n    value: |\n      {\n        \"k\": 1\n      }\n  next: 2\n";
        assert_eq!(plugin_block(yaml).unwrap(), "{\n  \"k\": 1\n}");
        assert_eq!(plugin_block("x: 1\n"), None);
    }

    #[test]
    fn the_shipped_local_config_has_a_json_plugin_config() {
        let json: serde_json::Value = serde_json::from_str(&local_plugin_config()).unwrap();
        assert_eq!(json["stable"], STABLE);
        assert_eq!(json["gray"], GRAY);
    }

    #[test]
    fn envoy_config_embeds_the_plugin_json_as_one_string() {
        let cfg = envoy_config(1, 2, 3, 4, Path::new("/x/f.wasm"), "{\"a\": \"b\"}");
        assert!(cfg.contains(r#"value: "{\"a\": \"b\"}""#), "{cfg}");
        assert!(cfg.contains(r#"filename: "/x/f.wasm""#));
        assert!(cfg.contains("port_value: 4 }"));
    }
}
