#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for FUZZ_SECONDS each (default 60) on the stable toolchain:
# cargo-fuzz with libFuzzer and no sanitizer (`-s none`; sanitizers need nightly). The
# committed corpora (fuzz/corpus/<target>) are the seeds and are not modified: new inputs go to
# a scratch corpus. A crash, panic, timeout (> 10 s per input) or out-of-memory (> 2 GiB)
# fails the run and leaves the input in fuzz/artifacts/<target>/, with the command that
# reproduces it. Prints runs and coverage per target (the figures docs/reliability.md quotes).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${FUZZ_SECONDS:-60}"
targets=(${FUZZ_TARGETS:-unpickle checkpoint image v2_rest grpc_infer classify_body})

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz 0.13.2 from crates.io"
    cargo install cargo-fuzz --version 0.13.2 --locked
fi
(cd fuzz && cargo fuzz build -s none -O)
bin_dir=fuzz/target/x86_64-unknown-linux-gnu/release
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

status=0
for target in "${targets[@]}"; do
    mkdir -p "$scratch/$target" "fuzz/artifacts/$target"
    log="$scratch/$target.log"
    echo "fuzz: $target for ${seconds}s (seeds: $(ls fuzz/corpus/$target | wc -l) files)"
    if "$bin_dir/$target" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
        -max_len=65536 -print_final_stats=1 \
        -artifact_prefix="fuzz/artifacts/$target/" \
        "$scratch/$target" "fuzz/corpus/$target" >"$log" 2>&1; then
        runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$')
        cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*')
        corpus=$(ls "$scratch/$target" | wc -l)
        echo "fuzz: $target ok: $runs runs, $cov coverage points, $corpus inputs kept"
    else
        status=1
        grep -E 'ERROR|panicked|SUMMARY|Test unit written' "$log" | head -20 || tail -20 "$log"
        echo "fuzz: $target FOUND A FAILURE; reproduce with:"
        echo "  $bin_dir/$target fuzz/artifacts/$target/<file>"
    fi
done
exit "$status"
