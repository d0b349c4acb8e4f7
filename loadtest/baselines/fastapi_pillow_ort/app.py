"""The service a team would otherwise write: FastAPI + Pillow + onnxruntime.

Same model file, same preprocessing as repvgg-serve (the ImageNet evaluation protocol, as
torchvision does it on PIL images), one inference per request. Run by scripts/bench.sh:

    REPVGG_ONNX=model.onnx ORT_THREADS=2 uvicorn app:app --host 127.0.0.1 --port 18081

POST /classify with a raw image body answers {"predictions": [{"class_id", "probability"}]}
(top 5), 400 for an undecodable image.
"""

import io
import os

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from PIL import Image, ImageOps

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
RESIZE = int(os.environ.get("RESIZE", "256"))
CROP = int(os.environ.get("CROP", "224"))

options = ort.SessionOptions()
options.intra_op_num_threads = int(os.environ.get("ORT_THREADS", str(os.cpu_count())))
session = ort.InferenceSession(
    os.environ["REPVGG_ONNX"], options, providers=["CPUExecutionProvider"]
)
input_name = session.get_inputs()[0].name
app = FastAPI()


def preprocess(data: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(data))
    image = ImageOps.exif_transpose(image).convert("RGB")
    # torchvision.transforms.Resize(256): shorter side to 256, longer side truncated.
    w, h = image.size
    if w <= h:
        size = (RESIZE, int(RESIZE * h / w))
    else:
        size = (int(RESIZE * w / h), RESIZE)
    image = image.resize(size, Image.BILINEAR)
    # torchvision.transforms.CenterCrop(224)
    left = int(round((size[0] - CROP) / 2.0))
    top = int(round((size[1] - CROP) / 2.0))
    image = image.crop((left, top, left + CROP, top + CROP))
    array = (np.asarray(image, dtype=np.float32) / 255.0 - MEAN) / STD
    return array.transpose(2, 0, 1)[None]


@app.get("/healthz")
def healthz():
    return {"status": "ok"}


def predict(data: bytes) -> dict:
    try:
        batch = preprocess(data)
    except Exception as e:  # Pillow raises several types for bad input
        raise HTTPException(400, f"cannot decode image: {e}") from e
    logits = session.run(None, {input_name: batch})[0][0]
    exp = np.exp(logits - logits.max())
    probabilities = exp / exp.sum()
    top = np.argsort(-probabilities)[:5]
    return {
        "predictions": [
            {"class_id": int(i), "probability": float(probabilities[i])} for i in top
        ]
    }


@app.post("/classify")
async def classify(request: Request):
    data = await request.body()
    # Pillow and onnxruntime release the GIL: run them on Starlette's thread pool.
    return await run_in_threadpool(predict, data)
