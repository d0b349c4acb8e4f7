# Sourced by scripts/setup-ort*.sh: pick the machine's architecture, fetch a pinned PyPI wheel
# (cp311, manylinux_2_28, that architecture), check its sha256, and extract files from it.

# The architecture runtimes are fetched for: REPVGG_ARCH if set (the Dockerfile passes the
# build's TARGETARCH; tests fetch aarch64 on x86_64), else `uname -m`; arm64 means aarch64.
target_arch() {
  local arch=${REPVGG_ARCH:-$(uname -m)}
  case "$arch" in
    x86_64 | amd64) echo x86_64 ;;
    aarch64 | arm64) echo aarch64 ;;
    *) echo "setup: no ONNX Runtime wheel is pinned for architecture $arch (x86_64 and aarch64 are)" >&2
       return 1 ;;
  esac
}

# fetch_wheel PACKAGE VERSION WHEEL_FILE SHA256 DEST: downloads into DEST/wheel/ unless there,
# fails (and deletes the file) when the hash differs. The platform tag is read from the file
# name (`..._manylinux_2_28_aarch64.whl`).
fetch_wheel() {
  local package=$1 version=$2 wheel=$3 sha=$4 dest=$5
  local platform=${wheel##*-}
  platform=${platform%.whl}
  mkdir -p "$dest/wheel"
  if [ ! -f "$dest/wheel/$wheel" ]; then
    echo "setup: downloading $wheel from PyPI" >&2
    python3 -m pip download --quiet "${package}==${version}" --no-deps --only-binary=:all: \
      --python-version 311 --implementation cp --abi cp311 --platform "$platform" \
      -d "$dest/wheel"
  fi
  local actual
  actual=$(sha256sum "$dest/wheel/$wheel" | cut -d' ' -f1)
  if [ "$actual" != "$sha" ]; then
    echo "setup: sha256 mismatch for $wheel: expected $sha, got $actual" >&2
    rm -f "$dest/wheel/$wheel"
    return 1
  fi
}

# extract_from_wheel WHEEL_PATH DEST FILE...: copies onnxruntime/capi/FILE to DEST/FILE
# (atomically, executable).
extract_from_wheel() {
  python3 - "$@" <<'PY'
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
}
