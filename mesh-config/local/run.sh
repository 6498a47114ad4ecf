#!/usr/bin/env bash
# The local mesh on loopback (`make run`): two sidecars serving the real YOLO model (v9-prod,
# stable, and v10-gray, deliberately oversensitive), one or more front Envoys (gateways) with
# the grayguard filter, Prometheus scraping them all, and the alert path: Alertmanager, the
# alert sink (what a person would receive) and the report server the alerts link to. Runs
# until Ctrl-C or SIGTERM, then stops everything it started. Logs go to .run/logs/.
#
#   bash mesh-config/local/run.sh            (after `make setup build`; `make run` does both)
#
# Environment (defaults are what `make setup build` produces):
#   GRAYGUARD_ENVOY, GRAYGUARD_SIDECAR, GRAYGUARD_MODEL, ORT_DYLIB_PATH, GRAYGUARD_WASM,
#   GRAYGUARD_ALERT_SINK, GRAYGUARD_REPORT
#   GRAYGUARD_GATEWAYS          front Envoys to start (default 1, at most 16): gateway i listens on
#                               10000+i, admin 9901+i, operator 10100+i (`make run GATEWAYS=3`)
#   GRAYGUARD_RUN_THREADS       ONNX Runtime threads per sidecar (default 1: two sidecars share the cores)
#   GRAYGUARD_RUN_READY_S       how long to wait for each component to become ready (default 180)
#   GRAYGUARD_GRAY_CONF         confidence threshold of the gray sidecar (default 0.001: the incident)
#   GRAYGUARD_OPERATOR_SECRET   key of the operator listener's one-click links (default: a fresh
#                               random one per run, written to .run/operator-secret)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

ENVOY="${GRAYGUARD_ENVOY:-$ROOT/.data/bin/envoy}"
SIDECAR="${GRAYGUARD_SIDECAR:-$ROOT/target/release/grayguard-sidecar}"
MODEL="${GRAYGUARD_MODEL:-$ROOT/.data/models/best_fp16.onnx}"
WASM="${GRAYGUARD_WASM:-$ROOT/target/grayguard_filter.wasm}"
export ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$ROOT/.data/lib/libonnxruntime.so}"
THREADS="${GRAYGUARD_RUN_THREADS:-1}"
READY_S="${GRAYGUARD_RUN_READY_S:-180}"
GRAY_CONF="${GRAYGUARD_GRAY_CONF:-0.001}"
# --- alert path (Alertmanager, alert sink, report server) ---
ALERT_SINK="${GRAYGUARD_ALERT_SINK:-$ROOT/target/release/grayguard-alert-sink}"
REPORT="${GRAYGUARD_REPORT:-$ROOT/target/release/grayguard-report}"
# --- end alert path ---

RUN_DIR="$ROOT/.run"
LOGS="$RUN_DIR/logs"

# name:port of everything the mesh listens on (fixed: the configs in this folder name them).
GATEWAYS="${GRAYGUARD_GATEWAYS:-1}"
case "$GATEWAYS" in
  ''|*[!0-9]*) printf '[run] error: GRAYGUARD_GATEWAYS must be a number from 1 to 16, got %s\n' "$GATEWAYS" >&2; exit 1 ;;
esac
if [ "$GATEWAYS" -lt 1 ] || [ "$GATEWAYS" -gt 16 ]; then
  printf '[run] error: GRAYGUARD_GATEWAYS must be from 1 to 16, got %s\n' "$GATEWAYS" >&2; exit 1
fi
# Gateway i: its name (gateway 0 keeps the plain name `envoy` for its log), and its ports.
gw_name() { if [ "$1" = 0 ]; then echo envoy; else echo "envoy-gw$1"; fi; }

PORTS=(v9-prod:8081 v10-gray:8082 v10-gray-control:9092 prometheus:9090)
for ((i = 0; i < GATEWAYS; i++)); do
  PORTS+=("gw-$i-listener:$((10000 + i))" "gw-$i-admin:$((9901 + i))" "gw-$i-operator:$((10100 + i))")
done
# --- alert path ---
PORTS+=(alertmanager:9093 alert-sink:9095 report:9096)
# --- end alert path ---

say() { printf '[run] %s\n' "$*"; }
die() { printf '[run] error: %s\n' "$*" >&2; exit 1; }

for bin in "$ENVOY" "$SIDECAR" "$ALERT_SINK" "$REPORT"; do
  [ -x "$bin" ] || die "$bin is missing; run \`make setup build\` first"
done
for f in "$MODEL" "$WASM" "$ORT_DYLIB_PATH" mesh-config/local/envoy.yaml mesh-config/local/prometheus.yml; do
  [ -e "$f" ] || die "$f is missing; run \`make setup build\` first"
done
command -v prometheus >/dev/null || die "prometheus is not installed; run \`make setup\` (Debian package prometheus)"
command -v prometheus-alertmanager >/dev/null || die "prometheus-alertmanager is not installed; run \`make setup\` (Debian package prometheus-alertmanager)"
command -v curl >/dev/null || die "curl is needed to wait for readiness"

# A port is taken if something accepts connections on it or holds a listening socket.
port_taken() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
  ss -Htln "sport = :$1" 2>/dev/null | grep -q . && return 0
  return 1
}
taken=0
for entry in "${PORTS[@]}"; do
  name="${entry%%:*}"; port="${entry##*:}"
  if port_taken "$port"; then
    printf '[run] error: port %s (%s) is already in use on 127.0.0.1\n' "$port" "$name" >&2
    # Debian's prometheus package starts a system service on :9090 where systemd runs;
    # the local mesh only needs the binary.
    if [ "$port" = 9090 ] && systemctl is-active --quiet prometheus 2>/dev/null; then
      printf '[run]   it is the prometheus system service installed with the Debian package: sudo systemctl disable --now prometheus\n' >&2
    fi
    # --- alert path: the same for Debian's prometheus-alertmanager ---
    if [ "$port" = 9093 ] && systemctl is-active --quiet prometheus-alertmanager 2>/dev/null; then
      printf '[run]   it is the prometheus-alertmanager system service installed with the Debian package: sudo systemctl disable --now prometheus-alertmanager\n' >&2
    fi
    taken=1
  fi
done
[ "$taken" = 0 ] || die "free the port(s) above (is another \`make run\` still running?) and try again"

# Each run starts afresh, its logs and its metrics alike: a previous run's last breaker
# state would otherwise read as current (the same series) for five minutes and fire alerts.
rm -rf "$RUN_DIR/prometheus" "$RUN_DIR/alertmanager"
mkdir -p "$LOGS" "$RUN_DIR/prometheus" "$RUN_DIR/alertmanager"

# The operator links' secret reaches the filter through Envoy's environment (host_env_keys).
if [ -z "${GRAYGUARD_OPERATOR_SECRET:-}" ]; then
  GRAYGUARD_OPERATOR_SECRET="$(head -c 24 /dev/urandom | base64 | tr -d '/+=')"
fi
export GRAYGUARD_OPERATOR_SECRET
# The latch token: the gateways send it, the gray sidecar requires it.
if [ -z "${GRAYGUARD_LATCH_TOKEN:-}" ]; then
  GRAYGUARD_LATCH_TOKEN="$(head -c 24 /dev/urandom | base64 | tr -d '/+=')"
fi
export GRAYGUARD_LATCH_TOKEN
( umask 077; printf '%s\n' "$GRAYGUARD_OPERATOR_SECRET" > "$RUN_DIR/operator-secret" )

PIDS=()
NAMES=()
stopping=0
cleanup() {
  [ "$stopping" = 1 ] && return
  stopping=1
  trap - INT TERM
  say "stopping ${NAMES[*]:-nothing}"
  # Reverse order: the front Envoy and Prometheus first, then the sidecars behind them.
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    kill -TERM "${PIDS[$i]}" 2>/dev/null || true
  done
  for ((t = 0; t < 50; t++)); do
    alive=0
    for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  say "stopped"
}
trap cleanup EXIT
trap 'exit 0' INT
trap 'exit 0' TERM

# start NAME COMMAND...: runs COMMAND in the background with its output in .run/logs/NAME.log.
start() {
  local name="$1"; shift
  "$@" >"$LOGS/$name.log" 2>&1 &
  PIDS+=("$!")
  NAMES+=("$name")
}

# wait_ready NAME PID URL: polls URL until it answers 200, the process dies, or time runs out.
wait_ready() {
  local name="$1" pid="$2" url="$3" deadline=$((SECONDS + READY_S))
  until curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 30 "$LOGS/$name.log" >&2 || true
      die "$name exited before it was ready (log: .run/logs/$name.log)"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      tail -n 30 "$LOGS/$name.log" >&2 || true
      die "$name was not ready within ${READY_S}s (log: .run/logs/$name.log)"
    fi
    sleep 0.5
  done
  say "$name ready ($url)"
}

say "starting the sidecars (model $(basename "$MODEL"), $THREADS thread(s) each)"
start v9-prod "$SIDECAR" --model "$MODEL" --listen 127.0.0.1:8081 --model-version v9-prod \
  --conf 0.25 --threads "$THREADS"
V9_PID="${PIDS[-1]}"
# The incident: same model, confidence threshold 0.001 — a flood of small false boxes.
# Its control listener (the latch endpoint, 9092) requires the token the gateways send.
start v10-gray env GRAYGUARD_SIDECAR_CONTROL_TOKEN="$GRAYGUARD_LATCH_TOKEN" \
  "$SIDECAR" --model "$MODEL" --listen 127.0.0.1:8082 --model-version v10-gray \
  --conf "$GRAY_CONF" --threads "$THREADS" --control-listen 127.0.0.1:9092
V10_PID="${PIDS[-1]}"
wait_ready v9-prod "$V9_PID" http://127.0.0.1:8081/ready
wait_ready v10-gray "$V10_PID" http://127.0.0.1:8082/ready

# Gateway i runs mesh-config/local/envoy.yaml with its ports moved by i (the plugin
# configuration's operator port too), as node gw-i: the id its latch calls carry.
mkdir -p "$RUN_DIR/gateways"
targets=""
REPORT_GATEWAYS=()
for ((i = 0; i < GATEWAYS; i++)); do
  cfg="$RUN_DIR/gateways/gw-$i.yaml"
  sed -e "s/port_value: 10000 }/port_value: $((10000 + i)) }/" \
      -e "s/port_value: 9901 }/port_value: $((9901 + i)) }/" \
      -e "s/port_value: 10100 }/port_value: $((10100 + i)) }/" \
      -e "s/\"port\": 10100,/\"port\": $((10100 + i)),/" \
      mesh-config/local/envoy.yaml > "$cfg"
  targets="$targets${targets:+, }{\"targets\": [\"127.0.0.1:$((9901 + i))\"], \"labels\": {\"gateway\": \"gw-$i\", \"operator_url\": \"http://127.0.0.1:$((10100 + i))\"}}"
  REPORT_GATEWAYS+=(--gateway "http://127.0.0.1:$((9901 + i))" --envoy-log "$LOGS/$(gw_name "$i").log")
done
# Prometheus finds the gateways through this file (file_sd_configs in prometheus.yml).
printf '[%s]\n' "$targets" > "$RUN_DIR/gateways.json"

say "starting $GATEWAYS front Envoy(s) with the grayguard filter"
GW_PIDS=()
for ((i = 0; i < GATEWAYS; i++)); do
  start "$(gw_name "$i")" "$ENVOY" -c "$RUN_DIR/gateways/gw-$i.yaml" --disable-hot-restart \
    --log-level warn --service-node "gw-$i" --service-cluster grayguard-gateway
  GW_PIDS+=("${PIDS[-1]}")
done
for ((i = 0; i < GATEWAYS; i++)); do
  wait_ready "$(gw_name "$i")" "${GW_PIDS[$i]}" "http://127.0.0.1:$((9901 + i))/ready"
done

# --- alert path: where Prometheus' alerts go, started before it ---
say "starting the alert path: alert sink, report server, Alertmanager"
start alert-sink "$ALERT_SINK" --listen 127.0.0.1:9095
SINK_PID="${PIDS[-1]}"
wait_ready alert-sink "$SINK_PID" http://127.0.0.1:9095/messages
start report "$REPORT" --serve 127.0.0.1:9096 --prometheus http://127.0.0.1:9090 \
  "${REPORT_GATEWAYS[@]}" --gray http://127.0.0.1:8082 --stable http://127.0.0.1:8081 \
  --gray-log "$LOGS/v10-gray.log"
REPORT_PID="${PIDS[-1]}"
wait_ready report "$REPORT_PID" http://127.0.0.1:9096/healthz
start alertmanager prometheus-alertmanager --config.file=mesh-config/local/alertmanager.yml \
  --storage.path="$RUN_DIR/alertmanager" --web.listen-address=127.0.0.1:9093 --cluster.listen-address=
AM_PID="${PIDS[-1]}"
wait_ready alertmanager "$AM_PID" http://127.0.0.1:9093/-/ready
# --- end alert path ---

say "starting Prometheus"
start prometheus prometheus --config.file=mesh-config/local/prometheus.yml \
  --storage.tsdb.path="$RUN_DIR/prometheus" --web.listen-address=127.0.0.1:9090
PROM_PID="${PIDS[-1]}"
wait_ready prometheus "$PROM_PID" http://127.0.0.1:9090/-/ready

cat <<EOF

grayguard local mesh is up (logs in .run/logs/, Ctrl-C stops it):
  front Envoy      http://127.0.0.1:10000/infer     (POST a JPEG/PNG; gateway i: port 10000+i of $GATEWAYS)
  Envoy admin      http://127.0.0.1:9901/stats/prometheus   (gateway i: 9901+i)
  operator         http://127.0.0.1:10100/grayguard/confirm?...  (confirm mode's one-click links; gateway i: 10100+i)
  v9-prod          http://127.0.0.1:8081/metrics    (stable, conf 0.25)
  v10-gray         http://127.0.0.1:8082/metrics    (gray, conf $GRAY_CONF)
  Prometheus       http://127.0.0.1:9090/
  Alertmanager     http://127.0.0.1:9093/
  alert sink       http://127.0.0.1:9095/               (what a person would receive)
  reports          http://127.0.0.1:9096/report         (the latest incident; the alerts link here)

try:
  curl -si -H 'content-type: image/jpeg' -H 'x-device-type: crane-camera' -H 'x-device-id: crane-001' --data-binary @.data/images/person.jpg http://127.0.0.1:10000/infer
  make demo        (replays the incident against this mesh)

EOF
say "ready"

# Stay up until a signal arrives or one of the components dies.
while true; do
  for i in "${!PIDS[@]}"; do
    if ! kill -0 "${PIDS[$i]}" 2>/dev/null; then
      tail -n 30 "$LOGS/${NAMES[$i]}.log" >&2 || true
      die "${NAMES[$i]} exited unexpectedly (log: .run/logs/${NAMES[$i]}.log)"
    fi
  done
  sleep 1 &
  wait $! || true
done
