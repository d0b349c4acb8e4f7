#!/usr/bin/env python3
"""The anatomy of a slow request: where the slowest 1 % of requests spend their time under
Poisson arrivals, and what the CPUs were doing meanwhile (`make anatomy`, docs/anatomy.md).

The release server runs A0 (random weights, seed 1) with every request traced (OTLP to
examples/otlp_sink, which writes each span as a JSON line). For each offered rate (a fraction
of the saturation measured first, closed loop, 16 clients) `loadtest` sends Poisson arrivals
of the small photo while a sampler reads the run queue (`procs_running` of /proc/stat) every
2 ms and every server thread's scheduler statistics (/proc/<pid>/task/*/schedstat: time on
the CPU, time runnable but waiting for one) before and after. Then, from the spans:

- the stage breakdown of the slowest 1 % next to the median request: body and admission,
  waiting for a preprocessing worker, decoding, the batching queue (until the run starts),
  inference (batch size, session), replying;
- every inference run by batch size and by what overlapped it (another run, decodes);
- the run queue during the runs of slow requests against all runs;
- per thread group: CPU time and time runnable but not running;
- a timeline (SVG) around the slowest request.

usage: scripts/anatomy.py --out DIR [--fractions 0.3,0.45] [--seconds 30] [-- SERVER ARGS...]
"""

import argparse
import bisect
import collections
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target/release/repvgg-serve")
LOADTEST = os.path.join(ROOT, "target/release/loadtest")
SINK = os.path.join(ROOT, "target/release/examples/otlp_sink")
SMALL = os.path.join(ROOT, "tests/fixtures/images/chelsea_q90.jpg")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url, seconds=120):
    end = time.time() + seconds
    while time.time() < end:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    sys.exit(f"anatomy: {url} never became ready")


def thread_stats(pid):
    """{tid: (name, cpu_ns, wait_ns)} of every thread of `pid` (schedstat)."""
    stats = {}
    base = f"/proc/{pid}/task"
    for tid in os.listdir(base):
        try:
            with open(f"{base}/{tid}/comm") as f:
                name = f.read().strip()
            with open(f"{base}/{tid}/schedstat") as f:
                cpu, wait, _ = f.read().split()
            stats[tid] = (name, int(cpu), int(wait))
        except OSError:
            continue
    return stats


def group(name):
    for prefix in ("inference", "preprocess", "engine", "tokio", "otel"):
        if name.startswith(prefix):
            return prefix
    return "other"


class RunQueueSampler(threading.Thread):
    """procs_running of /proc/stat every `period` seconds, with Unix-ns timestamps."""

    def __init__(self, period=0.002):
        super().__init__(daemon=True)
        self.period = period
        self.samples = []
        self.stop = threading.Event()

    def run(self):
        with open("/proc/stat") as f:
            while not self.stop.is_set():
                f.seek(0)
                for line in f:
                    if line.startswith("procs_running"):
                        # The sampler itself is running while it reads: not counted.
                        self.samples.append((time.time_ns(), int(line.split()[1]) - 1))
                        break
                time.sleep(self.period)


def load_spans(path):
    spans = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                spans.append(json.loads(line))
    return spans


def overlaps(a_start, a_end, b_start, b_end):
    return a_start < b_end and b_start < a_end


def pct(values, q):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def analyse(spans, samples, window):
    """The anatomy of one step from its spans (those that started within `window`)."""
    by_trace = collections.defaultdict(list)
    batches = []
    for s in spans:
        if s["name"] == "batch":
            batches.append(s)
        else:
            by_trace[s["trace"]].append(s)
    ms = lambda ns: ns / 1e6
    requests = []
    decodes = []
    for trace, members in by_trace.items():
        names = {s["name"]: s for s in members}
        root = next((s for s in members if not s["parent"] or s["parent"] == "0" * 16), None)
        if root is None or "inference" not in names or "preprocess" not in names:
            continue
        if not (window[0] <= root["start_ns"] < window[1]):
            continue
        pre, queue, inf = names["preprocess"], names.get("queue"), names["inference"]
        worker = float(pre["attributes"].get("worker_ms", 0.0))
        decode_end = pre["end_ns"]
        decode_start = decode_end - int(worker * 1e6)
        decodes.append((decode_start, decode_end))
        requests.append(
            {
                "total": ms(root["end_ns"] - root["start_ns"]),
                "before": ms(pre["start_ns"] - root["start_ns"]),
                "worker_wait": ms(pre["end_ns"] - pre["start_ns"]) - worker,
                "decode": worker,
                "queue": ms(queue["end_ns"] - queue["start_ns"]) if queue else 0.0,
                "inference": ms(inf["end_ns"] - inf["start_ns"]),
                "reply": ms(root["end_ns"] - inf["end_ns"]),
                "batch_size": inf["attributes"].get("batch_size"),
                "session": inf["attributes"].get("session"),
                "inf_start": inf["start_ns"],
                "inf_end": inf["end_ns"],
                "start": root["start_ns"],
                "end": root["end_ns"],
            }
        )
    batches = [b for b in batches if window[0] <= b["start_ns"] < window[1] + 5e9]
    decodes.sort()
    sample_t = [t for t, _ in samples]

    def run_queue(start, end):
        lo, hi = bisect.bisect_left(sample_t, start), bisect.bisect_right(sample_t, end)
        values = [v for _, v in samples[lo:hi]]
        return statistics.mean(values) if values else None

    runs = []
    for b in batches:
        start, end = b["start_ns"], b["end_ns"]
        others = sum(
            1 for o in batches if o is not b and overlaps(start, end, o["start_ns"], o["end_ns"])
        )
        lo = bisect.bisect_left(decodes, (start - 10**9, 0))
        decoding = sum(1 for d in decodes[lo:] if d[0] < end and overlaps(start, end, *d))
        runs.append(
            {
                "size": b["attributes"].get("size"),
                "session": b["attributes"].get("session"),
                "ms": ms(end - start),
                "other_runs": others,
                "decodes": decoding,
                "run_queue": run_queue(start, end),
            }
        )
    requests.sort(key=lambda r: r["total"])
    return requests, runs


STAGES = ["before", "worker_wait", "decode", "queue", "inference", "reply", "total"]


def stage_table(requests):
    n = len(requests)
    slow = requests[-max(1, n // 100):]
    mid = requests[n // 2 - max(1, n // 100) // 2: n // 2 + max(1, (n // 100) - (n // 100) // 2)] or [
        requests[n // 2]
    ]
    lines = [
        "| stage (ms, mean) | median requests | slowest 1 % |",
        "|---|---|---|",
    ]
    for stage in STAGES:
        lines.append(
            f"| {stage} | {statistics.mean(r[stage] for r in mid):.1f} | "
            f"{statistics.mean(r[stage] for r in slow):.1f} |"
        )
    sizes = collections.Counter(r["batch_size"] for r in slow)
    sessions = collections.Counter(r["session"] for r in slow)
    lines.append(
        f"| batch size of their run | {collections.Counter(r['batch_size'] for r in mid).most_common()} "
        f"| {sizes.most_common()} |"
    )
    lines.append(
        f"| session of their run | {collections.Counter(r['session'] for r in mid).most_common()} "
        f"| {sessions.most_common()} |"
    )
    return "\n".join(lines), slow


def runs_table(runs, wide):
    lines = [
        "| runs | count | p50 ms | p90 ms | p99 ms | mean run queue |",
        "|---|---|---|---|---|---|",
    ]

    def row(label, chosen):
        if not chosen:
            lines.append(f"| {label} | 0 | | | | |")
            return
        t = [r["ms"] for r in chosen]
        rq = [r["run_queue"] for r in chosen if r["run_queue"] is not None]
        lines.append(
            f"| {label} | {len(chosen)} | {pct(t, 0.5):.1f} | {pct(t, 0.9):.1f} | "
            f"{pct(t, 0.99):.1f} | {statistics.mean(rq) if rq else float('nan'):.2f} |"
        )

    for lane, name in ((False, "narrow"), (True, "wide")):
        if lane and wide is None:
            continue
        ones = [r for r in runs if r["size"] == 1 and (r["session"] == wide) == lane]
        row(f"batch 1, {name}, alone (no other run, no decode)",
            [r for r in ones if r["other_runs"] == 0 and r["decodes"] == 0])
        row(f"batch 1, {name}, with decodes only",
            [r for r in ones if r["other_runs"] == 0 and r["decodes"] > 0])
        row(f"batch 1, {name}, with another run only",
            [r for r in ones if r["other_runs"] > 0 and r["decodes"] == 0])
        row(f"batch 1, {name}, with another run and decodes",
            [r for r in ones if r["other_runs"] > 0 and r["decodes"] > 0])
    row("batch 2 and more", [r for r in runs if (r["size"] or 0) >= 2])
    sizes = collections.Counter(r["size"] for r in runs)
    mean_size = sum(k * v for k, v in sizes.items()) / max(1, sum(sizes.values()))
    return "\n".join(lines) + f"\n\nBatch sizes: {sorted(sizes.items())}, mean {mean_size:.2f}."


def thread_table(before, after, seconds):
    totals = collections.defaultdict(lambda: [0, 0, 0])
    for tid, (name, cpu, wait) in after.items():
        cpu0, wait0 = (before[tid][1], before[tid][2]) if tid in before else (0, 0)
        g = totals[group(name)]
        g[0] += 1
        g[1] += cpu - cpu0
        g[2] += wait - wait0
    lines = [
        "| threads | count | on CPU (s per s) | runnable, not running (s per s) |",
        "|---|---|---|---|",
    ]
    for name, (count, cpu, wait) in sorted(totals.items()):
        lines.append(f"| {name} | {count} | {cpu / 1e9 / seconds:.3f} | {wait / 1e9 / seconds:.3f} |")
    return "\n".join(lines)


def timeline_svg(requests, runs_spans, decodes, samples, focus, path):
    """Sessions, decodes and the run queue 150 ms either side of the `focus` request."""
    t0 = focus["start"] - 60_000_000
    t1 = focus["end"] + 60_000_000
    width, left = 1000, 110
    x = lambda t: left + (t - t0) / (t1 - t0) * (width - left - 10)
    rows = {}
    out = []
    lanes = sorted({b["attributes"].get("session") for b in runs_spans})
    for i, lane in enumerate(lanes):
        rows[lane] = 30 + i * 26
        out.append(f'<text x="4" y="{rows[lane] + 14}" font-size="12">session {lane}</text>')
    y_dec = 30 + len(lanes) * 26
    out.append(f'<text x="4" y="{y_dec + 14}" font-size="12">decodes</text>')
    for b in runs_spans:
        if b["end_ns"] < t0 or b["start_ns"] > t1:
            continue
        y = rows[b["attributes"].get("session")]
        hit = overlaps(b["start_ns"], b["end_ns"], focus["inf_start"], focus["inf_end"]) and \
            b["attributes"].get("session") == focus["session"]
        color = "#d62728" if hit else "#1f77b4"
        out.append(
            f'<rect x="{x(b["start_ns"]):.1f}" y="{y}" width="{max(1, x(b["end_ns"]) - x(b["start_ns"])):.1f}" '
            f'height="20" fill="{color}"><title>batch {b["attributes"].get("size")}: '
            f'{(b["end_ns"] - b["start_ns"]) / 1e6:.1f} ms</title></rect>'
        )
        out.append(
            f'<text x="{x(b["start_ns"]) + 2:.1f}" y="{y + 14}" font-size="10" fill="white">'
            f'{b["attributes"].get("size")}</text>'
        )
    stack = []
    for d in decodes:
        if d[1] < t0 or d[0] > t1:
            continue
        level = next((i for i, end in enumerate(stack) if end <= d[0]), len(stack))
        if level == len(stack):
            stack.append(0)
        stack[level] = d[1]
        out.append(
            f'<rect x="{x(d[0]):.1f}" y="{y_dec + level * 8}" width="{max(1, x(d[1]) - x(d[0])):.1f}" '
            f'height="6" fill="#2ca02c"/>'
        )
    y_rq = y_dec + 40
    out.append(f'<text x="4" y="{y_rq + 30}" font-size="12">run queue</text>')
    points = [(x(t), y_rq + 60 - v * 12) for t, v in samples if t0 <= t <= t1]
    if points:
        out.append(
            '<polyline fill="none" stroke="#9467bd" points="'
            + " ".join(f"{a:.1f},{b:.1f}" for a, b in points)
            + '"/>'
        )
    out.append(f'<line x1="{left}" y1="{y_rq + 60 - 2 * 12}" x2="{width}" y2="{y_rq + 60 - 2 * 12}" '
               'stroke="#999" stroke-dasharray="4"/>')
    out.append(f'<text x="{width - 60}" y="{y_rq + 60 - 2 * 12 - 2}" font-size="10">2 cores</text>')
    fy = y_rq + 80
    out.append(
        f'<rect x="{x(focus["start"]):.1f}" y="{fy}" width="{x(focus["end"]) - x(focus["start"]):.1f}" '
        f'height="10" fill="#ff7f0e"/>'
    )
    out.append(f'<text x="4" y="{fy + 9}" font-size="12">slow request</text>')
    out.append(
        f'<text x="{left}" y="{fy + 30}" font-size="11">{(t1 - t0) / 1e6:.0f} ms window; the slow request: '
        f'{focus["total"]:.1f} ms total, inference {focus["inference"]:.1f} ms at batch '
        f'{focus["batch_size"]} on session {focus["session"]} (red); green: decodes</text>'
    )
    height = fy + 40
    with open(path, "w") as f:
        f.write(
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'font-family="sans-serif"><rect width="100%" height="100%" fill="white"/>'
            + "".join(out)
            + "</svg>\n"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--fractions", default="0.3,0.45")
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("server_args", nargs="*")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    out = os.path.abspath(args.out)
    model = os.path.join(out, "a0.safetensors")
    if not os.path.exists(model):
        subprocess.run([BIN, "init", "--variant", "A0", "--output", model, "--seed", "1"],
                       check=True, stderr=subprocess.DEVNULL)
    sink_port, port = free_port(), free_port()
    spans_path = os.path.join(out, "spans.jsonl")
    sink = subprocess.Popen([SINK, f"127.0.0.1:{sink_port}", spans_path],
                            stderr=subprocess.DEVNULL)
    env = dict(os.environ, OTEL_TRACES_SAMPLER="always_on")
    server = subprocess.Popen(
        [BIN, "serve", "--host", "127.0.0.1", "--port", str(port), "--grpc-port", "0",
         "--admin-port", "0", "--checkpoint", model, "--no-cache",
         "--otlp-endpoint", f"http://127.0.0.1:{sink_port}", *args.server_args],
        env=env, stderr=open(os.path.join(out, "server.log"), "w"))
    report = []
    try:
        wait_ready(f"http://127.0.0.1:{port}/readyz")
        url = f"http://127.0.0.1:{port}/classify"
        sat = os.path.join(out, "saturation.json")
        subprocess.run([LOADTEST, "run", "--url", url, "--images", SMALL, "--concurrency", "16",
                        "--duration", "3", "--quiet"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run([LOADTEST, "run", "--url", url, "--images", SMALL, "--concurrency", "16",
                        "--duration", "10", "--quiet", "--output", sat], check=True,
                       stdout=subprocess.DEVNULL)
        saturation = json.load(open(sat))["throughput_rps"]
        cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                    if l.startswith("model name")), "unknown CPU")
        report.append(
            f"CPU: {cpu}, {os.cpu_count()} cores. Server: A0 (random weights), "
            f"`{' '.join(args.server_args) or 'default flags'}`, every request traced. "
            f"Saturation (closed loop, 16 clients, 10 s, traced): {saturation:.1f} req/s.\n"
        )
        for fraction in [float(f) for f in args.fractions.split(",")]:
            rate = round(fraction * saturation, 1)
            time.sleep(2)
            offset = os.path.getsize(spans_path)
            sampler = RunQueueSampler()
            before = thread_stats(server.pid)
            started = time.time_ns()
            sampler.start()
            result = os.path.join(out, f"step-{fraction}.json")
            subprocess.run([LOADTEST, "run", "--url", url, "--images", SMALL, "--rate", str(rate),
                            "--duration", str(args.seconds), "--seed", str(args.seed), "--quiet",
                            "--output", result], check=True, stdout=subprocess.DEVNULL)
            ended = time.time_ns()
            after = thread_stats(server.pid)
            sampler.stop.set()
            sampler.join()
            time.sleep(3)  # the last spans reach the sink
            with open(spans_path) as f:
                f.seek(offset)
                spans = [json.loads(l) for l in f if l.strip()]
            requests, runs = analyse(spans, sampler.samples, (started, ended))
            client = json.load(open(result))
            lat = client.get("latency_ms", {})
            stages, slow = stage_table(requests)
            sessions = sorted({b["attributes"].get("session") for b in spans if b["name"] == "batch"})
            wide = sessions[-1] if len(sessions) > 2 else None
            rq = [v for _, v in sampler.samples]
            slow_rq = [r for r in (
                statistics.mean([v for t, v in sampler.samples if s["inf_start"] <= t <= s["inf_end"]] or [float("nan")])
                for s in slow) if r == r]
            report.append(
                f"## {rate} req/s offered ({fraction:.0%} of saturation), Poisson, {args.seconds:.0f} s\n\n"
                f"Client (loadtest, from the intended send time): p50 {lat.get('p50', float('nan')):.1f} ms, "
                f"p99 {lat.get('p99', float('nan')):.1f} ms; {len(requests)} traced requests.\n\n"
                f"{stages}\n\n{runs_table(runs, wide)}\n\n"
                f"Run queue (runnable tasks on the machine besides the sampler, every 2 ms): mean "
                f"{statistics.mean(rq):.2f}, share of samples with more than 2 runnable: "
                f"{sum(1 for v in rq if v > 2) / max(1, len(rq)):.0%}; during the inference runs "
                f"of the slowest 1 %: mean {statistics.mean(slow_rq) if slow_rq else float('nan'):.2f}.\n\n"
                f"{thread_table(before, after, (ended - started) / 1e9)}\n"
            )
            decode_spans = []
            for s in spans:
                if s["name"] == "preprocess":
                    w = float(s["attributes"].get("worker_ms", 0.0))
                    decode_spans.append((s["end_ns"] - int(w * 1e6), s["end_ns"]))
            decode_spans.sort()
            svg = os.path.join(out, f"timeline-{fraction}.svg")
            timeline_svg(requests, [b for b in spans if b["name"] == "batch"], decode_spans,
                         sampler.samples, requests[-1], svg)
            report.append(f"Timeline around the slowest request: {os.path.basename(svg)}\n")
            print(report[-2], file=sys.stderr)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait()
        sink.terminate()
        sink.wait()
    with open(os.path.join(out, "anatomy.md"), "w") as f:
        f.write("\n".join(report))
    print("\n".join(report))


if __name__ == "__main__":
    main()
