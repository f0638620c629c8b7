"""Model directories: a manifest with checksums, refused when anything is missing or altered."""

from __future__ import annotations

from pathlib import Path

import pytest

from streampulse.serving.errors import ModelLoadError
from streampulse.serving.manifests import (
    Manifest,
    ModelFiles,
    Source,
    file_names,
    read_manifest,
    sha256_of,
    write_manifest,
)

pytestmark = pytest.mark.unit


def model_dir(tmp_path: Path) -> Path:
    files = ModelFiles()
    for name in file_names(files):
        (tmp_path / name).write_bytes(f"content of {name}".encode())
    write_manifest(
        tmp_path,
        Manifest(
            name="toxicity",
            version="abc",
            task="multi_label_classification",
            labels=("toxic", "insult"),
            max_length=128,
            inputs=("input_ids", "attention_mask"),
            source=Source(id="unitary/toxic-bert", revision="main"),
            files=files,
            checksums={n: sha256_of(tmp_path / n) for n in file_names(files)},
        ),
    )
    return tmp_path


def test_a_complete_directory_reads_back(tmp_path: Path) -> None:
    manifest = read_manifest(model_dir(tmp_path))
    assert manifest.name == "toxicity"
    assert manifest.labels == ("toxic", "insult")
    assert manifest.source.revision == "main"


def test_an_altered_file_is_refused(tmp_path: Path) -> None:
    directory = model_dir(tmp_path)
    (directory / "model.int8.onnx").write_bytes(b"tampered")
    with pytest.raises(ModelLoadError, match="does not match its checksum"):
        read_manifest(directory)


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    directory = model_dir(tmp_path)
    (directory / "tokenizer.json").unlink()
    with pytest.raises(ModelLoadError, match=r"lacks tokenizer\.json"):
        read_manifest(directory)


@pytest.mark.parametrize(
    ("content", "needle"),
    [(None, "not a model directory"), (b"{}", "invalid"), (b"not json", "invalid")],
)
def test_a_bad_manifest_is_refused(tmp_path: Path, content: bytes | None, needle: str) -> None:
    if content is not None:
        (tmp_path / "manifest.json").write_bytes(content)
    with pytest.raises(ModelLoadError, match=needle):
        read_manifest(tmp_path)
