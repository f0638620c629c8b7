"""Export decisions that need no model: the task a config implies, bad sources and tasks."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from streampulse.serving.errors import ExportError
from streampulse.serving.exporting import export_from_cli, infer_task

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("config", "task"),
    [
        (SimpleNamespace(architectures=["BertForTokenClassification"]), "token_classification"),
        (
            SimpleNamespace(
                architectures=["BertForSequenceClassification"],
                problem_type="multi_label_classification",
            ),
            "multi_label_classification",
        ),
        (
            SimpleNamespace(architectures=["RobertaForSequenceClassification"], problem_type=None),
            "single_label_classification",
        ),
        (SimpleNamespace(), "single_label_classification"),
    ],
)
def test_infer_task(config: SimpleNamespace, task: str) -> None:
    assert infer_task(config) == task


def test_an_unknown_task_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="unknown task 'regression'"):
        export_from_cli(
            str(tmp_path),
            out=tmp_path / "o",
            name="x",
            task="regression",
            revision=None,
            max_length=64,
        )


def test_a_missing_local_directory_is_refused_before_loading_anything(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="no such directory"):
        export_from_cli(
            str(tmp_path / "absent"),
            out=tmp_path / "o",
            name="x",
            task=None,
            revision=None,
            max_length=64,
        )
    assert not (tmp_path / "o").exists()
