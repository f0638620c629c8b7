"""One exported model in ONNX Runtime: tokenize a batch, group it by length, run, apply the head."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort  # type: ignore[import-untyped]
from tokenizers import Encoding, Tokenizer

from streampulse.serving.errors import InferenceError, ModelLoadError
from streampulse.serving.manifests import Manifest, Task, read_manifest
from streampulse.serving.tasks import (
    FloatArray,
    Prediction,
    TokenView,
    classify,
    tag_entities,
)
from streampulse.settings import ServingSettings

log = logging.getLogger(__name__)

IntArray = npt.NDArray[np.int64]


def available_cores() -> int:
    """Cores this process may run on (the cgroup/affinity view, not the host's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def session_options(threads: int, *, spin_wait: bool = False) -> ort.SessionOptions:
    """CPU serving options: every graph optimization, one pool of ``threads`` threads."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads or available_cores()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    if not spin_wait:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def length_groups(lengths: Sequence[int], bucket: int, min_group: int = 1) -> list[list[int]]:
    """Indices grouped by token length in steps of ``bucket``, shortest group first.

    Each group is padded only to its own longest text, so short posts do not pay for long ones.
    A group is only closed once it holds ``min_group`` texts: every inference has a fixed cost,
    which for small models outweighs a few tokens of padding.
    """
    groups: list[list[int]] = []
    current: list[int] = []
    current_key = -1
    for index in sorted(range(len(lengths)), key=lengths.__getitem__):
        key = (lengths[index] - 1) // bucket
        if current and key != current_key and len(current) >= min_group:
            groups.append(current)
            current = []
        current.append(index)
        current_key = key
    if current:
        groups.append(current)
    return groups


class OnnxModel:
    """A served model backed by an exported directory."""

    backend = "onnxruntime"

    def __init__(
        self,
        manifest: Manifest,
        tokenizer: Tokenizer,
        session: ort.InferenceSession,
        *,
        bucket: int,
        file: str,
        min_group: int = 1,
    ) -> None:
        self._min_group = min_group
        self.manifest = manifest
        self.file = file
        self._tokenizer = tokenizer
        self._session = session
        self._bucket = bucket
        self._inputs = [i.name for i in session.get_inputs()]

    @classmethod
    def load(
        cls, directory: Path, settings: ServingSettings, *, quantized: bool | None = None
    ) -> OnnxModel:
        """Load a model directory written by ``streampulse models export``."""
        manifest = read_manifest(directory)
        use_int8 = settings.quantized if quantized is None else quantized
        name = manifest.files.model_int8 if use_int8 and manifest.files.model_int8 else None
        file = name or manifest.files.model
        try:
            tokenizer = Tokenizer.from_file(str(directory / manifest.files.tokenizer))
            session = ort.InferenceSession(
                str(directory / file),
                session_options(settings.intra_op_threads, spin_wait=settings.spin_wait),
                providers=["CPUExecutionProvider"],
            )
        except Exception as exc:  # onnxruntime and tokenizers raise bare RuntimeErrors
            raise ModelLoadError(f"cannot load {directory}: {exc}") from exc
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length=min(settings.max_length, manifest.max_length))
        model = cls(
            manifest,
            tokenizer,
            session,
            bucket=settings.length_bucket,
            min_group=settings.min_group_texts,
            file=file,
        )
        log.info("%s: serving %s", manifest.name, directory / file)
        return model

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> str:
        return self.manifest.version

    @property
    def task(self) -> Task:
        return self.manifest.task

    @property
    def labels(self) -> tuple[str, ...]:
        return self.manifest.labels

    def encode(self, texts: Sequence[str]) -> list[Encoding]:
        """Tokenize a batch (in parallel, in Rust), truncated to the max length."""
        return self._tokenizer.encode_batch(list(texts))

    def feeds(self, encodings: Sequence[Encoding]) -> dict[str, IntArray]:
        """Padded ONNX inputs for some encodings."""
        width = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(encodings), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        types = np.zeros_like(ids)
        for row, encoding in enumerate(encodings):
            n = len(encoding.ids)
            ids[row, :n] = encoding.ids
            mask[row, :n] = 1
            types[row, :n] = encoding.type_ids
        arrays = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        return {name: arrays[name] for name in self._inputs}

    def logits(self, feeds: dict[str, IntArray]) -> FloatArray:
        """Run the session; ``InferenceError`` when ONNX Runtime fails."""
        try:
            outputs = self._session.run(None, feeds)
        except Exception as exc:  # onnxruntime raises its own untyped exceptions
            raise InferenceError(f"{self.name}: inference failed: {exc}") from exc
        logits: FloatArray = np.asarray(outputs[0], dtype=np.float32)
        return logits

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        """One prediction per text, in order."""
        if not texts:
            return []
        encodings = self.encode(texts)
        results: list[Prediction | None] = [None] * len(texts)
        lengths = [len(e.ids) for e in encodings]
        for group in length_groups(lengths, self._bucket, self._min_group):
            batch = [encodings[i] for i in group]
            logits = self.logits(self.feeds(batch))
            predictions: Sequence[Prediction]
            if self.task == "token_classification":
                views = [TokenView(e.offsets, e.word_ids) for e in batch]
                predictions = tag_entities([texts[i] for i in group], logits, views, self.labels)
            else:
                multi = self.task == "multi_label_classification"
                predictions = classify(logits, self.labels, multi_label=multi)
            for offset, index in enumerate(group):
                results[index] = predictions[offset]
        return [r for r in results if r is not None]
