"""The service a team would otherwise write: FastAPI + Pillow + onnxruntime.

Same model file, same preprocessing as repvgg-serve (the ImageNet evaluation protocol, as
torchvision does it on PIL images), one inference per request. Run by scripts/bench.sh:

    REPVGG_ONNX=model.onnx ORT_THREADS=2 uvicorn app:app --host 127.0.0.1 --port 18081

POST /classify with a raw image body answers {"predictions": [{"class_id", "probability"}]}
(top 5), 400 for an undecodable image.
"""

import os
import sys
from pathlib import Path

import onnxruntime as ort
from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool

# The preprocessing and the answer are shared with the TorchServe peer.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from imagenet_pillow import preprocess, top5  # noqa: E402

options = ort.SessionOptions()
options.intra_op_num_threads = int(os.environ.get("ORT_THREADS", str(os.cpu_count())))
session = ort.InferenceSession(
    os.environ["REPVGG_ONNX"], options, providers=["CPUExecutionProvider"]
)
input_name = session.get_inputs()[0].name
app = FastAPI()


@app.get("/healthz")
def healthz():
    return {"status": "ok"}


def predict(data: bytes) -> dict:
    try:
        batch = preprocess(data)
    except Exception as e:  # Pillow raises several types for bad input
        raise HTTPException(400, f"cannot decode image: {e}") from e
    return top5(session.run(None, {input_name: batch})[0][0])


@app.post("/classify")
async def classify(request: Request):
    data = await request.body()
    # Pillow and onnxruntime release the GIL: run them on Starlette's thread pool.
    return await run_in_threadpool(predict, data)
