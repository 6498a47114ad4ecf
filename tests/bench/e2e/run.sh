#!/usr/bin/env bash
# End-to-end benchmark with real processes (tests/bench/e2e/main.rs): the front Envoy + filter
# overhead against calling the sidecar directly (alternating, same run, as a ratio), the
# detection-to-shed time over several runs, and how fast fleets of 1, 3 and 5 gateways
# converge through the mesh-wide latch (converge.rs). Run after `make setup build` (`make bench-e2e`).
#
#   GRAYGUARD_BENCH_E2E_PAIRS=60   request pairs of the overhead measurement (at most 5000)
#   GRAYGUARD_BENCH_E2E_RUNS=5     detection-to-shed runs (at most 50)
#   GRAYGUARD_BENCH_E2E_CONVERGE_RUNS=3   convergence runs per fleet size (1, 3, 5 gateways; at most 20)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../../.."
cargo bench -q -p grayguard-e2e --bench e2e
