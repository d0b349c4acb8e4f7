#!/usr/bin/env bash
# Fetch ONNX Runtime with OpenVINO's execution provider (for --precision bf16) from the pinned
# `onnxruntime-openvino` PyPI wheel into .ort-openvino/: the runtime library, the provider, and
# the OpenVINO libraries the CPU path needs (core, ONNX frontend, CPU plugin, TBB). The GPU and
# NPU plugins and the Python bindings are left in the wheel. Pinned by version, platform and
# sha256, like scripts/setup-ort.sh.
set -euo pipefail

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
mkdir -p "$dest/wheel"
if [ ! -f "$dest/wheel/$WHEEL" ]; then
  echo "setup-ort-openvino: downloading $WHEEL from PyPI (84 MB)" >&2
  python3 -m pip download --quiet "onnxruntime-openvino==${VERSION}" --no-deps --only-binary=:all: \
    --python-version 311 --implementation cp --abi cp311 --platform manylinux_2_28_x86_64 \
    -d "$dest/wheel"
fi
actual=$(sha256sum "$dest/wheel/$WHEEL" | cut -d' ' -f1)
if [ "$actual" != "$WHEEL_SHA256" ]; then
  echo "setup-ort-openvino: sha256 mismatch for $WHEEL: expected $WHEEL_SHA256, got $actual" >&2
  rm -f "$dest/wheel/$WHEEL"
  exit 1
fi
python3 - "$dest/wheel/$WHEEL" "$dest" "${FILES[@]}" <<'PY'
import os, shutil, sys, zipfile
wheel, dest, *files = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    for name in files:
        tmp = os.path.join(dest, name + ".part")
        with z.open(f"onnxruntime/capi/{name}") as src, open(tmp, "wb") as out:
            shutil.copyfileobj(src, out)
        os.chmod(tmp, 0o755)
        os.replace(tmp, os.path.join(dest, name))
PY
rm -f "$dest/wheel/$WHEEL"
touch "$dest/.complete"
echo "setup-ort-openvino: $dest/$LIB ready ($(du -sh "$dest" | cut -f1))" >&2
