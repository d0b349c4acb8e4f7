# Sourced by the benchmark scripts: the Python baseline's dependencies (FastAPI, Pillow,
# onnxruntime; Pillow also makes the phone photo) in .venv-bench, installed when
# loadtest/baselines/fastapi_pillow_ort/requirements.txt changed. Sets VENV and BASELINE.
VENV=.venv-bench
BASELINE=loadtest/baselines/fastapi_pillow_ort
if ! cmp -s "$BASELINE/requirements.txt" "$VENV/.requirements" 2>/dev/null; then
  echo "bench: installing the Python baseline's dependencies into $VENV" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q -r "$BASELINE/requirements.txt"
  cp "$BASELINE/requirements.txt" "$VENV/.requirements"
fi
