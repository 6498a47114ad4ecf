//! The mesh configuration (mesh-config/) checked by the real tools that consume it: the
//! vendored Istio, Flagger, Argo Rollouts and Kubernetes schemas and kubectl's kustomize
//! (tests/validate/validate_mesh.py), promtool for the
//! rules and the local Prometheus config, Envoy's own validation of the local front proxy
//! (which loads the real filter and runs its configuration check), the filter's config parser
//! for every embedded plugin configuration, and the sidecar's CLI for the Deployments' flags.
//!
//! Each check also runs once on a deliberately broken copy, so a validator that accepts
//! anything fails here.

use grayguard_contract::latch::TOKEN_ENV;
use grayguard_contract::operator::SECRET_ENV;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use grayguard_e2e::mesh::local_plugin_config;
use grayguard_e2e::paths;
use serde_json::Value;

pub(crate) fn mesh_config() -> PathBuf {
    paths::root().join("mesh-config")
}

fn run(mut cmd: Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    eprintln!(
        "$ {cmd:?}\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub(crate) fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `validate_mesh.py --root ROOT --contract ... EXTRA...`
pub(crate) fn validator(root: &Path, extra: &[&std::ffi::OsStr]) -> Output {
    let mut cmd = Command::new(paths::python());
    cmd.arg(paths::root().join("tests/validate/validate_mesh.py"))
        .arg("--root")
        .arg(root)
        .arg("--contract")
        .arg(paths::contract_json())
        .args(extra);
    run(cmd)
}

fn promtool(args: &[&str], dir: &Path) -> Output {
    let mut cmd = Command::new("promtool");
    cmd.args(args).current_dir(dir);
    run(cmd)
}

/// A copy of mesh-config/ to break.
pub(crate) fn copy_of_mesh_config() -> tempfile::TempDir {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                copy(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), &target).unwrap();
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    copy(&mesh_config(), &dir.path().join("mesh-config"));
    dir
}

/// Replaces the first `from` in `file` with `to`, failing if it is not there.
pub(crate) fn edit(file: &Path, from: &str, to: &str) {
    let body = std::fs::read_to_string(file).unwrap();
    assert!(body.contains(from), "{}: no {from:?}", file.display());
    std::fs::write(file, body.replacen(from, to, 1)).unwrap();
}

/// Runs the validator on a broken copy `root`, which it must reject naming each of
/// `expected`.
fn assert_rejected(root: &Path, extra: &[&std::ffi::OsStr], expected: &[&str]) {
    let out = validator(root, extra);
    let report = text(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "broken copy accepted:\n{report}"
    );
    for e in expected {
        assert!(report.contains(e), "missing {e:?} in:\n{report}");
    }
}

#[test]
fn mesh_config_validates_against_istio_and_kubernetes_schemas() {
    let out = validator(&mesh_config(), &[]);
    assert!(out.status.success(), "validator failed:\n{}", text(&out));
    assert!(
        text(&out).contains(" 0 problems"),
        "validator did not finish its report:\n{}",
        text(&out)
    );
}

#[test]
fn validator_rejects_broken_resources_naming_file_resource_and_error() {
    let dir = copy_of_mesh_config();
    let m = dir.path().join("mesh-config");
    // Istio schema: an unknown field in a route, and an unknown plugin phase.
    edit(
        &m.join("routing/virtual-service.yaml"),
        "      timeout: 5s",
        "      timeoutSeconds: 5",
    );
    edit(
        &m.join("wasm-plugin/wasm-plugin.yaml"),
        "phase: UNSPECIFIED_PHASE",
        "phase: ROUTING",
    );
    // Kubernetes schema: a probe period as a string.
    edit(
        &m.join("base/deployments.yaml"),
        "periodSeconds: 10",
        "periodSeconds: \"10\"",
    );
    // kustomize: a resource that does not exist.
    edit(
        &m.join("routing/kustomization.yaml"),
        "  - service.yaml",
        "  - services.yaml",
    );
    // The plugin configuration drifting between the local mesh and the cluster.
    edit(
        &m.join("variants/envoy-filter/envoy-filter.yaml"),
        "\"shed_for_s\": 30",
        "\"shed_for_s\": 60",
    );
    // The PrometheusRule drifting from the promtool-tested rules file.
    edit(&m.join("common/prometheus-rules.yaml"), "> 0.95", "> 0.99");
    // A metric name nobody publishes.
    edit(
        &m.join("common/grafana-dashboard.json"),
        "grayguard_routed_gray[1m]",
        "grayguard_routed_grey[1m]",
    );
    // Flagger: a Canary field its CRD does not have.
    edit(
        &m.join("variants/flagger/canary.yaml"),
        "  progressDeadlineSeconds: 900",
        "  progressDeadline: 900",
    );
    // Argo Rollouts: a threshold that no longer matches Flagger's.
    edit(
        &m.join("variants/argo-rollouts/analysis-template.yaml"),
        "successCondition: result[0] <= 0.05",
        "successCondition: result[0] <= 0.5",
    );
    // The gateway stats no longer exposing the filter's metrics.
    edit(
        &m.join("istio/gateway-stats.patch.yaml"),
        "\"inclusionPrefixes\":[\"grayguard_\"]",
        "\"inclusionPrefixes\":[\"grayguard_routed\"]",
    );

    let out = validator(&m, &[]);
    let report = text(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "broken copy accepted:\n{report}"
    );
    for expected in [
        "mesh-config/routing/virtual-service.yaml: VirtualService yolo/yolo-detector: spec.http.0: Additional properties are not allowed ('timeoutSeconds' was unexpected)",
        "mesh-config/wasm-plugin/wasm-plugin.yaml: WasmPlugin istio-system/grayguard: spec.phase: 'ROUTING' is not one of",
        "mesh-config/base/deployments.yaml: Deployment yolo/yolo-v9-prod: spec.template.spec.containers.0.livenessProbe.periodSeconds: '10' is not of type 'integer'",
        "mesh-config/routing/kustomization.yaml: resource 'services.yaml' does not exist",
        "mesh-config/variants/envoy-filter/envoy-filter.yaml: EnvoyFilter istio-system/grayguard: grayguard plugin configuration differs from mesh-config/local/envoy.yaml at breach.shed_for_s",
        "mesh-config/common/prometheus-rules.yaml: PrometheusRule yolo/grayguard: spec.groups differ from mesh-config/prometheus/rules.yaml",
        "mesh-config/common/grafana-dashboard.json: expression names grayguard_routed_grey",
        "mesh-config/variants/flagger/canary.yaml: Canary yolo/yolo-detector: spec: Additional properties are not allowed ('progressDeadline' was unexpected)",
        "mesh-config/variants/argo-rollouts/analysis-template.yaml: AnalysisTemplate yolo/grayguard: analysis metric 'grayguard-shed-ratio' differs from Flagger's",
        "mesh-config/istio/gateway-stats.patch.yaml: Deployment istio-system/istio-ingressgateway: proxyStatsMatcher does not expose the filter metric grayguard_breaker_state",
    ] {
        assert!(
            report.contains(expected),
            "missing {expected:?} in:\n{report}"
        );
    }
}

#[test]
fn validator_rejects_built_deployments_that_do_not_fit_the_filter_or_the_images() {
    let dir = copy_of_mesh_config();
    let m = dir.path().join("mesh-config");
    // Flagger's A/B match on another header value than the filter's gray cohort.
    edit(
        &m.join("variants/flagger/canary.yaml"),
        "            exact: v10-gray",
        "            exact: v11-gray",
    );
    // Argo Rollouts moving a subset that is not the filter's gray one.
    edit(
        &m.join("variants/argo-rollouts/rollout.yaml"),
        "canarySubsetName: v10-gray",
        "canarySubsetName: canary",
    );
    // A Deployment's image outside the images component, and the filter unpinned.
    edit(
        &m.join("base/deployments.yaml"),
        "image: grayguard-sidecar-gray",
        "image: yolo-sidecar",
    );
    edit(
        &m.join("wasm-plugin/wasm-plugin.yaml"),
        "  sha256: ",
        "  # sha256: ",
    );
    // The report server pulled from a repository that `make images` does not build.
    edit(
        &m.join("images/kustomization.yaml"),
        "newName: ghcr.io/grayguard/grayguard-report",
        "newName: ghcr.io/grayguard/report-server",
    );
    // The gray pods' latch endpoint: left out of the AuthorizationPolicy, and in the
    // progressive-delivery workload a token written into the YAML.
    edit(
        &m.join("common/authorization-policy.yaml"),
        "ports: [\"9092\"]",
        "ports: [\"9093\"]",
    );
    edit(
        &m.join("workload/deployment.yaml"),
        "              valueFrom:\n                secretKeyRef:\n                  name: grayguard-latch\n                  key: token",
        "              value: not-a-secret-anymore",
    );
    let out = validator(&m, &[]);
    let report = text(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "broken copy accepted:\n{report}"
    );
    for expected in [
        "kustomize build mesh-config/variants/flagger: Canary yolo/yolo-detector: analysis.match must send x-canary-route: v10-gray (the filter's gray cohort) to the canary",
        "kustomize build mesh-config/variants/argo-rollouts: Rollout yolo/yolo-detector: stableSubsetName/canarySubsetName must be the filter's stable/gray (v9-prod/v10-gray)",
        "kustomize build mesh-config: Deployment yolo/yolo-v10-gray: container model-server: image 'yolo-sidecar' names no registry",
        "kustomize build mesh-config: WasmPlugin istio-system/grayguard: sha256 must pin the image's manifest digest",
        "kustomize build mesh-config/reports: Deployment yolo/grayguard-report: container report: image 'ghcr.io/grayguard/report-server:0.1.0' is not an image `make images` builds",
        "kustomize build mesh-config/variants/argo-rollouts: Deployment yolo/yolo-detector: container model-server: no AuthorizationPolicy in yolo admits calls to the control port 9092",
        "kustomize build mesh-config/variants/argo-rollouts: Deployment yolo/yolo-detector: container model-server: control listener on 9092 without GRAYGUARD_SIDECAR_CONTROL_TOKEN from a Secret",
    ] {
        assert!(
            report.contains(expected),
            "missing {expected:?} in:\n{report}"
        );
    }
}

#[test]
fn prometheus_rules_pass_promtool_check_and_unit_tests() {
    let dir = mesh_config().join("prometheus");
    let check = promtool(&["check", "rules", "rules.yaml"], &dir);
    assert!(check.status.success(), "{}", text(&check));
    let test = promtool(&["test", "rules", "rules_test.yaml"], &dir);
    assert!(test.status.success(), "{}", text(&test));

    // The unit tests bite: with the latency budget raised, the "fires" case must fail.
    let broken = tempfile::tempdir().unwrap();
    let rules = std::fs::read_to_string(dir.join("rules.yaml")).unwrap();
    let raised = rules.replace("p95_2m{track=\"gray\"} > 1.5", "p95_2m{track=\"gray\"} > 3");
    assert_ne!(rules, raised, "latency alert expression not found");
    std::fs::write(broken.path().join("rules.yaml"), raised).unwrap();
    std::fs::copy(
        dir.join("rules_test.yaml"),
        broken.path().join("rules_test.yaml"),
    )
    .unwrap();
    let test = promtool(&["test", "rules", "rules_test.yaml"], broken.path());
    assert!(!test.status.success(), "{}", text(&test));
    assert!(
        text(&test).contains("GrayguardGrayLatencyOverBudget"),
        "{}",
        text(&test)
    );
}

#[test]
fn local_prometheus_config_passes_promtool() {
    // From another folder: rule_files must resolve relative to the config file.
    let elsewhere = tempfile::tempdir().unwrap();
    let config = mesh_config().join("local/prometheus.yml");
    let out = promtool(
        &["check", "config", config.to_str().unwrap()],
        elsewhere.path(),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("mesh-config/prometheus/rules.yaml"),
        "the local Prometheus does not load the shared rules:\n{}",
        text(&out)
    );
}

/// `envoy --mode validate` of `config`, from `cwd` (the filter path in the config is
/// relative to the repository root).
fn envoy_validate(config: &Path, cwd: &Path) -> Output {
    let mut cmd = Command::new(paths::envoy());
    cmd.args([
        "--mode",
        "validate",
        "--disable-hot-restart",
        "-l",
        "info",
        "-c",
    ])
    .arg(config)
    .current_dir(cwd)
    // The shipped configuration reads the operator secret from Envoy's environment.
    .env(SECRET_ENV, "grayguard-test-operator-secret")
    .env(TOKEN_ENV, "grayguard-test-latch-token");
    run(cmd)
}

#[test]
fn local_envoy_config_passes_envoy_validation_with_the_real_filter() {
    // Loads target/grayguard_filter.wasm (make build-filter) and runs its configuration check.
    let wasm = paths::wasm();
    let root = paths::root();
    let config = mesh_config().join("local/envoy.yaml");
    let out = envoy_validate(&config, &root);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("OK"), "{}", text(&out));
    // Without the secret in its environment the filter refuses to start, and says why.
    let mut bare = Command::new(paths::envoy());
    bare.args([
        "--mode",
        "validate",
        "--disable-hot-restart",
        "-l",
        "info",
        "-c",
    ])
    .arg(&config)
    .current_dir(&root)
    .env_remove(SECRET_ENV)
    .env_remove(TOKEN_ENV);
    let out = run(bare);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("is not set in the Wasm VM's environment"),
        "{}",
        text(&out)
    );

    // The filter's check is really part of it: a plugin configuration the filter rejects
    // makes Envoy reject the whole config.
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("envoy.yaml");
    std::fs::copy(&config, &broken).unwrap();
    edit(
        &broken,
        "filename: target/grayguard_filter.wasm",
        &format!("filename: {}", wasm.display()),
    );
    edit(&broken, "\"stable\": \"v9-prod\"", "\"stable\": 9");
    let out = envoy_validate(&broken, dir.path());
    assert!(
        !out.status.success(),
        "Envoy accepted a plugin configuration the filter must reject:\n{}",
        text(&out)
    );
}

#[test]
fn plugin_configuration_is_canonical_everywhere_and_passes_the_filter_parser() {
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("plugin-configs.json");
    let out = validator(
        &mesh_config(),
        &[std::ffi::OsStr::new("--plugin-configs"), dump.as_os_str()],
    );
    assert!(out.status.success(), "{}", text(&out));
    let found: serde_json::Map<String, Value> =
        serde_json::from_str(&std::fs::read_to_string(&dump).unwrap()).unwrap();

    // The reference is the local mesh's configuration; the Istio resources must carry the
    // same, but for the hour: only the local mesh trusts the x-time-of-day its Envoy pins.
    let local: Value = serde_json::from_str(&local_plugin_config()).unwrap();
    assert_eq!(
        local["trust_time_header"], true,
        "the local mesh pins the hour"
    );
    let mut canonical = local.clone();
    canonical["trust_time_header"] = Value::from(false);
    for place in [
        "mesh-config/wasm-plugin/wasm-plugin.yaml: WasmPlugin istio-system/grayguard",
        "mesh-config/variants/envoy-filter/envoy-filter.yaml: EnvoyFilter istio-system/grayguard",
    ] {
        let config = found.get(place).unwrap_or_else(|| {
            panic!(
                "no plugin configuration in {place}; found {:?}",
                found.keys()
            )
        });
        assert_eq!(
            config, &canonical,
            "{place} is not the canonical configuration"
        );
    }
    assert_eq!(found["mesh-config/local/envoy.yaml"], local);
    // The practice's rule: crane cameras tried on gray at night, in the site's time zone.
    let rule = &canonical["rules"][0];
    assert_eq!(rule["headers"]["x-device-type"]["exact"], "crane-camera");
    assert_eq!(
        rule["hours"],
        serde_json::json!({"from": "00:00", "to": "06:00"})
    );
    assert_eq!(canonical["utc_offset"], "+08:00");
    for (place, config) in &found {
        let bytes = serde_json::to_vec(config).unwrap();
        if let Err(e) = grayguard_filter::config::parse(&bytes) {
            panic!("{place}: the filter rejects its configuration: {e}");
        }
    }

    // And the parser is not a rubber stamp.
    let mut wrong = canonical.clone();
    wrong["breach"]["scope"] = Value::from("everything");
    let err = grayguard_filter::config::parse(&serde_json::to_vec(&wrong).unwrap())
        .expect_err("scope \"everything\" accepted");
    assert!(err.to_string().contains("scope"), "{err}");
}

#[test]
fn validator_rejects_a_trusted_hour_outside_the_local_mesh_or_without_its_pin() {
    let dir = copy_of_mesh_config();
    let m = dir.path().join("mesh-config");
    // A cluster's filter trusting the client's hour.
    edit(
        &m.join("wasm-plugin/wasm-plugin.yaml"),
        "\"trust_time_header\": false",
        "\"trust_time_header\": true",
    );
    // The local mesh's pin of the hour gone while its filter still trusts the header.
    edit(
        &m.join("local/envoy.yaml"),
        "          - name: envoy.filters.http.header_mutation",
        "          - name: envoy.filters.http.header_mutation_gone",
    );
    assert_rejected(
        &m,
        &[],
        &[
            "mesh-config/wasm-plugin/wasm-plugin.yaml: WasmPlugin istio-system/grayguard: trust_time_header: true outside the local mesh",
            "mesh-config/local/envoy.yaml: trust_time_header: true, but no header_mutation filter before the grayguard filter adds x-time-of-day",
        ],
    );
}

#[test]
fn deployments_pass_only_flags_the_sidecar_has() {
    let help = run({
        let mut cmd = Command::new(paths::sidecar());
        cmd.arg("--help");
        cmd
    });
    assert!(help.status.success(), "{}", text(&help));
    let dir = tempfile::tempdir().unwrap();
    let help_file = dir.path().join("sidecar-help.txt");
    std::fs::write(&help_file, &help.stdout).unwrap();
    let flag = [
        std::ffi::OsStr::new("--sidecar-help"),
        help_file.as_os_str(),
    ];

    let out = validator(&mesh_config(), &flag);
    assert!(out.status.success(), "{}", text(&out));

    let copy = copy_of_mesh_config();
    let m = copy.path().join("mesh-config");
    edit(
        &m.join("base/deployments.yaml"),
        "- --conf=0.25",
        "- --confidence=0.25",
    );
    let out = validator(&m, &flag);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("Deployment yolo/yolo-v9-prod: container model-server: grayguard-sidecar has no flag --confidence"),
        "{}",
        text(&out)
    );
}

#[test]
fn the_report_server_passes_only_flags_grayguard_report_has() {
    let help = run({
        let mut cmd = Command::new(paths::report());
        cmd.arg("--help");
        cmd
    });
    assert!(help.status.success(), "{}", text(&help));
    let dir = tempfile::tempdir().unwrap();
    let help_file = dir.path().join("report-help.txt");
    std::fs::write(&help_file, &help.stdout).unwrap();
    let flag = [std::ffi::OsStr::new("--report-help"), help_file.as_os_str()];
    let out = validator(&mesh_config(), &flag);
    assert!(out.status.success(), "{}", text(&out));

    let copy = copy_of_mesh_config();
    let m = copy.path().join("mesh-config");
    edit(
        &m.join("reports/deployment.yaml"),
        "- --max-kept-reports=1000",
        "- --max-reports=1000",
    );
    assert_rejected(
        &m,
        &flag,
        &[
            "Deployment yolo/grayguard-report: container report: grayguard-report has no flag --max-reports",
        ],
    );
}

#[test]
fn validator_rejects_a_report_server_that_would_lose_or_expose_reports() {
    let dir = copy_of_mesh_config();
    let m = dir.path().join("mesh-config");
    // The reports on the pod's own disk, two writers on one volume, its port open to anyone.
    edit(
        &m.join("reports/deployment.yaml"),
        "          persistentVolumeClaim:\n            claimName: grayguard-reports",
        "          emptyDir: {}",
    );
    edit(
        &m.join("reports/deployment.yaml"),
        "replicas: 1",
        "replicas: 2",
    );
    edit(
        &m.join("reports/authorization.yaml"),
        "notRemoteIpBlocks: [\"10.0.0.0/8\", \"172.16.0.0/12\", \"192.168.0.0/16\"]",
        "notRemoteIpBlocks: [\"10.0.0.0/8\"]",
    );
    edit(
        &m.join("reports/authorization.yaml"),
        "paths: [\"/alertmanager\", ",
        "paths: [\"/webhook\", ",
    );
    // Alertmanager: the resolved notification not sent (the report would never get its end),
    // and the cluster's posting elsewhere than the report server's Service.
    edit(
        &m.join("local/alertmanager.yml"),
        "      - url: http://127.0.0.1:9096/alertmanager\n        send_resolved: true",
        "      - url: http://127.0.0.1:9096/alertmanager\n        send_resolved: false",
    );
    edit(
        &m.join("alerting/alertmanager.yaml"),
        "http://grayguard-report.yolo.svc.cluster.local:9096/alertmanager",
        "http://grayguard-report.monitoring.svc.cluster.local:9096/alertmanager",
    );
    assert_rejected(
        &m,
        &[],
        &[
            "kustomize build mesh-config/reports: Deployment yolo/grayguard-report: container report: --reports-dir /var/lib/grayguard/reports is not on a PersistentVolumeClaim",
            "kustomize build mesh-config/reports: Deployment yolo/grayguard-report: container report: port 9096 is not behind the operator port's rule",
            "kustomize build mesh-config/reports: Deployment yolo/grayguard-report: container report: no AuthorizationPolicy admits Alertmanager's POST /alertmanager on port 9096",
            "mesh-config/local/alertmanager.yml: receiver 'grayguard-reports': send_resolved must be true",
            "mesh-config/alerting/alertmanager.yaml: receiver 'grayguard-reports' posts to grayguard-report.monitoring.svc.cluster.local:9096, which is not a report server's Service",
        ],
    );

    // One writer: a rolling update on the ReadWriteOnce claim is refused too.
    let dir = copy_of_mesh_config();
    let m = dir.path().join("mesh-config");
    edit(
        &m.join("reports/deployment.yaml"),
        "type: Recreate",
        "type: RollingUpdate",
    );
    assert_rejected(
        &m,
        &[],
        &[
            "container report: the ReadWriteOnce claim grayguard-reports has one writer: replicas 1 and strategy Recreate (has 1, RollingUpdate)",
        ],
    );
}

fn amtool(args: &[&str], dir: &Path) -> Output {
    let mut cmd = Command::new("amtool");
    cmd.args(args).current_dir(dir);
    run(cmd)
}

/// The receivers every grayguard alert must reach, in route order.
const GRAYGUARD_RECEIVERS: &str = "grayguard-webhook,grayguard-slack,grayguard-wechat";
/// The shed alerts go to the report server first, which keeps their incident's report.
const SHED_RECEIVERS: &str = "grayguard-reports,grayguard-webhook,grayguard-slack,grayguard-wechat";
const SHED_ALERTS: [&str; 2] = ["GrayguardRuleShedding", "GrayguardShedAwaitsConfirmation"];

/// The cluster's Alertmanager configuration with its templates, in a temp dir, its template
/// path (where the Operator mounts the Secret) pointed there.
fn cluster_alertmanager_config() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let alerting = mesh_config().join("alerting");
    for name in ["alertmanager.yaml", "grayguard.tmpl", "links.tmpl"] {
        std::fs::copy(alerting.join(name), dir.path().join(name)).unwrap();
    }
    let config = dir.path().join("alertmanager.yaml");
    edit(
        &config,
        "/etc/alertmanager/config/*.tmpl",
        &format!("{}/*.tmpl", dir.path().display()),
    );
    (dir, config)
}

#[test]
fn alertmanager_configs_pass_amtool_and_route_every_grayguard_alert_to_all_receivers() {
    // From another folder: the local config's templates resolve relative to the file.
    let elsewhere = tempfile::tempdir().unwrap();
    let local = mesh_config().join("local/alertmanager.yml");
    let (_dir, cluster) = cluster_alertmanager_config();
    let rules = std::fs::read_to_string(mesh_config().join("prometheus/rules.yaml")).unwrap();
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert!(
        alerts.contains(&"GrayguardShedAwaitsConfirmation") && alerts.len() >= 9,
        "{alerts:?}"
    );
    for config in [&local, &cluster] {
        let out = amtool(
            &["check-config", config.to_str().unwrap()],
            elsewhere.path(),
        );
        assert!(out.status.success(), "{}", text(&out));
        assert!(text(&out).contains("4 receivers"), "{}", text(&out));
        let file = format!("--config.file={}", config.display());
        for alert in &alerts {
            let label = format!("alertname={alert}");
            let receivers = if SHED_ALERTS.contains(alert) {
                SHED_RECEIVERS
            } else {
                GRAYGUARD_RECEIVERS
            };
            let out = amtool(
                &[
                    "config",
                    "routes",
                    "test",
                    &file,
                    &format!("--verify.receivers={receivers}"),
                    &label,
                    "rule=crane-cameras",
                    "severity=critical",
                ],
                elsewhere.path(),
            );
            assert!(
                out.status.success(),
                "{alert} does not reach {receivers}:\n{}",
                text(&out)
            );
        }
    }
    // The routes bite: another team's alert is not sent to grayguard's chat receivers.
    let out = amtool(
        &[
            "config",
            "routes",
            "test",
            &format!("--config.file={}", local.display()),
            &format!("--verify.receivers={GRAYGUARD_RECEIVERS}"),
            "alertname=NodeDiskFull",
        ],
        elsewhere.path(),
    );
    assert!(!out.status.success(), "{}", text(&out));
}

/// Alertmanager's template data for one alert `alertname` (`status` firing or resolved)
/// whose one link annotation is `link` (`confirm_url`, `release_url`) = `url`.
fn template_data(status: &str, alertname: &str, link: &str, url: &str) -> String {
    let labels = serde_json::json!({
        "alertname": alertname, "rule": "crane-cameras",
        "trigger": "box_count", "instance": "127.0.0.1:9901", "severity": "critical",
    });
    serde_json::json!({
        "receiver": "grayguard-slack", "status": status, "externalURL": "http://127.0.0.1:9093",
        "groupLabels": {"alertname": alertname},
        "commonLabels": labels, "commonAnnotations": {},
        "alerts": [{
            "status": status, "labels": labels, "fingerprint": "f",
            "annotations": {"summary": "Gray is worse", "description": "Read the report.", (link): url},
            "startsAt": "2026-11-30T15:00:00Z", "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "",
        }],
    })
    .to_string()
}

/// `template` of the shipped message templates rendered by `amtool` for `data`, in `dir`.
fn render_template(dir: &Path, data: &str, template: &str) -> String {
    let file = dir.join("data.json");
    std::fs::write(&file, data).unwrap();
    let out = amtool(
        &[
            "template",
            "render",
            &format!(
                "--template.glob={}",
                mesh_config().join("alerting/grayguard.tmpl").display()
            ),
            &format!(
                "--template.glob={}",
                mesh_config().join("local/links.tmpl").display()
            ),
            &format!("--template.data={}", file.display()),
            &format!("--template.text={{{{ template \"{template}\" . }}}}"),
        ],
        dir,
    );
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn message_templates_carry_the_release_link_while_held_and_the_report_always() {
    let dir = tempfile::tempdir().unwrap();
    let release = "http://127.0.0.1:10100/grayguard/release?rule=crane-cameras&trigger=box_count&exp=1796054400&sig=0a1b";
    let report = "http://127.0.0.1:9096/reports/incident?rule=crane-cameras&instance=127.0.0.1%3A9901&at=1796050800";
    let render = |status: &str, template: &str| {
        let data = template_data(status, "GrayguardRuleHeld", "release_url", release);
        render_template(dir.path(), &data, template)
    };
    let slack = render("firing", "grayguard.slack.text");
    assert!(slack.contains(&format!("<{release}|Release>")), "{slack}");
    assert!(!slack.contains("Shed gray now"), "{slack}");
    assert!(
        slack.contains(&format!("<{report}|Incident report>")),
        "{slack}"
    );
    let wechat = render("firing", "grayguard.wechat.message");
    assert!(
        wechat.contains(&format!("[Release]({release})")),
        "{wechat}"
    );
    assert!(
        wechat.contains(&format!("[Incident report]({report})")),
        "{wechat}"
    );
    for template in ["grayguard.slack.text", "grayguard.wechat.message"] {
        let resolved = render("resolved", template);
        assert!(!resolved.contains(release), "{resolved}");
        assert!(resolved.contains(report), "{resolved}");
    }
}

#[test]
fn message_templates_carry_the_confirmation_while_firing_and_the_report_always() {
    let dir = tempfile::tempdir().unwrap();
    let confirm = "http://127.0.0.1:10100/grayguard/confirm?rule=crane-cameras&trigger=box_count&exp=1796054400&sig=0a1b";
    let report = "http://127.0.0.1:9096/reports/incident?rule=crane-cameras&instance=127.0.0.1%3A9901&at=1796050800";
    let render = |status: &str, template: &str| {
        let data = template_data(
            status,
            "GrayguardShedAwaitsConfirmation",
            "confirm_url",
            confirm,
        );
        render_template(dir.path(), &data, template)
    };
    let slack = render("firing", "grayguard.slack.text");
    assert!(
        slack.contains(&format!("<{confirm}|Shed gray now>")),
        "{slack}"
    );
    assert!(
        slack.contains(&format!("<{report}|Incident report>")),
        "{slack}"
    );
    let wechat = render("firing", "grayguard.wechat.message");
    assert!(
        wechat.starts_with(
            "## [FIRING:1] GrayguardShedAwaitsConfirmation · rule crane-cameras · box_count"
        ),
        "{wechat}"
    );
    assert!(
        wechat.contains(&format!("[Shed gray now]({confirm})")),
        "{wechat}"
    );
    assert!(
        wechat.contains(&format!("[Incident report]({report})")),
        "{wechat}"
    );
    assert_eq!(render("firing", "grayguard.slack.title_link"), report);
    // Resolved: the report still, the confirmation no more.
    for template in ["grayguard.slack.text", "grayguard.wechat.message"] {
        let resolved = render("resolved", template);
        assert!(!resolved.contains(confirm), "{resolved}");
        assert!(resolved.contains(report), "{resolved}");
    }
}

#[test]
fn validator_rejects_alertmanager_configs_that_drift_apart() {
    let dir = copy_of_mesh_config();
    let m = dir.path().join("mesh-config");
    // The local mesh routing differently from the cluster.
    edit(
        &m.join("local/alertmanager.yml"),
        "group_wait: 5s",
        "group_wait: 30s",
    );
    // A receiver sending another message.
    edit(
        &m.join("local/alertmanager.yml"),
        "message: '{{ template \"grayguard.wechat.message\" . }}'",
        "message: '{{ template \"grayguard.slack.text\" . }}'",
    );
    // A template nobody defines.
    edit(
        &m.join("alerting/alertmanager.yaml"),
        "color: '{{ template \"grayguard.slack.color\" . }}'",
        "color: '{{ template \"grayguard.slack.colour\" . }}'",
    );
    let out = validator(&m, &[]);
    let report = text(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "broken copy accepted:\n{report}"
    );
    for expected in [
        "mesh-config/local/alertmanager.yml: route differs from mesh-config/alerting/alertmanager.yaml's",
        "mesh-config/local/alertmanager.yml: receiver 'grayguard-wechat' sends other messages than in mesh-config/alerting/alertmanager.yaml",
        "mesh-config/alerting/alertmanager.yaml: template 'grayguard.slack.colour' is used but defined in none of",
    ] {
        assert!(
            report.contains(expected),
            "missing {expected:?} in:\n{report}"
        );
    }
}
