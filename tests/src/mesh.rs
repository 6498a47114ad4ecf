//! The whole local mesh on free loopback ports, for the end-to-end test and benchmark: a
//! stable and a gray sidecar serving the real model and a front Envoy running the filter with
//! a caller-chosen plugin configuration, routing on the filter's route header to clusters
//! named like the versions (as `mesh-config/local/envoy.yaml` does). Every process dies with
//! the [`Mesh`].

use grayguard_contract::headers;
use std::net::SocketAddr;

use crate::envoy::{Cluster, Envoy, Filter, Options};
use crate::http;
use crate::paths;
use crate::sidecar::{READY_TIMEOUT, Sidecar, SidecarBuilder};

/// The Envoy cluster names (and `x-model-version`s) of the two versions.
pub const STABLE: &str = "v9-prod";
pub const GRAY: &str = "v10-gray";

/// Both sidecars and the front Envoy. Fields drop in declaration order: Envoy first.
pub struct Mesh {
    pub envoy: Envoy,
    pub stable: Sidecar,
    pub gray: Sidecar,
}

impl Mesh {
    /// Starts the stable sidecar with `stable_flags`, the gray one with `gray_flags`, and the
    /// front Envoy (`workers` worker threads) with `plugin_config` (JSON).
    pub fn start(
        plugin_config: &str,
        stable_flags: &[&str],
        gray_flags: &[&str],
        workers: u32,
    ) -> Mesh {
        // Both load their model at once; each must be ready before Envoy starts.
        let mut stable = SidecarBuilder::new(STABLE).args(stable_flags).spawn();
        let mut gray = SidecarBuilder::new(GRAY).args(gray_flags).spawn();
        stable.wait_ready(READY_TIMEOUT);
        gray.wait_ready(READY_TIMEOUT);
        let envoy = front_envoy(plugin_config, &stable, &gray, workers);
        Mesh {
            envoy,
            stable,
            gray,
        }
    }

    /// Replaces the front Envoy with a fresh one (new ports, no filter state) in front of the
    /// same sidecars.
    pub fn restart_envoy(&mut self, plugin_config: &str, workers: u32) {
        self.envoy = front_envoy(plugin_config, &self.stable, &self.gray, workers);
    }

    /// POSTs `image` (JPEG) to the front Envoy as device `device_id` of type `device_type`,
    /// plus `extra` headers.
    pub fn infer(
        &self,
        device_type: &str,
        device_id: &str,
        image: &[u8],
        extra: &[(&str, &str)],
    ) -> http::Response {
        let mut headers = vec![
            ("content-type", "image/jpeg"),
            (headers::DEVICE_TYPE, device_type),
            (headers::DEVICE_ID, device_id),
        ];
        headers.extend_from_slice(extra);
        http::post(&self.envoy.url("/infer"), &headers, image)
            .unwrap_or_else(|e| panic!("front Envoy: transport error: {e}"))
    }
}

fn front_envoy(plugin_config: &str, stable: &Sidecar, gray: &Sidecar, workers: u32) -> Envoy {
    let at = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    let mut opts = Options::new(
        Filter::grayguard(plugin_config),
        Cluster::new(STABLE, at(stable.port)),
        Cluster::new(GRAY, at(gray.port)),
    );
    opts.concurrency = workers;
    // A configuration with confirm mode's `operator` gets its operator listener, on the port
    // the configuration names.
    opts.operator_port = serde_json::from_str::<serde_json::Value>(plugin_config)
        .ok()
        .and_then(|v| v["operator"]["port"].as_u64())
        .and_then(|p| u16::try_from(p).ok());
    Envoy::start(&opts)
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
