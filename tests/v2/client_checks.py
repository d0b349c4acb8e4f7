"""The Open Inference Protocol as real clients see it: Triton's tritonclient (HTTP and gRPC) and a
plain HTTP client, against a running repvgg-serve. Driven by tests/v2_protocol.rs, which starts
the server; every check compares with the same server's own `/classify`.

    client_checks.py checks --protocol http|grpc --http HOST:PORT --grpc HOST:PORT
                            --busy-http HOST:PORT --busy-grpc HOST:PORT
                            --fixtures DIR --queue-capacity N
    client_checks.py sigterm --http HOST:PORT --grpc HOST:PORT --fixtures DIR --pid PID --admin HOST:PORT
    client_checks.py keys --http HOST:PORT --grpc HOST:PORT --fixtures DIR --key KEY
    client_checks.py tls --http HOST:PORT --grpc HOST:PORT --fixtures DIR --ca CA.pem
    client_checks.py repository --http HOST:PORT --grpc HOST:PORT --admin HOST:PORT
                                --fixtures DIR --key KEY --admin-key KEY

Prints one line per check and exits 1 when any failed.
"""

import argparse
import base64
import json
import os
import signal
import sys
import threading
import time
import traceback
import urllib.error
import urllib.request

import numpy as np
from PIL import Image
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

MODEL = "repvgg"
TENSOR_MODEL = "repvgg-tensor"
JPEGS = ["chelsea_q90.jpg", "coffee_exif6.jpg", "camera_progressive.jpg"]
PNGS = ["astronaut.png", "horse.png"]
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


class Checks:
    def __init__(self, args):
        self.args = args
        self.failed = []
        self.fixtures = args.fixtures
        self._classify = {}

    def image(self, name):
        with open(os.path.join(self.fixtures, "images", name), "rb") as f:
            return f.read()

    def classify(self, name):
        """`/classify?logits=true&top_k=3` for one fixture image (cached)."""
        if name not in self._classify:
            request = urllib.request.Request(
                f"http://{self.args.http}/classify?logits=true&top_k=3",
                data=self.image(name),
                headers={"Content-Type": "application/octet-stream"},
            )
            with urllib.request.urlopen(request, timeout=30) as response:
                self._classify[name] = json.load(response)
        return self._classify[name]

    def reference_logits(self, names):
        return np.array([self.classify(n)["logits"] for n in names], dtype=np.float32)

    def run(self, name, check):
        try:
            check()
        except Exception:  # noqa: BLE001 - every failure is reported, then the run fails
            self.failed.append(name)
            print(f"FAIL {name}\n{traceback.format_exc()}", flush=True)
        else:
            print(f"ok   {name}", flush=True)


def close(actual, expected, tolerance, what):
    actual = np.asarray(actual, dtype=np.float32)
    expected = np.asarray(expected, dtype=np.float32)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    worst = float(np.max(np.abs(actual - expected)))
    assert worst <= tolerance, f"{what}: max |delta| {worst} > {tolerance}"


def normalised_crop(fixtures, name):
    """The Pillow reference crop of a fixture, normalised NCHW by numpy."""
    path = os.path.join(fixtures, "reference", f"{name}.crop224.png")
    pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
    return ((pixels - MEAN) / STD).transpose(2, 0, 1)


def expect_error(call, status_fragment, message_fragment):
    """`call` raises InferenceServerException with the server's message."""
    try:
        call()
    except InferenceServerException as e:
        message = e.message() or ""
        status = str(e.status())
        assert message_fragment in message, f"message {message!r} lacks {message_fragment!r}"
        assert status_fragment in status, f"status {status!r} lacks {status_fragment!r}"
        return message
    raise AssertionError("no InferenceServerException")


class Protocol:
    """What differs between tritonclient.http and tritonclient.grpc."""

    def __init__(self, name, args):
        self.name = name
        self.module = httpclient if name == "http" else grpcclient
        url = args.http if name == "http" else args.grpc
        self.client = self.module.InferenceServerClient(url=url)

    def metadata(self, model):
        if self.name == "http":
            return self.client.get_model_metadata(model)
        return self.client.get_model_metadata(model, as_json=True)

    def server_metadata(self):
        if self.name == "http":
            return self.client.get_server_metadata()
        return self.client.get_server_metadata(as_json=True)

    def output(self, binary=True, class_count=0):
        if self.name == "http":
            return httpclient.InferRequestedOutput("logits", binary_data=binary, class_count=class_count)
        return grpcclient.InferRequestedOutput("logits", class_count=class_count)

    def input(self, name, shape, datatype, data, binary=True):
        inp = self.module.InferInput(name, list(shape), datatype)
        if self.name == "http":
            inp.set_data_from_numpy(data, binary_data=binary)
        else:
            inp.set_data_from_numpy(data)
        return inp

    def error_status(self, http_code, grpc_code):
        return str(http_code) if self.name == "http" else grpc_code


def images_array(checks, names):
    return np.array([checks.image(n) for n in names], dtype=np.object_)


def run_checks(args):
    checks = Checks(args)
    p = Protocol(args.protocol, args)
    fixtures = args.fixtures

    def health():
        assert p.client.is_server_live()
        assert p.client.is_server_ready()
        for model in (MODEL, TENSOR_MODEL):
            assert p.client.is_model_ready(model), model
            assert p.client.is_model_ready(model, "1"), model
        if p.name == "http":
            assert not p.client.is_model_ready("resnet50")  # 404: the client reads "not ready"
        else:  # gRPC answers NOT_FOUND, as Triton does for a model it does not have
            expect_error(lambda: p.client.is_model_ready("resnet50"), "NOT_FOUND", "unknown model")
        meta = p.server_metadata()
        assert meta["name"] == "repvgg-serve", meta
        assert "classification" in meta["extensions"] and "binary_tensor_data" in meta["extensions"], meta

    def metadata():
        classes = len(checks.classify(JPEGS[0])["logits"])
        image = p.metadata(MODEL)
        tensor = p.metadata(TENSOR_MODEL)
        shape = lambda t: [int(d) for d in t["shape"]]  # gRPC JSON writes int64 as strings
        assert image["name"] == MODEL and image["versions"] == ["1"], image
        assert [(t["name"], t["datatype"], shape(t)) for t in image["inputs"]] == [("image", "BYTES", [-1])], image
        assert [(t["name"], t["datatype"], shape(t)) for t in image["outputs"]] == [("logits", "FP32", [-1, classes])], image
        assert tensor["name"] == TENSOR_MODEL, tensor
        assert [(t["name"], t["datatype"], shape(t)) for t in tensor["inputs"]] == [("input", "FP32", [-1, 3, 224, 224])], tensor
        assert [(t["name"], t["datatype"], shape(t)) for t in tensor["outputs"]] == [("logits", "FP32", [-1, classes])], tensor

    def image_logits(binary_output):
        def check():
            names = JPEGS + PNGS[:1] if args.queue_capacity >= 4 else JPEGS[:1] + PNGS[:1]
            data = images_array(checks, names)
            result = p.client.infer(
                MODEL,
                [p.input("image", data.shape, "BYTES", data)],
                outputs=[p.output(binary=binary_output)],
                request_id="req-42",
            )
            close(result.as_numpy("logits"), checks.reference_logits(names), 1e-4, "logits vs /classify")
            response = result.get_response() if p.name == "http" else result.get_response(as_json=True)
            assert response["id"] == "req-42", response
            assert response["model_name"] == MODEL, response
        return check

    def image_default_outputs():
        # No outputs named: tritonclient asks for binary_data_output; all logits come back.
        names = [PNGS[1]]
        data = images_array(checks, names)
        result = p.client.infer(MODEL, [p.input("image", data.shape, "BYTES", data)])
        close(result.as_numpy("logits"), checks.reference_logits(names), 1e-4, "logits vs /classify")

    def classification():
        names = [JPEGS[0], PNGS[0]]
        data = images_array(checks, names)
        result = p.client.infer(
            MODEL,
            [p.input("image", data.shape, "BYTES", data)],
            outputs=[p.output(class_count=3)],
        )
        top = result.as_numpy("logits")
        assert top.shape == (2, 3), top.shape
        for row, name in zip(top, names):
            reference = checks.classify(name)
            expected = [(pr["class_id"], pr["label"]) for pr in reference["predictions"]]
            got = []
            for entry in row:
                score, index, label = entry.decode().split(":", 2)
                assert len(score.split(".")[1]) == 6, f"six decimals: {score}"
                assert abs(float(score) - reference["logits"][int(index)]) <= 1e-4, (score, index)
                got.append((int(index), label))
            assert got == expected, f"{name}: {got} != /classify's {expected}"

    def tensor_model(binary):
        def check():
            names = [JPEGS[0], PNGS[0]]
            batch = np.stack([normalised_crop(fixtures, n) for n in names]).astype(np.float32)
            result = p.client.infer(
                TENSOR_MODEL,
                [p.input("input", batch.shape, "FP32", batch, binary=binary)],
                outputs=[p.output(binary=binary)],
            )
            close(result.as_numpy("logits"), checks.reference_logits(names), 1e-3, "tensor logits vs /classify")
        return check

    def errors():
        one = images_array(checks, [JPEGS[0]])
        image_input = lambda: p.input("image", one.shape, "BYTES", one)
        msg = expect_error(lambda: p.client.infer("resnet50", [image_input()]), p.error_status(404, "NOT_FOUND"), "unknown model 'resnet50'")
        assert "repvgg-tensor" in msg, msg
        floats = np.zeros((1,), dtype=np.float32)
        expect_error(
            lambda: p.client.infer(MODEL, [p.input("image", floats.shape, "FP32", floats)]),
            p.error_status(400, "INVALID_ARGUMENT"),
            "datatype FP32; the model takes BYTES",
        )
        small = np.zeros((1, 3, 100, 100), dtype=np.float32)
        expect_error(
            lambda: p.client.infer(TENSOR_MODEL, [p.input("input", small.shape, "FP32", small)]),
            p.error_status(400, "INVALID_ARGUMENT"),
            "shape [1, 3, 100, 100]; the model takes [-1, 3, 224, 224]",
        )
        # A declared size past the data: the input's length says more than the body holds.
        inp = image_input()
        if p.name == "http":
            inp._parameters["binary_data_size"] = len(inp._raw_data) + 1000
            fragment = "only"
        else:
            inp._raw_content = inp._raw_content[:-10]
            fragment = "runs past the end"
        expect_error(lambda: p.client.infer(MODEL, [inp]), p.error_status(400, "INVALID_ARGUMENT"), fragment)
        broken = np.array([checks.image(JPEGS[0])[:2000]], dtype=np.object_)
        expect_error(
            lambda: p.client.infer(MODEL, [p.input("image", broken.shape, "BYTES", broken)]),
            p.error_status(400, "INVALID_ARGUMENT"),
            "cannot decode image",
        )
        # More images than the service ever admits at once: a clear 400, never admitted.
        many = images_array(checks, [JPEGS[0]] * (args.queue_capacity + 1))
        expect_error(
            lambda: p.client.infer(MODEL, [p.input("image", many.shape, "BYTES", many)]),
            p.error_status(400, "INVALID_ARGUMENT"),
            f"admits at most {args.queue_capacity} at once",
        )
        queue_full(checks, p, args)
        # ...and the server serves normally afterwards.
        result = p.client.infer(MODEL, [image_input()])
        close(result.as_numpy("logits"), checks.reference_logits([JPEGS[0]]), 1e-4, "after errors")

    checks.run(f"{p.name}: health, readiness, server metadata", health)
    checks.run(f"{p.name}: model metadata", metadata)
    checks.run(f"{p.name}: JPEG+PNG as BYTES, binary logits", image_logits(True))
    if p.name == "http":
        checks.run(f"{p.name}: JPEG+PNG as BYTES, JSON logits", image_logits(False))
    checks.run(f"{p.name}: no outputs named", image_default_outputs)
    checks.run(f"{p.name}: classification extension, class_count=3", classification)
    checks.run(f"{p.name}: tensor model, binary FP32", tensor_model(True))
    if p.name == "http":
        checks.run(f"{p.name}: tensor model, JSON FP32", tensor_model(False))
        checks.run("http: plain JSON client, base64 BYTES", lambda: plain_json(checks))
        checks.run("http: plain client, binary_data_size past the body", lambda: plain_truncated(checks))
    checks.run(f"{p.name}: errors as InferenceServerException", errors)
    return checks.failed


def queue_full(checks, p, args):
    """The busy server (--queue-capacity 2, batches held 3 s): one queued image leaves one place,
    so a request of two is refused at once with 503, and the queued one is still answered."""
    if p.name == "http":  # two connections: the held request must not block the second
        busy = httpclient.InferenceServerClient(url=args.busy_http, concurrency=2)
    else:
        busy = grpcclient.InferenceServerClient(url=args.busy_grpc)
    one = images_array(checks, [JPEGS[0]])
    two = images_array(checks, [JPEGS[0], PNGS[0]])
    held = {}
    done = threading.Event()
    if p.name == "http":
        pending = busy.async_infer(MODEL, [p.input("image", one.shape, "BYTES", one)])
    else:
        def callback(result, error):
            held["answer"] = (result, error)
            done.set()
        busy.async_infer(MODEL, [p.input("image", one.shape, "BYTES", one)], callback=callback)
    time.sleep(0.5)
    expect_error(
        lambda: busy.infer(MODEL, [p.input("image", two.shape, "BYTES", two)]),
        p.error_status(503, "UNAVAILABLE"),
        "queue is full",
    )
    if p.name == "http":
        result = pending.get_result()
    else:
        assert done.wait(30), "the held request was not answered"
        result, error = held["answer"]
        assert error is None, error
    close(result.as_numpy("logits"), checks.reference_logits([JPEGS[0]]), 1e-4, "held request")


def post(checks, path, body, headers):
    request = urllib.request.Request(f"http://{checks.args.http}{path}", data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def plain_json(checks):
    """A JSON-only client: BYTES elements are strings in JSON, so images travel base64."""
    names = [JPEGS[1], PNGS[0]]
    body = {
        "id": "plain",
        "inputs": [{
            "name": "image", "shape": [2], "datatype": "BYTES",
            "data": [base64.b64encode(checks.image(n)).decode() for n in names],
        }],
        "outputs": [{"name": "logits"}, {"name": "logits", "parameters": {"classification": 2}}],
    }
    status, headers, raw = post(checks, "/v2/models/repvgg/versions/1/infer", json.dumps(body).encode(), {"Content-Type": "application/json"})
    assert status == 200, (status, raw)
    assert "Inference-Header-Content-Length" not in headers, headers
    answer = json.loads(raw)
    assert answer["id"] == "plain", answer
    logits, top = answer["outputs"]
    assert logits["datatype"] == "FP32" and logits["shape"][0] == 2, logits
    close(np.array(logits["data"]).reshape(logits["shape"]), checks.reference_logits(names), 1e-4, "JSON logits")
    assert top["datatype"] == "BYTES" and top["shape"] == [2, 2], top
    first = [int(s.split(":")[1]) for s in top["data"][:2]]
    assert first == [p["class_id"] for p in checks.classify(names[0])["predictions"][:2]], top
    status, _, raw = post(checks, "/v2/models/repvgg/infer", json.dumps({"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": ["%%%"]}]}).encode(), {"Content-Type": "application/json"})
    assert status == 400 and "base64" in json.loads(raw)["error"], (status, raw)


def plain_truncated(checks):
    header = json.dumps({"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 5000}}]}).encode()
    body = header + b"\x00" * 100
    status, _, raw = post(checks, "/v2/models/repvgg/infer", body, {"Inference-Header-Content-Length": str(len(header)), "Content-Type": "application/octet-stream"})
    assert status == 400, (status, raw)
    error = json.loads(raw)["error"]
    assert "binary_data_size is 5000 bytes" in error, error


def run_sigterm(args):
    """Requests in flight on both protocols, then SIGTERM: every one is answered."""
    checks = Checks(args)
    names = JPEGS + PNGS
    expected = {n: np.array(checks.classify(n)["logits"], dtype=np.float32) for n in names}
    per_protocol = 6
    http = httpclient.InferenceServerClient(url=args.http, concurrency=per_protocol)
    grpc = grpcclient.InferenceServerClient(url=args.grpc)
    pending_http = []
    grpc_results = {}
    done = threading.Event()
    lock = threading.Lock()

    def grpc_callback(index):
        def callback(result, error):
            with lock:
                grpc_results[index] = (result, error, time.monotonic())
                if len(grpc_results) == per_protocol:
                    done.set()
        return callback

    # Connect both clients before anything is sent (grpcio connects lazily: on a busy machine
    # the first call's connection could otherwise come after SIGTERM closed the listener).
    http.is_server_live()
    grpc.is_server_live()
    for i in range(per_protocol):
        name = names[i % len(names)]
        data = np.array([checks.image(name)], dtype=np.object_)
        h = httpclient.InferInput("image", [1], "BYTES")
        h.set_data_from_numpy(data)
        pending_http.append((name, http.async_infer(MODEL, [h])))
        g = grpcclient.InferInput("image", [1], "BYTES")
        g.set_data_from_numpy(data)
        grpc.async_infer(MODEL, [g], callback=grpc_callback(i))
    # The server holds each batch for --max-queue-delay-ms: wait until it has admitted every
    # image (its /stats on the admin listener), so that all of them are in flight at SIGTERM.
    admitted, deadline = 0, time.monotonic() + 10
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"http://{args.admin}/stats", timeout=5) as answer:
            admitted = json.load(answer)["admission"]["in_use"]
        if admitted >= 2 * per_protocol:
            break
        time.sleep(0.02)
    with lock:
        answered_early = len(grpc_results) + sum(p._greenlet.ready() for _, p in pending_http)
    killed_at = time.monotonic()
    os.kill(args.pid, signal.SIGTERM)
    failures = []
    if answered_early:
        failures.append(f"setup: {answered_early} requests were answered before SIGTERM")
    if admitted < 2 * per_protocol:
        failures.append(f"setup: only {admitted} of {2 * per_protocol} images admitted before SIGTERM")
    for name, pending in pending_http:
        try:
            close(pending.get_result().as_numpy("logits")[0], expected[name], 1e-4, f"http {name}")
        except Exception as e:  # noqa: BLE001
            failures.append(f"http {name}: {e}")
    if not done.wait(60):
        failures.append(f"gRPC: {len(grpc_results)} of {per_protocol} answered")
    for i, (result, error, at) in sorted(grpc_results.items()):
        name = names[i % len(names)]
        if error is not None:
            failures.append(f"grpc {name}: {error}")
        elif at < killed_at:
            failures.append(f"grpc {name}: answered before SIGTERM")
        else:
            close(result.as_numpy("logits")[0], expected[name], 1e-4, f"grpc {name}")
    for f in failures:
        print(f"FAIL {f}", flush=True)
    print(f"answered after SIGTERM: http {per_protocol - sum(f.startswith('http') for f in failures)}/{per_protocol}, "
          f"grpc {len(grpc_results) - sum(f.startswith('grpc') for f in failures)}/{per_protocol}", flush=True)
    return failures


def run_keys(args):
    """A server with API keys: tritonclient infers with `headers={"Authorization": "Bearer
    <key>"}` on both protocols, and is refused (401 / UNAUTHENTICATED) without it or with a
    wrong key."""
    checks = Checks(args)
    name = JPEGS[0]
    data = np.array([checks.image(name)], dtype=np.object_)
    for protocol in ("http", "grpc"):
        p = Protocol(protocol, args)
        # grpcio refuses metadata keys with capitals on the client side ("Invalid metadata"):
        # gRPC clients write `authorization`; HTTP header names are case-insensitive.
        header = "Authorization" if protocol == "http" else "authorization"
        good = {header: f"Bearer {args.key}"}
        wrong = {header: f"Bearer {args.key}x"}

        def infer(headers, p=p):
            return p.client.infer(MODEL, [p.input("image", data.shape, "BYTES", data)], headers=headers)

        def refused(headers, p=p, infer=infer):
            def check():
                expect_error(lambda: infer(headers), p.error_status(401, "StatusCode.UNAUTHENTICATED"), "API key")
            return check

        def allowed(p=p, infer=infer, good=good):
            # The reference: the same server's /classify, with the same key.
            request = urllib.request.Request(
                f"http://{args.http}/classify?logits=true",
                data=checks.image(name),
                headers={"Content-Type": "application/octet-stream", "Authorization": f"Bearer {args.key}"},
            )
            with urllib.request.urlopen(request, timeout=30) as response:
                expected = np.array(json.load(response)["logits"], dtype=np.float32)
            close(infer(good).as_numpy("logits")[0], expected, 1e-4, f"{p.name} logits")

        checks.run(f"{protocol} infer without a key is refused", refused(None))
        checks.run(f"{protocol} infer with a wrong key is refused", refused(wrong))
        checks.run(f"{protocol} infer with the key", allowed)
    return checks.failed


def run_tls(args):
    """A server with TLS on both ports: tritonclient infers over HTTPS (`ssl=True`, the test CA
    as `ca_certs`) and gRPC over TLS (`ssl=True, root_certificates=...`), and the answers equal
    the same server's `/classify` over HTTPS."""
    import gevent.ssl

    checks = Checks(args)
    name = JPEGS[0]
    data = np.array([checks.image(name)], dtype=np.object_)
    with open(args.ca, "rb") as f:
        ca = f.read()
    clients = {
        "http": httpclient.InferenceServerClient(
            url=args.http,
            ssl=True,
            ssl_options={"ca_certs": args.ca},
            ssl_context_factory=gevent.ssl.create_default_context,
        ),
        "grpc": grpcclient.InferenceServerClient(url=args.grpc, ssl=True, root_certificates=args.ca),
    }
    import ssl

    context = ssl.create_default_context(cadata=ca.decode())
    request = urllib.request.Request(
        f"https://{args.http}/classify?logits=true",
        data=checks.image(name),
        headers={"Content-Type": "application/octet-stream"},
    )
    with urllib.request.urlopen(request, timeout=30, context=context) as response:
        expected = np.array(json.load(response)["logits"], dtype=np.float32)
    for protocol, client in clients.items():

        def check(protocol=protocol, client=client):
            module = httpclient if protocol == "http" else grpcclient
            inp = module.InferInput("image", list(data.shape), "BYTES")
            inp.set_data_from_numpy(data)
            assert client.is_server_ready(), "not ready over TLS"
            close(client.infer(MODEL, [inp]).as_numpy("logits")[0], expected, 1e-4, f"{protocol} logits")

        checks.run(f"{protocol} over TLS", check)
    return checks.failed


N_LABELS = ["n-zero", "n-one", "n-two", "n-three", "n-four", "n-five", "n-six"]


def run_repository(args):
    """Model control as tritonclient calls it (`--model-control explicit`, API keys on), on a
    repository of two models: `m` (10 classes, versions 1 and 2 with different weights, both
    served) and `n` (7 classes, its own labels). Over HTTP (the admin listener, admin key) and
    gRPC (the gRPC port, admin key): the index lists every version with its state; each model
    and version answers with its own labels and the logits `/classify` gives for it; then
    unload and load of `m`, each seen by `is_model_ready` and an inference on the public port;
    an inference key may not control models."""
    checks = Checks(args)
    data = np.array([checks.image(JPEGS[0])], dtype=np.object_)
    served = [("m", "1", 10), ("m", "2", 10), ("n", "1", 7)]
    answers = {}

    def classify(model, version):
        """`/classify` of the first JPEG by `model` `version` (public port, inference key)."""
        if (model, version) not in answers:
            request = urllib.request.Request(
                f"http://{args.http}/classify?model={model}&version={version}&logits=true&top_k=3",
                data=checks.image(JPEGS[0]),
                headers={"Content-Type": "application/octet-stream", "Authorization": f"Bearer {args.key}"},
            )
            with urllib.request.urlopen(request, timeout=30) as response:
                answers[(model, version)] = json.load(response)
        return answers[(model, version)]

    clients = {
        "http": (
            httpclient.InferenceServerClient(url=args.admin),
            httpclient.InferenceServerClient(url=args.http),
            "Authorization",
        ),
        "grpc": (
            grpcclient.InferenceServerClient(url=args.grpc),
            grpcclient.InferenceServerClient(url=args.grpc),
            "authorization",
        ),
    }
    for protocol, (control, public, header) in clients.items():
        admin = {header: f"Bearer {args.admin_key}"}
        inference = {header: f"Bearer {args.key}"}
        module = httpclient if protocol == "http" else grpcclient

        def infer(model="m", version="", class_count=0, public=public, module=module, inference=inference):
            inp = module.InferInput("image", list(data.shape), "BYTES")
            inp.set_data_from_numpy(data)
            if module is httpclient:
                output = httpclient.InferRequestedOutput("logits", class_count=class_count)
            else:
                output = grpcclient.InferRequestedOutput("logits", class_count=class_count)
            result = public.infer(model, [inp], model_version=version, outputs=[output], headers=inference)
            return result.as_numpy("logits")

        def index(control=control, admin=admin, protocol=protocol):
            if protocol == "http":
                entries = control.get_model_repository_index(headers=admin)
                return [(e["name"], e["version"], e["state"]) for e in entries]
            entries = control.get_model_repository_index(headers=admin).models
            return [(e.name, e.version, e.state) for e in entries]

        def not_ready(model, version, public=public, inference=inference, protocol=protocol):
            if protocol == "http":  # 404: the client reads "not ready"
                assert not public.is_model_ready(model, version, headers=inference), f"{model} {version} ready"
            else:  # NOT_FOUND, as for any model the server does not have
                expect_error(lambda: public.is_model_ready(model, version, headers=inference), "NOT_FOUND", "")

        def two_models(public=public, inference=inference, index=index, infer=infer, not_ready=not_ready):
            assert index() == [(m, v, "READY") for m, v, _ in served], index()
            logits = {}
            for model, version, classes in served:
                assert public.is_model_ready(model, version, headers=inference), (model, version)
                reference = classify(model, version)
                got = infer(model, version)
                assert got.shape == (1, classes), (model, version, got.shape)
                close(got, [reference["logits"]], 1e-4, f"{model} {version} logits vs /classify")
                top = [entry.decode().split(":", 2) for entry in infer(model, version, class_count=3)[0]]
                expected = [(str(p["class_id"]), p["label"]) for p in reference["predictions"]]
                assert [(i, label) for _, i, label in top] == expected, (model, version, top, expected)
                logits[(model, version)] = got
            assert all(label in N_LABELS for _, _, label in top), top
            assert float(np.max(np.abs(logits[("m", "1")] - logits[("m", "2")]))) > 0.1, "m's versions differ"
            not_ready("m", "3")

        def cycle(control=control, public=public, admin=admin, inference=inference, index=index, infer=infer, not_ready=not_ready):
            m = lambda: [e for e in index() if e[0] == "m"]
            assert m() == [("m", "1", "READY"), ("m", "2", "READY")], index()
            control.unload_model("m", headers=admin)
            not_ready("m", "")
            assert index() == [("m", "1", "UNAVAILABLE"), ("m", "2", "UNAVAILABLE"), ("n", "1", "READY")], index()
            assert infer("n").shape == (1, 7), "n serves on"
            control.load_model("m", headers=admin)
            assert public.is_model_ready("m", "1", headers=inference), "not ready after load"
            assert public.is_model_ready("m", "2", headers=inference), "not ready after load"
            assert infer().shape == (1, 10), "inference after the load"

        def forbidden(control=control, inference=inference, protocol=protocol):
            status = "403" if protocol == "http" else "StatusCode.PERMISSION_DENIED"
            expect_error(lambda: control.unload_model("m", headers=inference), status, "")

        checks.run(f"{protocol} two models, three versions: index, labels, logits, readiness", two_models)
        checks.run(f"{protocol} index, unload and load", cycle)
        checks.run(f"{protocol} an inference key may not control models", forbidden)
    return checks.failed


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["checks", "sigterm", "keys", "tls", "repository"])
    parser.add_argument("--protocol", choices=["http", "grpc"])
    parser.add_argument("--http", required=True)
    parser.add_argument("--grpc", required=True)
    parser.add_argument("--fixtures", required=True)
    parser.add_argument("--queue-capacity", type=int, default=64)
    parser.add_argument("--busy-http", help="a server with --queue-capacity 2 that holds batches")
    parser.add_argument("--busy-grpc")
    parser.add_argument("--pid", type=int)
    parser.add_argument("--admin", help="the server's admin listener (its /stats)")
    parser.add_argument("--key", help="an inference API key the server accepts")
    parser.add_argument("--ca", help="the PEM file of the CA that signed the server's certificate")
    parser.add_argument("--admin-key", help="an admin API key the server accepts")
    args = parser.parse_args()
    modes = {
        "checks": run_checks,
        "sigterm": run_sigterm,
        "keys": run_keys,
        "tls": run_tls,
        "repository": run_repository,
    }
    failed = modes[args.mode](args)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
