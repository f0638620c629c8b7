"""Task heads: logits of one batch in, one JSON-ready result per text out.

- multi-label classification: an independent sigmoid per label (toxicity);
- single-label classification: a softmax over the labels (sentiment);
- token classification: per-token softmax, subwords merged into words (the first subword's label
  decides), words merged into entities by their BIO tags. Spans are character offsets into the
  text as sent (Unicode code points, so ``text[start:end]`` is the entity, emoji and CJK included).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypedDict

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]


class ClassificationResult(TypedDict):
    """The top label, its score, and the score of every label."""

    label: str
    score: float
    scores: dict[str, float]


class Entity(TypedDict):
    """One entity span of a text."""

    text: str
    label: str
    start: int
    end: int
    score: float


class EntitiesResult(TypedDict):
    """Entities of one text, in order of appearance."""

    entities: list[Entity]


Prediction = ClassificationResult | EntitiesResult


def sigmoid(logits: FloatArray) -> FloatArray:
    """Numerically stable logistic function."""
    out: FloatArray = (0.5 * (1.0 + np.tanh(0.5 * logits))).astype(np.float32)
    return out


def softmax(logits: FloatArray, axis: int = -1) -> FloatArray:
    """Softmax along ``axis``."""
    shifted = logits - logits.max(axis=axis, keepdims=True)
    exp = np.exp(shifted)
    out: FloatArray = (exp / exp.sum(axis=axis, keepdims=True)).astype(np.float32)
    return out


def classify(
    logits: FloatArray, labels: Sequence[str], *, multi_label: bool
) -> list[ClassificationResult]:
    """Turn ``(batch, labels)`` logits into one result per row."""
    probs = sigmoid(logits) if multi_label else softmax(logits)
    results: list[ClassificationResult] = []
    for row in probs:
        top = int(row.argmax())
        results.append(
            {
                "label": labels[top],
                "score": round(float(row[top]), 6),
                "scores": {label: round(float(p), 6) for label, p in zip(labels, row, strict=True)},
            }
        )
    return results


@dataclass(frozen=True, slots=True)
class TokenView:
    """What the head needs of one tokenized text: per-token offsets and word ids."""

    offsets: Sequence[tuple[int, int]]
    word_ids: Sequence[int | None]


def split_tag(label: str) -> tuple[str, str]:
    """``B-PER`` -> ("B", "PER"); ``O`` -> ("O", ""); a bare ``PER`` is an inside tag."""
    if label == "O":
        return "O", ""
    prefix, sep, kind = label.partition("-")
    if sep and prefix in {"B", "I", "E", "S"}:
        return ("B" if prefix in {"B", "S"} else "I"), kind
    return "I", label


@dataclass(slots=True)
class _Word:
    start: int
    end: int
    tag: str
    kind: str
    score: float


def _words(probs: FloatArray, view: TokenView, tags: Sequence[tuple[str, str]]) -> list[_Word]:
    """One labelled word per word id: the first subword's label, scored by the mean over its
    subwords. Plain Python lists, not per-word numpy calls: a post has a few dozen tokens and
    numpy's per-call overhead would dominate."""
    rows: list[list[float]] = probs.tolist()
    best: list[int] = probs.argmax(axis=1).tolist()
    words: list[_Word] = []
    by_word: dict[int, list[int]] = {}
    order: list[int] = []
    for index, word_id in enumerate(view.word_ids):
        if word_id is None or index >= len(rows):
            continue
        start, end = view.offsets[index]
        if end <= start:
            continue
        if word_id not in by_word:
            by_word[word_id] = []
            order.append(word_id)
        by_word[word_id].append(index)
    for word_id in order:
        tokens = by_word[word_id]
        label = best[tokens[0]]
        score = sum(rows[t][label] for t in tokens) / len(tokens)
        tag, kind = tags[label]
        words.append(
            _Word(view.offsets[tokens[0]][0], view.offsets[tokens[-1]][1], tag, kind, score)
        )
    return words


def entity_spans(
    text: str, logits: FloatArray, view: TokenView, labels: Sequence[str]
) -> list[Entity]:
    """Entities of one text from its ``(tokens, labels)`` logits (padding rows are ignored)."""
    probs = softmax(logits)
    tags = [split_tag(label) for label in labels]
    entities: list[Entity] = []
    current: list[_Word] = []

    def close() -> None:
        if current:
            start, end = current[0].start, current[-1].end
            entities.append(
                {
                    "text": text[start:end],
                    "label": current[0].kind,
                    "start": start,
                    "end": end,
                    "score": round(sum(w.score for w in current) / len(current), 6),
                }
            )
            current.clear()

    for word in _words(probs, view, tags):
        if word.tag == "O":
            close()
        elif word.tag == "B" or not current or current[-1].kind != word.kind:
            close()
            current.append(word)
        else:
            current.append(word)
    close()
    return entities


def tag_entities(
    texts: Sequence[str], logits: FloatArray, views: Sequence[TokenView], labels: Sequence[str]
) -> list[EntitiesResult]:
    """Entities of each text of a batch from ``(batch, tokens, labels)`` logits."""
    return [
        {"entities": entity_spans(text, logits[row], views[row], labels)}
        for row, text in enumerate(texts)
    ]
