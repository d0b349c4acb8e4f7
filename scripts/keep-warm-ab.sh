#!/usr/bin/env bash
# scripts/keep-warm-ab.sh ROUND [PERIODS]: --keep-warm-ms side by side (docs/anatomy.md, "The
# lowest step"). For each period (default "0 100"; 0 = off), one server at a time on A0 (random
# weights, seed 1): Poisson 1 req/s for 20 s, Poisson 12 req/s for 20 s (seed = ROUND), then
# saturation (16 clients, 3 s warm-up, 10 s); prints p50/p90/p99, the saturation rate, the warm
# runs counted by /metrics and the server's CPU time. Needs a release build and loadtest.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUND=${1:?round}
PERIODS=${2:-0 100}
export ORT_DYLIB_PATH=${ORT_DYLIB_PATH:-$PWD/.ort/libonnxruntime.so.1.31.1}
BIN=target/release/repvgg-serve LT=target/release/loadtest
IMAGE=tests/fixtures/images/chelsea_q90.jpg URL=http://127.0.0.1:18090/classify
OUT=target/keep-warm-ab
mkdir -p "$OUT"
[ -f "$OUT/a0.safetensors" ] || $BIN init --variant A0 --output "$OUT/a0.safetensors" --seed 1 2>/dev/null
latency() { $LT run --url $URL --images $IMAGE --rate "$1" --duration 20 --seed "$ROUND" --quiet 2>&1 |
  tail -1 | grep -o 'p50.*p99 [0-9.]*'; }
for period in $PERIODS; do
  $BIN serve --host 127.0.0.1 --port 18090 --grpc-port 0 --admin-port 18091 \
    --checkpoint "$OUT/a0.safetensors" --no-cache --keep-warm-ms "$period" 2>"$OUT/serve.log" &
  pid=$!
  until curl -sf http://127.0.0.1:18090/readyz >/dev/null; do sleep 0.2; done
  one=$(latency 1)
  twelve=$(latency 12)
  $LT run --url $URL --images $IMAGE --concurrency 16 --duration 3 --quiet >/dev/null 2>&1
  saturation=$($LT run --url $URL --images $IMAGE --concurrency 16 --duration 10 --quiet 2>&1 |
    tail -1 | grep -o '([0-9.]*/s)')
  warm=$(curl -s http://127.0.0.1:18091/metrics | awk '/^repvgg_keep_warm_runs_total/ {print $2}')
  cpu=$(ps -o times= -p $pid | tr -d ' ')
  echo "round $ROUND keep-warm $period ms: 1 req/s [$one] | 12 req/s [$twelve] | saturation $saturation | warm runs ${warm:-0} | server CPU ${cpu} s"
  kill $pid
  wait $pid 2>/dev/null || true
done
