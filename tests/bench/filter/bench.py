#!/usr/bin/env python3
"""grayguard filter benchmark.

In one run, alternating, three front Envoys (one worker each) in front of a fast upstream
(a second Envoy answering with direct responses that carry the sidecar's signal headers):

  native   Envoy routes on x-device-type itself, no Wasm
  floor    the cheapest Wasm routing filter (one header read, one header write)
  grayguard  the grayguard filter with rules and every breach trigger

For each: requests/s, p50/p99 latency (wrk), and the front Envoy's CPU time per request
(utime+stime from /proc/<pid>/stat over the requests served). Then two behaviours timed
through a real Envoy with a scripted Python upstream: a breach flag sheds the very next
request, and how long a statistical (box-count) breach takes to shed once its condition
holds. Only loopback is used; every process is stopped at the end.
"""

import argparse
import http.client
import http.server
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
ENVOY = os.environ.get("GRAYGUARD_ENVOY", os.path.join(ROOT, ".data/bin/envoy"))
WASM = os.environ.get("GRAYGUARD_WASM", os.path.join(ROOT, "target/grayguard_filter.wasm"))
FLOOR = os.path.join(ROOT, "target/grayguard_bench_floor.wasm")
CLK_TCK = os.sysconf("SC_CLK_TCK")

GRAYGUARD_CONFIG = {
    "route_header": "x-canary-route",
    "stable": "v9-prod",
    "gray": "v10-gray",
    "utc_offset": "+08:00",
    "trust_time_header": False,
    "rules": [
        {"name": "night-forklifts", "headers": {"x-device-type": {"exact": "forklift"}},
         "hours": {"from": "22:00", "to": "06:00"}},
        {"name": "gates", "headers": {"x-device-type": {"regex": "gate-[0-9]+"}},
         "percent": 20, "sticky_header": "x-device-id"},
        {"name": "crane-cameras", "headers": {"x-device-type": {"exact": "crane-camera"}},
         "percent": 100, "sticky_header": "x-device-id"},
    ],
    "breach": {
        "detector": "sequential",
        "arl": 1000000,
        "flag_header": "x-canary-breach",
        "latency": {"header": "x-inference-latency-ms", "max_ratio": 1.25, "max_mean_ms": 1500, "min_samples": 10},
        "box_count": {"header": "x-box-count", "max_shift": 0.25, "min_samples": 10},
        "error_rate": {"max_excess": 0.02, "max": 0.2, "min_samples": 10},
        "consecutive_failures": 5,
        "shed_for_s": 30,
        "probe_percent": 10,
        "scope": "rule",
        "dry_run": False,
    },
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cluster(name, port):
    return {
        "name": name, "type": "STATIC", "connect_timeout": "1s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]},
    }


def wasm_filter(path, config):
    return {
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": "grayguard", "root_id": "grayguard",
                "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                                  "value": json.dumps(config)},
                "vm_config": {"vm_id": "grayguard", "runtime": "envoy.wasm.runtime.v8",
                              "code": {"local": {"filename": path}}},
            },
        },
    }


def hcm(routes, filters):
    return {
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": "front",
            "route_config": {"name": "r", "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": routes}]},
            "http_filters": filters + [{"name": "envoy.filters.http.router", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
        },
    }


def bootstrap(port, admin, network_filter, clusters=()):
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {
            "listeners": [{"name": "l", "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                           "filter_chains": [{"filters": [network_filter]}]}],
            "clusters": list(clusters),
        },
    }


def front(variant, stable_port, gray_port, wasm=WASM, config=None):
    """Bootstrap of a front Envoy for one variant (`wasm`: the grayguard build it loads,
    `config`: its plugin configuration, the canonical one by default)."""
    if variant == "native":
        match = {"name": "x-device-type", "string_match": {"exact": "crane-camera"}}
        filters = []
    else:
        match = {"name": "x-canary-route", "string_match": {"exact": "v10-gray"}}
        filters = [wasm_filter(FLOOR, {}) if variant == "floor" else wasm_filter(wasm, config or GRAYGUARD_CONFIG)]
    routes = [
        {"match": {"prefix": "/", "headers": [match]}, "route": {"cluster": "v10-gray"}},
        {"match": {"prefix": "/"}, "route": {"cluster": "v9-prod"}},
    ]
    port, admin = free_port(), free_port()
    return port, admin, bootstrap(port, admin, hcm(routes, filters),
                                  [cluster("v9-prod", stable_port), cluster("v10-gray", gray_port)])


def fast_upstream():
    """An Envoy answering every request itself, with the sidecar's signal headers."""
    port, admin = free_port(), free_port()
    routes = [{"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": "ok"}},
               "response_headers_to_add": [
                   {"header": {"key": "x-inference-latency-ms", "value": "12.5"}},
                   {"header": {"key": "x-box-count", "value": "3"}},
                   {"header": {"key": "x-model-version", "value": "bench"}}]}]
    return port, admin, bootstrap(port, admin, hcm(routes, []))


class Envoy:
    def __init__(self, name, port, admin, config, tmp, concurrency):
        self.name, self.port, self.admin = name, port, admin
        path = os.path.join(tmp, f"{name}.yaml")
        with open(path, "w") as f:
            json.dump(config, f)
        self.log = open(os.path.join(tmp, f"{name}.log"), "w")
        self.proc = subprocess.Popen(
            [ENVOY, "-c", path, "--concurrency", str(concurrency), "--disable-hot-restart",
             "--log-level", "warn"], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                sys.exit(f"{name}: envoy exited; see {self.log.name}")
            try:
                c = http.client.HTTPConnection("127.0.0.1", admin, timeout=1)
                c.request("GET", "/ready")
                if c.getresponse().status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        sys.exit(f"{name}: not ready in 60 s")

    def cpu_seconds(self):
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def wrk(port, seconds, connections):
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency",
         "-H", "x-device-type: crane-camera", "-H", "x-device-id: cam-0042",
         f"http://127.0.0.1:{port}/infer"], capture_output=True, text=True, check=True).stdout
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    unit = {"us": 1.0, "ms": 1000.0, "s": 1e6}

    def pct(p):
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        return float(m.group(1)) * unit[m.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        sys.exit(f"wrk saw {errors.group(1)} non-2xx responses:\n{out}")
    return requests, rps, pct(50), pct(99)


def measure(envoys, rounds, seconds, connections):
    results = {e.name: [] for e in envoys}
    for e in envoys:  # warm-up (V8 tiering, connection pools)
        wrk(e.port, 2, connections)
    for r in range(rounds):
        order = envoys if r % 2 == 0 else list(reversed(envoys))
        for e in order:
            before = e.cpu_seconds()
            requests, rps, p50, p99 = wrk(e.port, seconds, connections)
            cpu = e.cpu_seconds() - before
            results[e.name].append({"rps": rps, "p50": p50, "p99": p99, "cpu_us": cpu * 1e6 / requests})
            print(f"  round {r + 1} {e.name:<10} {rps:9.0f} req/s  p50 {p50:6.0f} µs  p99 {p99:6.0f} µs  "
                  f"{cpu * 1e6 / requests:6.1f} µs CPU/req", flush=True)
    med = {name: {k: statistics.median(x[k] for x in runs) for k in runs[0]} for name, runs in results.items()}
    # Paired per round against the floor (measured next to each other): drifts in the load of
    # the machine cancel out, so this is the steadier estimate of a filter's own cost.
    for name, runs in results.items():
        med[name]["paired"] = statistics.median(
            x["cpu_us"] - f["cpu_us"] for x, f in zip(runs, results["floor"]))
    return med


# ------------------------------------------------------------------ behaviour timings

class Script:
    """What the scripted gray upstream answers; changed by the driver at runtime."""
    flag = None
    boxes = "3"


class Upstream(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        self.send_response(200)
        self.send_header("x-inference-latency-ms", "12")
        self.send_header("x-box-count", Script.boxes if self.server.gray else "3")
        if self.server.gray and Script.flag:
            self.send_header("x-canary-breach", Script.flag)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


def serve(gray):
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    srv.gray = gray
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def decision(port, kind="crane-camera"):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("GET", "/infer", headers={"x-device-type": kind, "x-device-id": "cam-7"})
    r = c.getresponse()
    r.read()
    c.close()
    return r.getheader("x-canary-decision")


def behaviour(tmp):
    stable, gray = serve(False), serve(True)
    cfg = json.loads(json.dumps(GRAYGUARD_CONFIG))
    cfg["breach"]["box_count"].update({"window_s": 5, "min_samples": 10})
    # A cohort of its own for the statistical breach (the flag sheds crane cameras for 30 s).
    cfg["rules"].append({"name": "agvs", "headers": {"x-device-type": {"exact": "agv"}}})
    port, admin = free_port(), free_port()
    routes = [{"match": {"prefix": "/", "headers": [{"name": "x-canary-route", "string_match": {"exact": "v10-gray"}}]},
               "route": {"cluster": "v10-gray"}}, {"match": {"prefix": "/"}, "route": {"cluster": "v9-prod"}}]
    config = bootstrap(port, admin, hcm(routes, [wasm_filter(WASM, cfg)]),
                       [cluster("v9-prod", stable.server_address[1]), cluster("v10-gray", gray.server_address[1])])
    e = Envoy("behaviour", port, admin, config, tmp, 2)
    try:
        # The flag: the response after the flagged one must already be shed.
        assert decision(port) == "gray; rule=crane-cameras"
        Script.flag = "box_count"
        flagged = decision(port)
        Script.flag = None
        following = [decision(port) for _ in range(5)]
        flag_ok = flagged == "gray; rule=crane-cameras" and all(d.endswith("shed=flag") for d in following)
        # Statistical: learn the stable baseline, then gray floods boxes at ~100 req/s; the
        # condition holds once min_samples (10) bad gray responses are in the window.
        for _ in range(20):
            decision(port, "conveyor")
        Script.boxes = "40"
        bad, held_at, shed_at = 0, None, None
        deadline = time.time() + 10
        while time.time() < deadline:
            d = decision(port, "agv")
            if d == "gray; rule=agvs":
                bad += 1
                if bad == 10:
                    held_at = time.time()
            elif d and d.endswith("shed=box_count"):
                shed_at = time.time()
                break
            time.sleep(0.01)
        stat = (shed_at - held_at) if (held_at and shed_at) else None
    finally:
        e.stop()
        stable.shutdown()
        gray.shutdown()
    return flag_ok, following, stat


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds per variant (default 3)")
    ap.add_argument("--seconds", type=int, default=8, help="wrk duration of one run (default 8)")
    ap.add_argument("--connections", type=int, default=4, help="wrk connections, i.e. concurrency (default 4)")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=WASM[@CONFIG.json]",
                    help="also measure another grayguard build (repeatable), with the same configuration "
                         "or the plugin configuration in CONFIG.json (an older build may not know newer "
                         "keys), e.g. before=/tmp/old.wasm@/tmp/old-config.json")
    ap.add_argument("--no-behaviour", action="store_true", help="skip the flag and statistical shed timings")
    args = ap.parse_args()
    for tool in ("wrk",):
        if not shutil.which(tool):
            sys.exit(f"{tool} not found (make setup installs it)")
    extra = []
    for v in args.variant:
        name, sep, spec = v.partition("=")
        if not sep or not name or name in ("native", "floor", "grayguard"):
            sys.exit(f"--variant {v!r}: expected NAME=WASM[@CONFIG.json] with a new name")
        path, _, cfg_path = spec.partition("@")
        cfg = None
        if cfg_path:
            with open(cfg_path) as f:
                cfg = json.load(f)
        extra.append((name, os.path.abspath(path), cfg))
    for path in (ENVOY, WASM, FLOOR, *(p for _, p, _ in extra)):
        if not os.path.exists(path):
            sys.exit(f"{path} missing (make build-filter; run.sh builds the floor)")

    tmp = tempfile.mkdtemp(prefix="grayguard-bench-")
    up_port, up_admin, up_cfg = fast_upstream()
    upstream = Envoy("upstream", up_port, up_admin, up_cfg, tmp, 1)
    envoys = []
    try:
        for v, wasm, plugin in [("native", None, None), ("floor", None, None), ("grayguard", WASM, None), *extra]:
            port, admin, cfg = front(v, up_port, up_port, wasm, plugin)
            envoys.append(Envoy(v, port, admin, cfg, tmp, 1))
        print(f"front Envoys: 1 worker each; wrk -t1 -c{args.connections}, {args.rounds} alternating "
              f"rounds of {args.seconds} s; upstream: Envoy direct responses", flush=True)
        res = measure(envoys, args.rounds, args.seconds, args.connections)
    finally:
        for e in envoys + [upstream]:
            e.stop()

    n, f = res["native"], res["floor"]
    print()
    print("| variant | req/s | p50 µs | p99 µs | CPU µs/req | CPU vs native | CPU vs floor | paired vs floor | p99 over native |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in ("native", "floor", "grayguard", *(n for n, _, _ in extra)):
        r = res[name]
        print(f"| {name} | {r['rps']:.0f} | {r['p50']:.0f} | {r['p99']:.0f} | {r['cpu_us']:.1f} | "
              f"{r['cpu_us'] / n['cpu_us']:.2f}× ({r['cpu_us'] - n['cpu_us']:+.1f}) | "
              f"{r['cpu_us'] / f['cpu_us']:.2f}× ({r['cpu_us'] - f['cpu_us']:+.1f}) | {r['paired']:+.1f} | "
              f"{r['p99'] - n['p99']:+.0f} µs |")
    size = os.path.getsize(WASM)
    print()
    print(f"grayguard_filter.wasm: {size} bytes ({size / 1048576:.2f} MiB; target ≤ 1 MiB)")
    if args.no_behaviour:
        shutil.rmtree(tmp, ignore_errors=True)
        return
    flag_ok, following, stat = behaviour(tmp)
    print(f"breach flag sheds the very next request: {'yes' if flag_ok else 'NO'} (next 5: {following})")
    if stat is None:
        print("statistical breach (box count): did not shed within 10 s")
    else:
        print(f"statistical breach (box count) shed {stat * 1000:.0f} ms after its condition held "
              f"(min_samples reached; target ≤ 1 s)")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
