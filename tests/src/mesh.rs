//! The whole local mesh on free loopback ports, for the end-to-end tests and benchmarks: a
//! stable and a gray sidecar serving the real model (the gray one, if asked, comparing its
//! frames with the stable one) and a front Envoy running the filter with
//! a caller-chosen plugin configuration, routing on the filter's route header to clusters
//! named like the versions (as `mesh-config/local/envoy.yaml` does); or a [`Fleet`] of such
//! gateways sharing the sidecars, latching the gray one, each running either the harness's
//! bootstrap or the shipped configuration itself ([`Front`]). Every process dies with its
//! owner.

use grayguard_contract::latch::WORKLOAD_TOKEN_ENV;
use grayguard_contract::{Decision, Note, Trigger, headers};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::envoy::{Cluster, Envoy, Filter, Options, TEST_LATCH_TOKEN, local_pinned_hour};
use crate::http;
use crate::process::free_port;
use crate::shipped;
use crate::sidecar::{READY_TIMEOUT, Sidecar, SidecarBuilder};
use crate::wait::Wait;

/// The canonical plugin configuration (kept here too for the tests that read it with the
/// mesh).
pub use crate::shipped::local_plugin_config;

/// The Envoy cluster names (and `x-model-version`s) of the two versions.
pub const STABLE: &str = "v9-prod";
pub const GRAY: &str = "v10-gray";

/// Both sidecars and the front Envoy. Fields drop in declaration order: Envoy first.
pub struct Mesh {
    pub envoy: Envoy,
    pub stable: Sidecar,
    pub gray: Sidecar,
}

/// Photos whose boxes differ between the stable (0.25) and the oversensitive gray (0.001)
/// threshold: 2/10, 1/21, 2/39, 1/20.
pub const PHOTOS: [&str; 4] = ["person.jpg", "dog.jpg", "kite.jpg", "giraffe.jpg"];

/// A sidecar of `version` as the mesh tests run it, at confidence `conf` (0.25: a healthy
/// release; 0.001: the incident's flood of false boxes): one ONNX Runtime thread (the two
/// sidecars share the machine's cores) and its own latency watchdog out of the way, so that
/// the filter decides.
pub fn sidecar(version: &str, conf: &str) -> SidecarBuilder {
    SidecarBuilder::new(version).args(&[
        "--threads",
        "1",
        "--watchdog-latency-budget-ms",
        "60000",
        "--conf",
        conf,
    ])
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
        Mesh::start_with(
            plugin_config,
            SidecarBuilder::new(STABLE).args(stable_flags),
            SidecarBuilder::new(GRAY).args(gray_flags),
            workers,
        )
    }

    /// Starts the sidecars from `stable` and `gray` and the front Envoy (`workers` worker
    /// threads) with `plugin_config` (JSON).
    pub fn start_with(
        plugin_config: &str,
        stable: SidecarBuilder,
        gray: SidecarBuilder,
        workers: u32,
    ) -> Mesh {
        Mesh::start_spawned(plugin_config, stable.spawn(), gray.spawn(), workers)
    }

    /// [`Mesh::start_with`], the gray sidecar comparing its frames with the stable one
    /// (`--compare-with` the stable sidecar's `/infer`; how many, `gray`'s own
    /// `--compare-percent`).
    pub fn start_comparing(
        plugin_config: &str,
        stable: SidecarBuilder,
        gray: SidecarBuilder,
        workers: u32,
    ) -> Mesh {
        let port = free_port();
        let gray = gray.flag("--compare-with", &format!("http://127.0.0.1:{port}/infer"));
        Mesh::start_spawned(
            plugin_config,
            stable.spawn_at(port, None),
            gray.spawn(),
            workers,
        )
    }

    /// The front Envoy in front of two sidecars just spawned, once both are ready.
    fn start_spawned(
        plugin_config: &str,
        mut stable: Sidecar,
        mut gray: Sidecar,
        workers: u32,
    ) -> Mesh {
        // Both load their model at once; each must be ready before Envoy starts.
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

    /// Request `k` of each cohort, the same photo (`photos[k]`, in turn): a crane camera's
    /// (the canonical rule's cohort, as device `crane-{k mod 2}`) and a dock camera's (no
    /// rule: the control, `dock-{k mod 3}`); neither client may see an error. The crane
    /// camera's decision header.
    pub fn crane_and_dock(&self, photos: &[Vec<u8>], k: usize) -> String {
        self.crane_and_dock_reply(photos, k)
            .header(headers::DECISION)
            .unwrap_or_default()
            .to_string()
    }

    /// [`Mesh::crane_and_dock`], returning the crane camera's whole reply.
    pub fn crane_and_dock_reply(&self, photos: &[Vec<u8>], k: usize) -> http::Response {
        let photo = &photos[k % photos.len()];
        let crane = self.infer("crane-camera", &format!("crane-{}", k % 2), photo, &[]);
        let dock = self.infer("dock-camera", &format!("dock-{}", k % 3), photo, &[]);
        for r in [&crane, &dock] {
            assert_eq!(r.status, 200, "a client saw an error: {}", r.text());
        }
        crane
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
        infer_via(&self.envoy, device_type, device_id, image, extra)
    }
}

/// POSTs `image` (JPEG) to `envoy`'s `/infer` as device `device_id` of type `device_type`,
/// plus `extra` headers; a transport error fails the test.
pub fn infer_via(
    envoy: &Envoy,
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
    http::post(&envoy.url("/infer"), &headers, image)
        .unwrap_or_else(|e| panic!("front Envoy on {}: transport error: {e}", envoy.port))
}

/// A reply through a gateway as its client saw it: which version served it and the
/// filter's decision, when its request was sent and when the reply was in.
#[derive(Debug)]
pub struct Seen {
    pub version: String,
    pub decision: Decision<'static>,
    pub sent: Instant,
    pub at: Instant,
}

impl Seen {
    pub fn gray(&self) -> bool {
        self.version == GRAY
    }
    pub fn shed(&self) -> Option<Trigger> {
        self.decision.shed()
    }
    pub fn probe(&self) -> bool {
        self.decision.note == Some(Note::Probe)
    }
    /// Gray served it with the rule's breaker closed (no note: not a probe, no alert).
    pub fn closed_gray(&self) -> bool {
        self.gray() && self.decision.note.is_none()
    }
}

/// The rule's cohort through `gateways` gateways in turn (`send(gw)` sends one request of it
/// through gateway `gw`) until each has served `run` closed gray replies in a row — its
/// breaker closed again —, within `max` requests and `timeout`: the half-open probes each
/// gateway served on the way. Fails the test when not every gateway closed.
pub fn until_every_gateway_closes(
    gateways: usize,
    run: usize,
    max: usize,
    timeout: Duration,
    mut send: impl FnMut(usize) -> Seen,
) -> Vec<usize> {
    let mut closed_run = vec![0usize; gateways];
    let mut probes = vec![0usize; gateways];
    let mut i = 0;
    let within = Wait::new("every gateway closes again", timeout)
        .every(Duration::ZERO)
        .poll(|| {
            let gw = i % gateways;
            let s = send(gw);
            if s.closed_gray() {
                closed_run[gw] += 1;
            } else {
                closed_run[gw] = 0;
                probes[gw] += usize::from(s.probe());
            }
            i += 1;
            closed_run.iter().all(|&n| n >= run) || i >= max
        });
    assert!(
        closed_run.iter().all(|&n| n >= run),
        "not every gateway closed again: runs {closed_run:?}, probes {probes:?} ({within:?})"
    );
    probes
}

/// Which configuration a [`Fleet`]'s gateways run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Front {
    /// The harness's bootstrap (`crate::envoy`): the two versions' clusters and routes with
    /// the shipped timeouts, and the latch cluster; no retry of any kind.
    Harness,
    /// `mesh-config/local/envoy.yaml` itself (`crate::shipped`): the gray route's fallback
    /// onto stable, the access log, everything `make run` runs.
    Shipped,
}

/// Several gateways in front of the same two sidecars, as replicas of an ingress gateway
/// are: gateway `i` runs with node id `gw-i` (the id its latch calls carry), and the gray
/// sidecar's control listener (requiring [`TEST_LATCH_TOKEN`], which the gateways' VMs hold)
/// is the cluster that the plugin configuration's `breach.latch.cluster` names. Fields drop
/// in declaration order: the gateways first.
pub struct Fleet {
    pub gateways: Vec<Envoy>,
    pub stable: Sidecar,
    pub gray: Sidecar,
    front: Front,
}

impl Fleet {
    /// Starts the sidecars from `stable` and `gray` (the gray one gets its control listener
    /// and token here), then `n` gateways of the harness's bootstrap, each with `workers`
    /// worker threads and `plugin_config`, which must name `breach.latch.cluster`.
    pub fn start(
        plugin_config: &str,
        stable: SidecarBuilder,
        gray: SidecarBuilder,
        n: usize,
        workers: u32,
    ) -> Fleet {
        Fleet::start_on(Front::Harness, plugin_config, stable, gray, n, workers)
    }

    /// As [`Fleet::start`], the gateways running `front`'s configuration (the shipped one
    /// with `plugin_config` in place of its own, whose latch cluster is the file's).
    pub fn start_on(
        front: Front,
        plugin_config: &str,
        stable: SidecarBuilder,
        gray: SidecarBuilder,
        n: usize,
        workers: u32,
    ) -> Fleet {
        let mut stable = stable.spawn();
        let mut gray = Fleet::gray(gray).spawn();
        stable.wait_ready(READY_TIMEOUT);
        gray.wait_ready(READY_TIMEOUT);
        let gateways = (0..n)
            .map(|i| gateway(front, i, plugin_config, &stable, &gray, workers))
            .collect();
        Fleet {
            gateways,
            stable,
            gray,
            front,
        }
    }

    /// `builder` as the fleet runs its gray sidecar: with the control listener and the token
    /// the gateways send (for [`Sidecar::replace`] with a new gray process).
    pub fn gray(builder: SidecarBuilder) -> SidecarBuilder {
        builder.control().env(WORKLOAD_TOKEN_ENV, TEST_LATCH_TOKEN)
    }

    /// Replaces gateway `i` with a fresh Envoy process (new ports, no filter state, the same
    /// node id) running `plugin_config`, in front of the same sidecars.
    pub fn restart_gateway(&mut self, i: usize, plugin_config: &str, workers: u32) {
        self.gateways[i] = gateway(
            self.front,
            i,
            plugin_config,
            &self.stable,
            &self.gray,
            workers,
        );
    }

    /// Every gateway's `/infer` URL, in order.
    pub fn targets(&self) -> Vec<String> {
        self.gateways.iter().map(|g| g.url("/infer")).collect()
    }

    /// POSTs `image` through gateway `gateway` as device `device_id` of `device_type` and
    /// reads its reply; a client-visible error, or a reply without grayguard's decision,
    /// fails the test.
    pub fn send(&self, gateway: usize, device_type: &str, device_id: &str, image: &[u8]) -> Seen {
        let sent = Instant::now();
        let r = self.infer(gateway, device_type, device_id, image, &[]);
        assert_eq!(
            r.status,
            200,
            "gw-{gateway}: a client saw an error: {} {:?}",
            r.text(),
            r.headers
        );
        let decision = r.header(headers::DECISION).expect("x-canary-decision");
        Seen {
            version: r
                .header(headers::MODEL_VERSION)
                .expect("x-model-version")
                .to_string(),
            decision: Decision::parse(decision)
                .unwrap_or_else(|e| panic!("{decision:?}: {e}"))
                .into_owned(),
            sent,
            at: Instant::now(),
        }
    }

    /// POSTs `image` through gateway `gateway` (see [`infer_via`]).
    pub fn infer(
        &self,
        gateway: usize,
        device_type: &str,
        device_id: &str,
        image: &[u8],
        extra: &[(&str, &str)],
    ) -> http::Response {
        infer_via(
            &self.gateways[gateway],
            device_type,
            device_id,
            image,
            extra,
        )
    }
}

/// Gateway `i` of a fleet: node id `gw-i`, its own operator port (as `make run GATEWAYS=N`
/// moves it), and the gray sidecar's control listener as the cluster that the plugin
/// configuration's `breach.latch.cluster` names.
fn gateway(
    front: Front,
    i: usize,
    plugin_config: &str,
    stable: &Sidecar,
    gray: &Sidecar,
    workers: u32,
) -> Envoy {
    let control = gray.control_port.expect("the gray sidecar's control port");
    if front == Front::Shipped {
        return shipped::start(&shipped::Gateway {
            stable: stable.port,
            gray: gray.port,
            control,
            plugin_config: Some(plugin_config.to_string()),
            node: format!("gw-{i}"),
            concurrency: workers,
        });
    }
    let mut config: serde_json::Value =
        serde_json::from_str(plugin_config).expect("the plugin configuration is JSON");
    let latch_cluster = config["breach"]["latch"]["cluster"]
        .as_str()
        .expect("a fleet's plugin configuration names breach.latch.cluster")
        .to_string();
    if config.get("operator").is_some() {
        config["operator"]["port"] = free_port().into();
    }
    let mut opts = front_options(&config.to_string(), stable, gray, workers);
    opts.node = Some(format!("gw-{i}"));
    opts.extra_clusters.push(Cluster::new(
        &latch_cluster,
        SocketAddr::from(([127, 0, 0, 1], control)),
    ));
    Envoy::start(&opts)
}

fn front_envoy(plugin_config: &str, stable: &Sidecar, gray: &Sidecar, workers: u32) -> Envoy {
    Envoy::start(&front_options(plugin_config, stable, gray, workers))
}

fn front_options(plugin_config: &str, stable: &Sidecar, gray: &Sidecar, workers: u32) -> Options {
    let at = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    let mut opts = Options::new(
        Filter::grayguard(plugin_config),
        Cluster::new(STABLE, at(stable.port)),
        Cluster::new(GRAY, at(gray.port)),
    );
    opts.concurrency = workers;
    // The hour the local mesh pins (its filter trusts it when the configuration is the local
    // mesh's; any other configuration ignores the header).
    opts.pinned_hour = local_pinned_hour();
    // A configuration with confirm mode's `operator` gets its operator listener, on the port
    // the configuration names.
    opts.operator_port = serde_json::from_str::<serde_json::Value>(plugin_config)
        .ok()
        .and_then(|v| v["operator"]["port"].as_u64())
        .and_then(|p| u16::try_from(p).ok());
    opts
}

/// A plugin configuration with the canonical rule alone (every crane camera to gray, sticky
/// by device id) and the given `breach` object: for tests that tune the detector.
pub fn crane_rule_config(breach: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "route_header": headers::ROUTE,
        "stable": STABLE,
        "gray": GRAY,
        "rules": [{
            "name": "crane-cameras",
            "headers": { (headers::DEVICE_TYPE): { "exact": "crane-camera" } },
            "percent": 100,
            "sticky_header": headers::DEVICE_ID,
        }],
        "breach": breach,
    })
}
