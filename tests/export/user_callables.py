"""Broken user code for ``--labels module:function`` / ``--reference-preprocess module:function``."""

from __future__ import annotations


def failing_labels():
    raise FileNotFoundError("labels.csv")


def no_labels():
    return None


def failing_preprocess(image):
    raise ValueError("bad crop box")


def no_tensor(image):
    return None
