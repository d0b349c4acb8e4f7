#!/usr/bin/env python3
"""Raw ONNX Runtime footprint of one fused model: what `make footprint` compares us with.

usage: raw_ort_footprint.py MODEL.onnx THREADS [CROP]

One session with THREADS intra-op threads (graph optimisation ALL, as the server), then one
batch-1 run. Prints one JSON line: session creation and first-run seconds, steady RSS after
the run and peak RSS (VmHWM) of this process, in MiB.
"""
import json
import sys
import time


def status_mib(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    raise KeyError(key)


def main():
    model, threads = sys.argv[1], int(sys.argv[2])
    crop = int(sys.argv[3]) if len(sys.argv) > 3 else 224
    import numpy as np
    import onnxruntime as ort

    baseline = status_mib("VmRSS")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    started = time.perf_counter()
    session = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    created = time.perf_counter() - started
    x = np.zeros((1, 3, crop, crop), dtype=np.float32)
    started = time.perf_counter()
    session.run(None, {"input": x})
    first_run = time.perf_counter() - started
    print(json.dumps({
        "ort_version": ort.__version__,
        "threads": threads,
        "session_s": round(created, 3),
        "first_run_s": round(first_run, 3),
        "ready_s": round(created + first_run, 3),
        "rss_mib": round(status_mib("VmRSS"), 1),
        "peak_rss_mib": round(status_mib("VmHWM"), 1),
        "python_numpy_ort_baseline_mib": round(baseline, 1),
    }))


if __name__ == "__main__":
    main()
