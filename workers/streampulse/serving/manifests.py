"""The self-describing model directory: ``manifest.json`` plus the files it names.

A directory written by ``streampulse models export`` holds::

    manifest.json     name, version, task, labels, source id and revision, files, checksums
    model.onnx        fp32 graph (inputs input_ids, attention_mask[, token_type_ids]; output logits)
    model.int8.onnx   the same with dynamically quantized int8 weights (absent if it disagreed)
    tokenizer.json    the fast tokenizer, without padding or truncation (the server sets those)
    parity.json       the parity report: PyTorch vs ONNX fp32, fp32 vs int8 label agreement

The server refuses a directory whose files do not match their checksums.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from streampulse.serving.errors import ModelLoadError

MANIFEST = "manifest.json"
MANIFEST_SCHEMA_VERSION = 1

Task = Literal["multi_label_classification", "single_label_classification", "token_classification"]
TASKS: tuple[Task, ...] = (
    "multi_label_classification",
    "single_label_classification",
    "token_classification",
)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Source(_Frozen):
    """Where the weights came from."""

    id: str = Field(description="Hugging Face model id, or the local directory exported.")
    revision: str | None = Field(None, description="Hub commit or tag; none for a local dir.")


class ModelFiles(_Frozen):
    """File names inside the directory."""

    model: str = "model.onnx"
    model_int8: str | None = "model.int8.onnx"
    tokenizer: str = "tokenizer.json"
    parity_report: str = "parity.json"


class Manifest(_Frozen):
    """What a model directory holds and how to serve it."""

    schema_version: int = MANIFEST_SCHEMA_VERSION
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,62}$", description="Name in the API path.")
    version: str = Field(min_length=1, description="Shown as name@version in enriched posts.")
    task: Task
    labels: tuple[str, ...] = Field(min_length=1, description="Output label of each logit.")
    max_length: int = Field(ge=8, description="Most tokens the model takes (position embeddings).")
    inputs: tuple[str, ...] = Field(description="ONNX input names, in order.")
    source: Source
    files: ModelFiles = ModelFiles()
    checksums: dict[str, str] = Field(description="sha256 of every file named in files.")


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_names(files: ModelFiles) -> list[str]:
    """Every file a manifest names (the int8 model only when there is one)."""
    names = [files.model, files.tokenizer, files.parity_report]
    if files.model_int8 is not None:
        names.append(files.model_int8)
    return names


def write_manifest(directory: Path, manifest: Manifest) -> Path:
    """Write ``manifest.json`` into ``directory``."""
    path = directory / MANIFEST
    path.write_text(manifest.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return path


def read_manifest(directory: Path, *, verify: bool = True) -> Manifest:
    """Read and check a model directory's manifest; ``ModelLoadError`` when unusable."""
    path = directory / MANIFEST
    try:
        manifest = Manifest.model_validate_json(path.read_bytes())
    except FileNotFoundError as exc:
        raise ModelLoadError(f"{directory} is not a model directory (no {MANIFEST})") from exc
    except ValidationError as exc:
        raise ModelLoadError(f"{path} is invalid: {exc}") from exc
    if manifest.schema_version != MANIFEST_SCHEMA_VERSION:
        raise ModelLoadError(f"{path} has schema_version {manifest.schema_version}")
    if verify:
        for name in file_names(manifest.files):
            expected = manifest.checksums.get(name)
            if expected is None:
                raise ModelLoadError(f"{path} has no checksum for {name}")
            try:
                actual = sha256_of(directory / name)
            except FileNotFoundError as exc:
                raise ModelLoadError(f"{directory} lacks {name}") from exc
            if actual != expected:
                raise ModelLoadError(f"{directory / name} does not match its checksum")
    return manifest
