#!/usr/bin/env bash
# `make bench`: every serving measurement side by side in one run on this machine, then
# docs/benchmarks.md written from the results (scripts/bench_report.py).
#
#   model     A0, random weights (`repvgg-serve init --variant A0 --seed 1`), input 224, fused
#   images    tests/fixtures/images/chelsea_q90.jpg (451x300, "small photo") and a 4032x3024
#             JPEG made from coffee.png (loadtest/baselines/make_phone_photo.py, "phone photo")
#   1. raw ONNX Runtime throughput (examples/ort_throughput), fused and three-branch, batch 1, 8,
#      with the server's default sessions x threads, and fused with one session on every core
#   2. saturation (closed loop) on the small photo of our server and the Python baseline
#      (loadtest/baselines/fastapi_pillow_ort, deps in .venv-bench), both running, measured
#      alternately three times each (medians used); then our server: saturation on the phone
#      photo, an open-loop sweep (Poisson arrivals, seed 1), latency at 1 request/s and at 80 % of saturation (3 runs),
#      overload at 3 x saturation
#   3. the Python baseline: saturation on the phone photo, the sweep, the same overload rate;
#      TorchServe (loadtest/baselines/torchserve_pillow_ort, scripts/lib/torchserve.sh): one
#      request at a time, saturation on both photos, the sweep at the baseline's rates; our
#      server again at the baseline's sweep rates
#   4. bf16, on a CPU with native bf16 (`amx_bf16` or `avx512_bf16`; elsewhere skipped and said
#      so in the report): raw ONNX Runtime + OpenVINO bf16 at batch 1, 8 with every core; our
#      server with --precision bf16 (saturation on both photos, with and without DCT scaling,
#      one request at a time); bf16 against fp32 (`repvgg-serve compare`) on every fixture
#      checkpoint and image
#   5. checkpoint -> /readyz for A0 and B3, fp32 and bf16, cold and from the cache; time to a
#      ready session (examples/time_to_ready); criterion micro-benchmarks (benches/)
#
# Results: target/bench/*.json, charts docs/bench/*.svg, report docs/benchmarks.md.
# Knobs (environment): SECONDS_PER_RUN (15), STEP_SECONDS (8), OVERLOAD_SECONDS (30),
# THREADS (cores), SKIP_CRITERION=1.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT=target/bench
THREADS=${THREADS:-$(nproc)}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-15}
STEP_SECONDS=${STEP_SECONDS:-8}
OVERLOAD_SECONDS=${OVERLOAD_SECONDS:-30}
OURS_PORT=${OURS_PORT:-18090}
PY_PORT=${PY_PORT:-18091}
TS_PORT=${TS_PORT:-18092} # and the next two: TorchServe's management and metrics
SMALL=tests/fixtures/images/chelsea_q90.jpg
PHONE=$OUT/phone_4032x3024.jpg
mkdir -p "$OUT" docs/bench
# What was measured, and when: the report names this commit even if it is re-written later.
printf '{"commit": "%s%s", "started": "%s"}\n' "$(git rev-parse --short HEAD)" \
  "$(git diff --quiet HEAD -- src loadtest scripts Cargo.lock || echo '+changes')" \
  "$(date -u '+%Y-%m-%d %H:%M UTC')" >"$OUT/run.json"

log() { echo "bench: $*" >&2; }

# --- setup -------------------------------------------------------------------------------
scripts/setup-ort.sh
source scripts/lib/bench-venv.sh
source scripts/lib/torchserve.sh
log "building (release)"
cargo build --release -q --bin repvgg-serve --example ort_throughput --example time_to_ready -p repvgg-serve
cargo build --release -q -p loadtest
BIN=target/release/repvgg-serve
LT=target/release/loadtest

$BIN init --variant A0 --output "$OUT/a0.safetensors" --seed 1 2>/dev/null
$BIN export --checkpoint "$OUT/a0.safetensors" --output "$OUT/a0.onnx" 2>/dev/null
$BIN export --checkpoint "$OUT/a0.safetensors" --output "$OUT/a0-unfused.onnx" --unfused 2>/dev/null
"$VENV/bin/python" loadtest/baselines/make_phone_photo.py tests/fixtures/images/coffee.png "$PHONE"

# --- raw ONNX Runtime ----------------------------------------------------------------------
# As the server runs it by default (SESSIONS sessions side by side, THREADS / SESSIONS intra-op
# threads each), and as one session with every core.
SESSIONS=$(( THREADS >= 2 ? 2 : 1 ))
PER_SESSION=$(( THREADS / SESSIONS ))
log "raw ONNX Runtime (fused, three-branch; batch 1, 8; $SESSIONS x $PER_SESSION threads and 1 x $THREADS)"
for form in fused unfused; do
  model="$OUT/a0.onnx"
  [ $form = unfused ] && model="$OUT/a0-unfused.onnx"
  for batch in 1 8; do
    target/release/examples/ort_throughput "$model" "$batch" "$SECONDS_PER_RUN" "$PER_SESSION" \
      "$SESSIONS" >"$OUT/raw-$form-b$batch.json"
  done
done
for batch in 1 8; do
  target/release/examples/ort_throughput "$OUT/a0.onnx" "$batch" "$SECONDS_PER_RUN" "$THREADS" 1 \
    >"$OUT/raw-fused-one-session-b$batch.json"
done

# --- services ------------------------------------------------------------------------------
SERVICE_PID=""
stop_service() {
  if [ -n "$SERVICE_PID" ]; then
    # shellcheck disable=SC2086 # one or two process ids
    kill -TERM $SERVICE_PID 2>/dev/null || true
    # shellcheck disable=SC2086
    wait $SERVICE_PID 2>/dev/null || true
    SERVICE_PID=""
  fi
}
trap 'stop_service; PATH="$ROOT/$TS_VENV/bin:$PATH" torchserve --stop >/dev/null 2>&1 || true' EXIT

wait_ready() {
  for _ in $(seq 1 120); do
    curl -sf "$1" >/dev/null && return 0
    sleep 0.5
  done
  log "service at $1 never became ready"
  exit 1
}

start_ours() {
  $BIN serve --host 127.0.0.1 --port "$OURS_PORT" --grpc-port 0 --checkpoint "$OUT/a0.safetensors" --no-cache \
    "$@" 2>"$OUT/ours.log" &
  SERVICE_PID=$!
  wait_ready "http://127.0.0.1:$OURS_PORT/readyz"
}

start_python() {
  REPVGG_ONNX="$ROOT/$OUT/a0.onnx" ORT_THREADS="$THREADS" "$VENV/bin/uvicorn" \
    --app-dir "$BASELINE" app:app --host 127.0.0.1 --port "$PY_PORT" --workers 1 \
    --log-level warning --no-access-log 2>"$OUT/python.log" &
  SERVICE_PID=$!
  wait_ready "http://127.0.0.1:$PY_PORT/healthz"
}

# saturation NAME URL IMAGE [ENCODING]: closed loop, 16 connections; prints the throughput
saturation() {
  local encoding=${4:-raw}
  $LT run --url "$2" --images "$3" --encoding "$encoding" --concurrency 16 --duration 3 \
    --quiet >/dev/null
  $LT run --url "$2" --images "$3" --encoding "$encoding" --concurrency 16 \
    --duration "$SECONDS_PER_RUN" --quiet --output "$OUT/$1.json" >&2
  python3 -c "import json;print(json.load(open('$OUT/$1.json'))['throughput_rps'])"
}

# rates SATURATION FRACTIONS...: the open-loop rates, comma-separated
rates() {
  python3 -c "import sys; s=float(sys.argv[1]); print(','.join(str(round(float(f)*s,1)) for f in sys.argv[2:]))" "$@"
}

# sweep NAME URL RATES: open-loop steps at RATES
sweep() {
  $LT sweep --url "$2" --images "$SMALL" --rates "$3" --duration "$STEP_SECONDS" \
    --output "$OUT/$1.json" --svg "$OUT/$1.svg"
}
# Each service is swept from 20 % to 150 % of its own saturation; ours also at the baseline's
# rates up to the baseline's saturation (the two compared step by step).
OWN_STEPS="0.2 0.4 0.6 0.8 0.9 1.0 1.2 1.5"
BASELINE_STEPS="0.2 0.4 0.6 0.8 0.9 1.0"

# one_at_a_time NAME URL: closed loop, one connection (each request alone in the service)
one_at_a_time() {
  $LT run --url "$2" --images "$SMALL" --concurrency 1 --duration "$SECONDS_PER_RUN" --quiet \
    --output "$OUT/$1.json" >&2
}

open_loop() { # NAME URL RATE SECONDS [IMAGE] [SEED]
  $LT run --url "$2" --images "${5:-$SMALL}" --rate "$3" --duration "$4" --seed "${6:-1}" --quiet \
    --output "$OUT/$1.json" >&2
}

OURS="http://127.0.0.1:$OURS_PORT/classify"
PY="http://127.0.0.1:$PY_PORT/classify"

# Saturation on the small photo, both services running, measured alternately three times each:
# a slow stretch of the shared machine then hits both sides alike, and the median of each is
# what the report and the rates below use.
log "saturation side by side: our server and the Python baseline alternately, three rounds"
start_ours
ours_pid=$SERVICE_PID
start_python
SERVICE_PID="$ours_pid $SERVICE_PID"
for round in 1 2 3; do
  saturation "ours-saturation-small-$round" "$OURS" "$SMALL" >/dev/null
  saturation "python-saturation-small-$round" "$PY" "$SMALL" >/dev/null
done
stop_service
# median NAME: copies the median of NAME-1..3 (by throughput) to NAME.json, prints its rate
median() {
  python3 -c "import json,shutil,sys; o=sys.argv[1]; runs=sorted((json.load(open(f'{o}-{i}.json'))['throughput_rps'], i) for i in (1,2,3));
rate, i = runs[1]; shutil.copy(f'{o}-{i}.json', f'{o}.json'); print(rate)" "$OUT/$1"
}
OURS_SAT=$(median ours-saturation-small)
PY_SAT=$(median python-saturation-small)

log "our server"
start_ours
# The Open Inference Protocol's binary form (tritonclient's default) on the same server.
saturation ours-v2-saturation-small "http://127.0.0.1:$OURS_PORT/v2/models/repvgg/infer" \
  "$SMALL" v2-binary >/dev/null
saturation ours-saturation-phone "$OURS" "$PHONE" >/dev/null
open_loop ours-rate1 "$OURS" 1 "$SECONDS_PER_RUN"
one_at_a_time ours-one-at-a-time "$OURS"
# Issue 22's tail targets (p99 / p50 at 20, 40, 60 and 80 % of saturation, Poisson), three
# runs each (arrival seeds 1-3), alternating the loads: on a shared machine one pause can decide a
# single run's p99.
for run in 1 2 3; do
  for pct in 20 40 60 80; do
    open_loop "ours-tail$pct-$run" "$OURS" "$(python3 -c "print(round($pct*$OURS_SAT/100,1))")" \
      $((SECONDS_PER_RUN + 5)) "$SMALL" "$run"
  done
done
sweep ours-sweep "$OURS" "$(rates "$OURS_SAT" $OWN_STEPS)"
OVERLOAD=$(python3 -c "print(round(3*$OURS_SAT,1))")
open_loop ours-overload "$OURS" "$OVERLOAD" "$OVERLOAD_SECONDS"
stop_service

log "our server with DCT-scaled JPEG decoding (--jpeg-dct-scaling)"
start_ours --jpeg-dct-scaling
saturation ours-dct-saturation-phone "$OURS" "$PHONE" >/dev/null
stop_service

log "Python baseline (FastAPI + Pillow + onnxruntime)"
start_python
one_at_a_time python-one-at-a-time "$PY"
saturation python-saturation-phone "$PY" "$PHONE" >/dev/null
sweep python-sweep "$PY" "$(rates "$PY_SAT" $OWN_STEPS)"
open_loop python-overload "$PY" "$OVERLOAD" "$OVERLOAD_SECONDS"
stop_service

log "TorchServe (dynamic batching: batchSize 8, maxBatchDelay 5 ms; $SESSIONS workers x $PER_SESSION threads)"
ts_archive "$SESSIONS" "$PER_SESSION"
start_torchserve
TS="http://127.0.0.1:$TS_PORT/predictions/repvgg"
one_at_a_time torchserve-one-at-a-time "$TS"
saturation torchserve-saturation-small "$TS" "$SMALL" >/dev/null
saturation torchserve-saturation-phone "$TS" "$PHONE" >/dev/null
sweep torchserve-sweep "$TS" "$(rates "$PY_SAT" $BASELINE_STEPS)"
stop_torchserve

log "our server at the Python baseline's sweep rates"
start_ours
$LT run --url "$OURS" --images "$SMALL" --concurrency 16 --duration 3 --quiet >/dev/null
sweep ours-sweep-python-rates "$OURS" "$(rates "$PY_SAT" $BASELINE_STEPS)"
stop_service
# One series for ours on the chart: every rate it was swept at.
python3 -c "import json,sys; steps=[s for f in sys.argv[1:] for s in json.load(open(f))];
json.dump(sorted(steps, key=lambda s: s['offered']), open('$OUT/ours-sweep-all.json','w'))" \
  "$OUT/ours-sweep.json" "$OUT/ours-sweep-python-rates.json"

$LT chart --title "A0, chelsea_q90.jpg, open loop (Poisson): repvgg-serve, FastAPI + Pillow + onnxruntime, TorchServe" \
  --series "repvgg-serve=$OUT/ours-sweep-all.json" --series "python baseline=$OUT/python-sweep.json" \
  --series "torchserve=$OUT/torchserve-sweep.json" \
  --output docs/bench/sweep.svg

# --- bf16 -----------------------------------------------------------------------------------
# CPU model and its native bf16 flags, for the report (which says so when there are none).
python3 - >"$OUT/cpu.json" <<'PY'
import json, re
info = open("/proc/cpuinfo").read()
model = re.search(r"^model name\s*:\s*(.*)$", info, re.M)
flags = set(re.search(r"^flags\s*:\s*(.*)$", info, re.M).group(1).split())
print(json.dumps({"model": model.group(1) if model else "unknown",
                  "bf16_flags": sorted(flags & {"amx_bf16", "avx512_bf16"})}))
PY
rm -f "$OUT"/*bf16*.json "$OUT"/agreement-*.json
if grep -q 'amx_bf16\|avx512_bf16' /proc/cpuinfo; then
  scripts/setup-ort-openvino.sh
  log "raw ONNX Runtime + OpenVINO bf16 (fused; batch 1, 8; 1 x $THREADS threads)"
  for batch in 1 8; do
    target/release/examples/ort_throughput "$OUT/a0.onnx" "$batch" "$SECONDS_PER_RUN" "$THREADS" 1 \
      bf16 >"$OUT/raw-bf16-b$batch.json"
  done
  log "our server with --precision bf16"
  # Measured wherever the CPU has native bf16, also where start-up would refuse it as slower.
  start_ours --precision bf16 --bf16-min-speedup 0
  saturation ours-bf16-saturation-small "$OURS" "$SMALL" >/dev/null
  saturation ours-bf16-saturation-phone "$OURS" "$PHONE" >/dev/null
  one_at_a_time ours-bf16-one-at-a-time "$OURS"
  stop_service
  start_ours --precision bf16 --bf16-min-speedup 0 --jpeg-dct-scaling
  saturation ours-bf16-dct-saturation-phone "$OURS" "$PHONE" >/dev/null
  stop_service
  log "bf16 against fp32 on every fixture checkpoint (repvgg-serve compare)"
  for checkpoint in tests/fixtures/checkpoints/*.pth tests/fixtures/checkpoints/*.safetensors \
    ../shared/fixtures/checkpoints/a0_official_train.pth; do
    [ -f "$checkpoint" ] || continue
    $BIN compare --checkpoint "$checkpoint" --images tests/fixtures/images --json \
      --cache-dir "$OUT/compare-cache" 2>/dev/null >"$OUT/agreement-$(basename "$checkpoint").json"
  done
else
  log "no native bf16 on this CPU (neither amx_bf16 nor avx512_bf16): bf16 rows skipped"
fi

# --- start-up and micro-benchmarks ---------------------------------------------------------
# ready_seconds NAME CACHE_DIR SERVE_ARGS...: seconds from launching `serve` to /readyz 200.
ready_seconds() {
  local name=$1 cache=$2 started
  shift 2
  started=$(date +%s.%N)
  $BIN serve --host 127.0.0.1 --port "$OURS_PORT" --grpc-port 0 --cache-dir "$cache" "$@" \
    2>"$OUT/$name.log" &
  SERVICE_PID=$!
  until curl -sf "http://127.0.0.1:$OURS_PORT/readyz" >/dev/null; do
    kill -0 "$SERVICE_PID" 2>/dev/null || { log "$name: the server exited (see $OUT/$name.log)"; exit 1; }
    sleep 0.05
  done
  python3 -c "print(round($(date +%s.%N) - $started, 3))"
  stop_service
}

log "checkpoint -> ready (A0, B3; fp32 and bf16; cold and cached)"
$BIN init --variant B3 --output "$OUT/b3.safetensors" --seed 1 2>/dev/null
PRECISIONS=fp32
grep -q 'amx_bf16\|avx512_bf16' /proc/cpuinfo && PRECISIONS="fp32 bf16"
: >"$OUT/serve-ready.jsonl"
for variant in a0 b3; do
  for precision in $PRECISIONS; do
    cache="$OUT/ready-cache-$variant-$precision"
    rm -rf "$cache"
    args=(--checkpoint "$OUT/$variant.safetensors" --precision "$precision")
    [ "$precision" = bf16 ] && args+=(--bf16-min-speedup 0)
    cold=$(ready_seconds "ready-$variant-$precision-cold" "$cache" "${args[@]}")
    cached=$(ready_seconds "ready-$variant-$precision-cached" "$cache" "${args[@]}")
    echo "{\"variant\": \"$variant\", \"precision\": \"$precision\", \"cold_s\": $cold, \"cached_s\": $cached}" \
      >>"$OUT/serve-ready.jsonl"
    rm -rf "$cache"
  done
done

log "time to ready"
target/release/examples/time_to_ready "$OUT/a0.safetensors" >"$OUT/time-to-ready.json"
if [ "${SKIP_CRITERION:-0}" != 1 ]; then
  log "criterion micro-benchmarks (benches/)"
  for bench in preprocess inference fusion; do
    cargo bench -q --bench "$bench" -- --warm-up-time 1 --measurement-time 3 --noplot >&2
  done
fi

python3 scripts/bench_report.py "$OUT" docs/benchmarks.md "$THREADS"
log "wrote docs/benchmarks.md"
