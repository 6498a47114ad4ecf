#!/usr/bin/env bash
# grayguard filter benchmark: native Envoy header routing vs the cheapest Wasm routing filter
# vs grayguard (full config), alternating in one run; CPU time per request, req/s, p50/p99;
# plus .wasm size, "a flag sheds the very next request" and statistical breach → shed time.
# Usage: make bench-filter   (or: bash tests/bench/filter/run.sh [--rounds N --seconds S --connections C
#        --variant NAME=WASM ... --no-behaviour])
set -euo pipefail
cd "$(dirname "$0")/../../.."

# The floor filter (one header read, one header write), built and optimised like grayguard.
cargo build --release --target wasm32-wasip1 -p grayguard-bench-floor
wasm-opt -O3 --enable-bulk-memory --enable-sign-ext --enable-mutable-globals --enable-nontrapping-float-to-int \
  --strip-debug --strip-producers target/wasm32-wasip1/release/grayguard_bench_floor.wasm \
  -o target/grayguard_bench_floor.wasm

PY="${GRAYGUARD_PYTHON:-python3}"
[ -x "$PY" ] || PY=python3
exec "$PY" tests/bench/filter/bench.py "$@"
