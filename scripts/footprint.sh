#!/usr/bin/env bash
# `make footprint`: time to ready and memory of every variant (or those given), ours next to
# raw ONNX Runtime in the same run; writes docs/footprint.md. About 5 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-bench
BASELINE=loadtest/baselines/fastapi_pillow_ort
scripts/setup-ort.sh
if ! cmp -s "$BASELINE/requirements.txt" "$VENV/.requirements" 2>/dev/null; then
  echo "footprint: installing the Python baseline's dependencies into $VENV" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q -r "$BASELINE/requirements.txt"
  cp "$BASELINE/requirements.txt" "$VENV/.requirements"
fi
cargo build --release -q --bin repvgg-serve
mkdir -p target/footprint
"$VENV/bin/python" scripts/footprint.py target/footprint/footprint.jsonl "$@"
python3 scripts/footprint_report.py target/footprint/footprint.jsonl docs/footprint.md
echo "footprint: wrote docs/footprint.md" >&2
