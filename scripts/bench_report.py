"""Writes docs/benchmarks.md from the results scripts/bench.sh left in target/bench.

Usage: python3 scripts/bench_report.py RESULTS_DIR OUTPUT.md THREADS
Every number in the report comes from the files of one run; nothing is typed in by hand.
"""

import datetime
import glob
import json
import os
import platform
import random
import shutil
import subprocess
import sys

out_dir, output, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
charts = os.path.join(os.path.dirname(output), "bench")


def load(name):
    with open(os.path.join(out_dir, f"{name}.json")) as f:
        return json.load(f)


def raw(form, batch):
    return load(f"raw-{form}-b{batch}")["images_per_second"]


def share(report, *statuses):
    return sum(report["statuses"].get(s, 0) for s in statuses) / max(report["sent"], 1)


def git_commit():
    try:
        return subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], text=True).strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def verdict(ok):
    return "**met**" if ok else "**missed**"


fb1, fb8, ub1, ub8 = raw("fused", 1), raw("fused", 8), raw("unfused", 1), raw("unfused", 8)
ob1, ob8 = raw("fused-one-session", 1), raw("fused-one-session", 8)
layout = load("raw-fused-b8")
sessions, per_session = layout["sessions"], layout["threads"]
# The ceiling is the better of the two ways to run the same cores, at batch 8.
ceiling = max(fb8, ob8)
ours_small = load("ours-saturation-small")
# Both services' small-photo saturation, measured alternately (three rounds; the medians above).
rounds = [
    (load(f"ours-saturation-small-{i}")["throughput_rps"], load(f"python-saturation-small-{i}")["throughput_rps"])
    for i in (1, 2, 3)
]


def rounds_line():
    return "; ".join(f"round {i}: {o:.1f} / {p:.1f} req/s" for i, (o, p) in enumerate(rounds, 1))
ours_v2 = load("ours-v2-saturation-small")
ours_one = load("ours-one-at-a-time")
py_one = load("python-one-at-a-time")
v2_ratio = ours_v2["throughput_rps"] / ours_small["throughput_rps"]
ours_phone = load("ours-saturation-phone")
ours_dct_phone = load("ours-dct-saturation-phone")
py_small = load("python-saturation-small")
py_phone = load("python-saturation-phone")
rate1 = load("ours-rate1")
# Issue 22's tail targets: three runs each at 20, 40, 60 and 80 % of our saturation.
TAIL_LOADS = (20, 40, 60, 80)
tail_runs = {pct: [load(f"ours-tail{pct}-{run}") for run in (1, 2, 3)] for pct in TAIL_LOADS}
ours_over = load("ours-overload")
py_over = load("python-overload")
ours_sweep = load("ours-sweep-all")
py_sweep = load("python-sweep")
# Ours at the baseline's own rates, up to the baseline's saturation: compared step by step.
ours_at_py = load("ours-sweep-python-rates")
# TorchServe: swept at the same rates (Python's steps), one request at a time, saturation.
ts_one = load("torchserve-one-at-a-time")
ts_small = load("torchserve-saturation-small")
ts_phone = load("torchserve-saturation-phone")
ts_sweep = load("torchserve-sweep")
# The three services at each of the same offered rates; judged up to the slower peer's
# saturation (a step above it overloads that peer, and its latency then says nothing).
slower_peer = min(py_small["throughput_rps"], ts_small["throughput_rps"])
step_triples = list(zip(ours_at_py, py_sweep, ts_sweep))
judged = [t for t in step_triples if t[1]["offered"] <= slower_peer * 1.001]


def step_ok(ours, *peers):
    o = ours["latency_ms"]
    return ours["ok"] == ours["sent"] and all(
        o["p50"] <= p["latency_ms"]["p50"] and o["p99"] <= p["latency_ms"]["p99"] for p in peers
    )


steps_met = sum(step_ok(*t) for t in judged)
steps_verdict = (
    verdict(True)
    if steps_met == len(judged)
    else f"{verdict(False)} ({steps_met} of {len(judged)} steps)"
)


def step_rows():
    rows = []
    for o, p, t in step_triples:
        ol, pl, tl = o["latency_ms"], p["latency_ms"], t["latency_ms"]
        mark = ("yes" if step_ok(o, p, t) else "**no**") if (o, p, t) in judged else "(above the slower peer's saturation)"
        rows.append(
            f"| {p['offered']:.1f} | {ol['p50']:.1f} | {pl['p50']:.1f} | {tl['p50']:.1f} | {ol['p99']:.1f} | "
            f"{pl['p99']:.1f} | {tl['p99']:.1f} | {o['sent'] - o['ok']} | {mark} |"
        )
    return "\n".join(rows)
with open(os.path.join(out_dir, "time-to-ready.json")) as f:
    ready = [json.loads(line) for line in f if line.strip()]

small_ratio = ours_small["throughput_rps"] / ceiling
phone_ratio = ours_phone["throughput_rps"] / py_phone["throughput_rps"]
phone_dct_ratio = ours_dct_phone["throughput_rps"] / py_phone["throughput_rps"]


def ratio(report):
    return report["latency_ms"]["p99"] / report["latency_ms"]["p50"]


def tail_target(pct):
    """Issue 22: p99 <= 2.5 x p50 up to 60 % of saturation, <= 3 x at 80 %, in 2 of 3 runs."""
    return 2.5 if pct <= 60 else 3.0


def tail_verdict(loads):
    met = [sum(ratio(r) <= tail_target(pct) for r in tail_runs[pct]) >= 2 for pct in loads]
    return verdict(all(met)) + ("" if all(met) else f" (met at {sum(met)} of {len(met)} loads)")


def tail_cells(loads):
    return "; ".join(
        f"{pct} %: " + ", ".join(f"**{ratio(r):.2f}**" for r in tail_runs[pct]) for pct in loads
    )


def tail_rows():
    rows = []
    for pct in TAIL_LOADS:
        for run, r in enumerate(tail_runs[pct], 1):
            lat = r["latency_ms"]
            rows.append(
                f"| {pct} % of saturation ({r['offered']:.1f} req/s), run {run} | {lat['p50']:.1f} ms | "
                f"{lat['p90']:.1f} | {lat['p99']:.1f} | {lat['p999']:.1f} | {lat['max']:.1f} | "
                f"{ratio(r):.2f} |"
            )
    return "\n".join(rows)


# The ideal server's floor (scripts/tail_bound.py, docs/anatomy.md): FIFO at our saturation's
# cost per image, never faster than one request alone.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tail_bound  # noqa: E402

ideal_service_ms = 1000.0 / ours_small["throughput_rps"]
ideal_lone_ms = ours_one["latency_ms"]["p50"]


def floor_rows():
    rows = []
    for pct in TAIL_LOADS:
        rate = pct / 100 * ours_small["throughput_rps"]
        lat = tail_bound.latencies(rate, ideal_service_ms, ideal_lone_ms, 1_000_000, random.Random(1))
        p50, p99 = tail_bound.p50_p99(lat)
        ours = sorted(tail_runs[pct], key=lambda r: r["latency_ms"]["p99"])[1]["latency_ms"]
        rows.append(
            f"| {pct} % ({rate:.1f} req/s) | {p50:.1f} | {p99:.1f} | {p99 / p50:.2f} | "
            f"{ours['p50']:.1f} | {ours['p99']:.1f} | {ours['p99'] / p99:.2f} x |"
        )
    return "\n".join(rows)


deadline_ms = 10_000.0  # repvgg-serve's default --request-timeout-ms
bare_ms = 1000.0 * sessions / fb1

for name in ("ours-sweep", "python-sweep", "torchserve-sweep"):
    shutil.copy(os.path.join(out_dir, f"{name}.svg"), os.path.join(charts, f"{name}.svg"))


def lat(r):
    l = r["latency_ms"]
    return f"p50 {l['p50']:.1f} ms, p99 {l['p99']:.1f} ms"


def overload_row(name, r):
    answered = share(r, "200")
    rejected = share(r, "503")
    expired = share(r, "504")
    failed = 1.0 - answered - rejected - expired
    return (
        f"| {name} | {r['offered']:.1f} | {r['sent']} | {answered:.1%} | {rejected:.1%} | "
        f"{expired:.1%} | {failed:.1%} | {r['latency_ms']['p50']:.0f} | "
        f"{r['latency_ms']['p99']:.0f} | {r['latency_ms']['max']:.0f} |"
    )


def sweep_rows(reports):
    rows = []
    for r in reports:
        l = r["latency_ms"]
        bad = r["sent"] - r["ok"]
        rows.append(
            f"| {r['offered']:.1f} | {r['throughput_rps']:.1f} | {l['p50']:.1f} | {l['p90']:.1f} | "
            f"{l['p99']:.1f} | {l['max']:.1f} | {bad} |"
        )
    return "\n".join(rows)


def criterion_rows():
    rows = []
    for path in sorted(glob.glob("target/criterion/*/*/new/estimates.json")) + sorted(
        glob.glob("target/criterion/*/*/*/new/estimates.json")
    ):
        with open(path) as f:
            mean = json.load(f)["mean"]
        parts = path.split(os.sep)[2:-2]
        ms = mean["point_estimate"] / 1e6
        lo, hi = (mean["confidence_interval"][k] / 1e6 for k in ("lower_bound", "upper_bound"))
        rows.append(f"| {parts[0]} | {'/'.join(parts[1:])} | {ms:.3f} | {lo:.3f} .. {hi:.3f} |")
    return "\n".join(rows) if rows else "| (criterion not run: SKIP_CRITERION=1) | | | |"


def exists(name):
    return os.path.exists(os.path.join(out_dir, f"{name}.json"))


cpu = load("cpu")
amx = "amx_bf16" in cpu["bf16_flags"]
with open(os.path.join(out_dir, "serve-ready.jsonl")) as f:
    serve_ready = [json.loads(line) for line in f if line.strip()]


def serve_ready_rows():
    return "\n".join(
        f"| {r['variant'].upper()} | {r['precision']} | {r['cold_s']:.1f} s | {r['cached_s']:.1f} s |"
        for r in serve_ready
    )


def bf16_section():
    """The bf16 rows, or a sentence saying why there are none."""
    if not exists("raw-bf16-b8"):
        return (
            f"This CPU ({cpu['model']}) has neither `amx_bf16` nor `avx512_bf16`: "
            "`--precision bf16` is refused here, so this run has fp32 rows only."
        )
    rb1, rb8 = raw("bf16", 1), raw("bf16", 8)
    small = load("ours-bf16-saturation-small")
    phone = load("ours-bf16-saturation-phone")
    dct = load("ours-bf16-dct-saturation-phone")
    one = load("ours-bf16-one-at-a-time")
    vs_py = small["throughput_rps"] / py_small["throughput_rps"]
    vs_raw = small["throughput_rps"] / rb8
    phone_py = phone["throughput_rps"] / py_phone["throughput_rps"]
    dct_py = dct["throughput_rps"] / py_phone["throughput_rps"]
    p50 = one["latency_ms"]["p50"]

    def amx_verdict(ok):
        # The issue sets these targets for AMX CPUs; elsewhere they are measured, not judged.
        return verdict(ok) if amx else "AMX target; this CPU has no `amx_bf16`"

    flags = ", ".join(f"`{f}`" for f in cpu["bf16_flags"])
    return f"""Measured on {cpu['model']} with {flags}{'' if amx else ' (no AMX: bf16 runs on AVX-512 BF16, the AMX targets below are reported, not judged)'}.
ONNX Runtime 1.24.1 + OpenVINO execution provider (`onnxruntime-openvino` wheel), OpenVINO's
`INFERENCE_PRECISION_HINT=bf16`; repvgg-serve with `--precision bf16` and its bf16 defaults (1
session x {threads} threads). Same A0 model, photos, load generator and Python baseline (fp32, as
Python users run it) as above.

| target | measured | |
|---|---|---|
| small photo: bf16 saturation >= 4 x Python baseline | {small['throughput_rps']:.1f} / {py_small['throughput_rps']:.1f} = **{vs_py:.2f} x** | {amx_verdict(vs_py >= 4.0)} |
| small photo: bf16 saturation >= 0.5 x raw ORT + OpenVINO bf16, batch 8, same threads | {small['throughput_rps']:.1f} / {rb8:.1f} = **{vs_raw:.2f} x** | {amx_verdict(vs_raw >= 0.5)} |
| phone photo, exact pixels: >= 2.5 x Python | {phone['throughput_rps']:.1f} / {py_phone['throughput_rps']:.1f} = **{phone_py:.2f} x** | {amx_verdict(phone_py >= 2.5)} |
| phone photo, `--jpeg-dct-scaling`: >= 5 x Python | {dct['throughput_rps']:.1f} / {py_phone['throughput_rps']:.1f} = **{dct_py:.2f} x** | {amx_verdict(dct_py >= 5.0)} |
| light load (one request at a time): bf16 p50 <= 10 ms, small photo | {p50:.1f} ms (p99 {one['latency_ms']['p99']:.1f} ms) | {verdict(p50 <= 10.0)} |

| engine (A0, fused, 1 session x {threads} threads, no HTTP) | batch 1 | batch 8 |
|---|---|---|
| ONNX Runtime 1.31.1 CPU provider, fp32 | {ob1:.1f} images/s | {ob8:.1f} images/s |
| ONNX Runtime 1.24.1 + OpenVINO, bf16 | {rb1:.1f} images/s | {rb8:.1f} images/s |
| **bf16 / fp32** | **{rb1 / ob1:.2f} x** | **{rb8 / ob8:.2f} x** |

| service (saturation, closed loop, 16 connections) | small photo | phone photo | phone photo, DCT-scaled |
|---|---|---|---|
| repvgg-serve bf16 | {small['throughput_rps']:.1f} req/s ({lat(small)}) | {phone['throughput_rps']:.1f} req/s ({lat(phone)}) | {dct['throughput_rps']:.1f} req/s ({lat(dct)}) |
| repvgg-serve fp32 | {ours_small['throughput_rps']:.1f} req/s | {ours_phone['throughput_rps']:.1f} req/s | {ours_dct_phone['throughput_rps']:.1f} req/s |
| Python baseline (fp32) | {py_small['throughput_rps']:.1f} req/s | {py_phone['throughput_rps']:.1f} req/s | - |

### Agreement: bf16 against fp32 (`repvgg-serve compare`)

Every fixture checkpoint, every fixture image (`tests/fixtures/images`), the service's own
preprocessing; fp32 is ONNX Runtime's CPU provider, bf16 the engine above. None of the
fixtures is a trained network (their BatchNorm parameters are randomised, their logits scaled to
spread like a trained model's: `../shared/fixtures/README.md`); the tiny ones have 10 classes,
`a0_official_train.pth` (from `../shared`) is the 1000-class A0. Run `repvgg-serve compare` on
your own checkpoint and images to decide.

{agreement_section()}
"""


def agreement_section():
    reports = []
    for path in sorted(glob.glob(os.path.join(out_dir, "agreement-*.json"))):
        with open(path) as f:
            reports.append(json.load(f))
    if not reports:
        return "(no agreement results)"
    names = [os.path.basename(r["checkpoint"]) for r in reports]
    rows = [
        "| checkpoint | images | top-1 agreement | top-5 agreement | max abs delta logit | mean abs delta | relative error | top-1 changed on (fp32 margin) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in zip(names, reports):
        t = r["summary"]
        changed = [
            f"{i['image']} ({i['fp32_margin']:.3f})"
            for i in r["images"]
            if i["fp32_top1"] != i["bf16_top1"]
        ]
        rows.append(
            f"| {name} | {t['images']} | {t['top1_agreement']:.1%} | {t['top5_agreement']:.1%} | "
            f"{t['max_abs_delta']:.4f} | {t['mean_abs_delta']:.4f} | {t['relative_error']:.4f} | "
            f"{', '.join(changed) or 'none'} |"
        )
    images = [i["image"] for i in reports[0]["images"]]
    rows += [
        "",
        "Per image: max |delta logit| (fp32 margin between the two best classes); **changed** "
        "marks a different top-1.",
        "",
        "| image | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for image in images:
        cells = []
        for r in reports:
            i = next((i for i in r["images"] if i["image"] == image), None)
            if i is None:
                cells.append("-")
                continue
            mark = " **changed**" if i["fp32_top1"] != i["bf16_top1"] else ""
            cells.append(f"{i['max_abs_delta']:.3f} ({i['fp32_margin']:.3f}){mark}")
        rows.append(f"| {image} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


cold = next(r for r in ready if not r["from_cache"])
cached = next(r for r in ready if r["from_cache"])
now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
# The run's own commit and start (scripts/bench.sh writes them); older runs have neither.
run = load("run") if os.path.exists(os.path.join(out_dir, "run.json")) else {}
measured = (
    f"on {run.get('started', now)}, commit\n`{run.get('commit', git_commit())}`"
    + (f" (this report re-written on {now} at `{git_commit()}`)" if run and run["commit"] != git_commit() else "")
)

report = f"""# Benchmarks

Written by `make bench` (`scripts/bench.sh`, then `scripts/bench_report.py`) {measured}. Every number below comes from that one run; raw results are in
`target/bench/*.json`. The machine is shared and noisy: compare the **ratios** (both sides
measured minutes apart in the same run), not absolute numbers across runs.

- Machine: {os.cpu_count()} cores ({cpu['model']}), {platform.system()} {platform.release()};
  native bf16 flags: {', '.join(f'`{f}`' for f in cpu['bf16_flags']) or 'none'}.
  The load generator (`loadtest`) runs on the same cores as the service under test, for both
  services alike.
- Model: RepVGG-A0, random weights (`repvgg-serve init --variant A0 --seed 1`), 1000 classes,
  input 224, fp32, ONNX Runtime 1.31.1 on CPU. repvgg-serve runs with its defaults
  ({sessions} sessions x {per_session} intra-op threads, {threads} preprocessing workers); the Python
  baseline's session uses {threads} intra-op threads.
- Images: small photo `tests/fixtures/images/chelsea_q90.jpg` (451x300, 27 KB); phone photo
  4032x3024 JPEG (3.3 MB) written by `loadtest/baselines/make_phone_photo.py` from `coffee.png`.
- Python baseline: `loadtest/baselines/fastapi_pillow_ort` (FastAPI + Pillow + onnxruntime,
  uvicorn, one process, same model file, same preprocessing, one inference per request),
  dependencies pinned in its `requirements.txt`, installed by the script into `.venv-bench`.
- TorchServe: `loadtest/baselines/torchserve_pillow_ort` (TorchServe 0.12.0, Java 17 from
  Debian's `openjdk-17-jre-headless`; a custom handler running the same ONNX file with the same
  Pillow preprocessing in onnxruntime; its dynamic batching as its documentation recommends:
  `batchSize` 8, `maxBatchDelay` 5 ms, {sessions} workers x {per_session} onnxruntime threads),
  installed by `scripts/lib/torchserve.sh` into `.venv-torchserve`.
- Saturation = closed loop, 16 connections, {ours_small['duration_s']:.0f} s after a 3 s warm-up.
  Latency runs are open loop (Poisson arrivals, loadtest's default, seed 1: bursty like independent clients; latency from the intended send time).

## Summary

| target | measured | |
|---|---|---|
| small photo: our saturation >= 0.90 x raw ORT batch 8 (best layout) | {ours_small['throughput_rps']:.1f} / {ceiling:.1f} = **{small_ratio:.3f}** | {verdict(small_ratio >= 0.90)} |
| small photo: v2 binary (`/v2/models/repvgg/infer`) >= 0.95 x `/classify` | {ours_v2['throughput_rps']:.1f} / {ours_small['throughput_rps']:.1f} = **{v2_ratio:.3f}** | {verdict(v2_ratio >= 0.95)} |
| open-loop sweep (Poisson) at the same rates, 20 % to 100 % of the slower peer's saturation ({slower_peer:.1f} req/s): our p50 and p99 <= Python's and TorchServe's at every step | {steps_met} of {len(judged)} steps | {steps_verdict} |
| light load (one request at a time, closed loop): our p50 <= Python's and TorchServe's p50 | {ours_one['latency_ms']['p50']:.1f} ms vs {py_one['latency_ms']['p50']:.1f} / {ts_one['latency_ms']['p50']:.1f} ms | {verdict(ours_one['latency_ms']['p50'] <= min(py_one['latency_ms']['p50'], ts_one['latency_ms']['p50']))} |
| phone photo: our throughput >= 2 x Python baseline (default: exact Pillow pixels) | {ours_phone['throughput_rps']:.1f} / {py_phone['throughput_rps']:.1f} = **{phone_ratio:.2f} x** | {verdict(phone_ratio >= 2.0)} |
| phone photo, with `--jpeg-dct-scaling` | {ours_dct_phone['throughput_rps']:.1f} / {py_phone['throughput_rps']:.1f} = **{phone_dct_ratio:.2f} x** | {verdict(phone_dct_ratio >= 2.0)} |
| up to 60 % of saturation (Poisson, 20 / 40 / 60 %, 3 runs of {tail_runs[20][0]['duration_s']:.0f} s each): p99 <= 2.5 x p50 in 2 of 3 runs | p99 / p50 = {tail_cells((20, 40, 60))} | {tail_verdict((20, 40, 60))} |
| 80 % of saturation ({tail_runs[80][0]['offered']:.1f} req/s, Poisson, 3 runs of {tail_runs[80][0]['duration_s']:.0f} s): p99 <= 3 x p50 in 2 of 3 runs | p99 / p50 = {tail_cells((80,))} | {tail_verdict((80,))} |
| overload (3 x saturation, {ours_over['duration_s']:.0f} s): answered requests within the deadline ({deadline_ms / 1000:.0f} s) | max {ours_over['latency_ms']['max']:.0f} ms | {verdict(ours_over['latency_ms']['max'] <= deadline_ms)} |

Ratios: our server / raw ONNX Runtime (batch 8, best layout) **{small_ratio:.3f}**; our server / Python
baseline **{ours_small['throughput_rps'] / py_small['throughput_rps']:.2f} x** (small photo),
**{phone_ratio:.2f} x** (phone photo, exact), **{phone_dct_ratio:.2f} x** (phone photo, DCT-scaled);
fused / unfused in raw ONNX Runtime **{fb1 / ub1:.2f} x** (batch 1), **{fb8 / ub8:.2f} x** (batch 8).

## Raw ONNX Runtime (`examples/ort_throughput.rs`, no HTTP, no preprocessing)

{sessions} session(s) side by side with {per_session} intra-op thread(s) each (the server's default
layout on this machine), and one session with all {threads} threads:

| graph | batch 1 | batch 8 |
|---|---|---|
| fused (one 3x3 conv per block), {sessions} x {per_session} threads | {fb1:.1f} images/s | {fb8:.1f} images/s |
| three-branch (training form, `export --unfused`), {sessions} x {per_session} threads | {ub1:.1f} images/s | {ub8:.1f} images/s |
| **fused / unfused** | **{fb1 / ub1:.2f} x** | **{fb8 / ub8:.2f} x** |
| fused, 1 session x {threads} threads | {ob1:.1f} images/s | {ob8:.1f} images/s |

## Saturation throughput

| service | small photo | phone photo |
|---|---|---|
| raw ONNX Runtime, batch 8, best layout (ceiling) | {ceiling:.1f} images/s | - |
| repvgg-serve | {ours_small['throughput_rps']:.1f} req/s ({lat(ours_small)}) | {ours_phone['throughput_rps']:.1f} req/s ({lat(ours_phone)}) |
| repvgg-serve, v2 binary (KServe / tritonclient) | {ours_v2['throughput_rps']:.1f} req/s ({lat(ours_v2)}) | - |
| repvgg-serve `--jpeg-dct-scaling` | - | {ours_dct_phone['throughput_rps']:.1f} req/s ({lat(ours_dct_phone)}) |
| Python baseline | {py_small['throughput_rps']:.1f} req/s ({lat(py_small)}) | {py_phone['throughput_rps']:.1f} req/s ({lat(py_phone)}) |
| TorchServe (dynamic batching) | {ts_small['throughput_rps']:.1f} req/s ({lat(ts_small)}) | {ts_phone['throughput_rps']:.1f} req/s ({lat(ts_phone)}) |
| **repvgg-serve / Python** | **{ours_small['throughput_rps'] / py_small['throughput_rps']:.2f} x** | **{phone_ratio:.2f} x** (DCT-scaled: **{phone_dct_ratio:.2f} x**) |
| **repvgg-serve / TorchServe** | **{ours_small['throughput_rps'] / ts_small['throughput_rps']:.2f} x** | **{ours_phone['throughput_rps'] / ts_phone['throughput_rps']:.2f} x** |

Small photo: both services ran side by side and were measured alternately, ours / Python
{rounds_line()}; the table shows the median run of each.

Errors during saturation runs: ours {ours_small['sent'] - ours_small['ok']} + {ours_phone['sent'] - ours_phone['ok']},
Python {py_small['sent'] - py_small['ok']} + {py_phone['sent'] - py_phone['ok']},
TorchServe {ts_small['sent'] - ts_small['ok']} + {ts_phone['sent'] - ts_phone['ok']}. TorchServe's
saturation was measured in its own block after the Python baseline's (not alternately with ours).

One request at a time (closed loop, one connection, small photo): p50 / p99 ours
{ours_one['latency_ms']['p50']:.1f} / {ours_one['latency_ms']['p99']:.1f} ms, Python
{py_one['latency_ms']['p50']:.1f} / {py_one['latency_ms']['p99']:.1f} ms, TorchServe
{ts_one['latency_ms']['p50']:.1f} / {ts_one['latency_ms']['p99']:.1f} ms.

## Latency (repvgg-serve, small photo, open loop)

| load | p50 | p90 | p99 | p99.9 | max | p99 / p50 |
|---|---|---|---|---|---|---|
| 1 req/s | {rate1['latency_ms']['p50']:.1f} ms | {rate1['latency_ms']['p90']:.1f} | {rate1['latency_ms']['p99']:.1f} | {rate1['latency_ms']['p999']:.1f} | {rate1['latency_ms']['max']:.1f} | {ratio(rate1):.2f} |
{tail_rows()}

The floor under those tails: an ideal server (one first-come-first-served queue serving every
image, a lone one too, at {ideal_service_ms:.1f} ms, our saturation's cost per image, with no
variation, and no request faster than one alone, {ideal_lone_ms:.1f} ms) under the same Poisson
arrivals (10^6 requests; `scripts/tail_bound.py`, docs/anatomy.md "What the ratio targets ask of
a queue"). Its p99 is a floor for ours in milliseconds; where its own p99 / p50 is above the
target, only a slower median could meet the ratio.

| load | ideal p50 ms | ideal p99 ms | ideal p99 / p50 | our p50 (run with the median p99) | our p99 (median of 3) | our p99 / ideal p99 |
|---|---|---|---|---|---|---|
{floor_rows()}

Bare batch-1 inference ({per_session} thread(s)) takes {bare_ms:.1f} ms here, so HTTP + preprocessing + queueing add
{rate1['latency_ms']['p50'] - bare_ms:.1f} ms at p50 under light load.

## Throughput-latency curves (open-loop sweep, small photo)

Each service is swept from 20 % to 150 % of its own saturation rate, {ours_sweep[0]['duration_s']:.0f} s per step;
ours and TorchServe also at the Python baseline's rates up to the baseline's saturation (each
in a start of its own after the baseline's runs), so the three can be compared at the same
offered load:

| offered req/s (Python's steps) | our p50 ms | Python p50 | TorchServe p50 | our p99 | Python p99 | TorchServe p99 | ours not 200 | ours <= both (p50 and p99) |
|---|---|---|---|---|---|---|---|---|
{step_rows()}

![repvgg-serve vs Python baseline vs TorchServe](bench/sweep.svg)

The chart (`loadtest chart`, drawn with `plotters`) puts each step at the rate it offered (x,
requests/s) with its p50 (solid, dots) and p99 (dashed, triangles) on a log scale; what each
step achieved is in the tables.

repvgg-serve:

| offered req/s | achieved | p50 ms | p90 | p99 | max | not 200 |
|---|---|---|---|---|---|---|
{sweep_rows(ours_sweep)}

Python baseline:

| offered req/s | achieved | p50 ms | p90 | p99 | max | not 200 |
|---|---|---|---|---|---|---|
{sweep_rows(py_sweep)}

TorchServe (at the Python baseline's rates):

| offered req/s | achieved | p50 ms | p90 | p99 | max | not 200 |
|---|---|---|---|---|---|---|
{sweep_rows(ts_sweep)}

## Overload: 3 x our saturation rate, open loop

Same arrival rate for both services. Answered = 200; rejected = 503 (queue full, sent at once
with `Retry-After`); expired = 504 (deadline passed in the queue); failed = the client gave up
(30 s timeout) or the connection failed. Latencies are of the answered requests.

| service | offered req/s | sent | answered | rejected | expired | failed | p50 ms | p99 ms | max ms |
|---|---|---|---|---|---|---|---|---|---|
{overload_row("repvgg-serve", ours_over)}
{overload_row("Python baseline", py_over)}

## bf16 (`--precision bf16`)

{bf16_section()}

## Time to ready

From launching `repvgg-serve serve --checkpoint X [--precision P]` to `/readyz` answering 200
(load, fusion, ONNX Runtime or OpenVINO compile, warm-up of every batch size, for bf16 the
agreement check), random-weight checkpoints from `repvgg-serve init`; cold = empty
`--cache-dir`, cached = the second start with the same cache (fused model, optimised graph,
OpenVINO blobs):

| variant | precision | cold | cached |
|---|---|---|---|
{serve_ready_rows()}

Library only (`examples/time_to_ready.rs`): A0 checkpoint (random, safetensors) -> fused ONNX -> ONNX Runtime session -> first inference:
**{cold['ready_s']:.2f} s** cold (load + fusion + export {cold['prepare_s']:.2f} s), **{cached['ready_s']:.2f} s**
from the fused-model cache.

## Micro-benchmarks (criterion, `benches/`)

`cargo bench --bench preprocess|inference|fusion` (here with `--warm-up-time 1 --measurement-time 3`).
Times per iteration (one image; one batch for `ort_a0`; one whole network for `fuse_and_export`).

| group | case | mean ms | 95 % interval ms |
|---|---|---|---|
{criterion_rows()}
"""

# The interpretation (where the time goes, what would close a gap) is written by people and
# kept beside the charts; it is appended as it is, under its own heading.
notes = os.path.join(charts, "notes.md")
if os.path.exists(notes):
    with open(notes) as f:
        report += "\n" + f.read()

with open(output, "w") as f:
    f.write(report)
