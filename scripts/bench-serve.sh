#!/usr/bin/env bash
# Side-by-side serving benchmark on this machine (A0, random weights from `init`, 224):
#   raw ONNX Runtime (fused and three-branch, batch 1 and 8, same intra-op threads)
#   our server at saturation (closed loop), and latency at 1 req/s and at 80% of saturation.
# Writes target/bench/serve.json and prints a summary. Usage: scripts/bench-serve.sh [IMAGE]
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE=${1:-tests/fixtures/images/chelsea_q90.jpg}
THREADS=${THREADS:-$(nproc)}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-20}
OUT=target/bench
mkdir -p "$OUT"
scripts/setup-ort.sh
cargo build --release -q --bin repvgg-serve --example ort_throughput -p repvgg-serve
cargo build --release -q -p loadtest
BIN=target/release/repvgg-serve
LT=target/release/loadtest

$BIN init --variant A0 --output "$OUT/a0.safetensors" --seed 1 2>/dev/null
$BIN export --checkpoint "$OUT/a0.safetensors" --output "$OUT/a0.onnx" 2>/dev/null
$BIN export --checkpoint "$OUT/a0.safetensors" --output "$OUT/a0-unfused.onnx" --unfused 2>/dev/null

raw() { target/release/examples/ort_throughput "$1" "$2" "$SECONDS_PER_RUN" "$THREADS"; }
FUSED_B1=$(raw "$OUT/a0.onnx" 1)
FUSED_B8=$(raw "$OUT/a0.onnx" 8)
UNFUSED_B1=$(raw "$OUT/a0-unfused.onnx" 1)
UNFUSED_B8=$(raw "$OUT/a0-unfused.onnx" 8)

PORT=${PORT:-18080}
$BIN serve --host 127.0.0.1 --port "$PORT" --checkpoint "$OUT/a0.safetensors" --no-cache \
  --intra-threads "$THREADS" 2>"$OUT/serve.log" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 60); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.5; done
URL="http://127.0.0.1:$PORT/classify"
$LT run --url "$URL" --images "$IMAGE" --concurrency 16 --duration 5 --quiet >/dev/null   # warm
$LT run --url "$URL" --images "$IMAGE" --concurrency 16 --duration "$SECONDS_PER_RUN" --quiet --output "$OUT/saturation.json"
SAT=$(python3 -c "import json;print(json.load(open('$OUT/saturation.json'))['throughput_rps'])")
$LT run --url "$URL" --images "$IMAGE" --rate 1 --duration "$SECONDS_PER_RUN" --quiet --output "$OUT/rate1.json"
RATE80=$(python3 -c "print(round(0.8*$SAT,1))")
$LT run --url "$URL" --images "$IMAGE" --rate "$RATE80" --duration "$SECONDS_PER_RUN" --quiet --output "$OUT/rate80.json"
kill -TERM $SERVER; wait $SERVER || true; trap - EXIT

python3 - "$OUT" "$FUSED_B1" "$FUSED_B8" "$UNFUSED_B1" "$UNFUSED_B8" "$IMAGE" "$THREADS" <<'PY'
import json, sys
out, fb1, fb8, ub1, ub8, image, threads = sys.argv[1:]
fb1, fb8, ub1, ub8 = (json.loads(x)["images_per_second"] for x in (fb1, fb8, ub1, ub8))
sat = json.load(open(f"{out}/saturation.json"))
r1 = json.load(open(f"{out}/rate1.json"))
r80 = json.load(open(f"{out}/rate80.json"))
bare_ms = 1000.0 / fb1
res = {
    "image": image, "intra_threads": int(threads),
    "raw_ort_fused_b1_ips": fb1, "raw_ort_fused_b8_ips": fb8,
    "raw_ort_unfused_b1_ips": ub1, "raw_ort_unfused_b8_ips": ub8,
    "fused_over_unfused_b1": fb1 / ub1, "fused_over_unfused_b8": fb8 / ub8,
    "server_saturation_rps": sat["throughput_rps"], "server_over_raw_b8": sat["throughput_rps"] / fb8,
    "saturation_latency_ms": sat["latency_ms"],
    "rate1_latency_ms": r1["latency_ms"], "rate80": {"offered": r80["offered"], "latency_ms": r80["latency_ms"], "throughput_rps": r80["throughput_rps"], "statuses": r80["statuses"]},
    "bare_b1_inference_ms": bare_ms, "added_latency_at_1rps_ms": r1["latency_ms"]["p50"] - bare_ms,
}
json.dump(res, open(f"{out}/serve.json", "w"), indent=2)
print(json.dumps(res, indent=2))
PY
