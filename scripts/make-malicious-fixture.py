"""Writes tests/fixtures/malicious/os_system.pth: a torch.save-shaped zip whose pickle, if
loaded by torch.load(weights_only=False) or pickle.load, would run `touch <marker>` through
os.system. The loader test checks that repvgg-serve refuses it and that the marker never
appears. Run with any CPython 3 (no torch needed): python3 scripts/make-malicious-fixture.py
"""
import os
import pickle
import zipfile

MARKER = "/tmp/repvgg-serve-malicious-pickle-ran"


class Payload:
    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


state = {"stage0.rbr_dense.conv.weight": Payload()}
data = pickle.dumps(state, protocol=2)
out = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "malicious", "os_system.pth")
os.makedirs(os.path.dirname(out), exist_ok=True)
with zipfile.ZipFile(out, "w") as z:
    z.writestr("archive/data.pkl", data)
    z.writestr("archive/version", "3\n")
print(out)
