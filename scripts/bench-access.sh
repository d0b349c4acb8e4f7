#!/usr/bin/env bash
# `make bench-access`: what API keys + TLS cost, and what tracing costs, measured side by side
# in one run: the same server (A0, random weights, small photo) plaintext without keys
# (*plain*), with `--api-keys-file` plus `--tls-cert/--tls-key` (*guarded*, a P-256 certificate
# made here with openssl), and with OpenTelemetry export of every request (*traced*: sampled
# at 100 %, OTLP/gRPC to examples/otlp_sink.rs), one request at a time and at saturation
# (16 clients), rotating the order of the three servers, ROUNDS times each (medians used).
# Writes target/bench/access/*.json and docs/bench/access.md.
# Knobs: SECONDS_PER_RUN (15), ROUNDS (3).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=target/bench/access
SECONDS_PER_RUN=${SECONDS_PER_RUN:-15}
ROUNDS=${ROUNDS:-3}
PORT=${PORT:-18190}
SMALL=tests/fixtures/images/chelsea_q90.jpg
mkdir -p "$OUT" docs/bench
log() { echo "bench-access: $*" >&2; }

scripts/setup-ort.sh
cargo build --release -q --bin repvgg-serve
cargo build --release -q -p loadtest
cargo build --release -q --example otlp_sink
BIN=target/release/repvgg-serve
LT=target/release/loadtest
$BIN init --variant A0 --output "$OUT/a0.safetensors" --seed 1 2>/dev/null

# A CA and a server certificate for 127.0.0.1, and one inference key.
openssl ecparam -name prime256v1 -genkey -noout -out "$OUT/ca.key" 2>/dev/null
openssl req -x509 -new -key "$OUT/ca.key" -subj "/CN=bench CA" -days 1 -out "$OUT/ca.pem" 2>/dev/null
openssl ecparam -name prime256v1 -genkey -noout -out "$OUT/server.key" 2>/dev/null
openssl req -new -key "$OUT/server.key" -subj "/CN=127.0.0.1" -out "$OUT/server.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$OUT/ext.cnf"
openssl x509 -req -in "$OUT/server.csr" -CA "$OUT/ca.pem" -CAkey "$OUT/ca.key" -CAcreateserial \
  -days 1 -extfile "$OUT/ext.cnf" -out "$OUT/server.crt" 2>/dev/null
KEY="bench-$(openssl rand -hex 16)"
printf 'inference %s\n' "$KEY" >"$OUT/keys"

# The collector end of the traced setup: counts what it receives.
SINK_PORT=$((PORT + 2))
target/release/examples/otlp_sink "127.0.0.1:$SINK_PORT" 2>"$OUT/sink.log" &
SINK_PID=$!

SERVICE_PID=""
stop() { [ -n "$SERVICE_PID" ] && kill "$SERVICE_PID" 2>/dev/null && wait "$SERVICE_PID" 2>/dev/null; SERVICE_PID=""; }
trap 'stop; kill $SINK_PID 2>/dev/null' EXIT
start() { # start plain|guarded|traced
  local extra=(--admin-port 0)
  case "$1" in
    guarded) extra+=(--api-keys-file "$OUT/keys" --tls-cert "$OUT/server.crt" --tls-key "$OUT/server.key") ;;
    traced) extra=(--admin-port $((PORT + 1)) --otlp-endpoint "http://127.0.0.1:$SINK_PORT") ;;
  esac
  OTEL_TRACES_SAMPLER=always_on \
  $BIN serve --host 127.0.0.1 --port "$PORT" --grpc-port 0 --no-cache \
    --checkpoint "$OUT/a0.safetensors" "${extra[@]}" 2>"$OUT/$1.log" &
  SERVICE_PID=$!
  local tls=()
  [ "$1" = guarded ] && tls=(--tls-cert "$OUT/server.crt")
  for _ in $(seq 1 120); do
    $BIN probe --port "$PORT" --path /readyz "${tls[@]}" >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  log "$1 server never became ready"; exit 1
}
measure() { # measure plain|guarded concurrency round
  local args=(--url "http://127.0.0.1:$PORT/classify")
  if [ "$1" = guarded ]; then
    args=(--url "https://127.0.0.1:$PORT/classify" --ca-cert "$OUT/ca.pem" --header "Authorization: Bearer $KEY")
  fi
  $LT run "${args[@]}" --images "$SMALL" --concurrency "$2" --duration "$SECONDS_PER_RUN" --quiet \
    --output "$OUT/$1-c$2-r$3.json" >/dev/null
}

# The traced server's own account of its export: spans exported, dropped, failed.
export_counts() {
  python3 - "http://127.0.0.1:$((PORT + 1))/metrics" <<'PY'
import sys, urllib.request
text = urllib.request.urlopen(sys.argv[1]).read().decode()
values = {l.split()[0]: float(l.split()[1]) for l in text.splitlines() if l.startswith("repvgg_trace_spans_")}
print(" ".join(f"{k}={v:.0f}" for k, v in sorted(values.items())))
PY
}

for round in $(seq 1 "$ROUNDS"); do
  # The order rotates, so no setup always runs on a warmer (or busier) machine.
  case $((round % 3)) in
    1) order="plain guarded traced" ;;
    2) order="guarded traced plain" ;;
    0) order="traced plain guarded" ;;
  esac
  for setup in $order; do
    log "round $round: $setup"
    start "$setup"
    # Warm the allocator and the sessions before measuring.
    measure "$setup" 4 warm
    measure "$setup" 1 "$round"
    measure "$setup" 16 "$round"
    if [ "$setup" = traced ]; then
      sleep 6 # one export interval (5 s), so the last spans are counted
      export_counts >"$OUT/traced-r$round.counts"
    fi
    stop
  done
done

CPU="$(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores"
python3 - "$OUT" "$ROUNDS" "$CPU" <<'PY' >docs/bench/access.md
import json, statistics, sys
out, rounds, cpu = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def load(setup, c):
    return [json.load(open(f"{out}/{setup}-c{c}-r{r}.json")) for r in range(1, rounds + 1)]
def med(reports, pick):
    return statistics.median(pick(r) for r in reports)
rps = lambda r: r["throughput_rps"]
p50 = lambda r: r["latency_ms"]["p50"]
p99 = lambda r: r["latency_ms"]["p99"]
print("# Cost of API keys + TLS, and of tracing\n")
print(f"`make bench-access` ({cpu}, {rounds} rounds in alternating order, medians; A0 random weights, "
      "451x300 JPEG, release build). *plain*: HTTP, no keys. *guarded*: HTTPS (rustls, P-256 "
      "certificate, keep-alive connections) and `Authorization: Bearer` checked against a key file. "
      "*traced*: plain, plus OpenTelemetry spans for every request (`OTEL_TRACES_SAMPLER=always_on`; "
      "request, admission, preprocess, queue, inference and batch spans) exported over OTLP/gRPC to "
      "`examples/otlp_sink.rs` on the same machine.\n")
print("| clients | setup | requests/s | p50 ms | p99 ms |")
print("|---|---|---|---|---|")
for c in (1, 16):
    for setup in ("plain", "guarded", "traced"):
        reports = load(setup, c)
        print(f"| {c} | {setup} | {med(reports, rps):.1f} | {med(reports, p50):.2f} | {med(reports, p99):.2f} |")
print("\nPer round (requests/s, plain / guarded / traced): " + "; ".join(
    f"{c} client(s): " + ", ".join(
        f"{p['throughput_rps']:.1f} / {g['throughput_rps']:.1f} / {t['throughput_rps']:.1f}"
        for p, g, t in zip(load("plain", c), load("guarded", c), load("traced", c)))
    for c in (1, 16)))
for setup in ("guarded", "traced"):
    for c in (1, 16):
        plain, other = load("plain", c), load(setup, c)
        print(f"\n{c} client(s): throughput {setup}/plain = {med(other, rps) / med(plain, rps):.3f}, "
              f"p50 {setup} - plain = {med(other, p50) - med(plain, p50):+.2f} ms")
print("\nThe traced server's export counters after each round (`/metrics` on the admin port): " + "; ".join(
    open(f"{out}/traced-r{r}.counts").read().strip() for r in range(1, rounds + 1)))
PY
log "wrote docs/bench/access.md"
