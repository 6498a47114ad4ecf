#!/usr/bin/env bash
# The local mesh on loopback (`make run`): two sidecars serving the real YOLO model (v9-prod,
# stable, and v10-gray, deliberately oversensitive, comparing a share of its frames with
# v9-prod's answers: x-canary-agreement), one or more front Envoys (gateways) with
# the grayguard filter, Prometheus scraping them all, and the alert path: Alertmanager, the
# alert sink (what a person would receive) and the report server the alerts link to, which
# keeps every incident's report in .run/reports/ (kept across runs). Runs
# until Ctrl-C or SIGTERM (to it alone or to its whole process group, however it was
# launched), then stops everything it started. Logs go to .run/logs/.
#
# It supervises like a kubelet: a component that exits (a sidecar crashes, say) is logged and
# started again with the same command after a back-off (1 s, doubling up to 60 s, back to
# 1 s once a run lasted 60 s), while everything else keeps serving. The sidecars also get the
# kubelet's liveness probe, with the Deployments' settings: GET /healthz every 10 s (3 s
# timeout) once ready; after 3 failures in a row (a model run stuck past its stall deadline,
# or a process that no longer answers) SIGTERM, then SIGKILL if it has not exited 30 s later,
# and the restart above. Each component's pid is
# in .run/pids/NAME.pid, and .run/status has one line per component: NAME PID RESTARTS
# (PID `-` while it waits to be restarted).
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
#   GRAYGUARD_GRAY_MODEL        the gray sidecar's model (default: GRAYGUARD_MODEL, stable's); `make setup`
#                               makes two gray versions: .data/models/best_fp16_class_swapped.onnx
#                               (classes swapped) and .data/models/best_int8.onnx (INT8)
#   GRAYGUARD_GRAY_ARGS         more flags of the gray sidecar, split on spaces; they win over the
#                               defaults here (conf, threads, and the comparison with v9-prod of
#                               25 % of its frames), e.g. "--conf 0.25 --compare-percent 100"
#   GRAYGUARD_AGREEMENT_MIN_MEAN  turns the gateways' agreement trigger on with this min_mean (a
#                               decimal in (0, 1], e.g. 0.7; min_samples 10): a gray whose answers
#                               agree with v9-prod's less is shed (shed=agreement)
#   GRAYGUARD_OPERATOR_SECRET   key of the operator listener's one-click links (default: a fresh
#                               random one per run, written to .run/operator-secret)
#   GRAYGUARD_RUN_DIR           where logs, pids, status, data and the kept reports (reports/) go
#                               (default .run)
#   GRAYGUARD_RUN_BACKOFF_S     first restart delay of a component that exited (default 1)
#   GRAYGUARD_RUN_BACKOFF_MAX_S longest restart delay (default 60)
#   GRAYGUARD_RUN_LIVENESS_PERIOD_S   seconds between a sidecar's liveness probes (default 10)
#   GRAYGUARD_RUN_LIVENESS_TIMEOUT_S  a probe's timeout (default 3)
#   GRAYGUARD_RUN_LIVENESS_FAILURES   failed probes in a row that restart it (default 3)
#   GRAYGUARD_RUN_GRACE_S       SIGTERM to SIGKILL of a component that failed its liveness (default 30)
set -euo pipefail

# Started as a background job of a non-interactive shell (`make run &` in a script, CI), bash
# begins with SIGINT ignored, and a signal ignored on entry can be neither trapped nor reset.
# A SIGINT to the process group would then stop the components (they catch it) while this
# supervisor, deaf to it, took their exits for crashes and started them again. So it starts
# itself again, same pid, with SIGINT restored (coreutils' env; without it, say how to stop).
if [ "$(trap -p INT)" = "trap -- '' SIGINT" ]; then
  if [ -z "${GRAYGUARD_RUN_SIGINT_RESTORED:-}" ] && env --default-signal=INT true 2>/dev/null; then
    export GRAYGUARD_RUN_SIGINT_RESTORED=1
    exec env --default-signal=INT bash "${BASH_SOURCE[0]}" "$@"
  fi
  printf '[run] warning: SIGINT is ignored here (a background job?) and cannot be restored; stop with SIGTERM\n' >&2
fi

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

ENVOY="${GRAYGUARD_ENVOY:-$ROOT/.data/bin/envoy}"
SIDECAR="${GRAYGUARD_SIDECAR:-$ROOT/target/release/grayguard-sidecar}"
MODEL="${GRAYGUARD_MODEL:-$ROOT/.data/models/best_fp16.onnx}"
GRAY_MODEL="${GRAYGUARD_GRAY_MODEL:-$MODEL}"
read -r -a GRAY_ARGS <<<"${GRAYGUARD_GRAY_ARGS:-}"
AGREEMENT_MIN_MEAN="${GRAYGUARD_AGREEMENT_MIN_MEAN:-}"
# The gray sidecar compares this share of its successful frames with stable (see run_gray_sidecar).
GRAY_COMPARE_PERCENT=25
WASM="${GRAYGUARD_WASM:-$ROOT/target/grayguard_filter.wasm}"
export ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$ROOT/.data/lib/libonnxruntime.so}"
THREADS="${GRAYGUARD_RUN_THREADS:-1}"
READY_S="${GRAYGUARD_RUN_READY_S:-180}"
GRAY_CONF="${GRAYGUARD_GRAY_CONF:-0.001}"
# --- alert path (Alertmanager, alert sink, report server) ---
ALERT_SINK="${GRAYGUARD_ALERT_SINK:-$ROOT/target/release/grayguard-alert-sink}"
REPORT="${GRAYGUARD_REPORT:-$ROOT/target/release/grayguard-report}"
# --- end alert path ---

RUN_DIR="${GRAYGUARD_RUN_DIR:-$ROOT/.run}"
LOGS="$RUN_DIR/logs"
PID_DIR="$RUN_DIR/pids"
BACKOFF_S="${GRAYGUARD_RUN_BACKOFF_S:-1}"
BACKOFF_MAX_S="${GRAYGUARD_RUN_BACKOFF_MAX_S:-60}"
# The sidecars' livenessProbe and terminationGracePeriodSeconds in mesh-config/base.
LIVENESS_PERIOD_S="${GRAYGUARD_RUN_LIVENESS_PERIOD_S:-10}"
LIVENESS_TIMEOUT_S="${GRAYGUARD_RUN_LIVENESS_TIMEOUT_S:-3}"
LIVENESS_FAILURES="${GRAYGUARD_RUN_LIVENESS_FAILURES:-3}"
GRACE_S="${GRAYGUARD_RUN_GRACE_S:-30}"
for knob in BACKOFF_S BACKOFF_MAX_S LIVENESS_PERIOD_S LIVENESS_TIMEOUT_S LIVENESS_FAILURES GRACE_S; do
  case "${!knob}" in
    ''|*[!0-9]*|0) printf '[run] error: GRAYGUARD_RUN_%s must be a whole number of at least 1, got %s\n' "$knob" "${!knob}" >&2; exit 1 ;;
  esac
done

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

for knob in GRAYGUARD_RUN_BACKOFF_S:"$BACKOFF_S" GRAYGUARD_RUN_BACKOFF_MAX_S:"$BACKOFF_MAX_S"; do
  case "${knob#*:}" in
    ''|*[!0-9]*|0) die "${knob%%:*} must be a whole number of seconds from 1, got ${knob#*:}" ;;
  esac
done
[ -z "$AGREEMENT_MIN_MEAN" ] || [[ "$AGREEMENT_MIN_MEAN" =~ ^(0\.[0-9]+|1|1\.0+)$ ]] \
  || die "GRAYGUARD_AGREEMENT_MIN_MEAN must be a decimal in (0, 1] such as 0.7, got $AGREEMENT_MIN_MEAN"
[ "$BACKOFF_MAX_S" -ge "$BACKOFF_S" ] || die "GRAYGUARD_RUN_BACKOFF_MAX_S ($BACKOFF_MAX_S) must not be below GRAYGUARD_RUN_BACKOFF_S ($BACKOFF_S)"

for bin in "$ENVOY" "$SIDECAR" "$ALERT_SINK" "$REPORT"; do
  [ -x "$bin" ] || die "$bin is missing; run \`make setup build\` first"
done
for f in "$MODEL" "$GRAY_MODEL" "$WASM" "$ORT_DYLIB_PATH" mesh-config/local/envoy.yaml mesh-config/local/prometheus.yml; do
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
rm -rf "$RUN_DIR/prometheus" "$RUN_DIR/alertmanager" "$PID_DIR"
mkdir -p "$LOGS" "$RUN_DIR/prometheus" "$RUN_DIR/alertmanager" "$PID_DIR"

# Prometheus' configuration with its two relative paths (the rules, and the gateways file this
# script writes) made absolute, so that it works from any run folder.
sed -e "s#\.\./\.\./\.run/gateways\.json#$RUN_DIR/gateways.json#" \
    -e "s#\.\./prometheus/rules\.yaml#$ROOT/mesh-config/prometheus/rules.yaml#" \
    mesh-config/local/prometheus.yml > "$RUN_DIR/prometheus.yml"
grep -q "$RUN_DIR/gateways.json" "$RUN_DIR/prometheus.yml" && grep -q "$ROOT/mesh-config/prometheus/rules.yaml" "$RUN_DIR/prometheus.yml" \
  || die "mesh-config/local/prometheus.yml no longer names ../../.run/gateways.json and ../prometheus/rules.yaml; update run.sh"

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

# The components, by index: name, launcher (a function below that execs the process, with its
# arguments), readiness URL, and the supervisor's bookkeeping.
NAMES=()
LAUNCH=()
READY_URL=()
PIDS=()
STARTED=()
RESTARTS=()
BACKOFF=()
NEXT_START=()
AWAIT_READY=()
LIVE_URL=()
LIVE_NEXT=()
LIVE_FAILS=()
KILL_AT=()
stopping=0
cleanup() {
  [ "$stopping" = 1 ] && return
  stopping=1
  trap - INT TERM
  say "stopping ${NAMES[*]:-nothing}"
  local live=()
  for pid in "${PIDS[@]}"; do [ "$pid" = - ] || live+=("$pid"); done
  # And any child the bookkeeping has not recorded yet (a signal between a launch and the
  # line that notes its pid).
  for pid in $(jobs -p); do
    case " ${live[*]} " in *" $pid "*) ;; *) live+=("$pid") ;; esac
  done
  # Reverse order: Prometheus and the front Envoys first, then the sidecars behind them.
  for ((i = ${#live[@]} - 1; i >= 0; i--)); do
    kill -TERM "${live[$i]}" 2>/dev/null || true
  done
  for ((t = 0; t < 50; t++)); do
    alive=0
    for pid in "${live[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for pid in "${live[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$PID_DIR" "$RUN_DIR/status"
  say "stopped"
}
trap cleanup EXIT
trap 'exit 0' INT
trap 'exit 0' TERM

# launch I: starts component I in the background, its output appended to its log, its pid in
# $PID_DIR/NAME.pid.
launch() {
  local i="$1"
  # The launcher is a function name and plain words: split on purpose.
  # shellcheck disable=SC2086
  ${LAUNCH[$i]} >>"$LOGS/${NAMES[$i]}.log" 2>&1 &
  PIDS[i]=$!
  STARTED[i]=$SECONDS
  printf '%s\n' "${PIDS[$i]}" > "$PID_DIR/${NAMES[$i]}.pid"
}

# start NAME READY_URL LAUNCHER [ARGS...]: registers a component and starts it with a fresh log.
start() {
  local name="$1" url="$2"; shift 2
  NAMES+=("$name"); READY_URL+=("$url"); LAUNCH+=("$*")
  RESTARTS+=(0); BACKOFF+=("$BACKOFF_S"); NEXT_START+=(0); AWAIT_READY+=(0); PIDS+=(-); STARTED+=(0)
  LIVE_URL+=(""); LIVE_NEXT+=(0); LIVE_FAILS+=(0); KILL_AT+=(0)
  : >"$LOGS/$name.log"
  launch "$((${#NAMES[@]} - 1))"
}

# The index of the component started last.
last() { echo "$((${#NAMES[@]} - 1))"; }

# liveness I URL: component I gets the kubelet's liveness probe on URL once it is ready.
liveness() { LIVE_URL[$1]="$2"; LIVE_NEXT[$1]=$((SECONDS + LIVENESS_PERIOD_S)); }

# wait_ready I: polls component I's URL until it answers 200, the process dies, or time runs
# out. At start-up a component that cannot start is a configuration error, not a crash.
wait_ready() {
  local i="$1" deadline=$((SECONDS + READY_S))
  local name="${NAMES[$i]}" pid="${PIDS[$i]}" url="${READY_URL[$i]}"
  until curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 30 "$LOGS/$name.log" >&2 || true
      die "$name exited before it was ready (log: $LOGS/$name.log)"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      tail -n 30 "$LOGS/$name.log" >&2 || true
      die "$name was not ready within ${READY_S}s (log: $LOGS/$name.log)"
    fi
    sleep 0.5
  done
  say "$name ready ($url)"
}

# How a process ended, from its wait status.
ended() {
  local status="$1"
  if [ "$status" -gt 128 ]; then
    printf 'killed by SIG%s' "$(kill -l "$((status - 128))" 2>/dev/null || echo "$((status - 128))")"
  else
    printf 'exit status %s' "$status"
  fi
}

# supervise: one pass of the kubelet's loop. A component that exited is reported (with the end
# of its log) and scheduled for a restart after its back-off; one whose back-off is over is
# started again; one that was restarted is reported once it is ready again; one that failed
# its liveness and outlived its grace is killed; a ready one whose probe is due is probed
# (the probe runs in this loop: a process that no longer answers holds it for the probe's
# timeout). Then the status file is rewritten.
supervise() {
  local i pid status ran name lines=""
  for i in "${!NAMES[@]}"; do
    name="${NAMES[$i]}"
    pid="${PIDS[$i]}"
    if [ "$pid" != - ] && ! kill -0 "$pid" 2>/dev/null; then
      status=0
      wait "$pid" 2>/dev/null || status=$?
      ran=$((SECONDS - STARTED[i]))
      # A run as long as the longest back-off was healthy: the next crash starts over.
      [ "$ran" -lt "$BACKOFF_MAX_S" ] || BACKOFF[i]=$BACKOFF_S
      say "$name exited ($(ended "$status")) after ${ran}s; restarting it in ${BACKOFF[$i]}s (log: $LOGS/$name.log)"
      tail -n 5 "$LOGS/$name.log" | sed 's/^/[run]   | /' >&2 || true
      PIDS[i]=-
      rm -f "$PID_DIR/$name.pid"
      NEXT_START[i]=$((SECONDS + BACKOFF[i]))
      BACKOFF[i]=$((BACKOFF[i] * 2 > BACKOFF_MAX_S ? BACKOFF_MAX_S : BACKOFF[i] * 2))
      AWAIT_READY[i]=0
      LIVE_FAILS[i]=0
      KILL_AT[i]=0
    elif [ "$pid" = - ] && [ "$SECONDS" -ge "${NEXT_START[$i]}" ]; then
      RESTARTS[i]=$((RESTARTS[i] + 1))
      printf '[run] ---- restart %s of %s ----\n' "${RESTARTS[$i]}" "$name" >>"$LOGS/$name.log"
      launch "$i"
      say "$name restarted (pid ${PIDS[$i]}, restart ${RESTARTS[$i]})"
      AWAIT_READY[i]=1
    elif [ "${AWAIT_READY[$i]}" = 1 ]; then
      if curl -fsS -o /dev/null --max-time 1 "${READY_URL[$i]}" 2>/dev/null; then
        AWAIT_READY[i]=0
        LIVE_NEXT[i]=$((SECONDS + LIVENESS_PERIOD_S))
        say "$name ready again after restart ${RESTARTS[$i]} (${READY_URL[$i]})"
      fi
    elif [ "${KILL_AT[$i]}" != 0 ]; then
      if [ "$SECONDS" -ge "${KILL_AT[$i]}" ]; then
        say "$name did not exit within ${GRACE_S}s of its SIGTERM: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        KILL_AT[i]=$((SECONDS + GRACE_S))
      fi
    elif [ -n "${LIVE_URL[$i]}" ] && [ "$SECONDS" -ge "${LIVE_NEXT[$i]}" ]; then
      LIVE_NEXT[i]=$((SECONDS + LIVENESS_PERIOD_S))
      local answer
      answer="$(curl -sS -o /dev/null -w '%{http_code}' --max-time "$LIVENESS_TIMEOUT_S" "${LIVE_URL[$i]}" 2>/dev/null)" || true
      if [ "$answer" = 200 ]; then
        LIVE_FAILS[i]=0
      else
        LIVE_FAILS[i]=$((LIVE_FAILS[i] + 1))
        say "$name failed its liveness probe (${LIVE_URL[$i]}: ${answer/#000/no answer within ${LIVENESS_TIMEOUT_S}s}), ${LIVE_FAILS[$i]} of $LIVENESS_FAILURES"
        if [ "${LIVE_FAILS[$i]}" -ge "$LIVENESS_FAILURES" ]; then
          say "$name is not alive: SIGTERM (SIGKILL in ${GRACE_S}s if it has not exited)"
          kill -TERM "$pid" 2>/dev/null || true
          KILL_AT[i]=$((SECONDS + GRACE_S))
        fi
      fi
    fi
    lines+="$name ${PIDS[$i]} ${RESTARTS[$i]}"$'\n'
  done
  { printf '%s' "$lines" > "$RUN_DIR/status.new" && mv -f "$RUN_DIR/status.new" "$RUN_DIR/status"; } || true
}

# The processes, one launcher each (exec: the pid started is the component's own).
# Each sidecar is its version's one pod: POD_NAME (what a Deployment sets from the downward
# API) names it on every reply (x-served-by), for the incident records and reports.
run_sidecar() {
  local version="$1" port="$2" conf="$3"
  POD_NAME="$version" exec "$SIDECAR" --model "$MODEL" --listen "127.0.0.1:$port" \
    --model-version "$version" --conf "$conf" --threads "$THREADS"
}
# The gray sidecar's defaults that GRAYGUARD_GRAY_ARGS may change are environment twins (a
# flag wins over its variable). It compares 25 % of its frames with v9-prod: in a demo
# (about one gray request a second) that is a value every few seconds, a dozen a minute,
# while v9-prod, which shares the two cores with it, serves a quarter of gray's traffic once
# more.
run_gray_sidecar() {
  POD_NAME=v10-gray GRAYGUARD_SIDECAR_CONTROL_TOKEN="$GRAYGUARD_LATCH_TOKEN" \
    GRAYGUARD_SIDECAR_CONF="$GRAY_CONF" GRAYGUARD_SIDECAR_THREADS="$THREADS" \
    GRAYGUARD_SIDECAR_COMPARE_WITH=http://127.0.0.1:8081/infer \
    GRAYGUARD_SIDECAR_COMPARE_PERCENT="$GRAY_COMPARE_PERCENT" \
    exec "$SIDECAR" --model "$GRAY_MODEL" --listen 127.0.0.1:8082 --model-version v10-gray \
    --control-listen 127.0.0.1:9092 "${GRAY_ARGS[@]}"
}
run_gateway() {
  exec "$ENVOY" -c "$RUN_DIR/gateways/gw-$1.yaml" --disable-hot-restart \
    --log-level warn --service-node "gw-$1" --service-cluster grayguard-gateway
}
# --- alert path ---
run_alert_sink() { exec "$ALERT_SINK" --listen 127.0.0.1:9095; }
# The report server keeps each incident's report in $RUN_DIR/reports/ when Alertmanager posts
# its shed alert (firing, then resolved), and the alerts' links lead there.
run_report() {
  exec "$REPORT" --serve 127.0.0.1:9096 --reports-dir "$RUN_DIR/reports" \
    --prometheus http://127.0.0.1:9090 "${REPORT_GATEWAYS[@]}" \
    --gray http://127.0.0.1:8082 --stable http://127.0.0.1:8081 \
    --gray-log "v10-gray=$LOGS/v10-gray.log"
}
run_alertmanager() {
  exec prometheus-alertmanager --config.file=mesh-config/local/alertmanager.yml \
    --storage.path="$RUN_DIR/alertmanager" --web.listen-address=127.0.0.1:9093 --cluster.listen-address=
}
# --- end alert path ---
run_prometheus() {
  exec prometheus --config.file="$RUN_DIR/prometheus.yml" \
    --storage.tsdb.path="$RUN_DIR/prometheus" --web.listen-address=127.0.0.1:9090
}

say "starting the sidecars (stable $(basename "$MODEL"), gray $(basename "$GRAY_MODEL")${GRAY_ARGS[*]:+ ${GRAY_ARGS[*]}}, $THREADS thread(s) each)"
start v9-prod http://127.0.0.1:8081/ready run_sidecar v9-prod 8081 0.25
V9=$(last)
liveness "$V9" http://127.0.0.1:8081/healthz
# The incident: same model, confidence threshold 0.001 — a flood of small false boxes.
# Its control listener (the latch endpoint, 9092) requires the token the gateways send; a
# restarted gray sidecar gets the same token and port (the launcher is run again as is).
start v10-gray http://127.0.0.1:8082/ready run_gray_sidecar
V10=$(last)
liveness "$V10" http://127.0.0.1:8082/healthz
wait_ready "$V9"
wait_ready "$V10"

# Gateway i runs mesh-config/local/envoy.yaml with its ports moved by i (the plugin
# configuration's operator port too), as node gw-i: the id its latch calls carry; with
# GRAYGUARD_AGREEMENT_MIN_MEAN, its breach block gains the agreement trigger.
agreement=()
[ -z "$AGREEMENT_MIN_MEAN" ] \
  || agreement=(-e "s/\"breach\": {\$/\"breach\": { \"agreement\": { \"min_mean\": $AGREEMENT_MIN_MEAN, \"min_samples\": 10 },/")
mkdir -p "$RUN_DIR/gateways"
targets=""
REPORT_GATEWAYS=()
for ((i = 0; i < GATEWAYS; i++)); do
  cfg="$RUN_DIR/gateways/gw-$i.yaml"
  sed -e "s/port_value: 10000 }/port_value: $((10000 + i)) }/" \
      -e "s/port_value: 9901 }/port_value: $((9901 + i)) }/" \
      -e "s/port_value: 10100 }/port_value: $((10100 + i)) }/" \
      -e "s/\"port\": 10100,/\"port\": $((10100 + i)),/" \
      "${agreement[@]}" mesh-config/local/envoy.yaml > "$cfg"
  [ -z "$AGREEMENT_MIN_MEAN" ] || grep -q '"agreement": {' "$cfg" \
    || die "mesh-config/local/envoy.yaml no longer has a line ending in '\"breach\": {'; update run.sh"
  targets="$targets${targets:+, }{\"targets\": [\"127.0.0.1:$((9901 + i))\"], \"labels\": {\"gateway\": \"gw-$i\", \"operator_url\": \"http://127.0.0.1:$((10100 + i))\"}}"
  REPORT_GATEWAYS+=(--gateway "http://127.0.0.1:$((9901 + i))" --envoy-log "$LOGS/$(gw_name "$i").log"
    --operator "http://127.0.0.1:$((10100 + i))")
done
# Prometheus finds the gateways through this file (file_sd_configs in prometheus.yml).
printf '[%s]\n' "$targets" > "$RUN_DIR/gateways.json"

say "starting $GATEWAYS front Envoy(s) with the grayguard filter${AGREEMENT_MIN_MEAN:+ (and the agreement trigger, min_mean $AGREEMENT_MIN_MEAN)}"
GW=()
for ((i = 0; i < GATEWAYS; i++)); do
  start "$(gw_name "$i")" "http://127.0.0.1:$((9901 + i))/ready" run_gateway "$i"
  GW+=("$(last)")
done
for gw in "${GW[@]}"; do wait_ready "$gw"; done

# --- alert path: where Prometheus' alerts go, started before it ---
say "starting the alert path: alert sink, report server, Alertmanager"
start alert-sink http://127.0.0.1:9095/messages run_alert_sink
wait_ready "$(last)"
start report http://127.0.0.1:9096/healthz run_report
wait_ready "$(last)"
start alertmanager http://127.0.0.1:9093/-/ready run_alertmanager
wait_ready "$(last)"
# --- end alert path ---

say "starting Prometheus"
start prometheus http://127.0.0.1:9090/-/ready run_prometheus
wait_ready "$(last)"

cat <<EOF

grayguard local mesh is up (logs in $LOGS/, Ctrl-C stops it):
  front Envoy      http://127.0.0.1:10000/infer     (POST a JPEG/PNG; gateway i: port 10000+i of $GATEWAYS)
  Envoy admin      http://127.0.0.1:9901/stats/prometheus   (gateway i: 9901+i)
  operator         http://127.0.0.1:10100/grayguard/confirm?...  (confirm mode's one-click links; gateway i: 10100+i)
                   http://127.0.0.1:10100/grayguard/promotion     (each rule's promotion verdict)
  v9-prod          http://127.0.0.1:8081/metrics    (stable, conf 0.25)
  v10-gray         http://127.0.0.1:8082/metrics    (gray, $(basename "$GRAY_MODEL"), conf $GRAY_CONF, $GRAY_COMPARE_PERCENT % of its frames compared
                                                     with v9-prod: x-canary-agreement${GRAY_ARGS[*]:+; then ${GRAY_ARGS[*]}, which win})
  Prometheus       http://127.0.0.1:9090/
  Alertmanager     http://127.0.0.1:9093/
  alert sink       http://127.0.0.1:9095/               (what a person would receive)
  reports          http://127.0.0.1:9096/reports/       (every incident's report, kept in $RUN_DIR/reports/;
                                                     the alerts link here; /report: the latest, as it stands)
                   http://127.0.0.1:9096/promotion?rule=crane-cameras   (the promotion verdict; and
                   Flagger's POST /flagger/confirm-promotion, /flagger/rollback)
  supervision      $RUN_DIR/status (NAME PID RESTARTS) and $PID_DIR/NAME.pid; a component
                   that exits is restarted after a back-off, a sidecar that fails its
                   liveness probe (/healthz) $LIVENESS_FAILURES times in a row is restarted too

try (crane cameras try gray at night, 00:00-06:00 at the site; this mesh's Envoy pins the
night unless a request says another hour: add -H 'x-time-of-day: 14' to see the day):
  curl -si -H 'content-type: image/jpeg' -H 'x-device-type: crane-camera' -H 'x-device-id: crane-001' --data-binary @.data/images/person.jpg http://127.0.0.1:10000/infer
  make demo        (replays the incident against this mesh)
  make soak        (mixed traffic for ten minutes, every process's memory and the counters watched)

EOF
say "ready"

# Supervise until a signal arrives.
while true; do
  supervise
  sleep 1 &
  wait $! || true
done
