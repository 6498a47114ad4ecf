#!/usr/bin/env bash
# `make demo-promote`: the other answer a release owner needs, in the local mesh. A healthy
# gray version (stable's model at stable's threshold: an A/A) serves the crane cameras under
# steady traffic until the rule's promotion hypothesis (the canonical plugin configuration's
# `promote`) is proven on every gateway; then the promotion report is written to
# .run/demo/promotion.html and the time to the verdict printed.
#
#   bash tests/tools/demo/promote.sh
#
# Uses a mesh that is already running (`make run GRAY_ARGS="--conf 0.25"` in another terminal:
# it must be the A/A, which is checked) or starts one in the background with
# mesh-config/local/run.sh, gray as the A/A, and stops it again. Progress is the verdict as
# Flagger would get it: the report server's POST /flagger/confirm-promotion, 200 once proven
# on every gateway.
#
# Environment: GRAYGUARD_DEMO_BIN, GRAYGUARD_REPORT (as demo.sh), GRAYGUARD_GATEWAYS (gateways
#   to drive, default 1), GRAYGUARD_PROMOTE_RULE (default crane-cameras),
#   GRAYGUARD_PROMOTE_RATE (requests per second over both cohorts, default 2: one gray reply
#   a second, what two CPU sidecars on a shared 2-core machine serve without queueing),
#   GRAYGUARD_PROMOTE_LIMIT_S (give up after this long, default 1800),
#   GRAYGUARD_GRAY_MODEL, GRAYGUARD_GRAY_ARGS (the gray sidecar, default the A/A: stable's
#   model, "--conf 0.25 --watchdog-latency-budget-ms 5000").
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
cd "$ROOT"

DEMO="${GRAYGUARD_DEMO_BIN:-$ROOT/target/release/grayguard-demo}"
REPORT="${GRAYGUARD_REPORT:-$ROOT/target/release/grayguard-report}"
PY="${GRAYGUARD_PYTHON:-python3}"
GATEWAYS="${GRAYGUARD_GATEWAYS:-1}"
RULE="${GRAYGUARD_PROMOTE_RULE:-crane-cameras}"
RATE="${GRAYGUARD_PROMOTE_RATE:-2}"
LIMIT_S="${GRAYGUARD_PROMOTE_LIMIT_S:-1800}"
OUT=.run/demo
case "$GATEWAYS" in
  ''|*[!0-9]*) printf '[promote] error: GRAYGUARD_GATEWAYS must be a number, got %s\n' "$GATEWAYS" >&2; exit 1 ;;
esac

say() { printf '[promote] %s\n' "$*"; }
die() { printf '[promote] error: %s\n' "$*" >&2; exit 1; }

[ -x "$DEMO" ] || die "$DEMO is missing; run \`cargo build --release -p grayguard-demo\` (make demo-promote does)"
[ -x "$REPORT" ] || die "$REPORT is missing; run \`make build\`"
command -v curl >/dev/null || die "curl is needed"

# The A/A: the gray sidecar serves stable's model at stable's threshold. Its own latency
# watchdog (1 s by default) is raised: on a shared 2-core machine another build's load can
# push both sidecars past a second for a while, and a flagged reply sheds gray at once,
# which starts a new epoch (pending) every time; the verdict itself weighs the latencies.
export GRAYGUARD_GRAY_MODEL="${GRAYGUARD_GRAY_MODEL:-${GRAYGUARD_MODEL:-$ROOT/.data/models/best_fp16.onnx}}"
export GRAYGUARD_GRAY_ARGS="${GRAYGUARD_GRAY_ARGS:---conf 0.25 --watchdog-latency-budget-ms 5000}"

# The rule must be in the plugin configuration the gateways run, with a promotion hypothesis.
# Its hours need nothing here: the local Envoy reads a request that names no hour as 02:00
# (mesh-config/local/envoy.yaml), inside the canonical rule's night at any hour of the day.
check_rule() {
  "$PY" - "$RULE" <<'EOF'
import json, sys
text = open("mesh-config/local/envoy.yaml", encoding="utf-8").read()
lines = text.splitlines()
start = next(i for i, l in enumerate(lines) if l.strip() == "value: |")
indent = len(lines[start]) - len(lines[start].lstrip())
body = []
for l in lines[start + 1:]:
    if l.strip() and len(l) - len(l.lstrip()) <= indent:
        break
    body.append(l)
config = json.loads("\n".join(body))
rules = [r for r in config.get("rules", []) if r.get("name") == sys.argv[1]]
if not rules:
    sys.exit(f"no rule {sys.argv[1]!r} in mesh-config/local/envoy.yaml")
if "promote" not in config and "promote" not in rules[0]:
    sys.exit(f"rule {sys.argv[1]!r} has no promotion hypothesis (promote) in mesh-config/local/envoy.yaml")
EOF
}
check_rule || die "cannot use rule $RULE of mesh-config/local/envoy.yaml"

# shellcheck source=tests/tools/mesh.sh
source "$ROOT/tests/tools/mesh.sh"
mesh_up promote

# A mesh that was already running must be the A/A: the same model file and threshold.
info() { curl -fsS --max-time 5 "http://127.0.0.1:$1/info"; }
same="$("$PY" - "$(info 8082)" "$(info 8081)" <<'EOF'
import json, sys
g, s = (json.loads(x) for x in sys.argv[1:3])
if g["model"]["sha256"] == s["model"]["sha256"] and g["flags"]["conf"] == s["flags"]["conf"]:
    print("yes")
else:
    print("no: gray %s at conf %s, stable %s at conf %s" % (
        g["model"]["path"], g["flags"]["conf"], s["model"]["path"], s["flags"]["conf"]))
EOF
)" || die "cannot read the sidecars' /info"
[ "$same" = yes ] || die "the running gray sidecar is not the A/A ($same); stop it, or run \`make run GRAY_ARGS=\"--conf 0.25\"\`"

mkdir -p "$OUT/promote"
args=(--rate "$RATE" --duration-s "$LIMIT_S" --concurrency 4 --out "$OUT/promote"
      --cohort crane-camera:4:1 --cohort dock-camera:4:1)
[ "$GATEWAYS" = 1 ] || args+=(--gateways "$GATEWAYS")
report_args=()
for ((i = 0; i < GATEWAYS; i++)); do
  report_args+=(--gateway "http://127.0.0.1:$((9901 + i))" --operator "http://127.0.0.1:$((10100 + i))"
                --envoy-log "$RUN_DIR/logs/$([ "$i" = 0 ] && echo envoy || echo "envoy-gw$i").log")
done

say "steady traffic: crane cameras (rule $RULE, gray) and dock cameras (stable, the control) at $RATE/s through $GATEWAYS gateway(s); the live view is in $OUT/promote/traffic.log"
"$DEMO" "${args[@]}" >"$OUT/promote/traffic.log" 2>&1 &
TRAFFIC=$!
stop_traffic() { kill -TERM "$TRAFFIC" 2>/dev/null || true; wait "$TRAFFIC" 2>/dev/null || true; }
trap 'stop_traffic; mesh_down' EXIT

# Each gateway's standing, one line: state, gray replies weighed, each effect's worse end.
standing() {
  "$PY" - "$RULE" "$1" <<'EOF'
import json, sys
rule, body = sys.argv[1], sys.argv[2]
try:
    d = json.loads(body)
    r = next(x for x in d["rules"] if x["rule"] == rule)
except Exception:
    print("gw-? unreadable", end="")
    sys.exit()
pct = lambda v: "-" if v is None else "%.0f%%" % v
effects = " ".join("%s %s" % (e["effect"], pct(e["upper_pct"])) for e in r["effects"])
print("%s %s n=%.0f [%s]" % (d["gateway"], r["state"], r["gray_n"], effects), end="")
EOF
}
progress() {
  local i line=""
  for ((i = 0; i < GATEWAYS; i++)); do
    line+="$(standing "$(curl -fsS --max-time 5 "http://127.0.0.1:$((10100 + i))/grayguard/promotion" 2>/dev/null || true)") | "
  done
  printf '%s' "${line% | }"
}
verdict_of() {
  "$PY" - "$1" <<'EOF'
import json, sys
try:
    print(json.load(open(sys.argv[1])).get("verdict", "?"))
except Exception:
    print("?")
EOF
}

started=$SECONDS
code=000
while true; do
  code="$(curl -s -o "$OUT/promote/verdict.json" -w '%{http_code}' -X POST \
    "http://127.0.0.1:9096/flagger/confirm-promotion?rule=$RULE" || true)"
  [ "$code" = 200 ] && break
  verdict="$(verdict_of "$OUT/promote/verdict.json")"
  [ "$verdict" = refuted ] && die "the A/A was refuted: $(cat "$OUT/promote/verdict.json")"
  kill -0 "$TRAFFIC" 2>/dev/null || die "the traffic stopped (see $OUT/promote/traffic.log)"
  [ $((SECONDS - started)) -lt "$LIMIT_S" ] || die "not proven within ${LIMIT_S}s: $(progress)"
  say "t=$((SECONDS - started))s confirm-promotion $code ($verdict): $(progress)"
  sleep 10
done
say "proven on every gateway after $((SECONDS - started))s of traffic: $(progress)"
say "confirm-promotion answers 200: $(cat "$OUT/promote/verdict.json")"
stop_traffic

# One more scrape (every 5 s), so the charts reach the verdict.
sleep 6
"$REPORT" --promotion "$RULE" --out "$OUT/promotion.html" "${report_args[@]}"
