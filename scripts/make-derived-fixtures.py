"""Derives loader fixtures from the real PyTorch/timm files in tests/fixtures/checkpoints:

- tiny_wrapped_module.pth: what training scripts write, {"state_dict": {"module.<name>": t},
  "epoch": 3, "best_acc1": 71.2}, with the original tensors (storages copied byte for byte).
- tiny_timm_fp16.safetensors: the timm file with every float tensor converted to float16.

Plain CPython 3, no torch: torch classes are stood in for by small stubs that pickle back to
the same globals. Run: python3 scripts/make-derived-fixtures.py
"""
import io
import json
import os
import pickle
import struct
import zipfile

HERE = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "checkpoints")


class Global:
    """Stands for a torch global (a storage class or _rebuild_tensor_v2); pickles as itself."""

    def __init__(self, module, name):
        self.module, self.name = module, name

    def __reduce__(self):
        raise TypeError("pickled through persistent ids / reducer_override only")


class Rebuilt:
    def __init__(self, fn, args):
        self.fn, self.args = fn, args


class Reader(pickle.Unpickler):
    def find_class(self, module, name):
        if module == "collections" and name == "OrderedDict":
            import collections
            return collections.OrderedDict
        g = Global(module, name)
        if name == "_rebuild_tensor_v2":
            return lambda *args: Rebuilt(g, args)
        return g

    def persistent_load(self, pid):
        return ("pid", pid)


class Writer(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, tuple) and len(obj) == 2 and obj[0] == "pid":
            return obj[1]
        return None



def wrapped_pth():
    src = os.path.join(HERE, "tiny_official_train.pth")
    with zipfile.ZipFile(src) as z:
        prefix = next(n for n in z.namelist() if n.endswith("data.pkl"))[: -len("data.pkl")]
        state = Reader(io.BytesIO(z.read(prefix + "data.pkl"))).load()
        wrapped = {"state_dict": {"module." + k: v for k, v in state.items()}, "epoch": 3, "best_acc1": 71.2}
        dst = os.path.join(HERE, "tiny_wrapped_module.pth")
        with zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as o:
            data = dumps_with_globals(wrapped)
            o.writestr("tiny_wrapped_module/data.pkl", data)
            for name in z.namelist():
                if name != prefix + "data.pkl":
                    o.writestr("tiny_wrapped_module/" + name[len(prefix):], z.read(name))
    return dst


def dumps_with_globals(obj):
    """pickle.dumps(protocol=2) where Global stubs become GLOBAL opcodes."""
    class P(Writer):
        def reducer_override(self, o):
            if isinstance(o, Rebuilt):
                return (o.fn, o.args)
            return NotImplemented

    # Register each stub as a real importable-looking global via a module shim.
    import sys
    import types
    shims = {}

    def shim(g):
        mod = sys.modules.get(g.module) or shims.setdefault(g.module, types.ModuleType(g.module))
        sys.modules.setdefault(g.module, mod)
        cls = getattr(mod, g.name, None)
        if cls is None:
            cls = type(g.name, (), {})
            cls.__module__, cls.__qualname__ = g.module, g.name
            setattr(mod, g.name, cls)
        return cls

    def convert(o):
        if isinstance(o, Global):
            return shim(o)
        if isinstance(o, Rebuilt):
            return Rebuilt(shim(o.fn), tuple(convert(a) for a in o.args))
        if isinstance(o, tuple):
            return tuple(convert(a) for a in o)
        if isinstance(o, dict):
            return {k: convert(v) for k, v in o.items()}
        return o

    out = io.BytesIO()
    P(out, protocol=2).dump(convert(obj))
    return out.getvalue()


def fp16_safetensors():
    src = os.path.join(HERE, "tiny_timm_train.safetensors")
    raw = open(src, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + n])
    body = raw[8 + n :]
    new_header, chunks, offset = {}, [], 0
    for name, info in sorted(header.items()):
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        values = struct.unpack("<%df" % ((end - start) // 4), body[start:end])
        data = struct.pack("<%de" % len(values), *values)
        new_header[name] = {"dtype": "F16", "shape": info["shape"], "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    text = json.dumps(new_header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    dst = os.path.join(HERE, "tiny_timm_fp16.safetensors")
    with open(dst, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(chunks))
    return dst


if __name__ == "__main__":
    print(wrapped_pth())
    print(fp16_safetensors())
