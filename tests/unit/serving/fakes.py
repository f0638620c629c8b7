"""A controllable in-memory model for batching and HTTP tests."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from streampulse.serving.manifests import Task
from streampulse.serving.tasks import ClassificationResult, Prediction


class EchoModel:
    """Answers each text with itself as the label; can be held shut, and fails on "boom"."""

    backend = "fake"

    def __init__(self, name: str = "echo", *, open_: bool = True) -> None:
        self.name = name
        self.version = "1"
        self.task: Task = "single_label_classification"
        self.labels = ("a", "b")
        self.gate = threading.Event()
        if open_:
            self.gate.set()
        self.batches: list[int] = []
        self.entered = threading.Event()

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        self.entered.set()
        if not self.gate.wait(timeout=30):
            raise RuntimeError("gate never opened")
        self.batches.append(len(texts))
        if "boom" in texts:
            raise RuntimeError("the model exploded")
        results: list[Prediction] = []
        for text in texts:
            result: ClassificationResult = {"label": text, "score": 1.0, "scores": {"a": 1.0}}
            results.append(result)
        return results
