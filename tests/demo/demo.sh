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
#              GRAYGUARD_RUN_READY_S (how long to wait for a mesh started here, default 240).
# The mesh is started (or found) by tests/demo/mesh.sh, shared with `make soak`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

DEMO="${GRAYGUARD_DEMO_BIN:-$ROOT/target/release/grayguard-demo}"
REPORT="${GRAYGUARD_REPORT:-$ROOT/target/release/grayguard-report}"

die() { printf '[demo] error: %s\n' "$*" >&2; exit 1; }

[ -x "$DEMO" ] || die "$DEMO is missing; run \`cargo build --release -p grayguard-demo\` (make demo does)"
[ -x "$REPORT" ] || die "$REPORT is missing; run \`make build\`"

# shellcheck source=tests/demo/mesh.sh
source "$ROOT/tests/demo/mesh.sh"
mesh_up demo

args=("$@")
[ "${#args[@]}" -gt 0 ] || args=(--check)
status=0
"$DEMO" "${args[@]}" || status=$?

# The postmortem of what was just replayed, from the mesh's own Prometheus, admin, sidecars
# and logs (the defaults of grayguard-report are the local mesh's). Prometheus scrapes every
# 5 s: wait for one more scrape so the charts reach the end of the replay.
sleep 6
"$REPORT" --out .run/demo/report.html --require-incident || status=$((status == 0 ? 1 : status))
exit "$status"
