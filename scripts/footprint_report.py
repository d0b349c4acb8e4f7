#!/usr/bin/env python3
"""Writes docs/footprint.md from `scripts/footprint.py`'s JSON lines, with `inspect`'s estimate
next to every measurement and the hand-written notes of docs/bench/footprint-notes.md.

usage: footprint_report.py FOOTPRINT.jsonl OUT.md
"""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target/release/repvgg-serve")


def main():
    src, out = sys.argv[1], sys.argv[2]
    rows = [json.loads(line) for line in open(src) if line.strip()]
    flags = sorted({f for f in open("/proc/cpuinfo").read().split()
                    if f in ("amx_bf16", "avx512_bf16", "avx512f", "avx2", "sha_ni")})
    lines = [
        "# Footprint: time to ready and memory, every variant",
        "",
        "Written by `make footprint` (`scripts/footprint.py`, then `scripts/footprint_report.py`);",
        "do not edit by hand: the notes at the end come from `docs/bench/footprint-notes.md`.",
        "",
        f"Machine: {rows[0]['cpu']}, {rows[0]['cores']} cores, flags {' '.join(flags)}.",
        "Random weights (`repvgg-serve init --seed 1`), default serve flags (2 sessions x 1",
        "intra-op thread, batches up to 8), `MALLOC_MMAP_THRESHOLD_=4194304` as in the image.",
        f"Raw ONNX Runtime: Python `onnxruntime` {rows[0]['raw_ort']['ort_version']}, the same "
        f"fused ONNX, one session with {rows[0]['raw_ort']['threads']} threads, graph",
        "optimisation ALL, then one batch-1 run",
        "(`scripts/raw_ort_footprint.py`). Times are process start to `/readyz` 200; RSS is",
        "VmRSS after 32 requests (16 at a time, so both sessions ran batches of 8), peak is VmHWM.",
        "",
        "## Time to ready (s)",
        "",
        "| variant | weights MiB | cold | from cache | raw ORT (session + run) | cache / raw | "
        "estimate cached | estimate cold | class |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    estimates = {}
    for r in rows:
        est = json.loads(subprocess.run([BIN, "inspect", "--variant", r["variant"]],
                                        check=True, capture_output=True, text=True).stdout)
        estimates[r["variant"]] = est["footprint"]
    for r in rows:
        e, raw = estimates[r["variant"]], r["raw_ort"]
        lines.append(
            f"| {r['variant']} | {e['weights_mib']:.0f} | {r['cold']['ready_s']:.2f} | "
            f"{r['cached']['ready_s']:.2f} | {raw['session_s']:.2f} + {raw['first_run_s']:.2f} "
            f"= {raw['ready_s']:.2f} | **{r['cached']['ready_s'] / raw['ready_s']:.2f}** | "
            f"{e['expected_ready_cached_s']:.2f} | {e['expected_ready_cold_s']:.2f} | "
            f"{e['startup_class']} |")
    lines += [
        "",
        "## Memory (MiB)",
        "",
        "| variant | steady, cached start | steady, cold start | raw ORT peak | steady / raw peak | "
        "peak, cached start | peak / raw peak | peak, cold start | estimate steady | "
        "estimate cold peak |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        e, raw = estimates[r["variant"]], r["raw_ort"]
        steady, peak = r["cached"]["steady_rss_mib"], r["cached"]["peak_rss_mib"]
        lines.append(
            f"| {r['variant']} | {steady:.0f} | {r['cold']['steady_rss_mib']:.0f} | "
            f"{raw['peak_rss_mib']:.0f} | **{steady / raw['peak_rss_mib']:.2f}** | {peak:.0f} | "
            f"**{peak / raw['peak_rss_mib']:.2f}** | {r['cold']['peak_rss_mib']:.0f} | "
            f"{e['expected_steady_rss_mib']:.0f} | {e['expected_cold_peak_rss_mib']:.0f} |")
    by = {r["variant"]: r for r in rows}
    lines += ["", "## Targets (issue 12)", ""]
    for v, bound in (("B3", 2.5), ("A0", 2.0)):
        if v in by:
            ratio = by[v]["cached"]["ready_s"] / by[v]["raw_ort"]["ready_s"]
            lines.append(f"- {v} ready from the cache / raw ORT session + first run: "
                         f"{ratio:.2f} (target <= {bound}: {'met' if ratio <= bound else 'MISSED'})")
    if "B3" in by:
        b3 = by["B3"]
        s = b3["cached"]["steady_rss_mib"] / b3["raw_ort"]["peak_rss_mib"]
        p = b3["cached"]["peak_rss_mib"] / b3["raw_ort"]["peak_rss_mib"]
        c = b3["cold"]["peak_rss_mib"] / b3["raw_ort"]["peak_rss_mib"]
        lines.append(f"- B3 steady RSS / raw ORT peak: {s:.2f} (target <= 1.25: "
                     f"{'met' if s <= 1.25 else 'MISSED'})")
        lines.append(f"- B3 peak during a cached start / raw ORT peak: {p:.2f} (target <= 1.5: "
                     f"{'met' if p <= 1.5 else 'MISSED'}); during a cold start (fusion): {c:.2f}")
    notes = os.path.join(ROOT, "docs/bench/footprint-notes.md")
    if os.path.exists(notes):
        lines += ["", open(notes).read().rstrip()]
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
