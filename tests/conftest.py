"""Shared fixtures. Tiny random checkpoints are built offline from a config, never downloaded."""

from __future__ import annotations

import string
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

FAMILIES = ("bert", "distilbert", "electra", "mpnet", "roberta")
TASKS = ("text-classification", "token-classification", "question-answering")
CLASS_LABELS = ["negative", "neutral", "positive"]
NER_LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
MAX_LENGTH = 64

_WORDS = "the a film was great bad report written by in and of to is it café paris who where what".split()
_CORPUS = [
    "the film was great and the report was written by ada in paris",
    "where is the café? who wrote it? what colour is the door?",
    "Überraschend gut 😀 naïve façades jalapeños 東京 São Paulo",
]


def _wordpiece(cls_tok: str, sep_tok: str, pair_sep: str, specials: list[str]) -> Tokenizer:
    chars = sorted(set(string.ascii_lowercase + string.digits + string.punctuation))
    vocab_list = specials + chars + ["##" + c for c in chars] + _WORDS
    vocab = {t: i for i, t in enumerate(dict.fromkeys(vocab_list))}
    unk = [s for s in specials if "unk" in s.lower()][0]
    tk = Tokenizer(models.WordPiece(vocab, unk_token=unk))
    tk.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True)
    tk.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tk.post_processor = processors.TemplateProcessing(
        single=f"{cls_tok} $A {sep_tok}",
        pair=f"{cls_tok} $A {sep_tok} {pair_sep}$B:1 {sep_tok}:1",
        special_tokens=[(cls_tok, vocab[cls_tok]), (sep_tok, vocab[sep_tok])],
    )
    tk.decoder = decoders.WordPiece()
    return tk


def _byte_bpe() -> Tokenizer:
    from tokenizers import ByteLevelBPETokenizer

    bpe = ByteLevelBPETokenizer(add_prefix_space=False)
    bpe.train_from_iterator(_CORPUS * 5, vocab_size=400, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
                            show_progress=False)
    tk = bpe._tokenizer
    tk.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0), trim_offsets=True, add_prefix_space=False)
    return tk


def build_tokenizer(family: str):
    import transformers as tf

    bert_specials = dict(unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    roberta_specials = dict(bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
                            cls_token="<s>", sep_token="</s>", mask_token="<mask>")
    if family in ("bert", "distilbert", "electra"):
        tk = _wordpiece("[CLS]", "[SEP]", "", ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
        cls = {"bert": tf.BertTokenizerFast, "distilbert": tf.DistilBertTokenizerFast,
               "electra": tf.ElectraTokenizerFast}[family]
        return cls(tokenizer_object=tk, model_max_length=MAX_LENGTH, **bert_specials)
    if family == "mpnet":
        tk = _wordpiece("<s>", "</s>", "</s> ", ["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
        return tf.MPNetTokenizerFast(tokenizer_object=tk, model_max_length=MAX_LENGTH, **roberta_specials)
    if family == "roberta":
        return tf.RobertaTokenizerFast(tokenizer_object=_byte_bpe(), model_max_length=MAX_LENGTH, **roberta_specials)
    raise ValueError(family)


def build_config(family: str, task: str, vocab_size: int):
    import transformers as tf

    common = dict(vocab_size=vocab_size, initializer_range=0.2)
    if family == "distilbert":
        cfg = tf.DistilBertConfig(dim=32, n_layers=2, n_heads=4, hidden_dim=48, max_position_embeddings=MAX_LENGTH,
                                  pad_token_id=0, **common)
    else:
        size = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48)
        if family == "bert":
            cfg = tf.BertConfig(max_position_embeddings=MAX_LENGTH, **size, **common)
        elif family == "electra":
            cfg = tf.ElectraConfig(embedding_size=24, max_position_embeddings=MAX_LENGTH, **size, **common)
        elif family == "mpnet":
            cfg = tf.MPNetConfig(max_position_embeddings=MAX_LENGTH + 2, pad_token_id=1, **size, **common)
        else:
            cfg = tf.RobertaConfig(max_position_embeddings=MAX_LENGTH + 2, pad_token_id=1, bos_token_id=0,
                                   eos_token_id=2, type_vocab_size=1, **size, **common)
    labels = {"text-classification": CLASS_LABELS, "token-classification": NER_LABELS}.get(task)
    if labels:
        cfg.id2label = dict(enumerate(labels))
        cfg.label2id = {v: k for k, v in cfg.id2label.items()}
    return cfg


def build_checkpoint(family: str, task: str, folder: Path, seed: int = 0) -> Path:
    """Write a random-weight checkpoint for `family` fine-tuned (in shape only) for `task`."""
    import torch
    import transformers as tf

    torch.manual_seed(seed)
    tokenizer = build_tokenizer(family)
    cfg = build_config(family, task, vocab_size=len(tokenizer))
    auto = {"text-classification": tf.AutoModelForSequenceClassification,
            "token-classification": tf.AutoModelForTokenClassification,
            "question-answering": tf.AutoModelForQuestionAnswering}[task]
    model = auto.from_config(cfg).eval()
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


import pytest


@pytest.fixture(scope="session")
def checkpoint_factory(tmp_path_factory):
    """Build (and cache for the session) a tiny random checkpoint per (family, task)."""
    cache: dict[tuple[str, str], Path] = {}

    def make(family: str, task: str) -> Path:
        key = (family, task)
        if key not in cache:
            cache[key] = build_checkpoint(family, task, tmp_path_factory.mktemp(f"{family}-{task}"))
        return cache[key]

    return make


@pytest.fixture(scope="session")
def bert_cls(checkpoint_factory) -> Path:
    return checkpoint_factory("bert", "text-classification")


@pytest.fixture(scope="session")
def artifact_factory(checkpoint_factory, tmp_path_factory):
    """Export (once per session) the tiny checkpoint of (family, task) to fp32 ONNX, nothing else."""
    from toolchain import ExportOnnx, Recipe, optimise

    cache: dict[tuple[str, str], object] = {}

    def make(family: str, task: str):
        key = (family, task)
        if key not in cache:
            out = tmp_path_factory.mktemp("artifacts") / f"{family}-{task}"
            cache[key] = optimise(checkpoint_factory(family, task), out, recipe=Recipe(steps=[ExportOnnx()]))
        return cache[key]

    return make
