#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (fuzz/corpus/<target>/); they are committed.

Seeds are small on purpose (a fuzzer mutates them thousands of times a second):
- unpickle: the data.pkl of every torch.save fixture (real PyTorch output) and small
  pickles in the same shape, protocols 2 and 4.
- checkpoint: miniature torch.save zips (two tensors, one transposed, fp32/fp16/bf16 storages,
  wrapped and plain) and safetensors files, plus the malicious fixture.
- image: 8 x 8 to 24 x 16 images in every accepted format and the edge cases of the
  preprocessing tests (progressive, grayscale, CMYK, EXIF-rotated, 16-bit, RGBA, palette).
- v2_rest, grpc_infer, classify_body: the request bodies of the network doors as clients send
  them (written by `network_seeds`, which needs no Pillow: `python3 fuzz/make_corpus.py
  --network`), each prefixed by the mode byte the target reads.

Needs Pillow (`.venv-bench/bin/python fuzz/make_corpus.py`); runs from any directory.
"""
import collections
import io
import json
import pickle
import struct
import sys
import types
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
FIXTURES = ROOT.parent / "tests" / "fixtures"


def fake_torch():
    """Module objects named like torch's, so pickle writes the same GLOBAL opcodes."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")
    for name in ["FloatStorage", "HalfStorage", "BFloat16Storage", "LongStorage"]:
        cls = type(name, (), {"__module__": "torch"})
        setattr(torch, name, cls)

    def _rebuild_tensor_v2(*args):
        raise RuntimeError("never called")

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    sys.modules["torch"] = torch
    sys.modules["torch._utils"] = utils
    return torch, utils


TORCH, UTILS = fake_torch()


class Storage:
    def __init__(self, key, kind, data):
        self.key, self.kind, self.data = key, kind, data


class Tensor:
    def __init__(self, storage, size, stride, offset=0):
        self.storage, self.size, self.stride, self.offset = storage, size, stride, offset

    def __reduce_ex__(self, protocol):
        return (
            UTILS._rebuild_tensor_v2,
            (self.storage, self.offset, tuple(self.size), tuple(self.stride), False,
             collections.OrderedDict()),
        )


class TorchPickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            elem = {"FloatStorage": 4, "HalfStorage": 2, "BFloat16Storage": 2, "LongStorage": 8}
            numel = len(obj.data) // elem[obj.kind]
            return ("storage", getattr(TORCH, obj.kind), obj.key, "cpu", numel)
        return None


def torch_pickle(obj, protocol=2):
    out = io.BytesIO()
    TorchPickler(out, protocol=protocol).dump(obj)
    return out.getvalue()


def state(kind="FloatStorage", wrap=False, transposed=False):
    f32 = lambda vals: b"".join(struct.pack("<f", v) for v in vals)
    if kind == "HalfStorage":
        conv = b"".join(struct.pack("<e", v / 10) for v in range(24))
    elif kind == "BFloat16Storage":
        conv = b"".join(struct.pack("<f", v / 10)[2:] for v in range(24))
    else:
        conv = f32([v / 10 for v in range(24)])
    storages = [Storage("0", kind, conv), Storage("1", "FloatStorage", f32([1, 2, 3, 4, 5, 6])),
                Storage("2", "LongStorage", struct.pack("<q", 7))]
    linear = (Tensor(storages[1], [2, 3], [1, 2]) if transposed
              else Tensor(storages[1], [2, 3], [3, 1]))
    sd = collections.OrderedDict([
        ("stage0.rbr_dense.conv.weight", Tensor(storages[0], [2, 3, 2, 2], [12, 4, 2, 1])),
        ("linear.weight", linear),
        ("stage0.rbr_dense.bn.num_batches_tracked", Tensor(storages[2], [], [])),
    ])
    root = {"state_dict": sd, "epoch": 3, "best_acc1": 71.2} if wrap else sd
    return root, storages


def torch_zip(root, storages, protocol=2):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", torch_pickle(root, protocol))
        z.writestr("archive/byteorder", "little")
        for s in storages:
            z.writestr(f"archive/data/{s.key}", s.data)
        z.writestr("archive/version", "3\n")
    return out.getvalue()


def safetensors(tensors):
    header, body = {}, b""
    for name, (dtype, shape, data) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(body), len(body) + len(data)]}
        body += data
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + body


def write(target, name, data):
    path = ROOT / "corpus" / target / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def main():
    from PIL import Image

    for pth in sorted((FIXTURES / "checkpoints").glob("*.pth")) + [FIXTURES / "malicious" / "os_system.pth"]:
        with zipfile.ZipFile(pth) as z:
            pkl = next(n for n in z.namelist() if n.endswith("data.pkl"))
            write("unpickle", pth.stem + ".pkl", z.read(pkl))
    for protocol in (2, 4):
        for wrap in (False, True):
            root, storages = state(wrap=wrap, transposed=True)
            write("unpickle", f"mini_p{protocol}_wrap{int(wrap)}.pkl", torch_pickle(root, protocol))

    for kind in ("FloatStorage", "HalfStorage", "BFloat16Storage"):
        for wrap in (False, True):
            root, storages = state(kind, wrap, transposed=wrap)
            write("checkpoint", f"mini_{kind}_wrap{int(wrap)}.pth", torch_zip(root, storages))
    root, storages = state()
    write("checkpoint", "mini_protocol4.pth", torch_zip(root, storages, protocol=4))
    write("checkpoint", "os_system.pth", (FIXTURES / "malicious" / "os_system.pth").read_bytes())
    write("checkpoint", "mini_timm.safetensors", safetensors({
        "stem.conv_kxk.conv.weight": ("F32", [2, 3, 2, 2], struct.pack("<24f", *range(24))),
        "head.fc.bias": ("F16", [2], struct.pack("<2e", 0.5, -0.5)),
    }))

    img = Image.new("RGB", (24, 16))
    img.putdata([((x * 10) % 256, (y * 15) % 256, (x * y) % 256) for y in range(16) for x in range(24)])
    def save(name, image, **kw):
        out = io.BytesIO()
        image.save(out, **kw)
        write("image", name, out.getvalue())
    save("rgb.jpg", img, format="JPEG", quality=80)
    save("progressive.jpg", img.convert("L"), format="JPEG", progressive=True)
    save("cmyk.jpg", img.convert("CMYK"), format="JPEG")
    exif = Image.Exif()
    exif[0x0112] = 6
    save("exif6.jpg", img, format="JPEG", exif=exif.tobytes())
    save("rgb.png", img, format="PNG")
    save("rgba.png", img.convert("RGBA"), format="PNG")
    save("gray16.png", img.convert("I;16"), format="PNG")
    save("palette.png", img.convert("P"), format="PNG")
    save("rgb.gif", img, format="GIF")
    save("rgb.bmp", img, format="BMP")
    save("rgb.webp", img, format="WEBP", lossless=True)
    save("rgb.tiff", img, format="TIFF")
    save("tiny.png", img.resize((8, 8)), format="PNG")


def pb_field(number, value):
    """One length-delimited protobuf field."""
    def varint(n):
        out = b""
        while n >= 0x80:
            out += bytes([(n & 0x7F) | 0x80])
            n >>= 7
        return out + bytes([n])
    return varint(number << 3 | 2) + varint(len(value)) + value


def network_seeds():
    image = b"\xff\xd8\xff\xdbfake-jpeg\xff\xd9"
    b64 = __import__("base64").b64encode(image).decode()
    json_infer = {
        "id": "1",
        "inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [b64]}],
        "outputs": [{"name": "logits", "parameters": {"classification": 3}}, {"name": "logits"}],
    }
    write("v2_rest", "json_bytes", b"\x00" + json.dumps(json_infer).encode())
    tensor = {"inputs": [{"name": "input", "shape": [1, 3, 2, 2], "datatype": "FP32",
                          "data": [[[[0.5, 1], [2, 3]]] * 3]}]}
    write("v2_rest", "json_fp32", b"\x00" + json.dumps(tensor).encode())
    raw = struct.pack("<I", len(image)) + image
    header = json.dumps({"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES",
                                     "parameters": {"binary_data_size": len(raw)}}],
                         "parameters": {"binary_data_output": True}}).encode()
    write("v2_rest", "binary", b"\x01" + struct.pack("<H", len(header)) + header + raw)

    tensor_input = pb_field(1, b"image") + pb_field(2, b"BYTES") + pb_field(3, b"\x01")
    output = pb_field(1, b"logits")
    write("grpc_infer", "raw_bytes", pb_field(1, b"repvgg") + pb_field(5, tensor_input)
          + pb_field(6, output) + pb_field(7, raw))
    contents = pb_field(8, image)
    write("grpc_infer", "typed_bytes", pb_field(1, b"repvgg")
          + pb_field(5, tensor_input + pb_field(5, contents)))
    fp32 = pb_field(1, b"input") + pb_field(2, b"FP32") + pb_field(3, b"\x01\x03\x02\x02") \
        + pb_field(5, pb_field(6, struct.pack("<12f", *range(12))))
    write("grpc_infer", "typed_fp32", pb_field(1, b"repvgg-tensor") + pb_field(5, fp32))

    write("classify_body", "json_one", b"\x00" + json.dumps({"image": b64}).encode())
    write("classify_body", "json_many", b"\x00" + json.dumps({"images": [b64, b64]}).encode())
    part = (b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"; filename=\"a.jpg\"\r\n"
            b"Content-Type: image/jpeg\r\n\r\n" + image + b"\r\n")
    write("classify_body", "multipart", b"\x01" + part + part + b"--XyZ--\r\n")


if __name__ == "__main__":
    if sys.argv[1:] == ["--network"]:
        network_seeds()
    else:
        main()
        network_seeds()
