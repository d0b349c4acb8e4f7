"""TorchServe's side of the benchmark: what a team running TorchServe would deploy for this
model. The same fused ONNX file and the same Pillow preprocessing as the FastAPI peer
(imagenet_pillow.py, packed into the archive with --extra-files), run by onnxruntime inside
TorchServe's Python workers; TorchServe's own dynamic batching (batchSize, maxBatchDelay in
model-config.yaml) hands each worker up to batchSize requests, run here as one batch.

Packed and started by scripts/lib/torchserve.sh. POST /predictions/repvgg with a raw image body
and its Content-Type (image/jpeg ...) answers {"predictions": [{"class_id", "probability"}]}
(top 5), 400 for an undecodable image.
"""

import os

import numpy as np
import onnxruntime as ort

from imagenet_pillow import preprocess, top5


class RepVGGOnnxHandler:
    """TorchServe instantiates the one class of the handler module, calls initialize() once
    per worker, then handle() with each batch of requests."""

    def __init__(self):
        self.session = None
        self.input_name = None

    def initialize(self, context):
        settings = (context.model_yaml_config or {}).get("handler", {})
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(settings.get("ort_threads", 1))
        options.inter_op_num_threads = 1
        model_dir = context.system_properties["model_dir"]
        model_file = context.manifest["model"]["serializedFile"]
        self.session = ort.InferenceSession(
            os.path.join(model_dir, model_file), options, providers=["CPUExecutionProvider"]
        )
        self.input_name = self.session.get_inputs()[0].name

    def handle(self, data, context):
        answers = [None] * len(data)
        images = []
        for i, request in enumerate(data):
            body = request.get("data") or request.get("body")
            try:
                images.append((i, preprocess(bytes(body))))
            except Exception as e:  # Pillow raises several types for bad input
                context.set_response_status(400, f"cannot decode image: {e}", idx=i)
                answers[i] = {"error": f"cannot decode image: {e}"}
        if images:
            batch = np.concatenate([image for _, image in images])
            logits = self.session.run(None, {self.input_name: batch})[0]
            for (i, _), row in zip(images, logits):
                answers[i] = top5(row)
        return answers
