"""Tiny random-weight BERT models, built locally and exported like real ones.

A WordPiece tokenizer is trained on a small corpus of posts, three BERT models of a few thousand
parameters are initialised from a fixed seed (multi-label toxicity, single-label sentiment, BIO
entities), saved as Hugging Face directories, and exported with ``streampulse models export``'s
code into served model directories. Everything lands under ``<cache_dir>/test-models/<key>/`` and
is reused while the key (harness version, library versions) stays the same; nothing is committed.
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import torch
import transformers
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from tokenizers.trainers import WordPieceTrainer

from streampulse.serving.exporting import ExportRequest, export_model
from streampulse.serving.manifests import Task
from streampulse.serving.samples import SAMPLE_POSTS

HARNESS_VERSION = "3"
SEED = 20260526

TOXICITY_LABELS = ("toxic", "insult", "threat")
SENTIMENT_LABELS = ("negative", "neutral", "positive")
NER_LABELS = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG")

EXTRA_CORPUS = (
    "Marie Curie lived in Paris and worked at the Sorbonne.",
    "Curie and Curies and curious cures.",
    "The quick brown fox jumps over the lazy dog near Berlin.",
    "Ada Lovelace wrote the first program for the Analytical Engine.",
    "Meet me at the station in Kyoto tomorrow morning.",
    "東京 京都 大阪 北京 上海",
)


@dataclass(frozen=True)
class TinyModels:
    """Where the built models are."""

    root: Path
    toxicity: Path
    sentiment: Path
    ner: Path
    sources: Path

    @property
    def dirs(self) -> tuple[Path, ...]:
        return (self.toxicity, self.sentiment, self.ner)


def _key() -> str:
    parts = [HARNESS_VERSION, version("torch"), version("transformers"), version("onnxruntime")]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:12]


def train_tokenizer(vocab_size: int = 700) -> Tokenizer:
    """A BERT-style WordPiece tokenizer trained on the sample posts."""
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    trainer = WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials, min_frequency=1)
    tokenizer.train_from_iterator([*SAMPLE_POSTS, *EXTRA_CORPUS], trainer)
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    return tokenizer


def _save_source(
    directory: Path, tokenizer: Any, task: Task, labels: tuple[str, ...], seed: int
) -> None:
    config = transformers.BertConfig(
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
        problem_type=None if task == "token_classification" else task,
    )
    torch.manual_seed(seed)
    if task == "token_classification":
        config.architectures = ["BertForTokenClassification"]
        model = transformers.BertForTokenClassification(config)
    else:
        config.architectures = ["BertForSequenceClassification"]
        model = transformers.BertForSequenceClassification(config)
    with torch.no_grad():  # spread the logits so labels are decided, as in a trained model
        model.classifier.weight.mul_(25.0)
    model.save_pretrained(directory)
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    fast.save_pretrained(directory)


def build_tiny_models(cache_dir: Path) -> TinyModels:
    """Build (or reuse) the tiny models under ``cache_dir``."""
    root = cache_dir / "test-models" / f"tiny-{_key()}"
    models = TinyModels(
        root=root,
        toxicity=root / "toxicity",
        sentiment=root / "sentiment",
        ner=root / "ner",
        sources=root / "sources",
    )
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (root / "complete").exists():
            return models
        shutil.rmtree(models.sources, ignore_errors=True)
        tokenizer = train_tokenizer()
        plan: list[tuple[str, Task, tuple[str, ...], Path]] = [
            ("toxicity", "multi_label_classification", TOXICITY_LABELS, models.toxicity),
            ("sentiment", "single_label_classification", SENTIMENT_LABELS, models.sentiment),
            ("ner", "token_classification", NER_LABELS, models.ner),
        ]
        for offset, (name, task, labels, out) in enumerate(plan):
            source = models.sources / name
            _save_source(source, tokenizer, task, labels, SEED + offset)
            export_model(ExportRequest(source=str(source), out_dir=out, name=name, max_length=64))
        (root / "complete").write_text("ok\n")
    return models


if __name__ == "__main__":
    from streampulse.settings import Settings

    print(build_tiny_models(Settings().cache_dir))
