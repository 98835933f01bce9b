"""ModelVariant=int8 through the real Lambda RIE: the template parameter picks model-int8.onnx
(MODEL_PATH), the staged image carries it, and it classifies the sample cat like the fp32 model."""

from __future__ import annotations

import json

import pytest

from local_lambda.template import function_emulator, read_function
from support import CAT_CLASS_INDICES, EVENTS, REPO


@pytest.fixture(scope="module")
def int8_function(staged_project):
    fn = read_function(REPO / "template.yaml", "PredictFunction", {"ModelVariant": "int8"})
    assert fn.variables["MODEL_PATH"] == "/var/task/model/model-int8.onnx"
    emulator, _ = function_emulator(fn, staged_project, {}, shell_env={})
    with emulator:
        yield emulator


@pytest.fixture(scope="module")
def cat_event():
    return json.loads((EVENTS / "base64.json").read_text())


def test_staged_image_has_the_int8_model(staged_project):
    from pathlib import Path

    assert (Path(staged_project.task_root) / "model" / "model-int8.onnx").is_file()


def test_int8_variant_classifies_the_cat(int8_function, cat_event):
    response = int8_function.invoke({**cat_event, "top_k": 5})
    assert "errorType" not in response and "error" not in response, (response, int8_function.logs[-3000:])
    assert response["model"] == {"name": "efficientnet-lite0", "version": "1-int8"}
    from classifier.model import Classifier

    labels = Classifier.load(str(REPO / "predict_function" / "model" / "model-int8.onnx"), intra_op_threads=1).card.labels
    cats = {labels[i] for i in CAT_CLASS_INDICES}
    predictions = response["predictions"]
    assert predictions[0]["label"] in cats, predictions
    assert len(predictions) == 5 and predictions == sorted(predictions, key=lambda p: -p["score"])


def test_int8_scores_are_close_to_fp32(int8_function, lambda_function, cat_event):
    int8 = {p["label"]: p["score"] for p in int8_function.invoke({**cat_event, "top_k": 3})["predictions"]}
    fp32_response = lambda_function.invoke({**cat_event, "top_k": 3})
    assert fp32_response["model"]["version"] == "1"  # the default variant is the fp32 model
    fp32 = {p["label"]: p["score"] for p in fp32_response["predictions"]}
    assert set(int8) & set(fp32), (int8, fp32)
    for label in set(int8) & set(fp32):
        assert abs(int8[label] - fp32[label]) < 0.1, (label, int8, fp32)
