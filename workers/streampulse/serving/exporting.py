"""``streampulse models export``: a Hugging Face model to a served ONNX model directory.

From a hub id (image builds) or a local directory: load the model in PyTorch on the CPU, export
it to ONNX, check the ONNX outputs against PyTorch on sample posts, quantize the weights to int8
(dynamic quantization), check that int8 picks the same labels, and write the directory described
in ``manifests`` with checksums and the parity report. The directory appears only when complete.

PyTorch and transformers are the ``export`` extra; the server never imports this module.
"""

from __future__ import annotations

import inspect
import logging
import shutil
import tempfile
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from tokenizers import Tokenizer

from streampulse.serving.errors import ExportError
from streampulse.serving.manifests import (
    Manifest,
    ModelFiles,
    Source,
    Task,
    file_names,
    sha256_of,
    write_manifest,
)
from streampulse.serving.samples import SAMPLE_POSTS
from streampulse.serving.sessions import session_options
from streampulse.serving.tasks import FloatArray, sigmoid

log = logging.getLogger(__name__)

OPSET = 17
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
FUSABLE_MODEL_TYPES = frozenset({"bert", "roberta", "xlm-roberta", "camembert", "electra"})


@dataclass(frozen=True)
class ParityReport:
    """How far the exported graphs are from PyTorch, on ``samples`` sample texts."""

    samples: int
    fp32_max_abs_diff: float
    fp32_tolerance: float
    int8_label_agreement: float
    int8_min_agreement: float
    int8_kept: bool
    int8_max_abs_diff: float
    fused_operators: dict[str, int]


@dataclass(frozen=True)
class ExportRequest:
    """What to export and where to."""

    source: str
    out_dir: Path
    name: str
    task: Task | None = None
    revision: str | None = None
    version: str | None = None
    max_length: int = 128
    fp32_tolerance: float = 1e-4
    int8_min_agreement: float = 0.98


def infer_task(config: Any) -> Task:
    """The task a transformers config was trained for."""
    architectures = " ".join(getattr(config, "architectures", None) or [])
    if "TokenClassification" in architectures:
        return "token_classification"
    if getattr(config, "problem_type", None) == "multi_label_classification":
        return "multi_label_classification"
    return "single_label_classification"


def _labels_of(
    predictions: FloatArray, task: Task, mask: np.ndarray[Any, Any]
) -> np.ndarray[Any, Any]:
    if task == "multi_label_classification":
        return np.asarray(sigmoid(predictions) > 0.5)
    labels = np.asarray(predictions.argmax(axis=-1))
    return np.asarray(labels[mask.astype(bool)]) if task == "token_classification" else labels


def _compare(
    ref: FloatArray, got: FloatArray, task: Task, mask: np.ndarray[Any, Any]
) -> tuple[float, float]:
    """(max absolute logit difference, label agreement) over the real (unpadded) positions."""
    if task == "token_classification":
        keep = mask.astype(bool)
        diff = float(np.abs(ref[keep] - got[keep]).max())
    else:
        diff = float(np.abs(ref - got).max())
    agreement = float(np.mean(_labels_of(ref, task, mask) == _labels_of(got, task, mask)))
    return diff, agreement


def _run_onnx(path: Path, feeds: dict[str, np.ndarray[Any, Any]]) -> FloatArray:
    import onnxruntime as ort  # type: ignore[import-untyped]  # noqa: PLC0415

    session = ort.InferenceSession(
        str(path), session_options(0), providers=["CPUExecutionProvider"]
    )
    wanted = {i.name for i in session.get_inputs()}
    outputs = session.run(None, {k: v for k, v in feeds.items() if k in wanted})
    result: FloatArray = np.asarray(outputs[0], dtype=np.float32)
    return result


def _tokenizer_json(hf_tokenizer: Any, source: str) -> Tokenizer:
    backend = getattr(hf_tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ExportError(f"{source} has no fast tokenizer (tokenizer.json) to serve with")
    tokenizer = Tokenizer.from_str(backend.to_str())
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


@dataclass
class _Loaded:
    """The PyTorch model and what was derived from it."""

    model: Any
    task: Task
    labels: tuple[str, ...]
    tokenizer: Tokenizer
    max_length: int
    inputs: tuple[str, ...]
    model_type: str
    num_heads: int
    hidden_size: int


def _load(request: ExportRequest, transformers: Any) -> _Loaded:
    try:
        config = transformers.AutoConfig.from_pretrained(request.source, revision=request.revision)
        task = request.task or infer_task(config)
        auto = (
            transformers.AutoModelForTokenClassification
            if task == "token_classification"
            else transformers.AutoModelForSequenceClassification
        )
        model = auto.from_pretrained(
            request.source, revision=request.revision, attn_implementation="eager"
        ).eval()
        hf_tokenizer = transformers.AutoTokenizer.from_pretrained(
            request.source, revision=request.revision
        )
    except (OSError, ValueError) as exc:
        raise ExportError(f"cannot load {request.source}: {exc}") from exc
    accepted = set(inspect.signature(model.forward).parameters)
    return _Loaded(
        model=model,
        task=task,
        labels=tuple(str(config.id2label[i]) for i in range(config.num_labels)),
        tokenizer=_tokenizer_json(hf_tokenizer, request.source),
        max_length=min(request.max_length, int(getattr(config, "max_position_embeddings", 512))),
        inputs=tuple(n for n in INPUT_NAMES if n in accepted),
        model_type=str(getattr(config, "model_type", "")),
        num_heads=int(getattr(config, "num_attention_heads", 0)),
        hidden_size=int(getattr(config, "hidden_size", 0)),
    )


def _sample_feeds(loaded: _Loaded) -> dict[str, np.ndarray[Any, Any]]:
    """Padded inputs of the sample posts, tokenized exactly as the server will."""
    tokenizer = loaded.tokenizer
    tokenizer.enable_truncation(max_length=loaded.max_length)
    tokenizer.enable_padding()
    encodings = tokenizer.encode_batch(list(SAMPLE_POSTS))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return {
        "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
        "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
    }


def _to_onnx(torch: Any, loaded: _Loaded, tensors: dict[str, Any], path: Path) -> None:
    axes = {n: {0: "batch", 1: "sequence"} for n in loaded.inputs}
    token_level = loaded.task == "token_classification"
    axes["logits"] = {0: "batch", 1: "sequence"} if token_level else {0: "batch"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            loaded.model,
            tuple(tensors[n] for n in loaded.inputs),
            str(path),
            input_names=list(loaded.inputs),
            output_names=["logits"],
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )


def _fuse(loaded: _Loaded, path: Path) -> dict[str, int]:
    """Fuse attention, GELU and layer norms of BERT-family graphs in place (about 1.5-2x faster
    on CPU); other architectures keep ONNX Runtime's generic optimizations."""
    if loaded.model_type not in FUSABLE_MODEL_TYPES:
        return {}
    from onnxruntime.transformers.optimizer import (  # type: ignore[import-untyped]  # noqa: PLC0415
        optimize_model,
    )

    optimized = optimize_model(
        str(path), model_type="bert", num_heads=loaded.num_heads, hidden_size=loaded.hidden_size
    )
    optimized.save_model_to_file(str(path))
    stats: dict[str, int] = optimized.get_fused_operator_statistics()
    return {op: int(n) for op, n in stats.items() if n}


def _publish(work: Path, out_dir: Path) -> None:
    """Move the finished directory into place, replacing an older export."""
    work.chmod(0o755)  # mkdtemp makes it private; images run the server as another user
    if out_dir.exists():
        shutil.rmtree(out_dir)
    work.rename(out_dir)


def export_model(request: ExportRequest) -> Manifest:
    """Export ``request.source`` into ``request.out_dir``; ``ExportError`` if it fails a check."""
    if (
        request.source.startswith(("/", ".", "~"))
        and not Path(request.source).expanduser().is_dir()
    ):
        raise ExportError(f"cannot load {request.source}: no such directory")
    try:
        import torch  # noqa: PLC0415
        import transformers  # noqa: PLC0415
        from onnxruntime.quantization import (  # type: ignore[import-untyped]  # noqa: PLC0415
            QuantType,
            quantize_dynamic,
        )
    except ImportError as exc:
        raise ExportError(
            "exporting needs the export extra: pip install 'streampulse[export]'"
        ) from exc

    loaded = _load(request, transformers)
    arrays = _sample_feeds(loaded)
    mask = arrays["attention_mask"]
    feeds = {n: arrays[n] for n in loaded.inputs}
    tensors = {n: torch.from_numpy(v) for n, v in feeds.items()}
    with torch.no_grad():
        reference: FloatArray = loaded.model(**tensors).logits.numpy().astype(np.float32)

    request.out_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{request.out_dir.name}.", dir=request.out_dir.parent))
    try:
        files = ModelFiles()
        fp32, int8 = work / files.model, work / str(files.model_int8)
        _to_onnx(torch, loaded, tensors, fp32)
        fused = _fuse(loaded, fp32)
        fp32_diff, _ = _compare(reference, _run_onnx(fp32, feeds), loaded.task, mask)
        quantize_dynamic(
            fp32, int8, weight_type=QuantType.QInt8, extra_options={"DefaultTensorType": 1}
        )
        int8_diff, agreement = _compare(reference, _run_onnx(int8, feeds), loaded.task, mask)
        report = ParityReport(
            samples=len(SAMPLE_POSTS),
            fp32_max_abs_diff=fp32_diff,
            fp32_tolerance=request.fp32_tolerance,
            int8_label_agreement=agreement,
            int8_min_agreement=request.int8_min_agreement,
            int8_kept=agreement >= request.int8_min_agreement,
            int8_max_abs_diff=int8_diff,
            fused_operators=fused,
        )
        (work / files.parity_report).write_bytes(
            orjson.dumps(asdict(report), option=orjson.OPT_INDENT_2)
        )
        if fp32_diff > request.fp32_tolerance:
            raise ExportError(
                f"ONNX fp32 differs from PyTorch by {fp32_diff:.2e} > {request.fp32_tolerance:.0e}"
            )
        if not report.int8_kept:
            log.warning("int8 agrees on %.1f%% of labels only; serving fp32", 100 * agreement)
            int8.unlink()
            files = files.model_copy(update={"model_int8": None})
        loaded.tokenizer.save(str(work / files.tokenizer))
        checksums = {n: sha256_of(work / n) for n in file_names(files)}
        manifest = Manifest(
            name=request.name,
            version=request.version or request.revision or checksums[files.model][:12],
            task=loaded.task,
            labels=loaded.labels,
            max_length=loaded.max_length,
            inputs=loaded.inputs,
            source=Source(id=request.source, revision=request.revision),
            files=files,
            checksums=checksums,
        )
        write_manifest(work, manifest)
        _publish(work, request.out_dir)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    log.info("exported %s -> %s: %s", request.source, request.out_dir, asdict(report))
    return manifest


def export_from_cli(
    source: str, *, out: Path, name: str, task: str | None, revision: str | None, max_length: int
) -> str:
    """Run an export from command-line values; returns the one-line summary to print."""
    from streampulse.serving.manifests import TASKS  # noqa: PLC0415

    if task is not None and task not in TASKS:
        raise ExportError(f"unknown task {task!r}; one of {', '.join(TASKS)}")
    chosen: Task | None = next((t for t in TASKS if t == task), None)
    manifest = export_model(
        ExportRequest(
            source=source,
            out_dir=out,
            name=name,
            task=chosen,
            revision=revision,
            max_length=max_length,
        )
    )
    return f"exported {manifest.name}@{manifest.version} ({manifest.task}) to {out}"
