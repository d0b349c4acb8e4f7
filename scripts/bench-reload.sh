#!/usr/bin/env bash
# `make bench-reload`: model control under load, on the release server (--model-control
# explicit, no cache: every load fuses).
#  1. For each variant in VARIANTS (A0, B3; random weights from `init`, seeds 1 and 2): the
#     saturation throughput (loadtest, closed loop, 16 connections), then Poisson arrivals at
#     LOAD_SHARE (0.5) of it for BEFORE_S + AFTER_S seconds with every answer kept
#     (`loadtest run --timeline`); BEFORE_S seconds in, version 2 is renamed into the
#     repository and `POST /v2/repository/models/{m}/load` called. Resident memory is sampled
#     every 100 ms meanwhile. Once per value of LOAD_NICES ("10 0": the default --load-nice,
#     then the load at serving priority), each on a fresh server, at the same rate.
#  2. Two models (A0 and B3) served by one process, each at saturation at the same time, against
#     each served alone (throughput at saturation, p50 of one request at a time).
# Writes target/bench-reload/* and docs/bench/reload.md (scripts/bench_reload_report.py).
# Knobs: VARIANTS ("A0 B3"), LOAD_NICES ("10 0"), LOAD_SHARE (0.5), BEFORE_S (15), AFTER_S (25), SECONDS_PER_RUN (10).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=target/bench-reload
VARIANTS=${VARIANTS:-"A0 B3"}
LOAD_NICES=${LOAD_NICES:-"10 0"}
LOAD_SHARE=${LOAD_SHARE:-0.5}
BEFORE_S=${BEFORE_S:-15}
AFTER_S=${AFTER_S:-25}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
PORT=${PORT:-18095}
ADMIN_PORT=${ADMIN_PORT:-18096}
IMAGE=tests/fixtures/images/chelsea_q90.jpg
rm -rf "$OUT" && mkdir -p "$OUT" docs/bench
log() { echo "bench-reload: $*" >&2; }
now_ms() { date +%s%3N; }

scripts/setup-ort.sh
cargo build --release -q --bin repvgg-serve
cargo build --release -q -p loadtest
BIN=target/release/repvgg-serve
LT=target/release/loadtest
URL=http://127.0.0.1:$PORT/classify

# serve REPOSITORY LOG [FLAG...]: the server on a repository, ready; prints its pid
serve() {
  local repo=$1 log_file=$2
  shift 2
  $BIN serve --host 127.0.0.1 --port "$PORT" --grpc-port 0 --admin-port "$ADMIN_PORT" \
    --model-repository "$repo" --model-control explicit --no-cache "$@" 2>"$log_file" >/dev/null &
  local pid=$!
  for _ in $(seq 1 600); do
    curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && { echo "$pid"; return; }
    kill -0 "$pid" 2>/dev/null || { log "the server failed to start: $log_file"; exit 1; }
    sleep 0.2
  done
  log "the server was not ready within 120 s: $log_file"; exit 1
}
# stop PID: SIGTERM, then wait until it is gone (it is not this shell's child: `serve` ran in $(...))
stop() {
  kill -TERM "$1"
  while kill -0 "$1" 2>/dev/null; do sleep 0.1; done
}

# saturation QUERY NAME: requests/s at 16 connections (after 3 s of warm-up)
saturation() {
  $LT run --url "$URL$1" --images "$IMAGE" --concurrency 16 --duration 3 --quiet >/dev/null
  $LT run --url "$URL$1" --images "$IMAGE" --concurrency 16 --duration "$SECONDS_PER_RUN" \
    --quiet --output "$OUT/$2.json" >/dev/null
  python3 -c "import json;print(round(json.load(open('$OUT/$2.json'))['throughput_rps'],2))"
}

# rss PID FILE: resident memory (KiB) every 100 ms, with the time (ms since the epoch)
rss() {
  while kill -0 "$1" 2>/dev/null; do
    echo "$(now_ms) $(awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null)" >>"$2"
    sleep 0.1
  done
}

for variant in $VARIANTS; do
  m=$(echo "$variant" | tr 'A-Z' 'a-z')
  $BIN init --variant "$variant" --seed 1 --output "$OUT/$m-first.safetensors" 2>/dev/null
  $BIN init --variant "$variant" --seed 2 --output "$OUT/$m-next.safetensors" 2>/dev/null
  rate=""
  for nice in $LOAD_NICES; do
    run=$m-nice$nice
    repo=$OUT/repo-$run
    mkdir -p "$repo/$m/1" && cp "$OUT/$m-first.safetensors" "$repo/$m/1/w.safetensors"
    pid=$(serve "$repo" "$OUT/$run-server.log" --load-nice "$nice")
    if [ -z "$rate" ]; then
      sat=$(saturation "" "$m-saturation")
      rate=$(python3 -c "print(round($sat * $LOAD_SHARE, 2))")
      log "$variant: saturation $sat requests/s; reloads under Poisson arrivals at $rate/s"
    fi
    rss "$pid" "$OUT/$run-rss.txt" &
    sampler=$!
    $LT run --url "$URL" --images "$IMAGE" --rate "$rate" --duration $((BEFORE_S + AFTER_S)) \
      --quiet --timeline "$OUT/$run-timeline.csv" --output "$OUT/$run-reload.json" >/dev/null &
    loadtest=$!
    sleep "$BEFORE_S"
    mkdir "$repo/$m/.2" && cp "$OUT/$m-next.safetensors" "$repo/$m/.2/w.safetensors"
    mv "$repo/$m/.2" "$repo/$m/2"
    called=$(now_ms)
    curl -sf -X POST "http://127.0.0.1:$ADMIN_PORT/v2/repository/models/$m/load" >/dev/null
    returned=$(now_ms)
    wait "$loadtest"
    kill "$sampler" 2>/dev/null || true
    stop "$pid"
    log "$variant, --load-nice $nice: load call $((returned - called)) ms"
    echo "$variant $nice $sat $rate $called $returned" >>"$OUT/reloads.txt"
  done
done

# Two models in one process against each alone.
two=$OUT/repo-two
for m in a0 b3; do
  mkdir -p "$two/$m/1"
  variant=$(echo "$m" | tr 'a-z' 'A-Z')
  $BIN init --variant "$variant" --seed 1 --output "$two/$m/1/w.safetensors" 2>/dev/null
done
for m in a0 b3; do
  alone=$OUT/repo-alone-$m
  mkdir -p "$alone" && cp -r "$two/$m" "$alone/"
  pid=$(serve "$alone" "$OUT/alone-$m-server.log")
  sat=$(saturation "?model=$m" "alone-$m")
  $LT run --url "$URL?model=$m" --images "$IMAGE" --concurrency 1 --duration "$SECONDS_PER_RUN" \
    --quiet --output "$OUT/alone-$m-one.json" >/dev/null
  stop "$pid"
  log "$m alone: $sat requests/s at saturation"
done
pid=$(serve "$two" "$OUT/together-server.log")
for m in a0 b3; do
  $LT run --url "$URL?model=$m" --images "$IMAGE" --concurrency 16 --duration 3 --quiet >/dev/null
done
runs=()
for m in a0 b3; do
  $LT run --url "$URL?model=$m" --images "$IMAGE" --concurrency 16 \
    --duration "$SECONDS_PER_RUN" --quiet --output "$OUT/together-$m.json" >/dev/null &
  runs+=($!)
done
wait "${runs[@]}"
for m in a0 b3; do
  $LT run --url "$URL?model=$m" --images "$IMAGE" --concurrency 1 --duration "$SECONDS_PER_RUN" \
    --quiet --output "$OUT/together-$m-one.json" >/dev/null
done
stop "$pid"

cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
family=$(awk -F': ' '/^cpu family/ {f=$2} /^model\t/ {m=$2} END {print "family " f " model " m}' /proc/cpuinfo)
isa=$(grep -o -m1 -w 'avx512f' /proc/cpuinfo | head -1 || true)
python3 scripts/bench_reload_report.py "$OUT" "$cpu ($family, ${isa:-AVX2 only, no AVX-512}), $(nproc) cores" "$LOAD_SHARE" "$BEFORE_S" \
  "$SECONDS_PER_RUN" >docs/bench/reload.md
cat docs/bench/reload.md
