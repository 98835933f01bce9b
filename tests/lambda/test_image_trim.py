"""The Dockerfile trims files no import reaches; the staged task root must match, and still serve."""

from __future__ import annotations

from pathlib import Path


def test_trimmed_paths_are_gone_from_the_task_root(staged_project):
    root = Path(staged_project.task_root)
    assert (root / "numpy" / "__init__.py").is_file() and (root / "onnxruntime" / "capi").is_dir()
    assert not list(root.glob("numpy/*/tests")) and not (root / "numpy" / "tests").exists()
    for gone in ("numpy/f2py", "onnxruntime/transformers", "onnxruntime/quantization", "onnxruntime/tools"):
        assert not (root / gone).exists(), gone


def test_the_trimmed_function_still_serves(lambda_function, cat_jpeg):
    import base64

    body = lambda_function.invoke({"image": base64.b64encode(cat_jpeg).decode(), "top_k": 1})
    assert body["predictions"][0]["score"] > 0
