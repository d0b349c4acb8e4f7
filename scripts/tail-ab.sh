#!/usr/bin/env bash
# Side by side, without tracing: for each NAME=BINARY[:SERVE FLAGS] in turn, the A0 server
# (random weights, seed 1) on the small photo: saturation (closed loop, 16 clients, 10 s after
# 3 s of warm-up), then Poisson arrivals at 20 and 30 req/s for 30 s each (seed = ROUND).
#
#   scripts/tail-ab.sh ROUND before=/tmp/old-repvgg-serve after=target/release/repvgg-serve:--core-budget=true
set -euo pipefail
cd "$(dirname "$0")/.."
round=$1
shift
OUT=${OUT:-target/tail-ab}
mkdir -p "$OUT"
MODEL="$OUT/a0.safetensors"
IMG=tests/fixtures/images/chelsea_q90.jpg
LT=target/release/loadtest
PORT=${PORT:-18555}
[ -f "$MODEL" ] || target/release/repvgg-serve init --variant A0 --output "$MODEL" --seed 1 2>/dev/null
for variant in "$@"; do
  name=${variant%%=*}
  spec=${variant#*=}
  bin=${spec%%:*}
  flags=""
  [ "$bin" != "$spec" ] && flags=${spec#*:}
  # shellcheck disable=SC2086 # flags are words
  "$bin" serve --host 127.0.0.1 --port "$PORT" --grpc-port 0 --admin-port 0 --checkpoint "$MODEL" \
    --no-cache $flags 2>/dev/null &
  pid=$!
  until curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null; do
    kill -0 "$pid" 2>/dev/null || { echo "tail-ab: $name did not start" >&2; exit 1; }
    sleep 0.2
  done
  url="http://127.0.0.1:$PORT/classify"
  $LT run --url "$url" --images "$IMG" --concurrency 16 --duration 3 --quiet >/dev/null
  $LT run --url "$url" --images "$IMG" --concurrency 16 --duration 10 --quiet \
    --output "$OUT/$round-$name-sat.json" >/dev/null
  for rate in 20 30; do
    $LT run --url "$url" --images "$IMG" --rate "$rate" --duration 30 --seed "$round" --quiet \
      --output "$OUT/$round-$name-$rate.json" >/dev/null
  done
  kill -TERM "$pid"
  wait "$pid" || true
  python3 - "$OUT" "$round" "$name" <<'PY'
import json, sys
out, rnd, name = sys.argv[1:]
sat = json.load(open(f"{out}/{rnd}-{name}-sat.json"))["throughput_rps"]
cells = [f"{name}: saturation {sat:.1f} req/s"]
for rate in (20, 30):
    lat = json.load(open(f"{out}/{rnd}-{name}-{rate}.json"))["latency_ms"]
    cells.append(f"{rate} req/s p50 {lat['p50']:.1f} p99 {lat['p99']:.1f} ms")
print("; ".join(cells))
PY
done
