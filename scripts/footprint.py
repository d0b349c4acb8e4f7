#!/usr/bin/env python3
"""`make footprint`: time to ready and memory of every variant, ours next to raw ONNX Runtime.

usage: footprint.py OUT.jsonl [VARIANT ...]     (default: every variant)

Per variant, with random weights (`repvgg-serve init`, seed 1) and default serve flags:
  cold     empty cache: process start -> /readyz 200 (read, hash, fuse, export, optimise,
           sessions, warm-up)
  cached   the same again with the cache the cold start filled
  after each start: 32 requests, 16 at a time (the small photo; request timeout 300 s, D2se
           takes seconds per batch), so every session has run
           its largest batch; steady RSS (VmRSS) after them, peak RSS (VmHWM) of the process
  The server runs with MALLOC_MMAP_THRESHOLD_=4194304, as the container image sets it.
  raw      scripts/raw_ort_footprint.py on the same fused ONNX: one session, every core as
           intra-op threads, then one batch-1 run (session_s + first_run_s, peak RSS)
  predicted  `repvgg-serve inspect --variant V`'s footprint estimate, to check its formula
"""
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target/release/repvgg-serve")
PY = os.path.join(ROOT, ".venv-bench/bin/python")
PHOTO = os.path.join(ROOT, "tests/fixtures/images/chelsea_q90.jpg")
PORT = int(os.environ.get("FOOTPRINT_PORT", "18095"))
# The container image's allocator setting (Dockerfile), unless the caller set it otherwise.
SERVE_ENV = {"MALLOC_MMAP_THRESHOLD_": "4194304", **os.environ}
VARIANTS = ["A0", "A1", "A2", "B0", "B1", "B1g2", "B1g4", "B2", "B2g2", "B2g4",
            "B3", "B3g2", "B3g4", "D2se"]


def status_mib(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    raise KeyError(key)


def get(path, timeout=2.0):
    with urllib.request.urlopen(f"http://127.0.0.1:{PORT}{path}", timeout=timeout) as r:
        return r.status


def classify(body):
    req = urllib.request.Request(f"http://127.0.0.1:{PORT}/classify", data=body,
                                 headers={"content-type": "image/jpeg"})
    with urllib.request.urlopen(req, timeout=120) as r:
        r.read()
        return r.status


def serve_once(checkpoint, cache):
    started = time.perf_counter()
    proc = subprocess.Popen([BIN, "serve", "--checkpoint", checkpoint, "--cache-dir", cache,
                             "--port", str(PORT), "--host", "127.0.0.1",
                             "--request-timeout-ms", "300000"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=SERVE_ENV)
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}")
            try:
                if get("/readyz", 0.5) == 200:
                    break
            except OSError:
                pass
            time.sleep(0.01)
        ready = time.perf_counter() - started
        ready_rss = status_mib(proc.pid, "VmRSS")
        result = {"ready_s": round(ready, 3), "rss_at_ready_mib": round(ready_rss, 1)}
        body = open(PHOTO, "rb").read()
        errors = []

        def worker():
            for _ in range(2):
                try:
                    classify(body)
                except Exception as e:  # noqa: BLE001 - reported below
                    errors.append(str(e))
        threads = [threading.Thread(target=worker) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise RuntimeError(f"requests failed: {errors[:3]}")
        result["steady_rss_mib"] = round(status_mib(proc.pid, "VmRSS"), 1)
        result["peak_rss_mib"] = round(status_mib(proc.pid, "VmHWM"), 1)
        return result
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


def measure(variant, work):
    ckpt = os.path.join(work, f"{variant}.safetensors")
    onnx = os.path.join(work, f"{variant}.onnx")
    subprocess.run([BIN, "init", "--variant", variant, "--seed", "1", "--output", ckpt],
                   check=True, capture_output=True)
    subprocess.run([BIN, "export", "--checkpoint", ckpt, "--output", onnx],
                   check=True, capture_output=True)
    inspect = json.loads(subprocess.run([BIN, "inspect", "--variant", variant], check=True,
                                        capture_output=True, text=True).stdout)
    cache = os.path.join(work, "cache")
    cold = serve_once(ckpt, cache)
    cached = serve_once(ckpt, cache)
    crop = 320 if variant == "D2se" else 224
    raw = json.loads(subprocess.run([PY, os.path.join(ROOT, "scripts/raw_ort_footprint.py"),
                                     onnx, str(os.cpu_count()), str(crop)],
                                    check=True, capture_output=True, text=True).stdout)
    for f in (ckpt, onnx):
        os.remove(f)
    subprocess.run(["rm", "-rf", cache], check=True)
    return {
        "variant": variant,
        "params_deploy": inspect["params_deploy"],
        "cold": cold,
        "cached": cached,
        "raw_ort": raw,
        "predicted": inspect.get("footprint"),
    }


def main():
    out = sys.argv[1]
    variants = sys.argv[2:] or VARIANTS
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                if l.startswith("model name")), "unknown")
    with open(out, "w") as f, tempfile.TemporaryDirectory(prefix="footprint-") as work:
        for v in variants:
            row = measure(v, work)
            row["cpu"] = cpu
            row["cores"] = os.cpu_count()
            print(json.dumps(row), file=f, flush=True)
            print(f"footprint: {v}: cold {row['cold']['ready_s']} s, cached "
                  f"{row['cached']['ready_s']} s (raw {row['raw_ort']['ready_s']} s), steady "
                  f"{row['cached']['steady_rss_mib']} MiB, peak {row['cached']['peak_rss_mib']} "
                  f"MiB (raw peak {row['raw_ort']['peak_rss_mib']})", file=sys.stderr)


if __name__ == "__main__":
    main()
