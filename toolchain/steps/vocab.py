"""Vocabulary trimming: keep only the tokens the task's data uses (torch stage -> torch stage).

A fine-tuned model sees a part of its tokenizer's vocabulary: the Rotten Tomatoes reviews use fewer
than half of MiniLM's 30,522 WordPiece tokens, yet every one of them has a 384-wide row in
the embedding table, which dominates a small student's file. This step keeps the rows of the tokens
that the training and validation data use (plus special tokens and, by default, single characters so
unseen words break into pieces instead of [UNK]), renumbers them contiguously in their old order, and
rewrites the tokenizer to match.

Why the outputs cannot change on text whose tokens were kept:

- WordPiece (BERT, MiniLM, DistilBERT, ELECTRA, MPNet) matches the longest vocabulary entry first. If
  every piece of a word's encoding is kept, no longer match can appear in a subset of the vocabulary,
  so the word encodes the same. For a word that became [UNK] the pieces matched before WordPiece gave
  up are kept too, so it still gives up at the same place.
- Unigram (XLM-R, ALBERT, DeBERTa-v3) picks the best-scoring segmentation. If its pieces are kept the
  same path is still there, and every other path of the smaller lattice scores no better, provided the
  penalty of an unknown character is unchanged: that penalty follows the lowest piece score, so the
  lowest-scoring piece is kept.
- Byte-level BPE (RoBERTa, ModernBERT) applies merges whose intermediate tokens a data-driven subset
  would drop; it is refused.

Nothing is taken on trust: the training, validation and extra texts are encoded again with the new
tokenizer, validation (and the extra texts) must encode exactly as before, and transformers' view of the
new checkpoint must agree with tokenizer.json (what the runtime reads).
"""

from __future__ import annotations

import enum
import json
import logging
import string
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from toolchain.checkpoint import TOKENIZER_FILES, Checkpoint, save_checkpoint
from toolchain.data import DataRole, TextDataset
from toolchain.errors import CheckpointError, ConfigError, ParityError, UnsupportedModelError
from toolchain.stages import Stage, TorchModel
from toolchain.steps.base import StepConfig, StepContext, StepTimer, derive_torch, register_step

log = logging.getLogger(__name__)

SUPPORTED_MODELS = ("WordPiece", "Unigram")
UNSEEN_WARNING = 0.9  # below this estimated share of new texts reading unchanged, the step warns
# Config fields that hold token ids (the embedding's padding row, generation's start and end tokens).
_ID_FIELDS = ("pad_token_id", "bos_token_id", "eos_token_id", "sep_token_id", "cls_token_id", "mask_token_id",
              "unk_token_id", "decoder_start_token_id")
_SPACE = "\u2581"  # SentencePiece's word-start marker
_SHOWN = 3  # examples named in an error


class Alphabet(str, enum.Enum):
    """Which single-character tokens to keep besides those the data uses, so that a word the data never
    had is split into characters instead of becoming [UNK] (where the tokenizer can)."""

    NONE = "none"
    DATA = "data"  # the characters that occur in the data
    ASCII = "ascii"  # those, and printable ASCII (letters, digits, punctuation)
    ALL = "all"  # every single-character token of the vocabulary


class TrimVocab(StepConfig):
    """Shrink the embedding table and the tokenizer to the tokens the data uses.

    Keeps special tokens, every token of the validation data and of `extra_texts`, the training data's
    tokens that occur at least `min_count` times, and the single characters that `alphabet` names.
    Text whose tokens were all kept (and that has no [UNK]) encodes and scores exactly as before.
    With `keep_validation` (the default) the step needs validation data: every token of it is kept and
    each validation text is checked to encode unchanged.
    """

    kind: Literal["trim-vocab"] = "trim-vocab"
    consumes = frozenset({Stage.TORCH})
    produces = Stage.TORCH
    cacheable = True
    needs_data = frozenset({DataRole.TRAIN, DataRole.VALIDATION})
    min_count: int = Field(default=1, ge=1, le=1_000_000,
                           description="occurrences in the training data a token needs to be kept")
    alphabet: Alphabet = Alphabet.ASCII
    extra_texts: tuple[str, ...] = Field(default=(), max_length=100_000,
                                         description="texts whose tokens are kept too (e.g. domain words)")
    keep_validation: bool = True

    def data_roles(self) -> frozenset[DataRole]:
        # The roles are also the step cache's key: validation is either needed (and keyed) or not read.
        return self.needs_data if self.keep_validation else frozenset({DataRole.TRAIN})

    def preflight(self, source: Checkpoint) -> None:
        _algorithm(json.loads(source.tokenizer.backend_tokenizer.to_str()), source)


@register_step(TrimVocab)
def trim_vocab(parent: TorchModel, cfg: TrimVocab, ctx: StepContext) -> TorchModel:
    """Write a checkpoint whose embedding rows and tokenizer hold only the kept tokens."""
    from tokenizers import Tokenizer

    timer = StepTimer()
    source = parent.checkpoint
    train = ctx.data_for(DataRole.TRAIN, cfg.kind)
    validation = ctx.data_for(DataRole.VALIDATION, cfg.kind) if cfg.keep_validation else None
    extra = TextDataset(cfg.extra_texts) if cfg.extra_texts else None
    tokenizer = source.tokenizer
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    algorithm = _algorithm(spec, source)
    reference = _plain(Tokenizer.from_str(json.dumps(spec)))

    model = source.load_fresh_model()
    embedding = model.get_input_embeddings()
    rows = embedding.num_embeddings
    train_counts = _token_counts(reference, spec, train)
    required = Counter()
    for dataset in (validation, extra):
        if dataset is not None:
            required += _token_counts(reference, spec, dataset)
    sources = {
        "special": _special_ids(spec, tokenizer, model.config, source, rows),
        "train": {i for i, n in train_counts.items() if n >= cfg.min_count},
        "validation_and_extra": set(required),
        "alphabet": _alphabet_ids(spec, reference.normalizer, cfg.alphabet,
                                  [d for d in (train, validation, extra) if d is not None]),
    }
    kept = sorted(set().union(*sources.values()))
    outside = [i for i in kept if not 0 <= i < rows]
    if outside:
        raise UnsupportedModelError(f"trim-vocab: the tokenizer produces id {outside[0]}, outside the model's "
                                    f"{rows} embedding rows; the tokenizer does not belong to the model")
    new_id = {old: new for new, old in enumerate(kept)}
    trimmed = _trimmed_spec(spec, new_id)

    before = _embedding_parameters(model)
    parameters_before = sum(p.numel() for p in model.parameters())
    _gather_rows(model, kept, new_id)
    folder = ctx.new_folder("trim-vocab")
    with tempfile.TemporaryDirectory(dir=ctx.workspace, prefix="trim-vocab-tokenizer-") as scratch:
        new_tokenizer = _load_trimmed_tokenizer(tokenizer, trimmed, new_id, Path(scratch), len(kept))
        checkpoint = save_checkpoint(model, new_tokenizer, folder, source.task)
    final = _plain(Tokenizer.from_file(str(folder / "tokenizer.json")))
    _check_transformers_agrees(checkpoint, final, validation or train)

    train_share, train_same = _survival(reference, final, new_id, train)
    details: dict[str, Any] = {
        "tokenizer_model": algorithm,
        "tokens_before": len(tokenizer),
        "tokens_after": len(kept),
        "embedding_rows_before": rows,
        "embedding_rows_after": len(kept),
        "embedding_parameters_before": before,
        "embedding_parameters_after": _embedding_parameters(model),
        "parameters_before": parameters_before,
        "parameters_after": sum(p.numel() for p in model.parameters()),
        "kept_by_source": {name: len(ids) for name, ids in sources.items()},
        "train_tokens_kept": round(train_share, 6),
        "train_texts_unchanged": round(train_same, 6),
    }
    for name, dataset in (("validation", validation), ("extra", extra)):
        if dataset is None:
            continue
        share, same = _survival(reference, final, new_id, dataset, must_match=f"{name} texts")
        details[f"{name}_tokens_kept"], details[f"{name}_texts_unchanged"] = round(share, 6), round(same, 6)
    if validation is not None:
        # Validation's own tokens are kept, so it always survives; had it been unseen, how much would have?
        # That is the estimate for new text of the same kind (test data, production traffic).
        seen = sources["special"] | sources["train"] | sources["alphabet"]
        estimate = _covered(reference, validation, seen)
        details["unseen_texts_unchanged_estimate"] = round(estimate, 6)
        if estimate < UNSEEN_WARNING:
            log.warning("trim-vocab: only %.0f%% of the validation texts would read exactly as before had they not "
                        "been in the data; new text of this kind will often meet words split into pieces the model "
                        "never saw. Give more training text (or extra_texts), or leave "
                        "trim-vocab out", 100 * estimate)
    log.info("kept %d of %d tokens (%s): %.1fM -> %.1fM embedding parameters", len(kept), rows, algorithm,
             before / 1e6, details["embedding_parameters_after"] / 1e6)
    return derive_torch(parent, checkpoint, cfg, timer, details)


# -- what the tokenizer is, and which ids to keep -------------------------------------------------------

def _algorithm(spec: dict, source: Checkpoint) -> str:
    kind = (spec.get("model") or {}).get("type")
    if kind not in SUPPORTED_MODELS:
        raise UnsupportedModelError(
            f"trim-vocab supports WordPiece (BERT, MiniLM, DistilBERT, ELECTRA, MPNet) and Unigram (XLM-R, "
            f"ALBERT, DeBERTa-v3) tokenizers; {source.path} has a {kind or 'unknown'} tokenizer "
            f"({source.model_type}), whose merges a trimmed vocabulary would break"
        )
    return kind


def _plain(tokenizer):
    """The tokenizer with no truncation and no padding: every token of a text counts."""
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def _inputs(dataset: TextDataset) -> list[tuple[list, bool]]:
    """What the tokenizer is given for a data set: (inputs, pre-tokenized) batches.

    NER data is counted as split words (as training tokenises it) and checked as joined text too (as
    the runtime tokenises it); QA as question/context pairs.
    """
    if dataset.words is not None:
        return [([list(w) for w in dataset.words], True), (list(dataset.texts), False)]
    if dataset.questions is not None:
        return [(list(zip(dataset.questions, dataset.texts)), False)]
    return [(list(dataset.texts), False)]


def _strings(dataset: TextDataset) -> list[str]:
    """Every string of a data set: its words, or its texts and questions."""
    if dataset.words is not None:
        return [w for words in dataset.words for w in words]
    return list(dataset.texts) + list(dataset.questions or ())


def _token_counts(reference, spec: dict, dataset: TextDataset) -> Counter:
    """How often each id occurs in the data's encodings, plus what keeps a WordPiece [UNK] word [UNK]."""
    inputs, pretokenized = _inputs(dataset)[0]
    counts: Counter = Counter()
    unknown = reference.token_to_id(spec["model"]["unk_token"]) if spec["model"]["type"] == "WordPiece" else None
    with_unknown: list[str] = []
    for item, encoding in zip(inputs, reference.encode_batch(inputs, is_pretokenized=pretokenized,
                                                             add_special_tokens=False)):
        counts.update(encoding.ids)
        if unknown is not None and unknown in encoding.ids:  # a word list, a (question, context) pair or a text
            with_unknown += [item] if isinstance(item, str) else list(item)
    if with_unknown:
        counts.update(_unknown_word_prefixes(reference, spec["model"], with_unknown))
    return counts


def _unknown_word_prefixes(reference, model: dict, texts: list[str]) -> list[int]:
    """The ids WordPiece matches in each [UNK] word before it gives up.

    Keeping them makes a trimmed tokenizer give up at the same place; without them it could find
    another split of the word among fewer tokens, and the text would encode differently.
    """
    vocab, prefix = model["vocab"], model.get("continuing_subword_prefix", "##")
    limit, unknown = model.get("max_input_chars_per_word", 100), model["unk_token"]
    found = []
    for text in texts:
        normal = reference.normalizer.normalize_str(text) if reference.normalizer else text
        words = reference.pre_tokenizer.pre_tokenize_str(normal) if reference.pre_tokenizer else [(normal, None)]
        for word, _ in words:
            if [t.value for t in reference.model.tokenize(word)] == [unknown]:
                found += [vocab[p] for p in _matched_before_giving_up(word, vocab, prefix, limit)]
    return found


def _matched_before_giving_up(word: str, vocab: dict, prefix: str, limit: int) -> list[str]:
    """WordPiece's greedy longest-first pieces of `word`, up to the position where nothing matches."""
    if len(word) > limit:
        return []
    pieces, start = [], 0
    while start < len(word):
        for end in range(len(word), start, -1):
            piece = (prefix if start else "") + word[start:end]
            if piece in vocab:
                pieces.append(piece)
                start = end
                break
        else:
            break
    return pieces


def _special_ids(spec: dict, tokenizer, config, source: Checkpoint, rows: int) -> set[int]:
    """Ids that must stay whatever the data: added and special tokens, those config.json names, and
    what keeps the tokenizer and the model behaving as before."""
    ids = {t["id"] for t in spec.get("added_tokens", [])} | set(tokenizer.all_special_ids)
    for name in _ID_FIELDS:
        value = getattr(config, name, None)
        for i in value if isinstance(value, list) else [value]:
            if isinstance(i, int) and not isinstance(i, bool) and 0 <= i < rows:
                ids.add(i)
    model = spec["model"]
    if model["type"] == "WordPiece" and model.get("unk_token") in model["vocab"]:
        ids.add(model["vocab"][model["unk_token"]])
    if model["type"] == "Unigram":
        vocab = model["vocab"]
        if model.get("unk_id") is not None:
            ids.add(model["unk_id"])
        # The penalty of an unknown character follows the lowest score: keep it, or paths would change.
        ids.add(min(range(len(vocab)), key=lambda i: vocab[i][1]))
        if model.get("byte_fallback"):  # <0x00>..<0xFF>: what unknown characters become
            ids |= {i for i, (piece, _) in enumerate(vocab) if len(piece) == 6 and piece.startswith("<0x")}
    # RoBERTa-style models (XLM-R, MPNet) number positions from the padding id: it must not move.
    pad = getattr(config, "pad_token_id", None)
    if source.family.position_offset and isinstance(pad, int):
        ids |= set(range(pad + 1))
    return ids


def _alphabet_ids(spec: dict, normalizer, alphabet: Alphabet, datasets: list[TextDataset]) -> set[int]:
    if alphabet is Alphabet.NONE:
        return set()
    model = spec["model"]
    if model["type"] == "WordPiece":
        prefix = model.get("continuing_subword_prefix", "##")
        pieces = dict(model["vocab"])

        def character(piece: str) -> str | None:
            bare = piece[len(prefix):] if piece.startswith(prefix) else piece
            return bare if len(bare) == 1 else None
    else:
        pieces = {piece: i for i, (piece, _) in enumerate(model["vocab"])}

        def character(piece: str) -> str | None:
            bare = piece[1:] if piece.startswith(_SPACE) else piece
            return bare if len(bare) <= 1 else None  # "▁" alone starts a word of single characters
    if alphabet is Alphabet.ALL:
        return {i for piece, i in pieces.items() if character(piece) is not None}
    raw = {c for d in datasets for text in _strings(d) for c in text}
    if alphabet is Alphabet.ASCII:
        raw |= set(string.ascii_letters + string.digits + string.punctuation)
    chars = {""} | {n for c in raw for n in (normalizer.normalize_str(c) if normalizer else c)}
    return {i for piece, i in pieces.items() if character(piece) in chars}


# -- the trimmed tokenizer and model --------------------------------------------------------------------

def _trimmed_spec(spec: dict, new_id: dict[int, int]) -> dict:
    """tokenizer.json with only the kept tokens, renumbered: model vocabulary, added tokens, the
    post-processor's special-token ids and the padding id."""
    out = json.loads(json.dumps(spec))
    model = out["model"]
    if model["type"] == "WordPiece":
        model["vocab"] = {t: new_id[i] for t, i in model["vocab"].items() if i in new_id}
    else:
        model["vocab"] = [entry for i, entry in enumerate(model["vocab"]) if i in new_id]
        if model.get("unk_id") is not None:
            model["unk_id"] = new_id[model["unk_id"]]
    for token in out.get("added_tokens", []):
        token["id"] = new_id[token["id"]]
    if out.get("post_processor"):
        out["post_processor"] = _remap_processor(out["post_processor"], new_id)
    if out.get("padding") and out["padding"].get("pad_id") is not None:
        out["padding"]["pad_id"] = new_id.get(out["padding"]["pad_id"], 0)
    return out


def _remap_processor(processor: dict, new_id: dict[int, int]) -> dict:
    kind = processor.get("type")
    if kind == "TemplateProcessing":
        for special in processor.get("special_tokens", {}).values():
            special["ids"] = [new_id[i] for i in special["ids"]]
    elif kind in ("BertProcessing", "RobertaProcessing"):
        for key in ("sep", "cls"):
            processor[key] = [processor[key][0], new_id[processor[key][1]]]
    elif kind == "Sequence":
        processor["processors"] = [_remap_processor(p, new_id) for p in processor["processors"]]
    elif kind != "ByteLevel":
        raise UnsupportedModelError(f"trim-vocab cannot renumber the special tokens of a {kind} post-processor")
    return processor


def _gather_rows(model, kept: list[int], new_id: dict[int, int]) -> None:
    """Keep the embedding rows of the kept ids, in the new order (and the output embedding's, unless tied)."""
    import torch

    index = torch.tensor(kept, dtype=torch.long)
    embedding = model.get_input_embeddings()
    output = model.get_output_embeddings()
    tied = output is not None and output.weight is embedding.weight
    with torch.no_grad():
        embedding.weight = torch.nn.Parameter(embedding.weight[index].clone())
        embedding.num_embeddings = len(kept)
        if embedding.padding_idx is not None:
            embedding.padding_idx = new_id.get(embedding.padding_idx)
        if tied:
            output.weight = embedding.weight
        elif output is not None:
            output.weight = torch.nn.Parameter(output.weight[index].clone())
        if output is not None and getattr(output, "bias", None) is not None:
            output.bias = torch.nn.Parameter(output.bias[index].clone())
        if output is not None and hasattr(output, "out_features"):
            output.out_features = len(kept)
    model.config.vocab_size = len(kept)
    for name in _ID_FIELDS:
        value = getattr(model.config, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value in new_id:
            setattr(model.config, name, new_id[value])
        elif isinstance(value, list) and all(isinstance(i, int) and i in new_id for i in value):
            setattr(model.config, name, [new_id[i] for i in value])


def _embedding_parameters(model) -> int:
    embedding, output = model.get_input_embeddings(), model.get_output_embeddings()
    count = embedding.weight.numel()
    if output is not None and output.weight is not embedding.weight:
        count += output.weight.numel()
    return count


def _load_trimmed_tokenizer(tokenizer, trimmed: dict, new_id: dict[int, int], scratch: Path, size: int):
    """The transformers tokenizer of the trimmed vocabulary.

    transformers saves its tokenizer files (tokenizer_config.json keeps the class and its options), then
    tokenizer.json is replaced by the trimmed one, ids elsewhere are renumbered and vocabulary files of
    other formats are removed, so that the reload can only read the trimmed vocabulary.
    """
    from transformers import AutoTokenizer

    tokenizer.save_pretrained(scratch)
    for name in (*TOKENIZER_FILES, "merges.txt", "added_tokens.json"):
        (scratch / name).unlink(missing_ok=True)
    (scratch / "tokenizer.json").write_text(json.dumps(trimmed, ensure_ascii=False), encoding="utf-8")
    config_path = scratch / "tokenizer_config.json"
    if config_path.is_file():
        config = json.loads(config_path.read_text(encoding="utf-8"))
        if isinstance(config.get("unk_id"), int) and config["unk_id"] in new_id:
            config["unk_id"] = new_id[config["unk_id"]]
        if isinstance(config.get("added_tokens_decoder"), dict):
            config["added_tokens_decoder"] = {str(new_id[int(k)]): v for k, v in config["added_tokens_decoder"].items()
                                              if int(k) in new_id}
        config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False), encoding="utf-8")
    try:
        loaded = AutoTokenizer.from_pretrained(scratch, local_files_only=True, trust_remote_code=False)
    except Exception as exc:  # transformers raises many unrelated types for a tokenizer it cannot build
        raise UnsupportedModelError(f"trim-vocab: transformers cannot load the trimmed tokenizer: {exc}") from exc
    loaded.padding_side = tokenizer.padding_side
    expected = {t: new_id[i] for t, i in tokenizer.get_vocab().items() if i in new_id}
    if len(loaded) != size or loaded.get_vocab() != expected:
        raise UnsupportedModelError(
            f"trim-vocab: transformers' {type(loaded).__name__} rebuilds the trimmed vocabulary differently "
            f"({len(loaded)} tokens where {size} were written); this tokenizer class cannot be trimmed")
    return loaded


# -- checks ---------------------------------------------------------------------------------------------

def _check_transformers_agrees(checkpoint: Checkpoint, final, dataset: TextDataset) -> None:
    """transformers (training, parity) and tokenizer.json (the runtime) must encode alike after trimming."""
    from toolchain.parity_inputs import PARITY_TEXTS

    try:
        tokenizer = checkpoint.tokenizer
    except CheckpointError as exc:
        raise ConfigError(f"trim-vocab kept too few tokens for the model to read ordinary text ({exc}); keep the "
                          "alphabet (alphabet = \"ascii\") or give more data") from None
    texts = list(PARITY_TEXTS) + list(dataset.texts[:200])
    theirs = tokenizer(texts, truncation=True, max_length=checkpoint.max_length)["input_ids"]
    final.enable_truncation(checkpoint.max_length)  # as the runtime reads it: cut at the model's window
    ours = [e.ids for e in final.encode_batch(texts)]
    final.no_truncation()
    differ = [t for t, a, b in zip(texts, theirs, ours) if list(a) != b]
    if differ:
        raise UnsupportedModelError(
            f"trim-vocab: transformers' {type(tokenizer).__name__} and the trimmed tokenizer.json encode "
            f"{len(differ)} of {len(texts)} texts differently (first: {differ[0][:60]!r}); this tokenizer cannot "
            "be trimmed safely")


def _covered(reference, dataset: TextDataset, kept: set[int]) -> float:
    """Share of the data's texts whose every token id is in `kept`: those encode unchanged after trimming
    (a greedy WordPiece or Viterbi Unigram split over a subset that holds the original pieces is the same)."""
    inputs, pretokenized = _inputs(dataset)[-1]  # as the runtime reads it
    encodings = reference.encode_batch(inputs, is_pretokenized=pretokenized, add_special_tokens=False)
    return sum(all(i in kept for i in e.ids) for e in encodings) / max(1, len(encodings))


def _survival(reference, final, new_id: dict[int, int], dataset: TextDataset,
              must_match: str | None = None) -> tuple[float, float]:
    """(share of the data's tokens kept, share of its texts that encode exactly as before).

    With `must_match`, any text that encodes differently is a `ParityError` naming the first few.
    """
    kept = total = same = count = 0
    changed: list[str] = []
    for inputs, pretokenized in _inputs(dataset):
        before = reference.encode_batch(inputs, is_pretokenized=pretokenized)
        after = final.encode_batch(inputs, is_pretokenized=pretokenized)
        for item, old, new in zip(inputs, before, after):
            content = [i for i, special in zip(old.ids, old.special_tokens_mask) if not special]
            total += len(content)
            kept += sum(i in new_id for i in content)
            count += 1
            if [new_id.get(i, -1) for i in old.ids] == new.ids:
                same += 1
            elif len(changed) < _SHOWN:
                changed.append(repr(item)[:80])
    if must_match and same < count:
        raise ParityError(f"trim-vocab: {count - same} of {count} {must_match} encode differently after trimming "
                          f"(e.g. {'; '.join(changed)}); this is a bug: please report it")
    return (kept / total if total else 1.0), same / count
