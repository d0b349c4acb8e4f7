"""The preprocessing and answer both Python peers share: the ImageNet evaluation protocol as
torchvision does it on PIL images (EXIF orientation, RGB, shorter side to 256 with Pillow's
bilinear filter, centre crop 224, mean/std), and the top 5 of the softmax.

Used by fastapi_pillow_ort/app.py and torchserve_pillow_ort/handler.py (packed into the
TorchServe model archive with --extra-files).
"""

import io
import os

import numpy as np
from PIL import Image, ImageOps

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
RESIZE = int(os.environ.get("RESIZE", "256"))
CROP = int(os.environ.get("CROP", "224"))


def preprocess(data: bytes) -> np.ndarray:
    """Encoded image -> a (1, 3, CROP, CROP) float32 batch of one."""
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


def top5(logits: np.ndarray) -> dict:
    """One image's logits -> {"predictions": [{"class_id", "probability"}]}, best first."""
    exp = np.exp(logits - logits.max())
    probabilities = exp / exp.sum()
    top = np.argsort(-probabilities)[:5]
    return {
        "predictions": [
            {"class_id": int(i), "probability": float(probabilities[i])} for i in top
        ]
    }
