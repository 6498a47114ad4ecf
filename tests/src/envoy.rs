//! A front Envoy for tests: a bootstrap generated into a temp dir (listener and admin on
//! free loopback ports, optionally the grayguard Wasm filter with a given JSON config, a
//! router choosing the gray or stable cluster on the route header), started with `Proc`
//! ([`Envoy::run`] starts any bootstrap, `crate::shipped` the shipped one), plus what tests
//! read from a running one (`/stats/prometheus`, a cluster's counters, the records the
//! filter logs) and `envoy --mode validate`.

use grayguard_contract::headers;
use grayguard_contract::latch::TOKEN_ENV;
use grayguard_contract::operator::SECRET_ENV;
use grayguard_contract::record::{self, Incident, Record};
use grayguard_contract::tags::Label;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use grayguard_client::exposition;
use serde_json::{Value, json};

use crate::paths;
use crate::process::{Proc, free_port};
use crate::wait::eventually;

/// The latch token in every test gateway's VM environment ([`TOKEN_ENV`]); a gray sidecar
/// that requires it takes it in `WORKLOAD_TOKEN_ENV`.
pub const TEST_LATCH_TOKEN: &str = "grayguard-test-latch-token";

/// The operator links' secret in every test gateway's VM environment ([`SECRET_ENV`]).
pub const TEST_OPERATOR_SECRET: &str = "grayguard-test-operator-secret";

/// One upstream cluster: its name (the route value) and where it listens.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub name: String,
    pub addr: SocketAddr,
}

impl Cluster {
    pub fn new(name: &str, addr: SocketAddr) -> Cluster {
        Cluster {
            name: name.into(),
            addr,
        }
    }
}

/// Which HTTP filter sits before the router.
#[derive(Debug, Clone)]
pub enum Filter {
    /// None: Envoy routes on the route header as the client sent it.
    Native,
    /// A Wasm module with a plugin configuration string.
    Wasm { module: PathBuf, config: String },
}

impl Filter {
    /// The built grayguard filter with `config` (JSON).
    pub fn grayguard(config: &str) -> Filter {
        Filter::Wasm {
            module: paths::wasm(),
            config: config.into(),
        }
    }
}

/// How to build the front Envoy.
#[derive(Debug, Clone)]
pub struct Options {
    pub filter: Filter,
    /// Header the routes match on.
    pub route_header: String,
    /// Default route.
    pub stable: Cluster,
    /// Chosen when the route header equals its name.
    pub gray: Cluster,
    /// Worker threads (each runs its own Wasm VM).
    pub concurrency: u32,
    /// Stats flush interval (histograms appear at admin after a flush), ms.
    pub stats_flush_ms: u64,
    /// A second listener on this port with the same filter and no upstream: the operator
    /// listener of confirm mode (the plugin configuration's `operator.port`).
    pub operator_port: Option<u16>,
    /// Environment variables of the Wasm VM (`vm_config.environment_variables`).
    pub vm_env: Vec<(String, String)>,
    /// The plugin's `failure_policy` (`FAIL_CLOSED`, Envoy's default, unless set).
    pub failure_policy: Option<String>,
    /// Upstream timeouts of the gray and the stable route.
    pub timeouts: RouteTimeouts,
    /// Clusters besides the two versions' (e.g. the gray workload's control port that
    /// `breach.latch` calls).
    pub extra_clusters: Vec<Cluster>,
    /// `--service-node`: the node id, which the filter sends as its gateway id.
    pub node: Option<String>,
    /// The hour (`HH`) stamped as `x-time-of-day` on requests that carry none, before the
    /// filter: what `mesh-config/local/envoy.yaml` does so that the local mesh routes as at
    /// night whatever the clock says (its filter trusts the header). `None`: nothing added.
    pub pinned_hour: Option<String>,
}

/// The hour `mesh-config/local/envoy.yaml` pins (its header_mutation filter's
/// `x-time-of-day` value), if it pins one.
pub fn local_pinned_hour() -> Option<String> {
    let path = paths::root().join("mesh-config/local/envoy.yaml");
    let yaml = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    pinned_hour(&yaml)
}

/// The value of the `header: { key: x-time-of-day, value: "HH" }` a header_mutation adds.
fn pinned_hour(yaml: &str) -> Option<String> {
    let key = format!("key: {}, value: \"", headers::TIME_OF_DAY);
    yaml.lines().find_map(|l| {
        let rest = &l[l.find(&key)? + key.len()..];
        Some(rest[..rest.find('"')?].to_string())
    })
}

/// The routes' upstream timeouts (Envoy's route `timeout`: from the end of the request to the
/// end of the response; a request past it gets a 504).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteTimeouts {
    pub gray: Duration,
    pub stable: Duration,
}

impl RouteTimeouts {
    /// The timeouts of the `gray` and `stable` routes of `mesh-config/local/envoy.yaml`, so
    /// that the tests' Envoys time out as the shipped one does.
    pub fn local() -> RouteTimeouts {
        let path = paths::root().join("mesh-config/local/envoy.yaml");
        let yaml =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let get = |route: &str| {
            route_timeout(&yaml, route).unwrap_or_else(|| {
                panic!("{}: no `timeout: Ns` under route `{route}`", path.display())
            })
        };
        RouteTimeouts {
            gray: get("gray"),
            stable: get("stable"),
        }
    }
}

/// The `timeout: Ns` of the route named `route` in an Envoy YAML (routes as `- name: X`
/// items whose `route:` block holds the timeout).
fn route_timeout(yaml: &str, route: &str) -> Option<Duration> {
    let indent = |l: &str| l.len() - l.trim_start().len();
    let (start, item) = yaml
        .lines()
        .enumerate()
        .find(|(_, l)| l.trim() == format!("- name: {route}"))?;
    // The route's item ends at the next line indented no deeper than its dash.
    yaml.lines()
        .skip(start + 1)
        .take_while(|l| l.trim().is_empty() || indent(l) > indent(item))
        .find_map(|l| l.trim().strip_prefix("timeout:"))
        .and_then(|v| v.trim().strip_suffix('s')?.parse::<f64>().ok())
        .map(Duration::from_secs_f64)
}

impl Options {
    pub fn new(filter: Filter, stable: Cluster, gray: Cluster) -> Options {
        Options {
            filter,
            route_header: headers::ROUTE.into(),
            stable,
            gray,
            concurrency: 2,
            stats_flush_ms: 200,
            operator_port: None,
            // The shipped configurations read the operator secret from the VM's environment.
            vm_env: vec![
                (SECRET_ENV.into(), TEST_OPERATOR_SECRET.into()),
                (TOKEN_ENV.into(), TEST_LATCH_TOKEN.into()),
            ],
            failure_policy: None,
            timeouts: RouteTimeouts::local(),
            extra_clusters: Vec::new(),
            node: None,
            pinned_hour: None,
        }
    }
}

/// The Wasm HTTP filter entry of a bootstrap.
pub fn wasm_filter(module: &Path, config: &str) -> Value {
    wasm_filter_with_env(module, config, &[])
}

/// [`wasm_filter`] with environment variables for the VM.
pub fn wasm_filter_with_env(module: &Path, config: &str, env: &[(String, String)]) -> Value {
    let env: serde_json::Map<String, Value> =
        env.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    wasm_filter_value(module, config, env)
}

fn wasm_filter_value(module: &Path, config: &str, env: serde_json::Map<String, Value>) -> Value {
    json!({
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": "grayguard",
                "root_id": "grayguard",
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": config,
                },
                "vm_config": {
                    "vm_id": "grayguard",
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": { "local": { "filename": module.to_string_lossy() } },
                    "environment_variables": { "key_values": env },
                },
            },
        },
    })
}

fn cluster(c: &Cluster) -> Value {
    json!({
        "name": c.name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": c.name,
            "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": { "socket_address": {
                "address": c.addr.ip().to_string(), "port_value": c.addr.port() } } } }] }],
        },
    })
}

/// A protobuf JSON duration (`"1.5s"`).
fn secs(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}

/// The bootstrap (JSON, which Envoy reads as YAML) for `opts` on the given ports.
pub fn bootstrap(opts: &Options, port: u16, admin: u16) -> Value {
    let mut filters = Vec::new();
    if let Some(hour) = &opts.pinned_hour {
        filters.push(json!({
            "name": "envoy.filters.http.header_mutation",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation",
                "mutations": { "request_mutations": [{ "append": {
                    "header": { "key": headers::TIME_OF_DAY, "value": hour },
                    "append_action": "ADD_IF_ABSENT",
                } }] },
            },
        }));
    }
    if let Filter::Wasm { module, config } = &opts.filter {
        let mut f = wasm_filter_with_env(module, config, &opts.vm_env);
        if let Some(p) = &opts.failure_policy {
            f["typed_config"]["config"]["failure_policy"] = json!(p);
        }
        filters.push(f);
    }
    filters.push(json!({
        "name": "envoy.filters.http.router",
        "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" },
    }));
    let hcm = |name: &str, routes: Value| {
        json!({ "filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": name,
                "route_config": { "name": name, "virtual_hosts": [{
                    "name": "all", "domains": ["*"], "routes": routes,
                }] },
                "http_filters": filters,
            },
        }] })
    };
    let mut listeners = vec![json!({
        "name": "front",
        "address": { "socket_address": { "address": "127.0.0.1", "port_value": port } },
        "filter_chains": [hcm("front", json!([
            { "match": { "prefix": "/", "headers": [{ "name": opts.route_header,
                "string_match": { "exact": opts.gray.name } }] },
              "route": { "cluster": opts.gray.name, "timeout": secs(opts.timeouts.gray) } },
            { "match": { "prefix": "/" },
              "route": { "cluster": opts.stable.name, "timeout": secs(opts.timeouts.stable) } },
        ]))],
    })];
    if let Some(op) = opts.operator_port {
        // The filter answers operator requests itself; nothing here goes upstream.
        listeners.push(json!({
            "name": "operator",
            "address": { "socket_address": { "address": "127.0.0.1", "port_value": op } },
            "filter_chains": [hcm("operator", json!([
                { "match": { "prefix": "/" }, "direct_response": { "status": 404 } },
            ]))],
        }));
    }
    let clusters: Vec<Value> = [&opts.stable, &opts.gray]
        .into_iter()
        .chain(&opts.extra_clusters)
        .map(cluster)
        .collect();
    json!({
        "admin": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": admin } } },
        "stats_flush_interval": format!("{}s", opts.stats_flush_ms as f64 / 1000.0),
        // grayguard's per-rule gauges carry their labels in the stat name; as in
        // mesh-config/local/envoy.yaml, extract them (the contract's labels and regexes).
        "stats_config": { "stats_tags": stats_tags() },
        "static_resources": {
            "listeners": listeners,
            "clusters": clusters,
        },
    })
}

/// Envoy's `stats_tags` for every label a grayguard metric may carry
/// (`grayguard_contract::tags`).
pub fn stats_tags() -> Vec<Value> {
    Label::ALL
        .iter()
        .map(|l| json!({ "tag_name": l.as_str(), "regex": l.regex() }))
        .collect()
}

/// A running front Envoy, killed on drop.
pub struct Envoy {
    pub proc: Proc,
    /// Listener port on 127.0.0.1.
    pub port: u16,
    /// Admin port on 127.0.0.1.
    pub admin: u16,
    /// Operator listener port, when the options asked for one.
    pub operator: Option<u16>,
}

fn envoy_command(config: &Path) -> Command {
    let mut cmd = Command::new(paths::envoy());
    cmd.arg("-c")
        .arg(config)
        .args(["--disable-hot-restart", "--log-level", "info"]);
    cmd
}

/// Where a bootstrap listens and how its process runs, for [`Envoy::run`].
#[derive(Debug, Clone)]
pub struct Launch {
    /// The front listener's port, the admin's, and the operator listener's if it has one.
    pub port: u16,
    pub admin: u16,
    pub operator: Option<u16>,
    /// Worker threads (each runs its own Wasm VM).
    pub concurrency: u32,
    /// `--service-node`: the node id, which the filter sends as its gateway id.
    pub node: Option<String>,
}

impl Envoy {
    /// Starts Envoy and waits until the admin says it is ready and the listener accepts.
    pub fn start(opts: &Options) -> Envoy {
        let (port, admin) = (free_port(), free_port());
        let text = serde_json::to_string_pretty(&bootstrap(opts, port, admin)).unwrap();
        Envoy::run(
            &text,
            &Launch {
                port,
                admin,
                operator: opts.operator_port,
                concurrency: opts.concurrency,
                node: opts.node.clone(),
            },
        )
    }

    /// Starts Envoy on `bootstrap` (YAML or JSON text, listening where `launch` says), with
    /// the test operator secret and latch token in its environment (where a bootstrap's
    /// `host_env_keys` take them from), and waits until the admin says it is ready and the
    /// listener accepts.
    pub fn run(bootstrap: &str, launch: &Launch) -> Envoy {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("envoy.yaml");
        std::fs::write(&config, bootstrap).expect("write bootstrap");
        let mut cmd = envoy_command(&config);
        cmd.args(["--concurrency", &launch.concurrency.to_string()])
            .env(SECRET_ENV, TEST_OPERATOR_SECRET)
            .env(TOKEN_ENV, TEST_LATCH_TOKEN);
        if let Some(node) = &launch.node {
            cmd.args([
                "--service-node",
                node,
                "--service-cluster",
                "grayguard-gateway",
            ]);
        }
        let mut proc = Proc::spawn("envoy", cmd, dir.path()).own_dir(dir);
        let timeout = Duration::from_secs(30);
        let admin = launch.admin;
        proc.wait_for_status(&format!("http://127.0.0.1:{admin}/ready"), 200, timeout);
        proc.wait_for_port(SocketAddr::from(([127, 0, 0, 1], launch.port)), timeout);
        Envoy {
            proc,
            port: launch.port,
            admin,
            operator: launch.operator,
        }
    }

    /// URL of `path` on the operator listener (panics without one).
    pub fn operator_url(&self, path: &str) -> String {
        let port = self.operator.expect("an operator listener");
        format!("http://127.0.0.1:{port}{path}")
    }

    /// URL of `path` on the listener.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// URL of `path` on the admin interface.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin)
    }

    /// The admin's `/stats/prometheus` text.
    pub fn prometheus(&self) -> String {
        crate::http::get(&self.admin_url("/stats/prometheus"))
            .expect("admin answers")
            .text()
    }

    /// Downstream connections each worker thread accepted on the listener, by worker index
    /// (proof that a test really spread its requests over several workers' Wasm VMs).
    pub fn connections_per_worker(&self) -> Vec<u64> {
        let url = self.admin_url("/stats?filter=worker_[0-9]+\\.downstream_cx_total");
        let text = crate::http::get(&url).expect("admin answers").text();
        let mut per: Vec<(u32, u64)> = text
            .lines()
            .filter(|l| l.starts_with("listener.127.0.0.1_"))
            .filter_map(|l| {
                let (name, value) = l.split_once(": ")?;
                let worker = name
                    .split(".worker_")
                    .nth(1)?
                    .split('.')
                    .next()?
                    .parse()
                    .ok()?;
                Some((worker, value.trim().parse().ok()?))
            })
            .collect();
        per.sort_unstable();
        per.into_iter().map(|(_, v)| v).collect()
    }

    /// Everything Envoy logged so far.
    pub fn log(&self) -> String {
        self.proc.log()
    }

    /// The value of `selector` (see [`exposition::value`]) in the admin's stats now.
    pub fn metric(&self, selector: &str) -> Option<f64> {
        exposition::value(&self.prometheus(), selector)
    }

    /// Polls `selector` (see [`exposition::value`]) until `pred` holds, returning its last
    /// value; fails the test after `timeout`.
    pub fn wait_metric(
        &self,
        selector: &str,
        timeout: Duration,
        pred: impl Fn(f64) -> bool,
    ) -> f64 {
        eventually(
            &format!("{selector} reaches the expected value"),
            timeout,
            || match self.metric(selector) {
                Some(v) if pred(v) => Ok(v),
                v => Err(format!("{selector} = {v:?}")),
            },
        )
    }

    /// A counter or gauge of Envoy's cluster `cluster` (`envoy_cluster_<stat>`: `upstream_rq_total`,
    /// `upstream_rq_retry`, ...) from the admin's stats; 0 when Envoy has not counted it.
    pub fn cluster_stat(&self, cluster: &str, stat: &str) -> f64 {
        let selector = format!("envoy_cluster_{stat}{{envoy_cluster_name=\"{cluster}\"}}");
        self.metric(&selector).unwrap_or(0.0)
    }

    /// The incident records the filter logged so far, in order, read with the contract's
    /// record type (a record that does not parse fails the test).
    pub fn incident_records(&self) -> Vec<Incident> {
        self.log()
            .lines()
            .filter_map(|l| match record::parse_line(l)? {
                Ok(Record::Incident(i)) => Some(*i),
                Ok(Record::Promotion(_)) => None,
                Err(e) => panic!("a grayguard record that does not parse ({e}): {l}"),
            })
            .collect()
    }
}

/// Runs `envoy --mode validate` on a front Envoy with the grayguard filter configured
/// with `filter_config`: `(exit status was success, stdout+stderr)`.
pub fn validate(filter_config: &str) -> (bool, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let here = SocketAddr::from(([127, 0, 0, 1], 9));
    let opts = Options::new(
        Filter::grayguard(filter_config),
        Cluster::new("v9-prod", here),
        Cluster::new("v10-gray", here),
    );
    let config = dir.path().join("envoy.yaml");
    let text = serde_json::to_string_pretty(&bootstrap(&opts, free_port(), free_port())).unwrap();
    std::fs::write(&config, text).expect("write bootstrap");
    let out = envoy_command(&config)
        .args(["--mode", "validate"])
        .output()
        .expect("run envoy --mode validate");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_timeouts_are_read_per_route() {
        let yaml = "routes:\n- name: gray\n  match:\n    headers:\n    - name: x\n  route:\n    cluster: g\n    timeout: 2.5s\n- name: stable\n  route: { cluster: s }\n- name: other\n  route:\n    timeout: 9s\n";
        assert_eq!(
            route_timeout(yaml, "gray"),
            Some(Duration::from_millis(2500))
        );
        // A route without its own timeout does not borrow the next route's.
        assert_eq!(route_timeout(yaml, "stable"), None);
        assert_eq!(route_timeout(yaml, "missing"), None);
    }

    #[test]
    fn the_shipped_local_config_times_gray_out_sooner_than_stable() {
        let t = RouteTimeouts::local();
        assert!(t.gray < t.stable, "{t:?}");
        assert_eq!(secs(Duration::from_millis(1500)), "1.5s");
    }
}
