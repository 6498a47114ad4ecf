#!/usr/bin/env bash
# `make demo`: replays the gray-release incident through the local mesh, then writes its
# report (.run/demo/report.html, grayguard-report). Uses a mesh that is already running
# (`make run` in another terminal); otherwise starts one in the background with
# mesh-config/local/run.sh, runs grayguard-demo against it, and stops it again.
#
#   bash tests/demo/demo.sh [grayguard-demo flags...]     (default flags: --check)
#
# Environment: GRAYGUARD_DEMO_BIN (default target/release/grayguard-demo),
#              GRAYGUARD_REPORT (default target/release/grayguard-report),
#              GRAYGUARD_RUN_READY_S (how long to wait for a mesh started here, default 240),
#              GRAYGUARD_GATEWAYS (front Envoys to drive, default 1: `make demo GATEWAYS=3`
#              starts or expects `make run GATEWAYS=3` and sends round-robin through all).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

DEMO="${GRAYGUARD_DEMO_BIN:-$ROOT/target/release/grayguard-demo}"
REPORT="${GRAYGUARD_REPORT:-$ROOT/target/release/grayguard-report}"
READY_S="${GRAYGUARD_RUN_READY_S:-240}"
LOGS="$ROOT/.run/logs"
GATEWAYS="${GRAYGUARD_GATEWAYS:-1}"
case "$GATEWAYS" in
  ''|*[!0-9]*) printf '[demo] error: GRAYGUARD_GATEWAYS must be a number, got %s\n' "$GATEWAYS" >&2; exit 1 ;;
esac
PORTS=(8081 8082 9092 9090 9093 9095 9096)
for ((i = 0; i < GATEWAYS; i++)); do PORTS+=($((10000 + i)) $((9901 + i)) $((10100 + i))); done

say() { printf '[demo] %s\n' "$*"; }
die() { printf '[demo] error: %s\n' "$*" >&2; exit 1; }

[ -x "$DEMO" ] || die "$DEMO is missing; run \`cargo build --release -p grayguard-demo\` (make demo does)"
[ -x "$REPORT" ] || die "$REPORT is missing; run \`make build\`"

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
up=0
for p in "${PORTS[@]}"; do listening "$p" && up=$((up + 1)); done

MESH_PID=""
stop_mesh() {
  if [ -n "$MESH_PID" ] && kill -0 "$MESH_PID" 2>/dev/null; then
    say "stopping the mesh started for the demo"
    kill -TERM "$MESH_PID" 2>/dev/null || true
    # run.sh stops its own children on TERM; give it the time its clean-up takes.
    for _ in $(seq 1 100); do kill -0 "$MESH_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$MESH_PID" 2>/dev/null || true
    wait "$MESH_PID" 2>/dev/null || true
  fi
}
trap stop_mesh EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ "$up" = "${#PORTS[@]}" ]; then
  say "using the mesh that is already running"
elif [ "$up" = 0 ]; then
  mkdir -p "$LOGS"
  # Emptied here, not by the background job's redirection: that runs after the fork, and the
  # wait below could otherwise read the previous run's "ready" line.
  : >"$LOGS/run.log"
  say "starting the local mesh in the background (log: .run/logs/run.log)"
  GRAYGUARD_GATEWAYS="$GATEWAYS" bash mesh-config/local/run.sh >"$LOGS/run.log" 2>&1 &
  MESH_PID=$!
  deadline=$((SECONDS + READY_S))
  until grep -q '^\[run\] ready' "$LOGS/run.log" 2>/dev/null; do
    if ! kill -0 "$MESH_PID" 2>/dev/null; then
      cat "$LOGS/run.log" >&2
      die "the mesh did not start"
    fi
    [ "$SECONDS" -lt "$deadline" ] || { cat "$LOGS/run.log" >&2; die "the mesh was not ready within ${READY_S}s"; }
    sleep 1
  done
  say "mesh ready"
else
  die "some of the mesh ports (${PORTS[*]}) are in use and some are not: stop what holds them, or start the whole mesh with \`make run\`"
fi

args=("$@")
[ "${#args[@]}" -gt 0 ] || args=(--check)
[ "$GATEWAYS" = 1 ] || args+=(--gateways "$GATEWAYS")
# The report's defaults are gateway 0's; name every gateway and its log (run.sh's names).
report_gateways=(--gateway http://127.0.0.1:9901 --envoy-log "$LOGS/envoy.log")
for ((i = 1; i < GATEWAYS; i++)); do
  report_gateways+=(--gateway "http://127.0.0.1:$((9901 + i))" --envoy-log "$LOGS/envoy-gw$i.log")
done
status=0
"$DEMO" "${args[@]}" || status=$?

# The postmortem of what was just replayed, from the mesh's own Prometheus, admin, sidecars
# and logs (the defaults of grayguard-report are the local mesh's). Prometheus scrapes every
# 5 s: wait for one more scrape so the charts reach the end of the replay.
sleep 6
"$REPORT" --out .run/demo/report.html --require-incident "${report_gateways[@]}" || status=$((status == 0 ? 1 : status))
exit "$status"
