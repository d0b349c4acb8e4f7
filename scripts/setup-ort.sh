#!/usr/bin/env bash
# Fetch ONNX Runtime's shared library from the pinned PyPI wheel and put it in .ort/.
#
# The `ort` crate is built with `load-dynamic`: nothing is downloaded at build time, and the
# binary loads libonnxruntime.so at start-up (--ort-dylib, ORT_DYLIB_PATH, or .ort/ by default).
# The wheel is chosen by architecture (`uname -m`, or REPVGG_ARCH: x86_64 or aarch64) and
# pinned by version, platform and sha256; the shared library inside it is the same for every
# CPython tag, we pin cp311 so the hash is stable whatever Python runs pip.
set -euo pipefail
source "$(dirname "$0")/lib/wheel.sh"

ORT_VERSION=1.31.1
ARCH=$(target_arch)
case "$ARCH" in
  x86_64) WHEEL_SHA256=5752bd508126ae7c49894d3b9d2e83f0c3d487319246d04c444b393308d7ad7f ;;
  aarch64) WHEEL_SHA256=da05378364c44d4407e463982d2bf8d5e4cfea873283757e48beeb41df97b7f3 ;;
esac
WHEEL=onnxruntime-${ORT_VERSION}-cp311-cp311-manylinux_2_28_${ARCH}.whl
LIB=libonnxruntime.so.${ORT_VERSION}

root=$(cd "$(dirname "$0")/.." && pwd)
dest=${1:-$root/.ort}

if [ -f "$dest/$LIB" ]; then
  exit 0
fi
fetch_wheel onnxruntime "$ORT_VERSION" "$WHEEL" "$WHEEL_SHA256" "$dest"
extract_from_wheel "$dest/wheel/$WHEEL" "$dest" "$LIB"
echo "setup-ort: $dest/$LIB ready" >&2
