"""Shared fixtures. Tiny random checkpoints are built offline from a config, never downloaded."""

from __future__ import annotations

import atexit
import os
import shutil
import string
import tempfile
from pathlib import Path

import pytest
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from toolchain.families import FAMILIES as _FAMILY_TABLE

# The step cache (and anything else keyed on it) must never touch the developer's home folder.
os.environ["EDGE_TOOLCHAIN_CACHE"] = tempfile.mkdtemp(prefix="edge-toolchain-test-cache-")
atexit.register(shutil.rmtree, os.environ["EDGE_TOOLCHAIN_CACHE"], ignore_errors=True)

FAMILIES = tuple(_FAMILY_TABLE)  # every family the toolchain claims to support gets a tiny model
TASKS = ("text-classification", "token-classification", "question-answering")
CLASS_LABELS = ["negative", "neutral", "positive"]
NER_LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
MAX_LENGTH = 64

_WORDS = ["the", "a", "film", "was", "great", "bad", "report", "written", "by", "in", "and", "of", "to", "is", "it",
          "café", "paris", "who", "where", "what"]
_CORPUS = [
    "the film was great and the report was written by ada in paris",
    "where is the café? who wrote it? what colour is the door?",
    "Überraschend gut 😀 naïve façades jalapeños 東京 São Paulo",
]


def _wordpiece(cls_tok: str, sep_tok: str, pair_sep: str, specials: list[str]) -> Tokenizer:
    chars = sorted(set(string.ascii_lowercase + string.digits + string.punctuation))
    vocab_list = specials + chars + ["##" + c for c in chars] + _WORDS
    vocab = {t: i for i, t in enumerate(dict.fromkeys(vocab_list))}
    unk = next(s for s in specials if "unk" in s.lower())
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


def _unigram(specials: list[str], cls_tok: str, sep_tok: str, double_sep: bool) -> Tokenizer:
    """A small sentencepiece-style (Unigram + Metaspace) tokenizer, like XLM-R, ALBERT and DeBERTa use."""
    tk = Tokenizer(models.Unigram())
    tk.normalizer = normalizers.NFKC()
    tk.pre_tokenizer = pre_tokenizers.Metaspace()
    tk.decoder = decoders.Metaspace()
    unk = next(s for s in specials if "unk" in s.lower())
    trainer = trainers.UnigramTrainer(vocab_size=300, special_tokens=specials, unk_token=unk, show_progress=False)
    tk.train_from_iterator(_CORPUS * 20 + [" ".join(_WORDS)] * 5, trainer)
    vocab = tk.get_vocab()
    pair = f"{cls_tok} $A {sep_tok} " + (f"{sep_tok} " if double_sep else "") + f"$B:1 {sep_tok}:1"
    tk.post_processor = processors.TemplateProcessing(
        single=f"{cls_tok} $A {sep_tok}", pair=pair,
        special_tokens=[(cls_tok, vocab[cls_tok]), (sep_tok, vocab[sep_tok])])
    return tk


def build_tokenizer(family: str):
    import transformers as tf

    bert_specials = dict(unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
                         mask_token="[MASK]")
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
    if family in ("xlm-roberta", "camembert"):
        tk = _unigram(["<s>", "<pad>", "</s>", "<unk>", "<mask>"], "<s>", "</s>", double_sep=True)
        cls = tf.XLMRobertaTokenizerFast if family == "xlm-roberta" else tf.CamembertTokenizerFast
        return cls(tokenizer_object=tk, model_max_length=MAX_LENGTH, **roberta_specials)
    if family == "deberta-v2":
        tk = _unigram(["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"], "[CLS]", "[SEP]", double_sep=False)
        return tf.DebertaV2TokenizerFast(tokenizer_object=tk, model_max_length=MAX_LENGTH, bos_token="[CLS]",
                                         eos_token="[SEP]", **bert_specials)
    if family == "albert":
        tk = _unigram(["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"], "[CLS]", "[SEP]", double_sep=False)
        return tf.AlbertTokenizerFast(tokenizer_object=tk, model_max_length=MAX_LENGTH,
                                      **{**bert_specials, "unk_token": "<unk>", "pad_token": "<pad>"})
    if family == "modernbert":
        tk = _wordpiece("[CLS]", "[SEP]", "", ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
        return tf.PreTrainedTokenizerFast(tokenizer_object=tk, model_max_length=MAX_LENGTH,
                                          model_input_names=["input_ids", "attention_mask"], **bert_specials)
    raise ValueError(family)


def build_config(family: str, task: str, vocab_size: int, layers: int = 2):
    import transformers as tf

    common = dict(vocab_size=vocab_size, initializer_range=0.2)
    if family == "distilbert":
        cfg = tf.DistilBertConfig(dim=32, n_layers=layers, n_heads=4, hidden_dim=48, max_position_embeddings=MAX_LENGTH,
                                  pad_token_id=0, **common)
    else:
        size = dict(hidden_size=32, num_hidden_layers=layers, num_attention_heads=4, intermediate_size=48)
        if family == "bert":
            cfg = tf.BertConfig(max_position_embeddings=MAX_LENGTH, **size, **common)
        elif family == "electra":
            cfg = tf.ElectraConfig(embedding_size=24, max_position_embeddings=MAX_LENGTH, **size, **common)
        elif family == "mpnet":
            cfg = tf.MPNetConfig(max_position_embeddings=MAX_LENGTH + 2, pad_token_id=1, **size, **common)
        elif family in ("roberta", "xlm-roberta", "camembert"):
            config_class = {"roberta": tf.RobertaConfig, "xlm-roberta": tf.XLMRobertaConfig,
                            "camembert": tf.CamembertConfig}[family]
            cfg = config_class(max_position_embeddings=MAX_LENGTH + 2, pad_token_id=1, bos_token_id=0,
                               eos_token_id=2, type_vocab_size=1, **size, **common)
        elif family == "deberta-v2":
            cfg = tf.DebertaV2Config(max_position_embeddings=MAX_LENGTH, relative_attention=True, position_buckets=16,
                                     pos_att_type=["p2c", "c2p"], position_biased_input=False, type_vocab_size=0,
                                     pad_token_id=0, **size, **common)
        elif family == "albert":
            cfg = tf.AlbertConfig(embedding_size=16, max_position_embeddings=MAX_LENGTH, pad_token_id=0, **size,
                                  **common)
        elif family == "modernbert":
            cfg = tf.ModernBertConfig(max_position_embeddings=MAX_LENGTH, pad_token_id=0, cls_token_id=2,
                                      sep_token_id=3, bos_token_id=2, eos_token_id=3, global_attn_every_n_layers=1,
                                      local_attention=16, **size, **common)
        else:
            raise ValueError(family)
    labels = {"text-classification": CLASS_LABELS, "token-classification": NER_LABELS}.get(task)
    if labels:
        cfg.id2label = dict(enumerate(labels))
        cfg.label2id = {v: k for k, v in cfg.id2label.items()}
    return cfg


def build_checkpoint(family: str, task: str, folder: Path, seed: int = 0, layers: int = 2) -> Path:
    """Write a random-weight checkpoint for `family` fine-tuned (in shape only) for `task`."""
    import torch
    import transformers as tf

    torch.manual_seed(seed)
    tokenizer = build_tokenizer(family)
    cfg = build_config(family, task, vocab_size=len(tokenizer), layers=layers)
    auto = {"text-classification": tf.AutoModelForSequenceClassification,
            "token-classification": tf.AutoModelForTokenClassification,
            "question-answering": tf.AutoModelForQuestionAnswering}[task]
    model = auto.from_config(cfg).eval()
    if task != "question-answering":
        _make_decisive(model, tokenizer)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder



def _make_decisive(model, tokenizer, scale: float = 4.0) -> None:
    """Aim the task head at the directions along which texts' features differ most.

    A random head reads the part of the features that every text shares: the labels' scores nearly tie
    (about 0.337 each for 3 labels) and int8's rounding, not the model, decides the top-1 answer. Here the
    head's rows become the top principal directions of the features it reads, over texts like the parity
    batches, scaled so that the logits spread over a few units: top-1 answers still vary with the text, and
    differ between labels by far more than quantisation moves them.
    """
    import torch

    head = [m for m in model.modules() if isinstance(m, torch.nn.Linear)
            and m.out_features == model.config.num_labels][-1]
    seen = []
    hook = head.register_forward_hook(lambda module, args, out: seen.append(args[0].detach()))
    from toolchain.parity import PARITY_TEXTS

    texts = list(PARITY_TEXTS) + _CORPUS + [" ".join(_WORDS[i::3]) for i in range(3)]
    with torch.no_grad():
        model(**tokenizer(texts, padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="pt"))
    hook.remove()
    features = seen[0].reshape(-1, head.in_features)  # texts (or tokens) x features
    centre = features.mean(0)
    _, spread, directions = torch.linalg.svd(features - centre, full_matrices=False)
    weight = directions[: head.out_features] * (scale / spread[: head.out_features, None]) * features.shape[0] ** 0.5
    with torch.no_grad():
        head.weight.copy_(weight)
        head.bias.copy_(-weight @ centre)


@pytest.fixture(scope="session")
def checkpoint_factory(tmp_path_factory):
    """Build (and cache for the session) a tiny random checkpoint per (family, task)."""
    cache: dict[tuple[str, str, int], Path] = {}

    def make(family: str, task: str, layers: int = 2) -> Path:
        key = (family, task, layers)
        if key not in cache:
            cache[key] = build_checkpoint(family, task, tmp_path_factory.mktemp(f"{family}-{task}"), layers=layers)
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


# What numpy's CPU dispatcher reports on each int8 class (the features runtimes.common.cpu reads), and the architecture.
FAKE_CPUS = {
    "avx2": ("x86_64", {"SSE42", "AVX", "AVX2", "FMA3"}),
    "avx512": ("x86_64", {"SSE42", "AVX", "AVX2", "FMA3", "AVX512F", "AVX512BW", "AVX512_SKX"}),
    "avx512_vnni": ("x86_64", {"SSE42", "AVX", "AVX2", "FMA3", "AVX512F", "AVX512BW", "AVX512VNNI"}),
    "arm64": ("aarch64", {"NEON", "ASIMD", "ASIMDDP"}),
}


@pytest.fixture
def fake_cpu(monkeypatch):
    """`fake_cpu("avx2")` makes runtimes.common.cpu detect that int8 class for the rest of the test (the kernels that
    run stay this machine's: a test asserts the decisions, formats and messages, not another CPU's numbers)."""
    import platform

    import runtimes.common.cpu as cpu

    def use(isa: str) -> None:
        machine, features = FAKE_CPUS[isa]
        monkeypatch.setattr(cpu, "cpu_features", lambda: frozenset(features))
        monkeypatch.setattr(platform, "machine", lambda: machine)
        cpu.detect_isa.cache_clear()
        cpu._WARNED.clear()

    yield use
    monkeypatch.undo()
    cpu.detect_isa.cache_clear()
    cpu._WARNED.clear()
