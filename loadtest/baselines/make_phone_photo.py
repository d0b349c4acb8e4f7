"""Writes a 4032x3024 JPEG (a 12 MP phone photo's size) made from a fixture photo.

Upscaled with Lanczos, with mild sensor-like noise so it does not compress (and decode) like the
smooth upscale it is, saved at quality 92 with 4:2:0 subsampling, as phone cameras do.
Usage: python make_phone_photo.py SOURCE OUTPUT
"""

import sys

import numpy as np
from PIL import Image

source, output = sys.argv[1:3]
image = Image.open(source).convert("RGB").resize((4032, 3024), Image.LANCZOS)
rng = np.random.default_rng(12)
pixels = np.asarray(image, dtype=np.float32) + rng.normal(0.0, 4.0, (3024, 4032, 1))
Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(
    output, quality=92, subsampling="4:2:0"
)
