#!/usr/bin/env bash
# scripts/decode-nice-ab.sh ROUND [NICES]: decoding at a lower priority than inference, side by
# side (docs/anatomy.md, "Tried and not kept: decoding at a lower priority"). For each nice value
# (default "0 10"; 0 = untouched), one server at a time on A0 (random weights, seed 1): every
# `preprocess-*` thread of the running server is reniced (ONNX Runtime's threads stay at serving
# priority), then Poisson arrivals at each of RATES (default "16.3 32.6 48.9 65.2" req/s) for DUR
# seconds each (default 20, seed = ROUND), then saturation (16 clients, 3 s warm-up, 10 s) unless
# NOSAT=1. Prints p50/p99 per rate and the saturation rate. Needs a release build and loadtest.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUND=${1:?round}
NICES=${2:-0 10}
OUT=target/decode-nice-ab
source scripts/lib/ab-server.sh
latency() { $LT run --url $URL --images $IMAGE --rate "$1" --duration "${DUR:-20}" --seed "$ROUND" \
  --quiet 2>&1 | tail -1 | grep -o 'p50 [0-9.]*\|p99 [0-9.]*' | awk '{print $2}' | paste -sd/; }
for nice in $NICES; do
  ab_start
  if [ "$nice" != 0 ]; then
    for task in /proc/$AB_PID/task/*; do
      if grep -q '^preprocess' "$task/comm"; then renice -n "$nice" -p "$(basename "$task")" >/dev/null; fi
    done
  fi
  steps=""
  for rate in ${RATES:-16.3 32.6 48.9 65.2}; do steps="$steps $rate req/s: $(latency "$rate")"; done
  saturation=-
  if [ -z "${NOSAT:-}" ]; then
    saturation=$(ab_saturation)
  fi
  echo "round $ROUND decode nice $nice:$steps | saturation $saturation"
  ab_stop
done
