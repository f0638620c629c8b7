"""Task heads: classification scores and entity spans with exact character offsets."""

from __future__ import annotations

import numpy as np
import pytest
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

from streampulse.serving.tasks import TokenView, classify, entity_spans, split_tag

pytestmark = pytest.mark.unit

NER_LABELS = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG")
VOCAB = [
    "[PAD]", "[UNK]", "[CLS]", "[SEP]",
    "hi", "marie", "cu", "##rie", "visited", "東", "京", "!", "ok", "ada", "met", "and", "😀",
]  # fmt: skip


def hand_tokenizer() -> Tokenizer:
    """A BERT-style tokenizer over a hand-made vocabulary."""
    tokenizer = Tokenizer(models.WordPiece({t: i for i, t in enumerate(VOCAB)}, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    return tokenizer


def logits_for(tokens: list[str], tags: dict[str, str]) -> np.ndarray:
    """Confident logits giving each token the tag ``tags[token]`` (default O)."""
    logits = np.full((len(tokens), len(NER_LABELS)), -4.0, dtype=np.float32)
    for row, token in enumerate(tokens):
        logits[row, NER_LABELS.index(tags.get(token, "O"))] = 4.0
    return logits


def spans(
    text: str, tags: dict[str, str], min_score: float = 0.99
) -> list[tuple[str, str, int, int]]:
    encoding = hand_tokenizer().encode(text)
    view = TokenView(encoding.offsets, encoding.word_ids)
    entities = entity_spans(text, logits_for(encoding.tokens, tags), view, NER_LABELS)
    for entity in entities:
        assert text[entity["start"] : entity["end"]] == entity["text"]
        assert min_score < entity["score"] <= 1.0
    return [(e["text"], e["label"], e["start"], e["end"]) for e in entities]


def test_subwords_merge_and_the_first_subword_decides() -> None:
    text = "hi Marie Curie!"
    # "##rie" says O, but a word takes the label of its first subword; its score is the mean
    # of its subwords' probabilities for that label, so the disagreement lowers it.
    got = spans(text, {"marie": "B-PER", "cu": "I-PER", "##rie": "O"}, min_score=0.7)
    assert got == [("Marie Curie", "PER", 3, 14)]


def test_emoji_and_cjk_offsets_are_code_points_of_the_text_as_sent() -> None:
    family = "👨\u200d👩\u200d👧"
    text = f"😀 Marie visited 東京! {family} ok"
    got = spans(text, {"marie": "B-PER", "東": "B-LOC", "京": "I-LOC", "[UNK]": "B-ORG"})
    tokyo = text.index("東京")
    assert got == [
        ("Marie", "PER", 2, 7),
        ("東京", "LOC", tokyo, tokyo + 2),
        (family, "ORG", text.index(family), text.index(family) + len(family)),
    ]


def test_bio_boundaries() -> None:
    text = "Ada met Marie and Ada"
    # B after B starts a new entity; I after O starts one too; I of another type splits.
    got = spans(text, {"ada": "B-PER", "met": "I-LOC", "marie": "B-PER", "and": "I-ORG"})
    assert got == [
        ("Ada", "PER", 0, 3),
        ("met", "LOC", 4, 7),
        ("Marie", "PER", 8, 13),
        ("and", "ORG", 14, 17),
        ("Ada", "PER", 18, 21),
    ]


def test_consecutive_b_tags_are_separate_entities() -> None:
    assert spans("Ada Marie", {"ada": "B-PER", "marie": "B-PER"}) == [
        ("Ada", "PER", 0, 3),
        ("Marie", "PER", 4, 9),
    ]


def test_no_entities_and_empty_text() -> None:
    assert spans("hi ok", {}) == []
    assert spans("", {}) == []


def test_padding_rows_are_ignored() -> None:
    text = "Marie"
    encoding = hand_tokenizer().encode(text)
    logits = logits_for([*encoding.tokens, "[PAD]", "[PAD]"], {"marie": "B-PER", "[PAD]": "B-LOC"})
    view = TokenView(encoding.offsets, encoding.word_ids)
    assert [e["text"] for e in entity_spans(text, logits, view, NER_LABELS)] == ["Marie"]


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("O", ("O", "")),
        ("B-PER", ("B", "PER")),
        ("I-LOC", ("I", "LOC")),
        ("S-ORG", ("B", "ORG")),
        ("E-ORG", ("I", "ORG")),
        ("MISC", ("I", "MISC")),
        ("B-X-Y", ("B", "X-Y")),
    ],
)
def test_split_tag(label: str, expected: tuple[str, str]) -> None:
    assert split_tag(label) == expected


def test_multi_label_scores_are_independent_sigmoids() -> None:
    logits = np.array([[0.0, 2.0, -2.0], [-5.0, -5.0, -5.0]], dtype=np.float32)
    first, second = classify(logits, ("toxic", "insult", "threat"), multi_label=True)
    assert first["label"] == "insult"
    assert first["scores"]["toxic"] == pytest.approx(0.5)
    assert first["scores"]["insult"] == pytest.approx(1 / (1 + np.exp(-2.0)), abs=1e-6)
    assert first["score"] == first["scores"]["insult"]
    assert sum(second["scores"].values()) < 0.03  # not normalized: all can be low


def test_single_label_scores_are_a_softmax() -> None:
    logits = np.array([[1.0, 2.0, 3.0], [1000.0, 0.0, -1000.0]], dtype=np.float32)
    first, second = classify(logits, ("negative", "neutral", "positive"), multi_label=False)
    assert sum(first["scores"].values()) == pytest.approx(1.0, abs=1e-5)
    assert first["label"] == "positive"
    assert first["score"] == pytest.approx(
        np.exp(3) / (np.exp(1) + np.exp(2) + np.exp(3)), abs=1e-6
    )
    assert second["label"] == "negative"  # large logits stay finite
    assert second["score"] == pytest.approx(1.0)
