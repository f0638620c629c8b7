"""Offline default models: real small models from PyPI, with the ONNX models' result shapes."""

from __future__ import annotations

import pytest

from streampulse.serving.models import load_models
from streampulse.serving.offline import pattern_entities
from streampulse.settings import ServingSettings

pytestmark = pytest.mark.unit

TEXTS = [
    "You are a worthless idiot, shut up",
    "What a lovely sunny morning, I love it ☀️",
    "Met @alice.bsky.social at #RustConf with Barack Obama in New York https://example.com/x.",
    "",
]


@pytest.fixture(scope="module")
def models():  # type: ignore[no-untyped-def]
    return load_models(ServingSettings())


def test_offline_defaults_are_loaded_when_no_directory_is_given(models) -> None:  # type: ignore[no-untyped-def]
    assert sorted(models) == ["ner", "sentiment", "toxicity"]
    assert {m.backend for m in models.values()} == {"offline"}
    assert models["toxicity"].task == "multi_label_classification"
    assert models["sentiment"].task == "single_label_classification"
    assert models["ner"].task == "token_classification"


def test_offline_toxicity_and_sentiment_are_meaningful(models) -> None:  # type: ignore[no-untyped-def]
    toxic = models["toxicity"].predict(TEXTS)
    assert toxic[0]["score"] > 0.9 > 0.2 > toxic[1]["score"]
    assert set(toxic[0]["scores"]) == {"toxic"}
    sentiment = models["sentiment"].predict(TEXTS)
    assert [s["label"] for s in sentiment] == ["negative", "positive", "neutral", "neutral"]
    for result in sentiment:
        assert set(result["scores"]) == {"negative", "neutral", "positive"}
        assert sum(result["scores"].values()) == pytest.approx(1.0, abs=1e-5)
        assert min(result["scores"].values()) >= 0.0


def test_offline_entities_are_exact_spans(models) -> None:  # type: ignore[no-untyped-def]
    [result] = models["ner"].predict([TEXTS[2]])
    got = [(e["label"], e["text"]) for e in result["entities"]]
    assert got == [
        ("MENTION", "@alice.bsky.social"),
        ("HASHTAG", "#RustConf"),
        ("MISC", "Barack Obama"),
        ("MISC", "New York"),
        ("URL", "https://example.com/x"),
    ]
    for entity in result["entities"]:
        assert TEXTS[2][entity["start"] : entity["end"]] == entity["text"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("😀 #日本 @bob.test", [("HASHTAG", "#日本"), ("MENTION", "@bob.test")]),
        ("email me at a@b.com", []),
        ("issue#12 and C# code", []),
        ("👨\u200d👩\u200d👧 Ada Lovelace!", [("MISC", "Ada Lovelace")]),
    ],
)
def test_pattern_entities(text: str, expected: list[tuple[str, str]]) -> None:
    entities = pattern_entities(text)
    assert [(e["label"], e["text"]) for e in entities] == expected
    for entity in entities:
        assert text[entity["start"] : entity["end"]] == entity["text"]
