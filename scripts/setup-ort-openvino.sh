#!/usr/bin/env bash
# Fetch ONNX Runtime with OpenVINO's execution provider (for --precision bf16) from the pinned
# `onnxruntime-openvino` PyPI wheel into .ort-openvino/: the runtime library, the provider, and
# the OpenVINO libraries the CPU path needs (core, ONNX frontend, CPU plugin, TBB). The GPU and
# NPU plugins and the Python bindings are left in the wheel. Pinned by version, platform and
# sha256, like scripts/setup-ort.sh.
set -euo pipefail
source "$(dirname "$0")/lib/wheel.sh"

# `onnxruntime-openvino` is published for x86_64 only: no bf16 engine elsewhere (exit 3, which
# `make test` tolerates on those machines; `serve --precision bf16` refuses there too).
ARCH=$(target_arch)
if [ "$ARCH" != x86_64 ]; then
  echo "setup-ort-openvino: onnxruntime-openvino has no wheel for $ARCH; --precision bf16 is x86_64 only" >&2
  exit 3
fi

VERSION=1.24.1
WHEEL=onnxruntime_openvino-${VERSION}-cp311-cp311-manylinux_2_28_x86_64.whl
WHEEL_SHA256=3007c803634cc69c6d52af1dea7ce729d9bb62b9a11070fd2f959119199007a8
LIB=libonnxruntime.so.${VERSION}
FILES=(
  "$LIB"
  libonnxruntime_providers_shared.so
  libonnxruntime_providers_openvino.so
  libopenvino.so.2541
  libopenvino_onnx_frontend.so.2541
  libopenvino_intel_cpu_plugin.so
  libtbb.so.12
  libtbbmalloc.so
)

root=$(cd "$(dirname "$0")/.." && pwd)
dest=${1:-$root/.ort-openvino}

if [ -f "$dest/$LIB" ] && [ -f "$dest/.complete" ]; then
  exit 0
fi
fetch_wheel onnxruntime-openvino "$VERSION" "$WHEEL" "$WHEEL_SHA256" "$dest"
extract_from_wheel "$dest/wheel/$WHEEL" "$dest" "${FILES[@]}"
rm -f "$dest/wheel/$WHEEL"
touch "$dest/.complete"
echo "setup-ort-openvino: $dest/$LIB ready ($(du -sh "$dest" | cut -f1))" >&2
