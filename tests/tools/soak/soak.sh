#!/usr/bin/env bash
# `make soak`: soaks the local mesh with grayguard-soak — mixed traffic with a share of bad
# inputs for ten minutes by default, every process of the mesh watched through run.sh's pid
# files — and writes .run/soak/{summary.txt,summary.json,soak.png}. Uses a mesh that is
# already running (`make run` in another terminal); otherwise starts one in the background
# and stops it again (tests/tools/mesh.sh).
#
#   bash tests/tools/soak/soak.sh [grayguard-soak flags...]
#
# Environment: GRAYGUARD_SOAK (default target/release/grayguard-soak), GRAYGUARD_RUN_DIR,
#              GRAYGUARD_RUN_READY_S (see tests/tools/mesh.sh).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
cd "$ROOT"

SOAK="${GRAYGUARD_SOAK:-$ROOT/target/release/grayguard-soak}"
[ -x "$SOAK" ] || { echo "[soak] error: $SOAK is missing; run \`make build-soak\`" >&2; exit 1; }

# shellcheck source=tests/tools/mesh.sh
source "$ROOT/tests/tools/mesh.sh"
mesh_up soak

status=0
"$SOAK" --pid-dir "$RUN_DIR/pids" --out "$RUN_DIR/soak" "$@" || status=$?
exit "$status"
