"""The baseline: the straightforward handler of the tutorial this project grew from.

Download with urllib, Image.open, convert('RGB'), resize(NEAREST), numpy
normalise, default InferenceSession. Same model and same normalisation constants
as the real function, so the benchmark compares handler work, not models.
Benchmark use only: it has none of the function's checks.
"""

import base64
import io
import json
import os
import urllib.request

import numpy as np
import onnxruntime as ort
from PIL import Image

MODEL_PATH = os.path.join(os.environ.get("LAMBDA_TASK_ROOT", "/var/task"), "model", "model.onnx")
session = ort.InferenceSession(MODEL_PATH)
labels = json.loads(session.get_modelmeta().custom_metadata_map["image_classifier.card"])["labels"]


def lambda_handler(event, context):
    if "url" in event:
        with urllib.request.urlopen(event["url"]) as response:
            data = response.read()
    else:
        data = base64.b64decode(event["image"])
    image = Image.open(io.BytesIO(data)).convert("RGB").resize((224, 224), Image.NEAREST)
    x = (np.array(image).astype(np.float32) - 127.0) / 128.0
    x = np.expand_dims(x.transpose(2, 0, 1), 0)
    logits = session.run(None, {session.get_inputs()[0].name: x})[0][0]
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    top = np.argsort(probs)[::-1][:5]
    return {"predictions": [{"label": labels[i], "score": float(probs[i])} for i in top]}
