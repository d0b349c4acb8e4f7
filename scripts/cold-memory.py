#!/usr/bin/env python3
"""Does memory left untouched go cold on this host? (docs/anatomy.md, "The lowest step")

Usage: .venv-bench/bin/python scripts/cold-memory.py MODEL.onnx

Prints, outside our server: ONNX Runtime batch-1 run times after pauses of growing length
(1 and 2 threads); the same after 1 s of busy spinning instead of sleeping; a 32 MB array's
read time after pauses, and after 1 s of reading one value per 4 KiB page every 50 / 200 ms;
and a run after warm runs of a blank image at several periods. Needs onnxruntime and numpy
(the Python baseline's venv has both).
"""
import sys
import time

import numpy as np
import onnxruntime as ort


def ms(since):
    return round(1e3 * (time.perf_counter() - since), 1)


def spin(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def session(path, threads):
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    s = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    image = np.random.rand(1, 3, 224, 224).astype(np.float32)

    def run(x=image):
        started = time.perf_counter()
        s.run(None, {name: x})
        return ms(started)

    for _ in range(5):
        run()
    return run, np.zeros_like(image)


def main(path):
    for threads in (1, 2):
        run, _ = session(path, threads)
        for gap in (0, 0, 0.05, 0.2, 0.5, 1.0, 1.0, 2.0):
            time.sleep(gap)
            print(f"onnxruntime {threads} thread(s): run after {gap} s asleep: {run()} ms")
        spin(1.0)
        print(f"onnxruntime {threads} thread(s): run after 1 s of spinning: {run()} ms")

    a = np.ones(32 * 1024 * 1024 // 8)

    def read():
        started = time.perf_counter()
        a.sum()
        return ms(started)

    print("32 MB read warm:", [read() for _ in range(3)], "ms")
    for gap in (0.2, 0.5, 1.0, 2.0):
        time.sleep(gap)
        print(f"32 MB read after {gap} s untouched: {read()} ms")
    for period in (0.05, 0.2):
        end = time.perf_counter() + 1
        while time.perf_counter() < end:
            a[::512].sum()  # one float64 per 4 KiB page
            time.sleep(period)
        print(f"32 MB read after 1 s of one value per page every {period} s: {read()} ms")

    run, blank = session(path, 2)
    for period in (None, 0.05, 0.1, 0.2):
        times = []
        for _ in range(3):
            end = time.perf_counter() + 1.0
            while time.perf_counter() < end:
                time.sleep(period or 0.05)
                if period:
                    run(blank)
            time.sleep((period or 0.1) / 2)
            times.append(run())
        print(f"onnxruntime 2 threads, warm run every {period} s, then a run: {times} ms")


if __name__ == "__main__":
    main(sys.argv[1])
