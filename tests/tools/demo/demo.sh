#!/usr/bin/env bash
# `make demo`: replays the gray-release incident through the local mesh, then writes its
# report (.run/demo/report.html, grayguard-report) and waits for the report the mesh keeps of
# the incident (its shed alert's, in .run/reports/, with the index). Uses a mesh that is already running
# (`make run` in another terminal); otherwise starts one in the background with
# mesh-config/local/run.sh, runs grayguard-demo against it, and stops it again.
#
#   bash tests/tools/demo/demo.sh [grayguard-demo flags...]     (default flags: --check)
#
# Environment: GRAYGUARD_DEMO_BIN (default target/release/grayguard-demo),
#              GRAYGUARD_REPORT (default target/release/grayguard-report),
#              GRAYGUARD_RUN_READY_S (how long to wait for a mesh started here, default 240),
#              GRAYGUARD_DEMO_KEPT_S (how long to wait for the kept report after the replay,
#              default 90: Prometheus' evaluation, Alertmanager's group wait, the report),
#              GRAYGUARD_GATEWAYS (front Envoys to drive, default 1: `make demo GATEWAYS=3`
#              starts or expects `make run GATEWAYS=3` and sends round-robin through all).
#              GRAYGUARD_GRAY_MODEL, GRAYGUARD_GRAY_ARGS (the gray sidecar's model and more
#              flags, for a mesh started here: `make demo GRAY_MODEL=... GRAY_ARGS=...`; see
#              mesh-config/local/run.sh), GRAYGUARD_AGREEMENT_MIN_MEAN (the gateways'
#              agreement trigger, `make demo AGREEMENT_MIN_MEAN=0.7`).
# The mesh is started (or found) by tests/tools/mesh.sh, shared with `make soak`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
cd "$ROOT"

DEMO="${GRAYGUARD_DEMO_BIN:-$ROOT/target/release/grayguard-demo}"
REPORT="${GRAYGUARD_REPORT:-$ROOT/target/release/grayguard-report}"
GATEWAYS="${GRAYGUARD_GATEWAYS:-1}"
case "$GATEWAYS" in
  ''|*[!0-9]*) printf '[demo] error: GRAYGUARD_GATEWAYS must be a number, got %s\n' "$GATEWAYS" >&2; exit 1 ;;
esac

die() { printf '[demo] error: %s\n' "$*" >&2; exit 1; }

[ -x "$DEMO" ] || die "$DEMO is missing; run \`cargo build --release -p grayguard-demo\` (make demo does)"
[ -x "$REPORT" ] || die "$REPORT is missing; run \`make build\`"

# shellcheck source=tests/tools/mesh.sh
source "$ROOT/tests/tools/mesh.sh"
mesh_up demo
LOGS="$RUN_DIR/logs"

args=("$@")
[ "${#args[@]}" -gt 0 ] || args=(--check)
[ "$GATEWAYS" = 1 ] || args+=(--gateways "$GATEWAYS")
# The report's defaults are gateway 0's; name every gateway and its log (run.sh's names).
report_gateways=(--gateway http://127.0.0.1:9901 --envoy-log "$LOGS/envoy.log")
for ((i = 1; i < GATEWAYS; i++)); do
  report_gateways+=(--gateway "http://127.0.0.1:$((9901 + i))" --envoy-log "$LOGS/envoy-gw$i.log")
done
KEPT_S="${GRAYGUARD_DEMO_KEPT_S:-90}"
case "$KEPT_S" in
  ''|*[!0-9]*) die "GRAYGUARD_DEMO_KEPT_S must be a whole number of seconds, got $KEPT_S" ;;
esac
# The reports the mesh keeps (run.sh's --reports-dir); a kept report newer than this mark is
# this replay's incident.
REPORTS="$MESH_REPORTS"
mkdir -p "$REPORTS" .run/demo
mark=.run/demo/started
: > "$mark"
status=0
"$DEMO" "${args[@]}" || status=$?

# The postmortem of what was just replayed, from the mesh's own Prometheus, admin, sidecars
# and logs (the defaults of grayguard-report are the local mesh's). Prometheus scrapes every
# 5 s: wait for one more scrape so the charts reach the end of the replay.
sleep 6
"$REPORT" --out .run/demo/report.html --require-incident "${report_gateways[@]}" || status=$((status == 0 ? 1 : status))

# The incident's kept report: written by the mesh's report server when the shed alert fired
# (Alertmanager's webhook), one file per incident, and the index beside it.
kept_reports() { find "$REPORTS" -maxdepth 1 -name '*.*.*Z.html' -newer "$mark" 2>/dev/null; }
deadline=$((SECONDS + KEPT_S))
until [ -n "$(kept_reports)" ] && [ "$REPORTS/index.html" -nt "$mark" ]; do
  if [ "$SECONDS" -ge "$deadline" ]; then
    printf '[demo] error: no incident report kept in %s within %ss of the replay (the alert path: %s/logs/report.log, %s/logs/alertmanager.log)\n' \
      "$REPORTS" "$KEPT_S" "$RUN_DIR" "$RUN_DIR" >&2
    exit $((status == 0 ? 1 : status))
  fi
  sleep 1
done
for f in $(kept_reports); do printf '[demo] incident report kept: %s\n' "$f"; done
printf '[demo] every kept report: %s/index.html (served at http://127.0.0.1:9096/reports/)\n' "$REPORTS"
exit "$status"
