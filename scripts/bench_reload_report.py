#!/usr/bin/env python3
"""docs/bench/reload.md from what scripts/bench-reload.sh left in OUT: for each reload, the
answers (loadtest --timeline), the moments the load call was made and returned, and the resident
memory samples; then two models served together against each alone.

    bench_reload_report.py OUT CPU LOAD_SHARE BEFORE_S SECONDS_PER_RUN
"""

import json
import os
import sys


def percentile(values, q):
    """The q-quantile by the nearest rank (what loadtest's histogram reports, to 0.1 %)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 1))
    return ordered[int(rank) - 1]


def timeline(path):
    """(started_unix_ms, [(sent_ms, latency_ms, status, version)])."""
    with open(path) as f:
        started = int(f.readline().split("=")[1])
        f.readline()
        rows = []
        for line in f:
            sent, latency, status, version = line.strip().split(",")
            rows.append((float(sent), float(latency), status, int(version) if version else None))
    return started, rows


def rss_samples(path):
    """[(unix_ms, MiB)]."""
    samples = []
    for line in open(path):
        parts = line.split()
        if len(parts) == 2:
            samples.append((int(parts[0]), int(parts[1]) / 1024))
    return samples


def reload_section(out, variant, nice, sat, rate, called, returned, before_s):
    """The section of one reload, and its summary row."""
    run = f"{variant.lower()}-nice{nice}"
    started, rows = timeline(os.path.join(out, f"{run}-timeline.csv"))
    # Every time relative to the load call, in seconds.
    at = [((started + sent - called) / 1e3, latency, status, version) for sent, latency, status, version in rows]
    call_s = (returned - called) / 1e3
    not_ok = [r for r in at if r[2] != "200"]
    before = [lat for t, lat, s, _ in at if -before_s + 2 <= t < 0 and s == "200"]
    during = [lat for t, lat, s, _ in at if 0 <= t <= call_s + 1 and s == "200"]
    new_answers = [t + lat / 1e3 for t, lat, s, v in at if v == 2]
    first_new = min(new_answers) if new_answers else float("nan")
    old_after = [t for t, lat, s, v in at if v == 1 and t > call_s]
    samples = rss_samples(os.path.join(out, f"{run}-rss.txt"))
    steady = [mib for t, mib in samples if called - (before_s - 2) * 1000 <= t < called]
    during_rss = [mib for t, mib in samples if called <= t <= returned + 2000]
    after_rss = [mib for t, mib in samples if t > returned + 5000]
    steady_mib = percentile(steady, 0.5)
    peak_mib = max(during_rss) if during_rss else float("nan")
    after_mib = percentile(after_rss, 0.5)
    p99_before, p99_during = percentile(before, 0.99), percentile(during, 0.99)
    lines = [
        f"## {variant}, `--load-nice {nice}`: version 1 -> 2 under Poisson arrivals at {rate:g} requests/s "
        f"({rate / sat:.0%} of the {sat:g} measured at saturation)\n",
        "| | value |",
        "|---|---|",
        f"| requests sent | {len(at)} |",
        f"| answered other than 200 | {len(not_ok)} |",
        f"| load call (rename, fuse, optimise, warm up, swap) | {call_s:.2f} s |",
        f"| load call to the first answer from version 2 | {first_new:.2f} s |",
        f"| version 1 answers to requests sent after the call returned | {len(old_after)} |",
        f"| p50 / p99 before the call (the {before_s - 2} s before it) | "
        f"{percentile(before, 0.5):.1f} / {p99_before:.1f} ms ({len(before)} answers) |",
        f"| p50 / p99 during the reload (call to return + 1 s) | "
        f"{percentile(during, 0.5):.1f} / {p99_during:.1f} ms ({len(during)} answers) |",
        f"| p99 during / before | **{p99_during / p99_before:.2f}x** (goal <= 1.5x) |",
        f"| resident: steady before / peak during / after | "
        f"{steady_mib:.0f} / {peak_mib:.0f} / {after_mib:.0f} MiB |",
        "",
        "Latency by second of sending, relative to the load call (0 = the call; answers that are",
        "not 200 counted apart):\n",
        "| second | answers | p50 ms | p99 ms | max ms | not 200 |",
        "|---|---|---|---|---|---|",
    ]
    first_bin, last_bin = -5, int(call_s) + 5
    for second in range(first_bin, last_bin + 1):
        in_bin = [r for r in at if second <= r[0] < second + 1]
        ok = [lat for _, lat, s, _ in in_bin if s == "200"]
        if not in_bin:
            continue
        lines.append(
            f"| {second:+d} | {len(in_bin)} | {percentile(ok, 0.5):.1f} | {percentile(ok, 0.99):.1f} "
            f"| {max(ok) if ok else float('nan'):.1f} | {len(in_bin) - len(ok)} |"
        )
    summary = (
        f"| {variant} | {nice} | {call_s:.2f} s | {len(not_ok)} of {len(at)} | "
        f"{percentile(before, 0.5):.1f} / {p99_before:.1f} | {percentile(during, 0.5):.1f} / {p99_during:.1f} | "
        f"**{p99_during / p99_before:.2f}x** |"
    )
    return "\n".join(lines) + "\n", summary


def two_models_section(out, seconds):
    def report(name):
        with open(os.path.join(out, f"{name}.json")) as f:
            return json.load(f)

    lines = [
        "## Two models in one process against each alone\n",
        f"A0 and B3 (random weights) from one repository; saturation: closed loop, 16 connections, {seconds} s "
        "after 3 s of warm-up, both models loaded at the same time when together; one at a time: "
        f"1 connection, {seconds} s (with the other model loaded and idle when together).\n",
        "| model | alone: requests/s | together: requests/s | share | alone: p50 one at a time | "
        "together: p50 one at a time |",
        "|---|---|---|---|---|---|",
    ]
    for m in ("a0", "b3"):
        alone, together = report(f"alone-{m}"), report(f"together-{m}")
        one_alone, one_together = report(f"alone-{m}-one"), report(f"together-{m}-one")
        share = together["throughput_rps"] / alone["throughput_rps"]
        lines.append(
            f"| {m.upper()} | {alone['throughput_rps']:.1f} | {together['throughput_rps']:.1f} | {share:.2f} "
            f"| {one_alone['latency_ms']['p50']:.1f} ms | {one_together['latency_ms']['p50']:.1f} ms |"
        )
    return "\n".join(lines) + "\n"


def main():
    out, cpu, load_share, before_s, seconds = sys.argv[1:]
    before_s = int(before_s)
    print("# Reloads under load, and two models sharing the cores\n")
    print(
        f"Written by `make bench-reload` (scripts/bench-reload.sh). CPU: {cpu}. Release build, "
        "`--model-control explicit --no-cache` (every load fuses), fp32, default sessions, the small "
        f"photo (chelsea_q90.jpg), arrivals at {float(load_share):.0%} of the measured saturation. "
        "Random weights from `repvgg-serve init` (seed 1, then seed 2 as the new version).\n"
    )
    sections, summaries = [], []
    for line in open(os.path.join(out, "reloads.txt")):
        variant, nice, sat, rate, called, returned = line.split()
        section, summary = reload_section(
            out, variant, nice, float(sat), float(rate), int(called), int(returned), before_s
        )
        sections.append(section)
        summaries.append(summary)
    print(
        "Each reload side by side at `--load-nice` 10 (the default: reading, fusing and optimising "
        "run 10 nice steps below serving) and 0 (the load at serving priority), each on a fresh "
        "server at the same arrival rate. During = from the load call to its return + 1 s.\n"
    )
    print("| model | --load-nice | load call | not 200 | p50 / p99 before, ms | p50 / p99 during, ms | p99 during / before |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(summaries) + "\n")
    print("\n".join(sections))
    print(two_models_section(out, seconds))


if __name__ == "__main__":
    main()
