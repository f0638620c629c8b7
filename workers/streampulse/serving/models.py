"""What the server serves: the ``ServedModel`` protocol and loading the configured set."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

from streampulse.serving.errors import ModelLoadError
from streampulse.serving.manifests import Task
from streampulse.serving.tasks import Prediction
from streampulse.settings import ServingSettings

log = logging.getLogger(__name__)


class ServedModel(Protocol):
    """A model the HTTP API can call: one prediction per text, in order."""

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...

    @property
    def task(self) -> Task: ...

    @property
    def labels(self) -> tuple[str, ...]: ...

    @property
    def backend(self) -> str: ...

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        """Score a batch; blocking, called from the inference thread."""
        ...


def describe(model: ServedModel) -> dict[str, object]:
    """The entry of ``GET /v1/models`` for one model."""
    return {
        "name": model.name,
        "version": model.version,
        "task": model.task,
        "labels": list(model.labels),
        "backend": model.backend,
    }


def load_models(settings: ServingSettings) -> dict[str, ServedModel]:
    """Load every configured model directory, or the offline defaults when none is given."""
    models: dict[str, ServedModel] = {}
    if settings.model_dirs:
        from streampulse.serving.sessions import OnnxModel  # noqa: PLC0415 - heavy import

        loaded: list[ServedModel] = [OnnxModel.load(d, settings) for d in settings.model_dirs]
    else:
        from streampulse.serving.offline import offline_models  # noqa: PLC0415 - heavy import

        loaded = list(offline_models())
    for model in loaded:
        if model.name in models:
            raise ModelLoadError(f"two models are named {model.name!r}")
        models[model.name] = model
        log.info("loaded %s@%s (%s, %s)", model.name, model.version, model.task, model.backend)
    return models
