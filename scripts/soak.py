#!/usr/bin/env python3
"""The soak: the release server (A0 demo model, default flags but a 5 s idle timeout) under a
steady open-loop load from `loadtest` while hostile clients run beside it:

- bombs: a 7000 x 7000 16-bit RGBA PNG (49 MP, 0.4 MB on the wire) every 4 s;
- trickle: 8 connections sending a 100 kB body at 1 byte per 100 ms (answered 408, reopened);
- idle: 200 connections opened and left silent (closed by the idle timeout, reopened);
- garbage: random bytes, a truncated JPEG and a non-image every 250 ms (400/415);
- walk-aways: a valid image sent and the socket closed at once, every 200 ms (cancelled).

Every second: RSS, peak RSS, open file descriptors, threads, open connections. At the end: the
load's latency and error counts, what every hostile client saw, memory growth (median RSS of
the last minute against the second minute), descriptors back at the baseline, /healthz, and a
SIGTERM that must exit 0. Only the standard library: runs with the system python3.
"""
import argparse
import json
import os
import random
import signal
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
import urllib.request
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / "target/release/repvgg-serve"
LOADTEST = ROOT / "target/release/loadtest"
IMAGES = ROOT / "tests/fixtures/images"


def png_bomb(w=7000, h=7000):
    raw = zlib.compressobj(1)
    row = b"\x00" + bytes(w * 8)
    data = b"".join(raw.compress(row) for _ in range(h)) + raw.flush()

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", w, h, 16, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def request(port, body, content_type="application/octet-stream", timeout=60):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/classify", data=body,
                                 headers={"content-type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            r.read()
            return r.status
    except urllib.error.HTTPError as e:
        e.read()
        return e.code
    except Exception as e:  # connection refused/reset: counted by kind
        return type(e).__name__


class Tally:
    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {}

    def add(self, client, outcome):
        with self.lock:
            per = self.counts.setdefault(client, {})
            per[str(outcome)] = per.get(str(outcome), 0) + 1


def bombs(port, stop, tally):
    bomb = png_bomb()
    while not stop.wait(4.0):
        threading.Thread(target=lambda: tally.add("bomb", request(port, bomb, "image/png")),
                         daemon=True).start()


def trickle(port, stop, tally):
    while not stop.is_set():
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=30)
            s.sendall(b"POST /classify HTTP/1.1\r\nhost: soak\r\ncontent-type: image/png\r\n"
                      b"content-length: 100000\r\n\r\n")
            s.settimeout(0.1)
            answer = b""
            while not stop.is_set():
                try:
                    s.sendall(b"\x00")
                except OSError:
                    break
                try:
                    got = s.recv(4096)
                    if not got:
                        break
                    answer += got
                except socket.timeout:
                    pass
            status = answer.split(b" ", 2)[1].decode() if answer.startswith(b"HTTP/1.1") else "closed"
            tally.add("trickle", status)
            s.close()
        except OSError as e:
            tally.add("trickle", type(e).__name__)
            stop.wait(0.5)


def idle(port, stop, tally, count=200):
    socks = []
    while not stop.is_set():
        socks = [s for s in socks if not closed_by_peer(s, tally)]
        while len(socks) < count and not stop.is_set():
            try:
                socks.append(socket.create_connection(("127.0.0.1", port), timeout=5))
            except OSError as e:
                tally.add("idle", type(e).__name__)
                break
        stop.wait(0.5)
    for s in socks:
        s.close()


def closed_by_peer(s, tally):
    s.setblocking(False)
    try:
        data = s.recv(1)
        if data == b"":
            tally.add("idle", "closed by server")
            s.close()
            return True
    except BlockingIOError:
        return False
    except OSError:
        tally.add("idle", "reset")
        s.close()
        return True
    return False


def garbage(port, stop, tally):
    jpeg = (IMAGES / "chelsea_q90.jpg").read_bytes()
    bodies = [("random", lambda: os.urandom(random.randint(1, 4096))),
              ("truncated jpeg", lambda: jpeg[: len(jpeg) // 3]),
              ("text", lambda: b"definitely not an image")]
    while not stop.wait(0.25):
        name, make = random.choice(bodies)
        tally.add(f"garbage ({name})", request(port, make()))


def walk_away(port, stop, tally):
    image = (IMAGES / "chelsea.png").read_bytes()
    while not stop.wait(0.2):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(b"POST /classify HTTP/1.1\r\nhost: soak\r\ncontent-type: image/png\r\n"
                      + f"content-length: {len(image)}\r\n\r\n".encode() + image)
            s.close()
            tally.add("walk-away", "sent and closed")
        except OSError as e:
            tally.add("walk-away", type(e).__name__)


def proc_status(pid, key):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def metric(port, name):
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except Exception:
        return None
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--rate", type=float, default=12)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--report", type=Path, required=True)
    args = ap.parse_args()
    seconds = int(args.minutes * 60)

    port_sock = socket.socket()
    port_sock.bind(("127.0.0.1", 0))
    port = port_sock.getsockname()[1]
    port_sock.close()
    log = open(args.out / "server.log", "w")
    server = subprocess.Popen([str(BIN), "serve", "--host", "127.0.0.1", "--port", str(port),
                               "--no-cache", "--idle-timeout-ms", "5000"],
                              stdout=log, stderr=subprocess.STDOUT)
    for _ in range(600):
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1).status == 200:
                break
        except Exception:
            time.sleep(0.1)
    else:
        sys.exit("soak: the server never became ready")
    baseline_fds = len(os.listdir(f"/proc/{server.pid}/fd"))

    stop = threading.Event()
    tally = Tally()
    hostile = [threading.Thread(target=f, args=(port, stop, tally), daemon=True)
               for f in (bombs, trickle, trickle, trickle, trickle, trickle, trickle, trickle,
                         trickle, idle, garbage, walk_away)]
    load_json = args.out / "load.json"
    load = subprocess.Popen([str(LOADTEST), "run", "--url", f"http://127.0.0.1:{port}/classify",
                             "--images", str(IMAGES), "--rate", str(args.rate),
                             "--duration", str(seconds), "--quiet", "--output", str(load_json)],
                            stdout=subprocess.DEVNULL)
    for t in hostile:
        t.start()
    samples = []
    started = time.time()
    while time.time() - started < seconds and server.poll() is None:
        time.sleep(1)
        pid = server.pid
        try:
            samples.append({
                "t": round(time.time() - started, 1),
                "rss_mib": proc_status(pid, "VmRSS") / 1024,
                "hwm_mib": proc_status(pid, "VmHWM") / 1024,
                "fds": len(os.listdir(f"/proc/{pid}/fd")),
                "threads": proc_status(pid, "Threads"),
                "connections": metric(port, "repvgg_http_connections"),
            })
        except FileNotFoundError:
            break
    load.wait(timeout=120)
    stop.set()
    for t in hostile:
        t.join(timeout=15)
    alive = server.poll() is None
    time.sleep(7)  # idle timeout (5 s) + slack: every hostile connection is gone
    fds_after = len(os.listdir(f"/proc/{server.pid}/fd")) if alive else None
    healthz = None
    if alive:
        try:
            healthz = urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5).status
        except Exception as e:
            healthz = type(e).__name__
    term_started = time.time()
    exit_code = None
    if alive:
        server.send_signal(signal.SIGTERM)
        exit_code = server.wait(timeout=60)
    term_seconds = time.time() - term_started
    log.close()

    result = json.loads(load_json.read_text()) if load_json.exists() else {}
    minute = [s["rss_mib"] for s in samples if 60 <= s["t"] < 120]
    last = [s["rss_mib"] for s in samples if s["t"] >= samples[-1]["t"] - 60]
    summary = {
        "minutes": args.minutes, "rate": args.rate, "alive_at_end": alive, "healthz": healthz,
        "exit_code": exit_code, "sigterm_to_exit_s": round(term_seconds, 2),
        "baseline_fds": baseline_fds, "fds_after": fds_after,
        "max_fds": max(s["fds"] for s in samples),
        "peak_rss_mib": round(max(s["hwm_mib"] for s in samples), 1),
        "rss_second_minute_mib": round(statistics.median(minute), 1) if minute else None,
        "rss_last_minute_mib": round(statistics.median(last), 1) if last else None,
        "max_connections_open": max((s["connections"] or 0) for s in samples),
        "hostile": tally.counts, "load": result,
    }
    (args.out / "soak.json").write_text(json.dumps({"summary": summary, "samples": samples}, indent=1))
    write_report(args.report, summary)
    ok = (alive and healthz == 200 and exit_code == 0 and fds_after is not None
          and fds_after <= baseline_fds + 2)
    print(json.dumps({k: v for k, v in summary.items() if k != "load"}, indent=1))
    sys.exit(0 if ok else 1)


def write_report(path, s):
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    flags = set(next((l for l in open("/proc/cpuinfo") if l.startswith("flags")), "").split())
    shown = " ".join(f for f in ("avx512f", "avx512_bf16", "amx_bf16") if f in flags)
    load = s["load"]
    lat = load.get("latency_ms", {})
    lines = [
        "# Soak results",
        "",
        f"Generated by `make soak` (scripts/soak.py): {s['minutes']} minutes, {cpu}, "
        f"{os.cpu_count()} cores, flags `{shown}`. A0 demo model, default flags except "
        "`--idle-timeout-ms 5000`; steady open-loop load of "
        f"{s['rate']} requests/s of the fixture photos plus the hostile clients listed in "
        "docs/reliability.md.",
        "",
        "| check | result |",
        "|---|---|",
        f"| server alive at the end, `/healthz` | {s['alive_at_end']}, {s['healthz']} |",
        f"| SIGTERM -> exit | code {s['exit_code']} after {s['sigterm_to_exit_s']} s |",
        f"| peak RSS (VmHWM) | {s['peak_rss_mib']} MiB |",
        f"| median RSS, 2nd minute -> last minute | {s['rss_second_minute_mib']} -> {s['rss_last_minute_mib']} MiB |",
        f"| open file descriptors: start / most / after the clients left | {s['baseline_fds']} / {s['max_fds']} / {s['fds_after']} |",
        f"| most open connections | {s['max_connections_open']:.0f} |",
        "",
        "Steady load (`loadtest run`, open loop):",
        "",
        "| sent | ok | statuses | p50 ms | p99 ms | max ms |",
        "|---|---|---|---|---|---|",
        f"| {load.get('sent', '?')} | {load.get('ok', '?')} | {json.dumps(load.get('statuses', '?'))} "
        f"| {lat.get('p50', '?')} | {lat.get('p99', '?')} | {lat.get('max', '?')} |",
        "",
        "What each hostile client saw (HTTP status, or how the connection ended):",
        "",
        "| client | outcomes |",
        "|---|---|",
    ]
    for client, counts in sorted(s["hostile"].items()):
        lines.append(f"| {client} | " + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) + " |")
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
