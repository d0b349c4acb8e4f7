# repvgg-serve: the two commands of the README quick start are `make run` and `make test`.
# Both set up what is missing first (ONNX Runtime's shared library from the pinned PyPI wheel).

CARGO ?= cargo
ORT_LIB := .ort/libonnxruntime.so.1.31.1
PORT ?= 8080
ARGS ?=

.PHONY: run test setup build lint fuzz deny soak bench anatomy bench-access bench-classify bench-logging bench-reload footprint check-deploy container-smoke clean-cache

## Fetch libonnxruntime.so.1.31.1 into .ort/ (pinned wheel, sha256 checked); nasm for SIMD JPEG.
setup: $(ORT_LIB)
	scripts/setup-build-tools.sh

$(ORT_LIB): scripts/setup-ort.sh
	scripts/setup-ort.sh

build: setup
	$(CARGO) build --release --bin repvgg-serve

## Serve on port 8080 (demo model unless ARGS="--checkpoint FILE"; ARGS="--precision bf16"
## fetches the OpenVINO runtime first).
run: build
	@if echo "$(ARGS) $${REPVGG_PRECISION:-}" | grep -q bf16; then scripts/setup-ort-openvino.sh; fi
	./target/release/repvgg-serve serve --port $(PORT) $(ARGS)

## The whole test suite (unit, integration, end-to-end over HTTP, loadtest's own tests).
test: setup
	scripts/setup-test-tools.sh
	scripts/setup-tritonclient.sh
	scripts/setup-ort-openvino.sh || test $$? -eq 3
	$(CARGO) test --workspace --all-targets

## Every fuzz target (unpickler, checkpoint loader, image pipeline) for FUZZ_SECONDS each
## (default 60), stable toolchain, committed seed corpora in fuzz/corpus/. CI runs it.
fuzz:
	scripts/fuzz.sh

## The release server under steady load plus hostile clients (bombs, trickling bodies, idle
## connections, garbage, walk-aways) for SOAK_MINUTES (default 10); writes docs/soak.md.
soak:
	scripts/soak.sh

## Every serving benchmark side by side (raw ONNX Runtime, our server, the Python baseline,
## sweeps, overload, bf16 where the CPU has it, time to ready, criterion); writes
## docs/benchmarks.md. About 25 minutes.
bench: setup
	scripts/bench.sh

## Where the slowest 1 % of requests spend their time under Poisson arrivals at 30 and 45 % of
## saturation (every request traced), and the run queue meanwhile: target/anatomy/anatomy.md
## and timelines (docs/anatomy.md). About 3 minutes. Server flags: ANATOMY_ARGS="--core-budget true".
anatomy: setup
	$(CARGO) build --release --bin repvgg-serve --example otlp_sink
	$(CARGO) build --release -p loadtest
	scripts/anatomy.py --out target/anatomy -- $(ANATOMY_ARGS)

## Saturation throughput with per-request logging on and off.
bench-logging: setup
	scripts/bench-logging.sh

## `repvgg-serve classify` (bulk) against the server at saturation, same run, small and phone
## photos: docs/bench/classify.md. About 3 minutes.
bench-classify: setup
	scripts/bench-classify.sh

## Reloads under Poisson load at 50 % of saturation (A0 -> A0', B3 -> B3', at --load-nice 10 and 0
## side by side: non-200 answers, p99 by second around the load call, peak memory, time to the
## first answer from the new version) and two models sharing the cores against each alone:
## docs/bench/reload.md. About 12 minutes.
bench-reload: setup
	scripts/bench-reload.sh

## Time to ready and memory of every variant next to raw ONNX Runtime; writes
## docs/footprint.md. About 5 minutes.
footprint: setup
	scripts/footprint.sh

## Static checks of the Dockerfile and the Kubernetes manifests (PyPI tools in .venv-deploy).
check-deploy:
	scripts/check-deploy.sh

## Cost of API keys + TLS, and of tracing, against plaintext, side by side (about 9 minutes): docs/bench/access.md.
bench-access:
	scripts/bench-access.sh

## Supply chain: cargo-deny (deny.toml) on licences, banned crates, sources and advisories.
deny:
	scripts/deny.sh

## Build the image with podman from local debootstrap base images, run it, classify, SIGTERM.
container-smoke:
	scripts/container-smoke.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

clean-cache:
	rm -rf .cache/repvgg-serve
