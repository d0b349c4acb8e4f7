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
OUT=target/keep-warm-ab
source scripts/lib/ab-server.sh
latency() { $LT run --url $URL --images $IMAGE --rate "$1" --duration 20 --seed "$ROUND" --quiet 2>&1 |
  tail -1 | grep -o 'p50.*p99 [0-9.]*'; }
for period in $PERIODS; do
  ab_start --keep-warm-ms "$period"
  one=$(latency 1)
  twelve=$(latency 12)
  saturation=$(ab_saturation)
  warm=$(curl -s http://127.0.0.1:18091/metrics | awk '/^repvgg_keep_warm_runs_total/ {print $2}')
  cpu=$(ps -o times= -p "$AB_PID" | tr -d ' ')
  echo "round $ROUND keep-warm $period ms: 1 req/s [$one] | 12 req/s [$twelve] | saturation $saturation | warm runs ${warm:-0} | server CPU ${cpu} s"
  ab_stop
done
