#!/usr/bin/env bash
# `make bench-classify`: `repvgg-serve classify` (in-process, bulk) against the server at
# saturation (loadtest, closed loop, 16 connections) on the same machine, in one run, on the
# images of `make bench`: the small photo (chelsea_q90.jpg, 451x300) and the 4032x3024 phone
# photo, model A0 with random weights (init --seed 1). Alternating, ROUNDS times each (median).
# Writes target/bench-classify/*.json and docs/bench/classify.md.
# Knobs: ROUNDS (3), SMALL_IMAGES (600), PHONE_IMAGES (60), SECONDS_PER_RUN (10).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=target/bench-classify
ROUNDS=${ROUNDS:-3}
SMALL_IMAGES=${SMALL_IMAGES:-600}
PHONE_IMAGES=${PHONE_IMAGES:-60}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
PORT=${PORT:-18093}
rm -rf "$OUT" && mkdir -p "$OUT" docs/bench
log() { echo "bench-classify: $*" >&2; }

scripts/setup-ort.sh
source scripts/lib/bench-venv.sh
cargo build --release -q --bin repvgg-serve
cargo build --release -q -p loadtest
BIN=target/release/repvgg-serve
LT=target/release/loadtest
$BIN init --variant A0 --output "$OUT/a0.safetensors" --seed 1 2>/dev/null
"$VENV/bin/python" loadtest/baselines/make_phone_photo.py tests/fixtures/images/coffee.png "$OUT/phone.jpg"

# folder NAME IMAGE COUNT: a folder of COUNT links to IMAGE
folder() {
  mkdir -p "$OUT/$1"
  for i in $(seq 1 "$3"); do ln -s "$(realpath "$2")" "$OUT/$1/$(printf %05d "$i").jpg"; done
}
folder small tests/fixtures/images/chelsea_q90.jpg "$SMALL_IMAGES"
folder phone "$OUT/phone.jpg" "$PHONE_IMAGES"

# bulk NAME FOLDER: images/s of `classify` (the model load is not counted: the summary's clock
# starts with the first image)
bulk() {
  rm -f "$OUT/$1.jsonl"
  $BIN classify --checkpoint "$OUT/a0.safetensors" --no-cache --images "$OUT/$2" \
    --output "$OUT/$1.jsonl" 2>"$OUT/$1.log"
  grep -o '([0-9.]* images/s)' "$OUT/$1.log" | tr -d '(' | cut -d' ' -f1
}

# served NAME IMAGE: requests/s of the server at saturation (one image per request)
served() {
  $BIN serve --host 127.0.0.1 --port "$PORT" --grpc-port 0 --admin-port 0 \
    --checkpoint "$OUT/a0.safetensors" --no-cache 2>"$OUT/$1-server.log" &
  local pid=$!
  for _ in $(seq 1 120); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.5; done
  $LT run --url "http://127.0.0.1:$PORT/classify" --images "$2" --concurrency 16 --duration 3 --quiet >/dev/null
  $LT run --url "http://127.0.0.1:$PORT/classify" --images "$2" --concurrency 16 \
    --duration "$SECONDS_PER_RUN" --quiet --output "$OUT/$1.json" >/dev/null
  kill -TERM "$pid"; wait "$pid" || true
  python3 -c "import json;print(round(json.load(open('$OUT/$1.json'))['throughput_rps'],1))"
}

results=()
for photo in small phone; do
  image=tests/fixtures/images/chelsea_q90.jpg
  [ $photo = phone ] && image=$OUT/phone.jpg
  for round in $(seq 1 "$ROUNDS"); do
    b=$(bulk "classify-$photo-$round" "$photo")
    s=$(served "server-$photo-$round" "$image")
    log "$photo round $round: classify $b images/s, server $s requests/s"
    results+=("$photo $round $b $s")
  done
done

cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
flags=$(grep -o 'amx_bf16\|avx512_bf16' /proc/cpuinfo | sort -u | tr '\n' ' ')
printf '%s\n' "${results[@]}" >"$OUT/results.txt"
python3 - "$OUT/results.txt" "$cpu" "$(nproc)" "$flags" "$SMALL_IMAGES" "$PHONE_IMAGES" "$SECONDS_PER_RUN" <<'PY' >docs/bench/classify.md
import statistics, sys
results, cpu, cores, flags, small_n, phone_n, seconds = sys.argv[1:]
rows = [line.split() for line in open(results).read().splitlines()]
print("# `classify` (bulk, in-process) against the server at saturation\n")
print(f"Written by `make bench-classify` (scripts/bench-classify.sh). CPU: {cpu}, {cores} cores"
      f" ({flags.strip() or 'no bf16 flags'}). Model A0, random weights, fp32, default sessions.")
print(f"`classify` over a folder of {small_n} links to the small photo (451x300 JPEG) and of"
      f" {phone_n} links to the phone photo (4032x3024 JPEG); its clock starts after the model"
      f" loaded. The server: `loadtest run`, closed loop, 16 connections, {seconds} s after 3 s of"
      " warm-up, one image per request. Alternating, one of each per round.\n")
print("| photo | round | classify images/s | server requests/s | ratio |")
print("|---|---|---|---|---|")
for photo, rnd, b, s in rows:
    print(f"| {photo} | {rnd} | {float(b):.1f} | {float(s):.1f} | {float(b)/float(s):.2f} |")
for photo in ("small", "phone"):
    bs = [float(r[2]) for r in rows if r[0] == photo]
    ss = [float(r[3]) for r in rows if r[0] == photo]
    print(f"\n**{photo} photo, medians:** classify {statistics.median(bs):.1f} images/s,"
          f" server {statistics.median(ss):.1f} requests/s, ratio"
          f" {statistics.median(bs)/statistics.median(ss):.2f}.")
PY
cat docs/bench/classify.md
