#!/usr/bin/env python3
"""Validates grayguard's mesh configuration (mesh-config/) offline.

Checks, for every YAML/JSON file under the root:
  * it parses;
  * each Istio resource validates against Istio's own CRD schema (the openAPIV3Schema of its
    group/version/kind in $GRAYGUARD_ISTIO_CRDS), with unknown fields rejected as
    `kubectl apply --validate=strict` would;
  * each core Kubernetes resource validates against the Kubernetes OpenAPI schema of a fixed
    version (kubernetes-validate's bundled schemas, strict);
  * each Kustomization lists files and bases that exist, does not contain itself through a
    base, produces no resource twice, and patches only resources it has;
  * each PrometheusRule carries exactly the groups of a plain rules file beside it;
  * every grayguard metric that a rule or a dashboard names is a published one;
  * the grayguard plugin configuration is the same everywhere it is embedded (local Envoy,
    WasmPlugin, EnvoyFilter);
  * routes, subsets, selectors and the filter's stable/gray names agree with each other;
  * with --sidecar-help, every flag the Deployments pass to grayguard-sidecar exists.

Prints one line per problem naming the file, the resource and the error, and exits 1 if
there is any (2 if the inputs themselves are missing). --plugin-configs also writes the
embedded plugin configurations as JSON, for tests that check them with the filter's parser.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
from typing import Any, Iterator

import jsonschema
import kubernetes_validate
import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]
DEFAULT_ROOT = REPO / "mesh-config"
DEFAULT_CRDS = REPO.parent / "shared" / "schemas" / "istio-crd-all.gen.yaml"
# The Kubernetes version whose schemas core resources are checked against (the newest one
# kubernetes-validate 1.31 bundles).
KUBERNETES_VERSION = "1.31.0"

# libyaml's parser when PyYAML has it: Istio's CRD file is ~1 MB of YAML.
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

WASM_FILTER = "envoy.filters.http.wasm"
SIDECAR_IMAGE = "grayguard-sidecar"

# Published metric names (the cross-part contracts). Histograms also have _bucket/_sum/_count.
FILTER_COUNTERS = {
    "grayguard_routed_gray", "grayguard_routed_stable", "grayguard_shed_requests",
    "grayguard_probe_requests", "grayguard_breaches_flag", "grayguard_breaches_latency",
    "grayguard_breaches_box_count", "grayguard_breaches_error_rate",
    "grayguard_breaches_consecutive_failures", "grayguard_malformed_signals",
    "grayguard_spoofed_headers_stripped", "grayguard_gray_failures", "grayguard_dry_run_requests",
    "grayguard_gray_responses", "grayguard_stable_responses",
    "grayguard_gray_latency_us", "grayguard_gray_latency_samples",
    "grayguard_stable_latency_us", "grayguard_stable_latency_samples",
    "grayguard_gray_boxes", "grayguard_gray_box_samples",
    "grayguard_stable_boxes", "grayguard_stable_box_samples",
}
FILTER_GAUGES = {
    "grayguard_breaker_state", "grayguard_breakers_open", "grayguard_rule_breaker_state",
    "grayguard_evidence_pct",
}
FILTER_HISTOGRAMS: set[str] = set()
SIDECAR_HISTOGRAMS = {
    "grayguard_sidecar_request_duration_seconds", "grayguard_sidecar_inference_duration_seconds",
    "grayguard_sidecar_nms_duration_seconds", "grayguard_sidecar_detections_per_image",
}
SIDECAR_SCALARS = {
    "grayguard_sidecar_last_box_count", "grayguard_sidecar_requests_total",
    "grayguard_sidecar_errors_total", "grayguard_sidecar_in_flight",
    "grayguard_sidecar_queue_depth", "grayguard_sidecar_ready",
    "grayguard_sidecar_breach_active", "grayguard_sidecar_memory_bytes",
    "grayguard_sidecar_memory_limit_bytes", "grayguard_sidecar_gpu_memory_used_bytes",
    "grayguard_sidecar_gpu_memory_total_bytes", "grayguard_sidecar_info",
}
PUBLISHED_METRICS = (
    FILTER_COUNTERS | FILTER_GAUGES | SIDECAR_SCALARS
    | {h + s for h in FILTER_HISTOGRAMS | SIDECAR_HISTOGRAMS for s in ("_bucket", "_sum", "_count")}
)
# A metric name (or a recording rule name level:metric:operations) mentioning grayguard.
METRIC_RE = re.compile(r"(?<![\w:])(?:[a-zA-Z_]\w*:)?grayguard_\w*(?::\w+)*")


class Report:
    """Collects problems; each names the file and, where there is one, the resource."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.checked = 0

    def error(self, where: str, message: str) -> None:
        line = f"ERROR {where}: {message}"
        # A base shared by several kustomizations is reached once per kustomization.
        if line not in self.problems:
            self.problems.append(line)


def rel(path: pathlib.Path, root: pathlib.Path) -> str:
    try:
        return str(path.relative_to(root.parent))
    except ValueError:
        return str(path)


def resource_id(doc: dict) -> str:
    meta = doc.get("metadata") or {}
    ns = meta.get("namespace")
    name = meta.get("name", "?")
    return f"{doc.get('kind', '?')} {ns + '/' if ns else ''}{name}"


def is_resource(doc: Any) -> bool:
    return isinstance(doc, dict) and "apiVersion" in doc and "kind" in doc


def split_api_version(api_version: str) -> tuple[str, str]:
    group, _, version = api_version.rpartition("/")
    return group, version


# ---------------------------------------------------------------- Istio CRD schemas

def strict_schema(node: Any) -> Any:
    """An OpenAPI v3 structural schema as a plain JSON schema: x-kubernetes-* keys dropped,
    unknown fields rejected where the API server would reject them (strict field validation),
    `nullable` allowing null, int-or-string spelt out."""
    if isinstance(node, list):
        return [strict_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: strict_schema(v) for k, v in node.items() if not k.startswith("x-kubernetes-")}
    if node.get("x-kubernetes-int-or-string") and "type" not in out and "anyOf" not in out:
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if out.pop("nullable", False) and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    if (
        out.get("type") == "object"
        and "properties" in out
        and "additionalProperties" not in out
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def load_istio_schemas(path: pathlib.Path) -> dict[tuple[str, str, str], dict]:
    schemas = {}
    with path.open(encoding="utf-8") as f:
        for crd in yaml.load_all(f, Loader=YAML_LOADER):
            if not is_resource(crd) or crd["kind"] != "CustomResourceDefinition":
                continue
            spec = crd["spec"]
            for version in spec["versions"]:
                if not version.get("served", True):
                    continue
                schema = strict_schema(version["schema"]["openAPIV3Schema"])
                # The CRD schema leaves the envelope to the API server; check it here too.
                schema.setdefault("properties", {}).update({
                    "apiVersion": {"const": f"{spec['group']}/{version['name']}"},
                    "kind": {"const": spec["names"]["kind"]},
                    "metadata": {
                        "type": "object",
                        "required": ["name"],
                        "properties": {
                            "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"},
                            "namespace": {"type": "string"},
                            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                            "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
                        },
                        "additionalProperties": False,
                    },
                })
                schema["required"] = sorted(set(schema.get("required", [])) | {"apiVersion", "kind", "metadata", "spec"})
                schema["additionalProperties"] = False
                schemas[(spec["group"], version["name"], spec["names"]["kind"])] = schema
    return schemas


def validate_istio(doc: dict, schemas: dict, where: str, report: Report) -> bool:
    """True if `doc` is valid; otherwise reports why."""
    group, version = split_api_version(doc["apiVersion"])
    schema = schemas.get((group, version, doc["kind"]))
    if schema is None:
        known = sorted(f"{g}/{v}" for g, v, k in schemas if k == doc["kind"])
        report.error(where, f"no served Istio CRD for {doc['apiVersion']} {doc['kind']}"
                     + (f" (served: {', '.join(known)})" if known else ""))
        return False
    validator = jsonschema.Draft7Validator(schema)
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
    for err in errors:
        path = ".".join(str(p) for p in err.absolute_path) or "(top)"
        report.error(where, f"{path}: {err.message}")
    return not errors


# ---------------------------------------------------------------- core Kubernetes

def validate_core(doc: dict, where: str, report: Report) -> bool:
    """True if `doc` is valid; otherwise reports why."""
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        return True
    except kubernetes_validate.ValidationError as err:
        path = ".".join(str(p) for p in err.path) or "(top)"
        report.error(where, f"{path}: {err.message} (Kubernetes {err.version})")
    except kubernetes_validate.SchemaNotFoundError as err:
        report.error(where, f"no schema to check it against: {err.message}")
    return False


# ---------------------------------------------------------------- kustomize

def kustomization_file(directory: pathlib.Path) -> pathlib.Path | None:
    for name in ("kustomization.yaml", "kustomization.yml", "Kustomization"):
        if (directory / name).is_file():
            return directory / name
    return None


def accumulate(kdir: pathlib.Path, root: pathlib.Path, report: Report,
               seen: tuple[pathlib.Path, ...] = ()) -> list[tuple[str, str, str]]:
    """The (kind, namespace, name) of every resource a kustomization produces, checking on the
    way what `kustomize build` would refuse."""
    kfile = kustomization_file(kdir)
    where = rel(kfile or kdir, root)
    if kfile is None:
        report.error(rel(kdir, root), "listed as a base but has no kustomization.yaml")
        return []
    try:
        k = yaml.load(kfile.read_text(encoding="utf-8"), Loader=YAML_LOADER) or {}
    except yaml.YAMLError as err:
        report.error(where, f"does not parse: {err}")
        return []
    out: list[tuple[str, str, str]] = []
    for entry in k.get("resources", []) or []:
        target = (kdir / entry).resolve()
        if target.is_dir():
            if any(s == target or target in s.parents for s in seen + (kdir.resolve(),)):
                report.error(where, f"resource {entry!r}: a base that contains this "
                             "kustomization (kustomize rejects the cycle)")
                continue
            out += accumulate(target, root, report, seen + (kdir.resolve(),))
        elif target.is_file():
            try:
                docs = [d for d in yaml.load_all(target.read_text(encoding="utf-8"), Loader=YAML_LOADER) if d is not None]
            except yaml.YAMLError:
                continue  # reported where the file itself is checked
            for i, doc in enumerate(docs):
                if not is_resource(doc):
                    report.error(where, f"resource {entry!r}: document {i + 1} is not a "
                                 "Kubernetes resource (no apiVersion/kind)")
                    continue
                meta = doc.get("metadata") or {}
                out.append((doc["kind"], meta.get("namespace", ""), meta.get("name", "")))
        else:
            report.error(where, f"resource {entry!r} does not exist")
    for gen in k.get("configMapGenerator", []) or []:
        for entry in gen.get("files", []) or []:
            source = entry.split("=", 1)[-1]
            if not (kdir / source).is_file():
                report.error(where, f"configMapGenerator {gen.get('name')!r}: file {source!r} does not exist")
        out.append(("ConfigMap", gen.get("namespace", ""), gen.get("name", "")))
    for i, patch in enumerate(k.get("patches", []) or []):
        if "path" in patch:
            target = kdir / patch["path"]
            if not target.is_file():
                report.error(where, f"patch {patch['path']!r} does not exist")
                continue
            text = target.read_text(encoding="utf-8")
        else:
            text = patch.get("patch", "")
        try:
            docs = [d for d in yaml.load_all(text, Loader=YAML_LOADER) if d is not None]
        except yaml.YAMLError as err:
            report.error(where, f"patch {i + 1} does not parse: {err}")
            continue
        for doc in docs:
            if isinstance(doc, dict) and "kind" in doc and "target" not in patch:
                meta = doc.get("metadata") or {}
                key = (doc["kind"], meta.get("namespace", ""), meta.get("name", ""))
                if key not in out:
                    report.error(where, f"patch {i + 1} targets {key[0]} {key[1]}/{key[2]}, "
                                 "which this kustomization does not have")
                elif doc.get("$patch") == "delete":
                    out.remove(key)
    for key in {x for x in out if out.count(x) > 1}:
        report.error(where, f"produces {key[0]} {key[1]}/{key[2]} more than once")
    return out


def render_kustomizations(root: pathlib.Path, report: Report) -> Iterator[tuple[str, dict]]:
    """With kubectl on PATH: every kustomization built for real, its output to be validated
    like any other resource (this covers what patches produce)."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        print("note: kubectl not found; kustomizations checked statically, not built")
        return
    for kfile in sorted(root.rglob("kustomization.yaml")):
        where = f"kustomize build {rel(kfile.parent, root)}"
        proc = subprocess.run([kubectl, "kustomize", str(kfile.parent)],
                              capture_output=True, text=True, timeout=60, check=False)
        if proc.returncode != 0:
            last = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"
            report.error(where, re.sub(r"^E\d+ [\d:.]+ +\d+ [\w.]+:\d+\] ", "", last))
            continue
        for doc in yaml.load_all(proc.stdout, Loader=YAML_LOADER):
            if is_resource(doc):
                yield where, doc


# ---------------------------------------------------------------- grayguard specifics

def wasm_plugin_configs(node: Any) -> Iterator[Any]:
    """The plugin configuration of every envoy.filters.http.wasm filter inside `node`
    (an Envoy bootstrap or an EnvoyFilter), parsed from its JSON string."""
    if isinstance(node, dict):
        if node.get("name") == WASM_FILTER:
            config = ((node.get("typed_config") or {}).get("config") or {})
            value = (config.get("configuration") or {}).get("value")
            yield value
        for v in node.values():
            yield from wasm_plugin_configs(v)
    elif isinstance(node, list):
        for v in node:
            yield from wasm_plugin_configs(v)


def plugin_configs_of(doc: Any) -> Iterator[Any]:
    if is_resource(doc) and doc["kind"] == "WasmPlugin":
        if "grayguard" in str((doc.get("spec") or {}).get("url", "")):
            yield (doc.get("spec") or {}).get("pluginConfig")
    else:
        for value in wasm_plugin_configs(doc):
            yield json.loads(value) if isinstance(value, str) else value


def diff_paths(a: Any, b: Any, path: str = "") -> list[str]:
    """Where two JSON values differ, as dotted paths."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [p for k in sorted(set(a) | set(b), key=str)
                for p in diff_paths(a.get(k), b.get(k), f"{path}.{k}" if path else str(k))]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [p for i, (x, y) in enumerate(zip(a, b)) for p in diff_paths(x, y, f"{path}[{i}]")]
    return [] if a == b and type(a) is type(b) else [path or "(top)"]


def metric_names(expr: str) -> set[str]:
    # Label values and strings ("...") may mention metric-like words; only names count.
    return set(METRIC_RE.findall(re.sub(r'"[^"]*"', '""', expr)))


def plain_rule_groups(doc: Any) -> list | None:
    if isinstance(doc, dict) and not is_resource(doc) and isinstance(doc.get("groups"), list):
        if all(isinstance(g, dict) and "rules" in g for g in doc["groups"]):
            return doc["groups"]
    return None


def dashboard_exprs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "expr" and isinstance(v, str):
                yield v
            else:
                yield from dashboard_exprs(v)
    elif isinstance(node, list):
        for v in node:
            yield from dashboard_exprs(v)


def labels_select(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def cross_check(resources: list[tuple[str, dict]], deployments: list[dict],
                plugin_configs: list[tuple[str, Any]], report: Report) -> None:
    """Consistency between resources that each passed their schema (and every Deployment, so
    that one invalid Deployment is not also reported as missing)."""
    by_kind: dict[str, list[tuple[str, dict]]] = {}
    for where, doc in resources:
        by_kind.setdefault(doc["kind"], []).append((where, doc))
    pods = [((d.get("metadata") or {}).get("namespace"),
             (((d.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels") or {})
            for d in deployments]
    subsets: dict[str, set[str]] = {}
    for where, dr in by_kind.get("DestinationRule", []):
        ns = dr["metadata"].get("namespace")
        host = dr["spec"].get("host", "")
        for subset in dr["spec"].get("subsets", []):
            subsets.setdefault(host, set()).add(subset["name"])
            if pods and not any(p_ns == ns and labels_select(subset.get("labels", {}), labels)
                                for p_ns, labels in pods):
                report.error(where, f"subset {subset['name']!r}: no Deployment's pods carry "
                             f"labels {subset.get('labels')}")
    for where, svc in by_kind.get("Service", []):
        ns = (svc.get("metadata") or {}).get("namespace")
        selector = (svc.get("spec") or {}).get("selector", {})
        if pods and selector and not any(p_ns == ns and labels_select(selector, labels)
                                         for p_ns, labels in pods):
            report.error(where, f"selector {selector} selects no Deployment's pods")
    for where, vs in by_kind.get("VirtualService", []):
        for route in vs["spec"].get("http", []):
            for dest in route.get("route", []):
                d = dest["destination"]
                if "subset" in d and d["subset"] not in subsets.get(d["host"], set()):
                    report.error(where, f"route {route.get('name')!r}: no DestinationRule for "
                                 f"{d['host']} has subset {d['subset']!r}")
    for where, config in plugin_configs:
        if not isinstance(config, dict):
            continue
        names = {config.get("stable"), config.get("gray")}
        for host, have in subsets.items():
            if not names <= have:
                report.error(where, f"plugin stable/gray {sorted(map(str, names))} are not all "
                             f"subsets of {host} ({sorted(have)})")
        header = config.get("route_header", "x-canary-route")
        for vs_where, vs in by_kind.get("VirtualService", []):
            for route in vs["spec"].get("http", []):
                for match in route.get("match", []) or []:
                    wanted = (match.get("headers") or {}).get(header)
                    if wanted is None:
                        continue
                    target = {d["destination"].get("subset") for d in route.get("route", [])}
                    if wanted.get("exact") not in target:
                        report.error(vs_where, f"route {route.get('name')!r} matches {header}="
                                     f"{wanted} but goes to {sorted(map(str, target))}")


def check_sidecar_flags(resources: list[tuple[str, dict]], help_text: str, report: Report) -> None:
    def known(flag: str) -> bool:
        return re.search(re.escape(flag) + r"(?![\w-])", help_text) is not None

    for where, doc in resources:
        if doc["kind"] != "Deployment":
            continue
        spec = ((doc.get("spec") or {}).get("template") or {}).get("spec") or {}
        for c in spec.get("containers", []):
            if SIDECAR_IMAGE not in c.get("image", ""):
                continue
            for arg in c.get("args", []) or []:
                if arg.startswith("--") and not known(arg.split("=", 1)[0]):
                    report.error(where, f"container {c['name']}: grayguard-sidecar has no flag "
                                 f"{arg.split('=', 1)[0]}")
            for env in c.get("env", []) or []:
                if env["name"].startswith("GRAYGUARD_SIDECAR_"):
                    flag = "--" + env["name"][len("GRAYGUARD_SIDECAR_"):].lower().replace("_", "-")
                    if not known(flag):
                        report.error(where, f"container {c['name']}: env {env['name']} names no "
                                     f"grayguard-sidecar flag ({flag})")


# ---------------------------------------------------------------- driver

def load(path: pathlib.Path) -> list[Any]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        return [json.loads(text)]
    return [d for d in yaml.load_all(text, Loader=YAML_LOADER) if d is not None]


def run(root: pathlib.Path, crds: pathlib.Path, sidecar_help: str | None,
        plugin_configs_out: pathlib.Path | None) -> int:
    report = Report()
    schemas = load_istio_schemas(crds)
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in (".yaml", ".yml", ".json"))
    resources: list[tuple[str, dict]] = []  # those that passed their schema
    all_resources: list[tuple[str, dict]] = []
    plugin_configs: list[tuple[str, Any]] = []
    rule_files: list[tuple[str, list]] = []
    prometheus_rules: list[tuple[str, dict]] = []
    exprs: list[tuple[str, str]] = []

    for path in files:
        name = rel(path, root)
        try:
            docs = load(path)
        except (yaml.YAMLError, json.JSONDecodeError, UnicodeDecodeError) as err:
            report.error(name, f"does not parse: {err}")
            continue
        report.checked += 1
        if kustomization_file(path.parent) == path:
            # kustomize does not require apiVersion/kind in a kustomization.
            accumulate(path.parent, root, report)
            continue
        for doc in docs:
            where = f"{name}: {resource_id(doc)}" if is_resource(doc) else name
            try:
                for config in plugin_configs_of(doc):
                    plugin_configs.append((where, config))
            except json.JSONDecodeError as err:
                report.error(where, f"grayguard plugin configuration is not JSON: {err}")
            if (groups := plain_rule_groups(doc)) is not None:
                rule_files.append((name, groups))
                exprs += [(name, r["expr"]) for g in groups for r in g["rules"] if "expr" in r]
            if isinstance(doc, dict) and isinstance(doc.get("panels"), list):
                exprs += [(name, e) for e in dashboard_exprs(doc)]
            if not is_resource(doc):
                continue
            if not isinstance(doc.get("metadata"), dict) or not doc["metadata"].get("name"):
                report.error(where, "metadata.name is missing")
                continue
            all_resources.append((where, doc))
            group, _ = split_api_version(str(doc["apiVersion"]))
            if group.endswith("istio.io"):
                if validate_istio(doc, schemas, where, report):
                    resources.append((where, doc))
            elif group == "monitoring.coreos.com" and doc["kind"] == "PrometheusRule":
                prometheus_rules.append((where, doc))
            elif validate_core(doc, where, report):
                resources.append((where, doc))

    for where, doc in render_kustomizations(root, report):
        group, _ = split_api_version(str(doc["apiVersion"]))
        rwhere = f"{where}: {resource_id(doc)}"
        if group.endswith("istio.io"):
            validate_istio(doc, schemas, rwhere, report)
        elif group not in ("monitoring.coreos.com",):
            validate_core(doc, rwhere, report)

    for where, doc in prometheus_rules:
        groups = (doc.get("spec") or {}).get("groups")
        if not rule_files:
            report.error(where, "no plain rules file (groups:) under the root to compare with")
        elif not any(groups == g for _, g in rule_files):
            report.error(where, "spec.groups differ from " + ", ".join(n for n, _ in rule_files)
                         + " (run mesh-config/prometheus/generate.py)")

    recorded = {r["record"] for _, g in rule_files for grp in g for r in grp["rules"] if "record" in r}
    for where, expr in exprs:
        for metric in sorted(metric_names(expr) - PUBLISHED_METRICS - recorded):
            report.error(where, f"expression names {metric}, which no grayguard part publishes "
                         f"and no rule records: {expr.strip()[:120]}")

    if plugin_configs:
        reference_where, reference = plugin_configs[0]
        for where, config in plugin_configs[1:]:
            if differences := diff_paths(config, reference):
                report.error(where, f"grayguard plugin configuration differs from {reference_where} "
                             f"at {', '.join(differences)}")
    deployments = [d for _, d in all_resources if d["kind"] == "Deployment"]
    cross_check(resources, deployments, plugin_configs, report)
    if sidecar_help is not None:
        check_sidecar_flags(resources, sidecar_help, report)

    if plugin_configs_out is not None:
        plugin_configs_out.write_text(json.dumps(dict(plugin_configs), indent=2), encoding="utf-8")
    for line in report.problems:
        print(line)
    print(f"{report.checked} files, {len(resources)} valid resources, {len(plugin_configs)} plugin "
          f"configurations, {len(rule_files)} rules files: {len(report.problems)} problems")
    return 1 if report.problems else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=pathlib.Path, default=DEFAULT_ROOT,
                        help="folder to validate (default: mesh-config/)")
    parser.add_argument("--istio-crds", type=pathlib.Path,
                        default=pathlib.Path(os.environ.get("GRAYGUARD_ISTIO_CRDS", DEFAULT_CRDS)),
                        help="Istio's CRDs with their OpenAPI schemas "
                             "(default: $GRAYGUARD_ISTIO_CRDS or ../shared/schemas/istio-crd-all.gen.yaml)")
    parser.add_argument("--sidecar-help", type=pathlib.Path,
                        help="output of `grayguard-sidecar --help`: check the Deployments' flags against it")
    parser.add_argument("--plugin-configs", type=pathlib.Path, metavar="OUT",
                        help="also write every embedded grayguard plugin configuration to OUT, "
                             "as a JSON object keyed by file and resource")
    args = parser.parse_args()
    for what, path in (("--root", args.root), ("--istio-crds", args.istio_crds)):
        if not path.exists():
            print(f"FATAL {what}: {path} does not exist", file=sys.stderr)
            return 2
    help_text = args.sidecar_help.read_text(encoding="utf-8") if args.sidecar_help else None
    return run(args.root.resolve(), args.istio_crds, help_text, args.plugin_configs)


if __name__ == "__main__":
    sys.exit(main())
