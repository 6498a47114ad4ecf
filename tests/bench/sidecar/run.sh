#!/usr/bin/env bash
# Sidecar benchmark (make bench-sidecar): grayguard-sidecar vs the Python Flask + onnxruntime
# reference server vs a bare onnxruntime session, same model, image and thread count, in one
# run; prints overhead, throughput, paired ratios, the fidelity check and the targets.
# Knobs (environment): BENCH_THREADS (2), BENCH_ROUNDS (40), BENCH_SATURATION_S (8),
# BENCH_BLOCKS (3), BENCH_CONCURRENCY (4), BENCH_IMAGE (person.jpg), BENCH_NICE (unset: a
# niceness such as -10 runs all three contenders above other work on a shared machine; root).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../../.." && pwd)"
PY="${GRAYGUARD_PYTHON:-$ROOT/.venv/bin/python}"
SIDECAR="${GRAYGUARD_SIDECAR:-$ROOT/target/release/grayguard-sidecar}"
MODEL="${GRAYGUARD_MODEL:-$ROOT/.data/models/best_fp16.onnx}"
IMAGES="${GRAYGUARD_IMAGES:-$ROOT/.data/images}"
export ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$ROOT/.data/lib/libonnxruntime.so}"
THREADS="${BENCH_THREADS:-2}"
IMAGE="$IMAGES/${BENCH_IMAGE:-person.jpg}"
OUT_DIR="$ROOT/target/bench"
mkdir -p "$OUT_DIR"

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
SC_PORT="$(free_port)"
REF_PORT="$(free_port)"

# All contenders (sidecar, reference server, driver with the bare session) share one priority.
NICE=()
if [ -n "${BENCH_NICE:-}" ]; then NICE=(nice -n "$BENCH_NICE"); fi

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

"${NICE[@]}" "$SIDECAR" --model "$MODEL" --listen "127.0.0.1:$SC_PORT" --model-version bench \
  --threads "$THREADS" --max-queue 64 --watchdog-latency-budget-ms 60000 --log warn \
  >"$OUT_DIR/sidecar.log" 2>&1 &
pids+=($!)
"${NICE[@]}" "$PY" "$ROOT/tests/bench/sidecar/reference_server.py" --model "$MODEL" --port "$REF_PORT" \
  --threads "$THREADS" >"$OUT_DIR/reference.log" 2>&1 &
pids+=($!)

wait_ready() {
  for _ in $(seq 1 600); do
    curl -sf "http://127.0.0.1:$1/ready" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "$2 did not become ready; log:" >&2
  cat "$3" >&2
  return 1
}
wait_ready "$SC_PORT" grayguard-sidecar "$OUT_DIR/sidecar.log"
wait_ready "$REF_PORT" "reference server" "$OUT_DIR/reference.log"

"${NICE[@]}" "$PY" "$ROOT/tests/bench/sidecar/bench.py" \
  --sidecar "http://127.0.0.1:$SC_PORT/infer" --reference "http://127.0.0.1:$REF_PORT/infer" \
  --model "$MODEL" --image "$IMAGE" --threads "$THREADS" \
  --rounds "${BENCH_ROUNDS:-40}" --saturation-s "${BENCH_SATURATION_S:-8}" \
  --blocks "${BENCH_BLOCKS:-3}" --concurrency "${BENCH_CONCURRENCY:-4}" \
  --json "$OUT_DIR/sidecar.json"
echo "results: $OUT_DIR/sidecar.json"
