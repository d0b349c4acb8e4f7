#!/usr/bin/env bash
# `make soak`: the release server under steady load plus hostile clients for SOAK_MINUTES
# (default 10), sampled every second; writes docs/soak.md and target/soak/soak.json.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-ort.sh
cargo build --release -q --bin repvgg-serve
cargo build --release -q -p loadtest
mkdir -p target/soak
python3 scripts/soak.py --minutes "${SOAK_MINUTES:-10}" --rate "${SOAK_RATE:-12}" \
  --out target/soak --report docs/soak.md
