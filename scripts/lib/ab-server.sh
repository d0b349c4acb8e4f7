# Sourced by the side-by-side scripts (scripts/keep-warm-ab.sh, scripts/decode-nice-ab.sh): one
# release server at a time on A0 (random weights, seed 1) at 127.0.0.1:18090 (admin 18091), fed
# the small photo by loadtest. Needs a release build and loadtest. Sets BIN, LT, IMAGE, URL and
# A0 (the checkpoint, made once under $OUT), and defines:
#   ab_start [SERVE FLAGS]  starts the server (its pid in AB_PID) and waits until it is ready
#   ab_saturation           16 clients: 3 s of warm-up, then 10 s; prints "(RATE/s)"
#   ab_stop                 stops it
export ORT_DYLIB_PATH=${ORT_DYLIB_PATH:-$PWD/.ort/libonnxruntime.so.1.31.1}
BIN=target/release/repvgg-serve LT=target/release/loadtest
IMAGE=tests/fixtures/images/chelsea_q90.jpg URL=http://127.0.0.1:18090/classify
mkdir -p "$OUT"
A0=$OUT/a0.safetensors
[ -f "$A0" ] || $BIN init --variant A0 --output "$A0" --seed 1 2>/dev/null

ab_start() {
  $BIN serve --host 127.0.0.1 --port 18090 --grpc-port 0 --admin-port 18091 \
    --checkpoint "$A0" --no-cache "$@" 2>"$OUT/serve.log" &
  AB_PID=$!
  until curl -sf http://127.0.0.1:18090/readyz >/dev/null; do sleep 0.2; done
}

ab_stop() {
  kill "$AB_PID"
  wait "$AB_PID" 2>/dev/null || true
}

ab_saturation() {
  $LT run --url $URL --images $IMAGE --concurrency 16 --duration 3 --quiet >/dev/null 2>&1
  $LT run --url $URL --images $IMAGE --concurrency 16 --duration 10 --quiet 2>&1 |
    tail -1 | grep -o '([0-9.]*/s)'
}
