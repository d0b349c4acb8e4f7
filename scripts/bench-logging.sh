#!/usr/bin/env bash
# Throughput at saturation with per-request logging on (RUST_LOG=info, one line per request)
# and off (RUST_LOG=warn), alternating runs in one session. Metrics are always recorded.
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE=${1:-tests/fixtures/images/chelsea_q90.jpg}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-15}
OUT=target/bench
mkdir -p "$OUT"
cargo build --release -q --bin repvgg-serve -p repvgg-serve
cargo build --release -q -p loadtest
[ -f "$OUT/a0.safetensors" ] || target/release/repvgg-serve init --variant A0 --output "$OUT/a0.safetensors" --seed 1
PORT=${PORT:-18082}
for round in 1 2; do
  for level in info warn; do
    RUST_LOG=$level target/release/repvgg-serve serve --host 127.0.0.1 --port "$PORT" \
      --checkpoint "$OUT/a0.safetensors" --no-cache 2>"$OUT/serve-$level.log" &
    pid=$!
    for _ in $(seq 1 60); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.5; done
    target/release/loadtest run --url "http://127.0.0.1:$PORT/classify" --images "$IMAGE" \
      --concurrency 16 --duration 3 --quiet >/dev/null
    result=$(target/release/loadtest run --url "http://127.0.0.1:$PORT/classify" --images "$IMAGE" \
      --concurrency 16 --duration "$SECONDS_PER_RUN" --quiet)
    echo "round $round RUST_LOG=$level: $result"
    kill -TERM $pid; wait $pid || true
  done
done
