#!/usr/bin/env bash
# The Python clients the Open Inference Protocol tests use (Triton's tritonclient with its HTTP
# and gRPC extras, numpy, Pillow), pinned in tests/v2/requirements.txt, in .venv-triton.
# A no-op when the venv already holds exactly those pins.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=$root/.venv-triton
requirements=$root/tests/v2/requirements.txt
stamp=$venv/.requirements
if [ -f "$stamp" ] && cmp -s "$stamp" "$requirements"; then
  exit 0
fi
echo "setup-tritonclient: installing $(grep -v '^#' "$requirements" | tr '\n' ' ')into $venv" >&2
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
cp "$requirements" "$stamp"
