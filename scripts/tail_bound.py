#!/usr/bin/env python3
"""The p99 / p50 an ideal server would show under Poisson arrivals (docs/anatomy.md, "What the
ratio targets ask").

The ideal server is a single FIFO queue that serves every image in exactly 1/SATURATION seconds
(the best cost per image the real server reaches, at full batches, granted to every image, even
a lone one), and no request finishes sooner than LONE_MS (the latency of one request alone).
Its response time is max(LONE_MS, wait + 1/SATURATION), a bound from below for a server with
that saturation rate and that lone latency: more cores than one queue, batch-1 runs that cost
more than a full batch's share, or any variation in run times only lengthen the tail, and with
equal service times first-come-first-served gives the shortest tail of any order.

Usage: scripts/tail_bound.py SATURATION_RPS LONE_MS [SECONDS] [RUNS] [LOADS]
Prints, at each load (fractions of SATURATION, comma-separated; default 0.2,0.4,0.6,0.8): the long-run p50 and p99 (10^6 requests) and, over RUNS
runs of SECONDS each (the bench's 20 s), the spread of p99 / p50 and how many runs are at or
under issue 22's target (2.5 up to 60 %, 3 above). Deterministic (seeded); standard library only.
"""

import random
import sys


def latencies(rate, service_ms, lone_ms, count, rng):
    """Response times (ms) of `count` Poisson arrivals at `rate` per second."""
    now = free = 0.0
    out = []
    for _ in range(count):
        now += rng.expovariate(rate / 1000.0)
        start = max(now, free)
        free = start + service_ms
        out.append(max(lone_ms, free - now))
    return out


def p50_p99(values):
    values = sorted(values)
    return values[len(values) // 2], values[min(len(values) - 1, int(0.99 * len(values)))]


def main():
    saturation, lone_ms = float(sys.argv[1]), float(sys.argv[2])
    seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 20.0
    runs = int(sys.argv[4]) if len(sys.argv) > 4 else 300
    loads = [float(x) for x in (sys.argv[5] if len(sys.argv) > 5 else "0.2,0.4,0.6,0.8").split(",")]
    service_ms = 1000.0 / saturation
    print(f"ideal server: {saturation:g} req/s ({service_ms:.1f} ms per image), lone {lone_ms:g} ms")
    print("| load | req/s | p50 ms | p99 ms | p99 / p50 | runs of "
          f"{seconds:g} s: p99 / p50 (5th-50th-95th pct) | runs meeting the target |")
    print("|---|---|---|---|---|---|---|")
    for load in loads:
        target = 2.5 if load <= 0.6 else 3.0
        rate = load * saturation
        p50, p99 = p50_p99(latencies(rate, service_ms, lone_ms, 1_000_000, random.Random(1)))
        rng = random.Random(2)
        ratios = sorted(
            (lambda q: q[1] / q[0])(p50_p99(latencies(rate, service_ms, lone_ms,
                                                      int(rate * seconds), rng)))
            for _ in range(runs))
        met = sum(r <= target for r in ratios)
        pick = lambda f: ratios[int(f * (len(ratios) - 1))]
        print(f"| {load:.0%} | {rate:.1f} | {p50:.1f} | {p99:.1f} | {p99 / p50:.2f} | "
              f"{pick(0.05):.2f} - {pick(0.5):.2f} - {pick(0.95):.2f} | "
              f"{met} of {runs} (<= {target:g}) |")


if __name__ == "__main__":
    main()
