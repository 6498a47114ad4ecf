# The local mesh for the tools that drive it (`make demo`, `make soak`); sourced, not run.
#
#   source tests/tools/mesh.sh
#   mesh_up TAG        uses the mesh of a `make run` in another terminal, or starts
#                      mesh-config/local/run.sh in the background (its output in
#                      $RUN_DIR/logs/run.log) and stops it again when the calling script exits
#   $MESH_REPORTS      where the mesh's report server keeps each incident's report (and
#                      index.html), kept across runs
#
# The mesh routes crane cameras as at night (00:00-06:00 at the site is the rule's window):
# its Envoy pins the hour a request without x-time-of-day is routed by, so the tools need not
# send one, at any hour (mesh-config/local/envoy.yaml).
#
# Needs ROOT (the repository). Environment: GRAYGUARD_RUN_DIR (the mesh's folder, default
# .run), GRAYGUARD_RUN_READY_S (how long to wait for a mesh started here, default 240),
# GRAYGUARD_GATEWAYS (front Envoys the mesh has or is started with, default 1),
# GRAYGUARD_GRAY_MODEL and GRAYGUARD_GRAY_ARGS (the gray sidecar's model and more flags) and
# GRAYGUARD_AGREEMENT_MIN_MEAN (the gateways' agreement trigger); they reach run.sh through the
# environment, so they apply to a mesh started here, not to one already running.

RUN_DIR="${GRAYGUARD_RUN_DIR:-$ROOT/.run}"
MESH_REPORTS="$RUN_DIR/reports"
MESH_READY_S="${GRAYGUARD_RUN_READY_S:-240}"
MESH_GATEWAYS="${GRAYGUARD_GATEWAYS:-1}"
# Every port of the mesh (run.sh's list): the sidecars (and the gray one's control port),
# Prometheus, the alert path, and each gateway's listener, admin and operator ports.
MESH_PORTS=(8081 8082 9092 9090 9093 9095 9096)
for ((mesh_i = 0; mesh_i < MESH_GATEWAYS; mesh_i++)); do
  MESH_PORTS+=($((10000 + mesh_i)) $((9901 + mesh_i)) $((10100 + mesh_i)))
done
MESH_PID=""
MESH_TAG=mesh

mesh_say() { printf '[%s] %s\n' "$MESH_TAG" "$*"; }
mesh_die() { printf '[%s] error: %s\n' "$MESH_TAG" "$*" >&2; exit 1; }

mesh_listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

mesh_down() {
  if [ -n "$MESH_PID" ] && kill -0 "$MESH_PID" 2>/dev/null; then
    mesh_say "stopping the mesh started for the $MESH_TAG"
    kill -TERM "$MESH_PID" 2>/dev/null || true
    # run.sh stops its own children on TERM; give it the time its clean-up takes.
    for _ in $(seq 1 100); do kill -0 "$MESH_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$MESH_PID" 2>/dev/null || true
    wait "$MESH_PID" 2>/dev/null || true
  fi
}

mesh_up() {
  MESH_TAG="$1"
  local up=0 p
  for p in "${MESH_PORTS[@]}"; do mesh_listening "$p" && up=$((up + 1)); done
  if [ "$up" = "${#MESH_PORTS[@]}" ]; then
    mesh_say "using the mesh that is already running"
    return
  fi
  [ "$up" = 0 ] || mesh_die "some of the mesh ports (${MESH_PORTS[*]}) are in use and some are not: stop what holds them, or start the whole mesh with \`make run\`"
  mkdir -p "$RUN_DIR/logs"
  # Emptied here, not by the background job's redirection: that runs after the fork, and the
  # wait below could otherwise read the previous run's "ready" line.
  : >"$RUN_DIR/logs/run.log"
  mesh_say "starting the local mesh in the background (log: $RUN_DIR/logs/run.log)"
  trap mesh_down EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  GRAYGUARD_GATEWAYS="$MESH_GATEWAYS" bash "$ROOT/mesh-config/local/run.sh" >"$RUN_DIR/logs/run.log" 2>&1 &
  MESH_PID=$!
  local deadline=$((SECONDS + MESH_READY_S))
  until grep -q '^\[run\] ready' "$RUN_DIR/logs/run.log" 2>/dev/null; do
    if ! kill -0 "$MESH_PID" 2>/dev/null; then
      cat "$RUN_DIR/logs/run.log" >&2
      mesh_die "the mesh did not start"
    fi
    [ "$SECONDS" -lt "$deadline" ] || { cat "$RUN_DIR/logs/run.log" >&2; mesh_die "the mesh was not ready within ${MESH_READY_S}s"; }
    sleep 1
  done
  mesh_say "mesh ready"
}
