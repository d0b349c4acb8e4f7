# Sourced by the benchmark scripts: TorchServe, the server many of our users run today, as a
# peer (loadtest/baselines/torchserve_pillow_ort). Installs what it needs when missing: Java 17
# (Debian's openjdk-17-jre-headless) and its Python side in .venv-torchserve (re-installed when
# its requirements.txt changed); nothing of it is used at test time. Defines:
#   ts_archive WORKERS THREADS   pack $OUT/a0.onnx with the handler, WORKERS workers of
#                                THREADS onnxruntime threads each, into $OUT/ts-store
#   start_torchserve             serve it on 127.0.0.1:$TS_PORT (management and metrics on the
#                                next two ports), wait until it classifies $SMALL; SERVICE_PID
#   stop_torchserve              stop it (its Java frontend and every worker)
# Needs ROOT, OUT, SMALL, TS_PORT and log().
TS_VENV=.venv-torchserve
TS_DIR=loadtest/baselines/torchserve_pillow_ort

if ! java -version 2>&1 | grep -q 'version "17'; then
  log "installing Java 17 (openjdk-17-jre-headless) for TorchServe"
  SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
  $SUDO apt-get install -y -q openjdk-17-jre-headless >/dev/null ||
    { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q openjdk-17-jre-headless >/dev/null; }
fi
if ! cmp -s "$TS_DIR/requirements.txt" "$TS_VENV/.requirements" 2>/dev/null; then
  log "installing TorchServe's dependencies into $TS_VENV (torch included: its worker imports it)"
  python3 -m venv "$TS_VENV"
  "$TS_VENV/bin/pip" install -q -r "$TS_DIR/requirements.txt"
  cp "$TS_DIR/requirements.txt" "$TS_VENV/.requirements"
fi

ts_archive() {
  sed -e "s/^minWorkers: .*/minWorkers: $1/" -e "s/^maxWorkers: .*/maxWorkers: $1/" \
    -e "s/^  ort_threads: .*/  ort_threads: $2/" "$TS_DIR/model-config.yaml" >"$OUT/ts-model-config.yaml"
  rm -rf "$OUT/ts-store"
  mkdir -p "$OUT/ts-store"
  "$TS_VENV/bin/torch-model-archiver" --model-name repvgg --version 1.0 \
    --serialized-file "$OUT/a0.onnx" --handler "$TS_DIR/handler.py" \
    --extra-files loadtest/baselines/imagenet_pillow.py \
    --config-file "$OUT/ts-model-config.yaml" --export-path "$OUT/ts-store"
}

start_torchserve() {
  cat >"$OUT/ts-config.properties" <<PROPERTIES
inference_address=http://127.0.0.1:$TS_PORT
management_address=http://127.0.0.1:$((TS_PORT + 1))
metrics_address=http://127.0.0.1:$((TS_PORT + 2))
disable_token_authorization=true
enable_model_api=false
install_py_dep_per_model=false
vmargs=-Xmx1g
PROPERTIES
  rm -rf "$OUT/ts-logs"
  LOG_LOCATION="$ROOT/$OUT/ts-logs" METRICS_LOCATION="$ROOT/$OUT/ts-logs" PATH="$ROOT/$TS_VENV/bin:$PATH" \
    torchserve --start --foreground --ncs --disable-token-auth --model-store "$OUT/ts-store" \
    --models repvgg=repvgg.mar --ts-config "$OUT/ts-config.properties" >"$OUT/torchserve.log" 2>&1 &
  SERVICE_PID=$!
  for _ in $(seq 1 240); do
    curl -sf -H 'content-type: image/jpeg' --data-binary @"$SMALL" \
      "http://127.0.0.1:$TS_PORT/predictions/repvgg" >/dev/null && return 0
    sleep 0.5
  done
  log "TorchServe never classified an image; see $OUT/torchserve.log and $OUT/ts-logs"
  exit 1
}

stop_torchserve() {
  PATH="$ROOT/$TS_VENV/bin:$PATH" torchserve --stop >/dev/null 2>&1 || true
  stop_service
  # The Java frontend ends a moment after `--stop` returns; the next service needs its cores.
  for _ in $(seq 1 60); do
    pgrep -f "org.pytorch.serve.ModelServer.*$OUT/ts-config.properties" >/dev/null || return 0
    sleep 0.5
  done
  log "TorchServe did not stop"
  exit 1
}
