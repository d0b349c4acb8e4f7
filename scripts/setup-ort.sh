#!/usr/bin/env bash
# Fetch ONNX Runtime's shared library from the pinned PyPI wheel and put it in .ort/.
#
# The `ort` crate is built with `load-dynamic`: nothing is downloaded at build time, and the
# binary loads libonnxruntime.so at start-up (--ort-dylib, ORT_DYLIB_PATH, or .ort/ by default).
# The wheel is pinned by version, platform and sha256; the shared library inside it is the
# same for every CPython tag, we pin cp311 so the hash is stable whatever Python runs pip.
set -euo pipefail

ORT_VERSION=1.31.1
WHEEL=onnxruntime-${ORT_VERSION}-cp311-cp311-manylinux_2_28_x86_64.whl
WHEEL_SHA256=5752bd508126ae7c49894d3b9d2e83f0c3d487319246d04c444b393308d7ad7f
LIB=libonnxruntime.so.${ORT_VERSION}

root=$(cd "$(dirname "$0")/.." && pwd)
dest=${1:-$root/.ort}

if [ -f "$dest/$LIB" ]; then
  exit 0
fi
mkdir -p "$dest/wheel"
if [ ! -f "$dest/wheel/$WHEEL" ]; then
  echo "setup-ort: downloading $WHEEL from PyPI" >&2
  python3 -m pip download --quiet "onnxruntime==${ORT_VERSION}" --no-deps --only-binary=:all: \
    --python-version 311 --implementation cp --abi cp311 --platform manylinux_2_28_x86_64 \
    -d "$dest/wheel"
fi
actual=$(sha256sum "$dest/wheel/$WHEEL" | cut -d' ' -f1)
if [ "$actual" != "$WHEEL_SHA256" ]; then
  echo "setup-ort: sha256 mismatch for $WHEEL: expected $WHEEL_SHA256, got $actual" >&2
  rm -f "$dest/wheel/$WHEEL"
  exit 1
fi
python3 - "$dest/wheel/$WHEEL" "$dest" "$LIB" <<'PY'
import sys, zipfile, shutil, os
wheel, dest, lib = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open(f"onnxruntime/capi/{lib}") as src:
    tmp = os.path.join(dest, lib + ".part")
    with open(tmp, "wb") as out:
        shutil.copyfileobj(src, out)
    os.replace(tmp, os.path.join(dest, lib))
PY
echo "setup-ort: $dest/$LIB ready" >&2
