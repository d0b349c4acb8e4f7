#!/usr/bin/env bash
# Builds the repvgg-serve image from the project's Dockerfile and runs it for real, on a machine
# without a container registry (CI runs this through `make container-smoke`):
#
#   1. installs podman, buildah, runc and debootstrap (Debian packages) when missing;
#   2. makes the two base images the Dockerfile names, locally, from Debian bookworm with
#      debootstrap: `debian:bookworm-slim` (minbase) and `rust:1.95-bookworm` (buildd variant plus
#      this machine's Rust 1.95 toolchain, laid out as the official image lays it out:
#      /usr/local/cargo/bin on PATH, RUSTUP_HOME=/usr/local/rustup);
#   3. builds the multi-stage Dockerfile unchanged with `--pull=never` (the builder stage fetches
#      crates, Debian packages and the pinned onnxruntime wheels from the package registries);
#   4. runs the image on the host network the way deploy/ runs it (non-root, read-only root
#      filesystem, all capabilities dropped, no privilege escalation, the cache on a volume), with
#      the tiny test checkpoint mounted read-only, classifies a fixture photo through it and compares
#      the logits with PyTorch's reference;
#   5. runs the image's HEALTHCHECK, sends SIGTERM and requires exit code 0 and the shutdown log
#      line; reports the image size;
#   6. on a CPU with native bf16, does steps 4-5 again with REPVGG_PRECISION=bf16 (the OpenVINO
#      runtime in the image; logits within the bf16 bound of PyTorch's; REPVGG_BF16_MIN_SPEEDUP=0,
#      since this checks the image's runtime, not whether bf16 is faster on this CPU, and the
#      start-up timing shows in /v1/models); elsewhere says loudly
#      that this step did not run.
#
# podman on these machines needs runc and raised ulimits: deploy/container/containers.conf.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
export CONTAINERS_CONF="$ROOT/deploy/container/containers.conf"
WORK="$ROOT/.cache/container"
IMAGE="localhost/repvgg-serve:smoke"
RUST_BASE="docker.io/library/rust:1.95-bookworm"
SLIM_BASE="docker.io/library/debian:bookworm-slim"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
PORT="${SMOKE_PORT:-18080}"
NAME="repvgg-serve-smoke-$$"
VOLUME="repvgg-serve-smoke-cache-$$"

log() { echo "container-smoke: $*" >&2; }

install_tools() {
  local missing=()
  for tool in podman buildah runc debootstrap; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
  done
  [ ${#missing[@]} -eq 0 ] && return
  log "installing ${missing[*]} (Debian packages)"
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    podman buildah runc debootstrap uidmap slirp4netns fuse-overlayfs >/dev/null
}

image_exists() { podman image exists "$1"; }

# debootstrap VARIANT INCLUDE DIR
bootstrap() {
  rm -rf "$3"
  mkdir -p "$3"
  debootstrap --variant="$1" ${2:+--include="$2"} bookworm "$3" "$MIRROR" >"$3.log" 2>&1 \
    || { tail -20 "$3.log" >&2; log "debootstrap failed ($3.log)"; exit 1; }
  rm -rf "$3"/var/cache/apt/archives/*.deb "$3"/var/lib/apt/lists/*
}

make_slim_base() {
  image_exists "$SLIM_BASE" && return
  log "making $SLIM_BASE with debootstrap (minbase)"
  bootstrap minbase "" "$WORK/slim"
  # As the official slim image: no documentation, manual pages or translations.
  printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
    'path-exclude /usr/share/man/*' 'path-exclude /usr/share/info/*' \
    'path-exclude /usr/share/locale/*' 'path-exclude /usr/share/lintian/*' \
    >"$WORK/slim/etc/dpkg/dpkg.cfg.d/slim"
  find "$WORK/slim/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  rm -rf "$WORK/slim/usr/share/man"/* "$WORK/slim/usr/share/info"/* "$WORK/slim/usr/share/locale"/*
  tar -C "$WORK/slim" -c . | podman import --quiet --change 'CMD ["bash"]' - "$SLIM_BASE" >/dev/null
  rm -rf "$WORK/slim"
}

make_rust_base() {
  image_exists "$RUST_BASE" && return
  local sysroot version
  sysroot="$(readlink -f "$(rustc --print sysroot)")"
  version="$(rustc --version | awk '{print $2}')"
  [ "$version" = "1.95.0" ] || { log "the Rust toolchain here is $version, the Dockerfile's builder is 1.95"; exit 1; }
  log "making $RUST_BASE with debootstrap (buildd) + this machine's Rust $version toolchain"
  bootstrap buildd "ca-certificates,curl,git,pkg-config" "$WORK/rust"
  # The builder stage fetches from crates.io and PyPI: it must trust what this machine trusts
  # (on these machines, an egress proxy's CA in /usr/local/share/ca-certificates).
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$WORK/rust/usr/local/share/ca-certificates/"
    chroot "$WORK/rust" update-ca-certificates >/dev/null 2>&1
  fi
  local dest="$WORK/rust/usr/local/rustup/toolchains/1.95.0-x86_64-unknown-linux-gnu"
  mkdir -p "$dest" "$WORK/rust/usr/local/cargo/bin"
  # Documentation (share/) is not needed to build.
  tar -C "$sysroot" -c bin lib libexec etc | tar -C "$dest" -x
  for tool in cargo rustc rustdoc rustfmt cargo-fmt cargo-clippy clippy-driver; do
    [ -e "$dest/bin/$tool" ] && ln -s "../../rustup/toolchains/1.95.0-x86_64-unknown-linux-gnu/bin/$tool" \
      "$WORK/rust/usr/local/cargo/bin/$tool"
  done
  tar -C "$WORK/rust" -c . | podman import --quiet \
    --change 'ENV RUSTUP_HOME=/usr/local/rustup' \
    --change 'ENV CARGO_HOME=/usr/local/cargo' \
    --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV RUST_VERSION=1.95.0' \
    --change 'CMD ["bash"]' - "$RUST_BASE" >/dev/null
  rm -rf "$WORK/rust"
}

cleanup() {
  podman rm -f "$NAME" >/dev/null 2>&1 || true
  podman volume rm -f "$VOLUME" >/dev/null 2>&1 || true
}

smoke_run() {
  local precision="$1"
  trap cleanup EXIT
  cleanup
  podman volume create "$VOLUME" >/dev/null
  log "running $IMAGE ($precision) on 127.0.0.1:$PORT (host network, read-only root, non-root, no capabilities)"
  # --health-interval disable: no systemd timer here; the check is run once by hand below.
  podman run -d --name "$NAME" --network host --health-interval disable \
    --read-only --cap-drop ALL --security-opt no-new-privileges \
    -v "$VOLUME:/var/cache/repvgg-serve" \
    -v "$ROOT/tests/fixtures/checkpoints:/models:ro" \
    -e REPVGG_HOST=127.0.0.1 -e REPVGG_PORT="$PORT" \
    -e REPVGG_CHECKPOINT=/models/tiny_official_train.pth \
    -e REPVGG_PRECISION="$precision" \
    -e REPVGG_BF16_MIN_SPEEDUP=0 \
    "$IMAGE" >/dev/null
  local ready=""
  for _ in $(seq 1 120); do
    if curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1; then ready=yes; break; fi
    if [ "$(podman inspect -f '{{.State.Running}}' "$NAME")" != true ]; then break; fi
    sleep 0.5
  done
  if [ -z "$ready" ]; then
    podman logs "$NAME" >&2 || true
    log "the container never became ready"
    exit 1
  fi
  podman healthcheck run "$NAME" >/dev/null \
    || { log "the image's HEALTHCHECK fails on a ready container"; exit 1; }
  if podman exec "$NAME" sh -c 'command -v curl || command -v wget' >/dev/null 2>&1; then
    log "the runtime image carries curl or wget (the HEALTHCHECK is repvgg-serve probe)"
    exit 1
  fi
  log "ready, HEALTHCHECK passes; classifying tests/fixtures/images/chelsea.png"
  curl -fsS -X POST -H 'content-type: image/png' --data-binary @tests/fixtures/images/chelsea.png \
    "http://127.0.0.1:$PORT/classify?top_k=3&logits=true" >"$WORK/answer.json"
  curl -fsS "http://127.0.0.1:$PORT/v1/models" >"$WORK/models.json"
  python3 - "$WORK/answer.json" tests/fixtures/reference/logits.json "$WORK/models.json" "$precision" <<'EOF'
import json, math, sys
answer = json.load(open(sys.argv[1]))
expected = json.load(open(sys.argv[2]))["models"]["tiny"]["logits"]["chelsea.png"]
model = json.load(open(sys.argv[3]))["models"][0]
precision = sys.argv[4]
assert model["precision"] == precision, model
got = answer["logits"]
diff = max(abs(a - b) for a, b in zip(got, expected))
rel = math.sqrt(sum((a - b) ** 2 for a, b in zip(got, expected)) / sum(b * b for b in expected))
top = max(range(len(expected)), key=expected.__getitem__)
assert len(got) == len(expected), f"{len(got)} logits, expected {len(expected)}"
if precision == "fp32":
    assert diff <= 1e-3, f"logits differ from PyTorch by {diff}"
else:  # the bound of tests/bf16.rs
    assert rel <= 0.08, f"bf16 logits differ from PyTorch by a relative error of {rel}"
    assert model["bf16_agreement"]["top1_agreement"] > 0, model
    assert model["bf16_timing"]["speedup"] > 0, model
assert answer["predictions"][0]["class_id"] == top, answer["predictions"]
print(f"container-smoke: {precision}: top-1 class {top} as PyTorch, max |logit diff| {diff:.2e}, "
      f"relative error {rel:.2e}", file=sys.stderr)
EOF
  log "sending SIGTERM"
  podman kill --signal TERM "$NAME" >/dev/null
  local code
  code="$(podman wait "$NAME")"
  podman logs "$NAME" >"$WORK/container.log" 2>&1 || true
  if [ "$code" != 0 ]; then
    cat "$WORK/container.log" >&2
    log "exit code $code after SIGTERM, expected 0"
    exit 1
  fi
  grep -q "shutdown complete" "$WORK/container.log" \
    || { cat "$WORK/container.log" >&2; log "no 'shutdown complete' in the log"; exit 1; }
  log "clean exit (code 0) after SIGTERM"
}

install_tools
mkdir -p "$WORK"
make_slim_base
make_rust_base
log "building $IMAGE from the Dockerfile (--pull=never; storage driver \
$(podman info --format '{{.Store.GraphDriverName}}'), $(df -h --output=avail /var/tmp | tail -1 | tr -d ' ') free in /var/tmp)"
# Docker format keeps the HEALTHCHECK (OCI image config has no field for it).
podman build --pull=never --network host --format docker -t "$IMAGE" -f Dockerfile . \
  >"$WORK/build.log" 2>&1 \
  || { tail -40 "$WORK/build.log" >&2; log "build failed ($WORK/build.log)"; exit 1; }
podman image prune -f >/dev/null
size="$(podman image inspect -f '{{.Size}}' "$IMAGE")"
log "image $IMAGE: $((size / 1000000)) MB ($size bytes)"
smoke_run fp32
if grep -qwE 'amx_bf16|avx512_bf16' /proc/cpuinfo; then
  smoke_run bf16
else
  log "!!!!!!!! the bf16 container check did NOT run: this CPU has neither amx_bf16 nor avx512_bf16 !!!!!!!!"
fi
