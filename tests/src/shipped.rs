//! The shipped front Envoy configuration, `mesh-config/local/envoy.yaml`, as the tests read it
//! and run it: its canonical plugin configuration, the gray route's retry settings, and the
//! file itself started on free loopback ports ([`start`]) — the listener, admin and operator
//! ports and the sidecars' addresses moved (as run.sh moves a gateway's), the filter module's
//! path made absolute, and the plugin configuration replaced when a test asks; nothing else
//! changed: the routes, the gray fallback's aggregate cluster and retry policy, the stats tags
//! are the file's own.

use std::path::PathBuf;
use std::time::Duration;

use crate::envoy::{Envoy, Launch};
use crate::paths;
use crate::process::free_port;

/// Envoy's cluster the gray route sends to: gray, with stable behind it for the one retry.
pub const FALLBACK_CLUSTER: &str = "v10-gray-fallback";

fn file() -> PathBuf {
    paths::root().join("mesh-config/local/envoy.yaml")
}

fn text() -> String {
    let path = file();
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The canonical plugin configuration as the local mesh runs it, as the file ships it (the
/// block scalar under `configuration: ... value: |`): the cluster's, but for
/// `trust_time_header`, with which it reads the hour its Envoy pins (a harness gateway pins
/// the same, `crate::envoy::local_pinned_hour`).
pub fn local_plugin_config() -> String {
    let (_, body, _) = plugin_block(&text())
        .unwrap_or_else(|| panic!("{}: no `value: |` block", file().display()));
    body
}

/// The first `value: |` block scalar of `yaml`: the text before it (through the key's line),
/// its body dedented, and the text after it.
fn plugin_block(yaml: &str) -> Option<(String, String, String)> {
    let lines: Vec<&str> = yaml.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let key = lines.iter().position(|l| l.trim() == "value: |")?;
    let end = lines[key + 1..]
        .iter()
        .position(|l| !(l.trim().is_empty() || indent(l) > indent(lines[key])))
        .map_or(lines.len(), |n| key + 1 + n);
    let body = &lines[key + 1..end];
    let at = body
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| indent(l))
        .min()?;
    let text: Vec<&str> = body.iter().map(|l| l.get(at..).unwrap_or("")).collect();
    Some((
        lines[..=key].join("\n"),
        text.join("\n").trim_end().to_string(),
        lines[end..].join("\n"),
    ))
}

/// `yaml` with its plugin configuration's body replaced by `config` (indented as the block
/// was).
fn with_plugin_config(yaml: &str, config: &str) -> Option<String> {
    let (before, _, after) = plugin_block(yaml)?;
    let key_line = before.lines().last()?;
    let pad = " ".repeat(key_line.len() - key_line.trim_start().len() + 2);
    let body: Vec<String> = config.lines().map(|l| format!("{pad}{l}")).collect();
    Some(format!("{before}\n{}\n{after}\n", body.join("\n")))
}

/// The value of the file's one `key:` line.
fn setting(key: &str) -> String {
    let yaml = text();
    let prefix = format!("{key}:");
    let values: Vec<&str> = yaml
        .lines()
        .filter_map(|l| l.trim().strip_prefix(prefix.as_str()))
        .collect();
    assert_eq!(values.len(), 1, "{}: one {key}", file().display());
    values[0].trim().to_string()
}

/// A `key: Ns` duration of the file.
fn seconds(key: &str) -> Duration {
    let value = setting(key);
    let secs: f64 = value
        .strip_suffix('s')
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{key}: {value:?} is not `Ns`"));
    Duration::from_secs_f64(secs)
}

/// The gray route's per-try timeout, after which stable is asked too.
pub fn per_try_timeout() -> Duration {
    seconds("per_try_timeout")
}

/// How much of a request body the gray route keeps for its retry
/// (`request_body_buffer_limit`, bytes): a larger one is sent to gray alone.
pub fn retry_buffer_limit() -> usize {
    let value = setting("request_body_buffer_limit");
    value
        .parse()
        .unwrap_or_else(|_| panic!("request_body_buffer_limit {value:?} is not a number"))
}

/// The listener's `stream_idle_timeout`: how long a request may go without a byte either
/// way (an upload that stalls ends there).
pub fn stream_idle_timeout() -> Duration {
    seconds("stream_idle_timeout")
}

/// One gateway of the shipped configuration: where its upstreams listen and how it runs.
#[derive(Debug, Clone)]
pub struct Gateway {
    /// The stable and gray sidecars' ports, and the gray sidecar's control port (the latch
    /// cluster's endpoint).
    pub stable: u16,
    pub gray: u16,
    pub control: u16,
    /// The plugin configuration (JSON); `None` keeps the file's.
    pub plugin_config: Option<String>,
    /// Its node id (`gw-0`, ...), which its latch calls and records carry.
    pub node: String,
    /// Worker threads.
    pub concurrency: u32,
}

/// Starts the shipped configuration as `gw` says, on free ports; killed on drop.
pub fn start(gw: &Gateway) -> Envoy {
    let (port, admin, operator) = (free_port(), free_port(), free_port());
    // The plugin configuration names the operator listener's port too.
    let plugin = gw.plugin_config.clone().unwrap_or_else(local_plugin_config);
    let mut plugin: serde_json::Value =
        serde_json::from_str(&plugin).expect("the plugin configuration is JSON");
    if plugin.get("operator").is_some() {
        plugin["operator"]["port"] = operator.into();
    }
    let pretty = serde_json::to_string_pretty(&plugin).unwrap();
    let mut config = with_plugin_config(&text(), &pretty)
        .unwrap_or_else(|| panic!("{}: no `value: |` block", file().display()));
    let wasm = format!("filename: {}", paths::wasm().display());
    for (from, to) in [
        ("port_value: 10000 }", format!("port_value: {port} }}")),
        ("port_value: 9901 }", format!("port_value: {admin} }}")),
        ("port_value: 10100 }", format!("port_value: {operator} }}")),
        (
            "port_value: 8081 }",
            format!("port_value: {} }}", gw.stable),
        ),
        ("port_value: 8082 }", format!("port_value: {} }}", gw.gray)),
        (
            "port_value: 9092 }",
            format!("port_value: {} }}", gw.control),
        ),
        ("filename: target/grayguard_filter.wasm", wasm),
    ] {
        assert_eq!(
            config.matches(from).count(),
            1,
            "{}: expected {from:?} once",
            file().display()
        );
        config = config.replace(from, &to);
    }
    Envoy::run(
        &config,
        &Launch {
            port,
            admin,
            operator: Some(operator),
            concurrency: gw.concurrency,
            node: Some(gw.node.clone()),
        },
    )
}

impl Envoy {
    /// The shipped configuration as it is (the filter, its plugin configuration, the routes
    /// and the gray fallback, the hour it pins), only its ports moved: the clusters to
    /// `stable`, `gray` and the gray sidecar's `control` port; node `gw-0`, `workers` worker
    /// threads (see [`start`]).
    pub fn start_shipped_local(stable: u16, gray: u16, control: u16, workers: u32) -> Envoy {
        start(&Gateway {
            stable,
            gray,
            control,
            plugin_config: None,
            node: "gw-0".into(),
            concurrency: workers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str =
        "a:\n  configuration:\n    value: |\n      {\n        \"k\": 1\n      }\n  next: 2\n";

    #[test]
    fn the_plugin_block_is_found_dedented_and_replaced() {
        let (before, body, after) = plugin_block(YAML).unwrap();
        assert_eq!(body, "{\n  \"k\": 1\n}");
        assert_eq!(before, "a:\n  configuration:\n    value: |");
        assert_eq!(after, "  next: 2");
        assert_eq!(plugin_block("x: 1\n"), None);
        let replaced = with_plugin_config(YAML, "{\"k\": 2}").unwrap();
        assert_eq!(
            replaced,
            "a:\n  configuration:\n    value: |\n      {\"k\": 2}\n  next: 2\n"
        );
        assert_eq!(plugin_block(&replaced).unwrap().1, "{\"k\": 2}");
    }

    #[test]
    fn the_shipped_file_has_a_json_plugin_config_and_a_per_try_timeout_below_the_route_one() {
        let json: serde_json::Value = serde_json::from_str(&local_plugin_config()).unwrap();
        assert_eq!(json["gray"], "v10-gray");
        // And pins the hour its rules see, which its filter trusts.
        assert_eq!(json["trust_time_header"], true);
        assert_eq!(crate::envoy::local_pinned_hour().as_deref(), Some("02"));
        let gray = crate::envoy::RouteTimeouts::local().gray;
        assert!(
            per_try_timeout() < gray,
            "{:?} vs {gray:?}",
            per_try_timeout()
        );
        assert!(stream_idle_timeout() > gray);
    }
}
