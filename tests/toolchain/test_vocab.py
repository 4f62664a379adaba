"""Vocabulary trimming: identical outputs on text whose tokens survive, smaller embeddings, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from runtimes import load
from toolchain import (
    ConfigError,
    DataRole,
    ExportOnnx,
    Recipe,
    StepCache,
    TextDataset,
    TrimVocab,
    UnsupportedModelError,
    inspect_checkpoint,
    optimise,
)
from toolchain.api import source_record
from toolchain.stages import TorchModel
from toolchain.steps import StepContext
from toolchain.steps.vocab import trim_vocab

TRAIN_TEXTS = ("the film was great", "a bad report, written in paris.", "who wrote it? ada did, in 1999",
               "the café was great and the door was bad")
VALIDATION_TEXTS = ("it was a great film!", "where is the report? 東京")  # 東京 is [UNK] in the tiny vocabulary
LONG = " ".join(["the film was great and the report was written by ada in paris."] * 8)
QA_TRAIN = (("who wrote the report?", "the report was written by ada in paris."), ("what was great?", LONG))
QA_VALIDATION = (("where is the café?", "the café is in paris, by the door."),)
NER_TRAIN = ((("ada", "wrote", "the", "report", "in", "paris"), (1, 0, 0, 0, 0, 3)),
             (("the", "film", "was", "great"), (0, 0, 0, 0)))
NER_VALIDATION = ((("who", "is", "ada", "?"), (0, 0, 1, 0)),)
EXPORT_SAMPLE = "a somewhat longer example sentence that forces padding of the first"
UNSEEN = "Zebras quixotically juxtapose jalapeños, 😀 and 42 kilograms of façades."

WORDPIECE, UNIGRAM = ("bert", "mpnet"), ("xlm-roberta", "albert", "deberta-v2")
CASES = [(f, "text-classification") for f in WORDPIECE + UNIGRAM] + [
    (f, t) for f in ("bert", "xlm-roberta") for t in ("token-classification", "question-answering")]


def datasets(task: str) -> dict[DataRole, TextDataset]:
    if task == "question-answering":
        def qa(pairs):
            return TextDataset(tuple(c for _, c in pairs), questions=tuple(q for q, _ in pairs))
        return {DataRole.TRAIN: qa(QA_TRAIN), DataRole.VALIDATION: qa(QA_VALIDATION)}
    if task == "token-classification":
        def ner(rows):
            return TextDataset(tuple(" ".join(w) for w, _ in rows), words=tuple(w for w, _ in rows),
                               tags=tuple(t for _, t in rows))
        return {DataRole.TRAIN: ner(NER_TRAIN), DataRole.VALIDATION: ner(NER_VALIDATION)}
    return {DataRole.TRAIN: TextDataset(TRAIN_TEXTS), DataRole.VALIDATION: TextDataset(VALIDATION_TEXTS)}


def trim(path, task, workspace, data=None, **options) -> TorchModel:
    """Run the step's transform alone, so that the trimmed PyTorch checkpoint stays on disk."""
    source = inspect_checkpoint(path)
    workspace.mkdir(exist_ok=True)
    ctx = StepContext(source=source, workspace=workspace, data=data or datasets(task))
    return trim_vocab(TorchModel(source, (source_record(source),)), TrimVocab(**options), ctx)


def torch_outputs(checkpoint, task):
    """The PyTorch model's outputs on the data (every token of it was kept)."""
    import torch

    data = datasets(task)
    tok, model = checkpoint.tokenizer, checkpoint.load_model()
    if task == "question-answering":
        pairs = QA_TRAIN + QA_VALIDATION
        enc = tok([q for q, _ in pairs], [c for _, c in pairs], truncation="only_second", max_length=64,
                  padding=True, return_tensors="pt")
    elif task == "token-classification":
        words = [list(w) for d in data.values() for w in d.words]
        enc = tok(words, is_split_into_words=True, padding=True, return_tensors="pt")
    else:
        enc = tok(list(TRAIN_TEXTS + VALIDATION_TEXTS), padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model(**enc)
    return enc["input_ids"].numpy(), {k: v.numpy() for k, v in out.items()}


def runtime_outputs(folder, task):
    pipe = load(folder)
    if task == "question-answering":
        return [pipe(question=q, context=c, top_k=2) for q, c in QA_TRAIN + QA_VALIDATION]
    texts = [" ".join(w) for w, _ in NER_TRAIN + NER_VALIDATION] if task == "token-classification" else \
        list(TRAIN_TEXTS + VALIDATION_TEXTS)
    return pipe(texts) if task == "token-classification" else pipe(texts, top_k=None)


def same_predictions(ours, theirs):
    """Equal labels, entities, offsets and answers; scores within 1e-5."""
    def split(value):
        if isinstance(value, dict):
            return {k: v for k, v in value.items() if k != "score"}, [value["score"]]
        parts = [split(v) for v in value]
        return [p[0] for p in parts], [s for p in parts for s in p[1]]

    (ours_fixed, ours_scores), (their_fixed, their_scores) = split(ours), split(theirs)
    assert ours_fixed == their_fixed
    assert ours_scores == pytest.approx(their_scores, abs=1e-5)


@pytest.mark.parametrize("family,task", CASES)
def test_outputs_identical_on_text_whose_tokens_survive(checkpoint_factory, artifact_factory, tmp_path, family, task):
    source = checkpoint_factory(family, task)
    # export-onnx traces this fixed sample without truncating it; the tiny models' 64-token window barely
    # holds it (60 pieces for the tiny XLM-R), so its pieces are kept lest it overflow the position table
    trimmed = trim(source, task, tmp_path, extra_texts=(EXPORT_SAMPLE,))
    ckpt = trimmed.checkpoint
    config = json.loads((ckpt.path / "config.json").read_text())
    details = trimmed.lineage[-1].details
    rows = details["embedding_rows_after"]
    # smaller, and consistent: embedding rows = config vocab_size = tokenizer size (tokenizer.json too)
    assert rows < details["embedding_rows_before"] == json.loads((source / "config.json").read_text())["vocab_size"]
    assert details["embedding_parameters_after"] < details["embedding_parameters_before"]
    embedding = ckpt.load_model().get_input_embeddings()
    assert config["vocab_size"] == rows == len(ckpt.tokenizer) == embedding.num_embeddings
    from tokenizers import Tokenizer

    assert Tokenizer.from_file(str(ckpt.path / "tokenizer.json")).get_vocab_size(with_added_tokens=True) == rows
    assert details["validation_tokens_kept"] == details["validation_texts_unchanged"] == 1.0
    assert details["train_tokens_kept"] == details["train_texts_unchanged"] == 1.0

    # PyTorch: the same outputs from renumbered ids
    old_ids, old = torch_outputs(inspect_checkpoint(source), task)
    new_ids, new = torch_outputs(ckpt, task)
    assert old_ids.shape == new_ids.shape and (old_ids != new_ids).any(), "ids should be renumbered"
    for name in old:
        assert np.abs(old[name] - new[name]).max() < 1e-5, name

    # the runtime on the exported artifact: same labels, entities, offsets and answers
    art = optimise(ckpt.path, tmp_path / "art", recipe=Recipe(steps=[ExportOnnx()]))
    assert art.manifest.vocab_size == rows
    same_predictions(runtime_outputs(art.path, task), runtime_outputs(artifact_factory(family, task).path, task))
    # text with tokens that were dropped still runs (pieces or [UNK], never an error)
    pipe = load(art.path)
    if task == "question-answering":
        assert pipe(question="Quixotic zebras?", context=UNSEEN)["answer"] is not None
    else:
        assert isinstance(pipe([UNSEEN, "", "東京"]), list)


@pytest.mark.parametrize("family", ["bert", "xlm-roberta"])
def test_recipe_with_int8_passes_parity_and_records_the_step(checkpoint_factory, tmp_path, family):
    ckpt = checkpoint_factory(family, "text-classification")
    recipe = Recipe.from_dict({"steps": [{"kind": "trim-vocab", "min_count": 1, "alphabet": "ascii"},
                                         {"kind": "export-onnx"}, {"kind": "fuse-graph"},
                                         {"kind": "quantize-dynamic-int8"}]})
    assert Recipe.from_dict(json.loads(recipe.to_json())) == recipe  # JSON round trip
    art = optimise(ckpt, tmp_path / "art", recipe=recipe, data=datasets("text-classification"))
    m = art.manifest
    assert [(r.step, r.stage) for r in m.lineage] == [
        ("source", "torch"), ("trim-vocab", "torch"), ("export-onnx", "onnx"), ("fuse-graph", "onnx-fused"),
        ("quantize-dynamic-int8", "onnx-fused")]
    source, trimmed, export = m.lineage[:3]
    assert trimmed.parent_sha256 == source.output_sha256 != trimmed.output_sha256 == export.parent_sha256
    assert trimmed.config == {"kind": "trim-vocab", "min_count": 1, "alphabet": "ascii", "extra_texts": [],
                              "keep_validation": True}
    d = trimmed.details
    assert d["tokens_after"] < d["tokens_before"] and m.vocab_size == d["tokens_after"]
    assert d["validation_tokens_kept"] == 1.0 and d["train_tokens_kept"] == 1.0
    assert all(r.passed for r in m.parity)
    assert len(load(art.path)([UNSEEN, *VALIDATION_TEXTS])) == 3


def test_alphabet_and_min_count_decide_what_unseen_text_becomes(checkpoint_factory, tmp_path):
    from tokenizers import Tokenizer

    source = checkpoint_factory("bert", "text-classification")
    data = {DataRole.TRAIN: TextDataset(("the film was great", "the film was bad", "the report")),
            DataRole.VALIDATION: TextDataset(("a great day in paris",))}

    def encode(trimmed, text):
        tk = Tokenizer.from_file(str(trimmed.checkpoint.path / "tokenizer.json"))
        return tk.encode(text, add_special_tokens=False).tokens

    ascii_ = trim(source, "", tmp_path / "ascii", data=data)
    assert "[UNK]" not in encode(ascii_, "zebra quixotic")  # unseen words fall apart into characters
    assert encode(ascii_, "the film was great") == ["the", "film", "was", "great"]
    data_only = trim(source, "", tmp_path / "data", data=data, alphabet="data", min_count=2,
                     extra_texts=("written by ada",))
    assert data_only.lineage[-1].details["tokens_after"] < ascii_.lineage[-1].details["tokens_after"]
    # tokens seen once in training go ("report", "bad"); validation's and the extra texts' stay
    assert encode(data_only, "great paris written by") == ["great", "paris", "written", "by"]
    assert "report" not in encode(data_only, "the report")
    details = data_only.lineage[-1].details
    assert details["train_tokens_kept"] < 1.0 and details["train_texts_unchanged"] < 1.0
    assert details["validation_tokens_kept"] == details["extra_texts_unchanged"] == 1.0
    every = trim(source, "", tmp_path / "all", data=data, alphabet="all")
    assert every.lineage[-1].details["tokens_after"] >= ascii_.lineage[-1].details["tokens_after"]


def test_unknown_word_stays_unknown(tmp_path):
    """A word WordPiece gives up on must not find another split among fewer tokens.

    "abc" is [UNK] because WordPiece takes "ab" first and then finds no "##c"; without "ab" it could
    split "a" + "##bc" (both kept for other words). The step keeps "ab" so that validation is unchanged.
    """
    import string

    import torch
    import transformers as tf
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    letters = string.ascii_lowercase + string.digits + ".,?!"
    pieces = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *letters, *("##" + c for c in letters if c != "c"),
              "ab", "##bc", "the", "film"]
    vocab = {p: i for i, p in enumerate(pieces)}
    tk = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tk.normalizer = normalizers.BertNormalizer(lowercase=True)
    tk.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tk.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
                                                      special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tk.decoder = decoders.WordPiece()
    tok = tf.BertTokenizerFast(tokenizer_object=tk, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                               sep_token="[SEP]", mask_token="[MASK]", model_max_length=32)
    torch.manual_seed(0)
    config = tf.BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=16, max_position_embeddings=32, id2label={0: "no", 1: "yes"},
                           label2id={"no": 0, "yes": 1})
    folder = tmp_path / "ckpt"
    tf.BertForSequenceClassification(config).eval().save_pretrained(folder)
    tok.save_pretrained(folder)
    assert tk.encode("abc xbc", add_special_tokens=False).tokens == ["[UNK]", "x", "##bc"]
    data = {DataRole.TRAIN: TextDataset(("the xbc film",)), DataRole.VALIDATION: TextDataset(("the abc film",))}
    trimmed = trim(folder, "", tmp_path / "work", data=data, alphabet="all")
    assert trimmed.lineage[-1].details["validation_texts_unchanged"] == 1.0
    after = Tokenizer.from_file(str(trimmed.checkpoint.path / "tokenizer.json"))
    assert after.encode("the abc film", add_special_tokens=False).tokens == ["the", "[UNK]", "film"]


def test_unigram_keeps_the_penalty_of_unknown_characters(tmp_path):
    """Unigram scores an unknown character at (lowest piece score - 10). Dropping "x" (-50) and "q" (-60)
    would raise that penalty from -70 to -31, and "▁" + [UNK] + "yz" (-33) would beat the kept best path
    "▁xy" + "z" (-35) of "xyz"; the step keeps the lowest-scoring piece, so the penalty stays."""
    import string

    import torch
    import transformers as tf
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    specials = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    singles = [(c, -21.0) for c in string.ascii_letters + string.digits + string.punctuation if c not in "qxz"]
    pieces = [*specials, ("▁", -1.0), ("yz", -1.0), ("▁xy", -20.0), ("z", -15.0), ("x", -50.0), ("q", -60.0),
              *singles, ("<mask>", 0.0)]
    tk = Tokenizer(models.Unigram(pieces, unk_id=3))
    tk.normalizer = normalizers.NFKC()
    tk.pre_tokenizer = pre_tokenizers.Metaspace()
    tk.decoder = decoders.Metaspace()
    tk.post_processor = processors.TemplateProcessing(single="<s> $A </s>", pair="<s> $A </s> </s> $B:1 </s>:1",
                                                      special_tokens=[("<s>", 0), ("</s>", 2)])
    tok = tf.XLMRobertaTokenizerFast(tokenizer_object=tk, model_max_length=32, bos_token="<s>", eos_token="</s>",
                                     unk_token="<unk>", pad_token="<pad>", cls_token="<s>", sep_token="</s>",
                                     mask_token="<mask>")
    torch.manual_seed(0)
    config = tf.XLMRobertaConfig(vocab_size=len(pieces), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                 intermediate_size=16, max_position_embeddings=34, pad_token_id=1, bos_token_id=0,
                                 eos_token_id=2, type_vocab_size=1, id2label={0: "no", 1: "yes"},
                                 label2id={"no": 0, "yes": 1})
    folder = tmp_path / "ckpt"
    tf.XLMRobertaForSequenceClassification(config).eval().save_pretrained(folder)
    tok.save_pretrained(folder)
    assert tk.encode("xyz yz", add_special_tokens=False).tokens == ["\u2581xy", "z", "\u2581", "yz"]
    data = {DataRole.TRAIN: TextDataset(("yz",)), DataRole.VALIDATION: TextDataset(("xyz",))}
    # no alphabet, so that "x" goes; the checkpoint's own probe of ordinary English (no "x" in it) must still read
    probe = "The film was great, and the report was written by Ada in Paris. Where is the station? It opened in 1999"
    trimmed = trim(folder, "", tmp_path / "work", data=data, alphabet="none", extra_texts=(probe,))
    after = Tokenizer.from_file(str(trimmed.checkpoint.path / "tokenizer.json"))
    assert after.token_to_id("x") is None
    assert after.encode("xyz", add_special_tokens=False).tokens == ["\u2581xy", "z"]
    assert trimmed.lineage[-1].details["validation_texts_unchanged"] == 1.0


def test_roberta_byte_level_bpe_is_refused(checkpoint_factory, tmp_path):
    with pytest.raises(UnsupportedModelError, match=r"supports WordPiece .* and Unigram .* has a BPE tokenizer"):
        optimise(checkpoint_factory("roberta", "text-classification"), tmp_path / "art",
                 recipe=Recipe(steps=[TrimVocab(), ExportOnnx()]), data=datasets("text-classification"))
    assert not (tmp_path / "art").exists()


@pytest.mark.parametrize("raw,message", [
    ({"kind": "trim-vocab", "min_count": 0}, "min_count: Input should be greater than or equal to 1"),
    ({"kind": "trim-vocab", "alphabet": "greek"}, "alphabet: Input should be 'none', 'data', 'ascii' or 'all'"),
    ({"kind": "trim-vocab", "max_tokens": 10}, "max_tokens: Extra inputs are not permitted"),
    ({"kind": "trim-vocab", "extra_texts": "one text"}, "extra_texts: Input should be a valid tuple"),
])
def test_bad_configs_are_one_line_errors(raw, message):
    with pytest.raises(ConfigError, match=message) as err:
        Recipe.from_dict({"steps": [raw, {"kind": "export-onnx"}]})
    assert "\n" not in str(err.value)


def test_missing_data_and_too_little_kept(checkpoint_factory, tmp_path):
    ckpt = checkpoint_factory("bert", "text-classification")
    recipe = Recipe(steps=[TrimVocab(), ExportOnnx()])
    train_only = {DataRole.TRAIN: TextDataset(TRAIN_TEXTS)}
    with pytest.raises(ConfigError, match="trim-vocab needs train data"):
        optimise(ckpt, tmp_path / "a", recipe=recipe)
    with pytest.raises(ConfigError, match="trim-vocab needs validation data"):
        optimise(ckpt, tmp_path / "a", recipe=recipe, data=train_only)
    art = optimise(ckpt, tmp_path / "a", recipe=Recipe(steps=[TrimVocab(keep_validation=False), ExportOnnx()]),
                   data=train_only)
    assert "validation_tokens_kept" not in art.manifest.lineage[1].details
    # with no alphabet and three words, ordinary English becomes [UNK]: refused with what to do instead
    tiny = {DataRole.TRAIN: TextDataset(("the film",)), DataRole.VALIDATION: TextDataset(("great",))}
    with pytest.raises(ConfigError, match=r"trim-vocab kept too few tokens .* alphabet"):
        optimise(ckpt, tmp_path / "b", recipe=Recipe(steps=[TrimVocab(alphabet="none"), ExportOnnx()]), data=tiny)


def test_cached_by_training_and_validation_data(checkpoint_factory, tmp_path):
    ckpt = checkpoint_factory("bert", "text-classification")
    cache = StepCache(tmp_path / "cache")
    recipe = Recipe(steps=[TrimVocab(alphabet="data"), ExportOnnx()])
    data = datasets("text-classification")
    first = optimise(ckpt, tmp_path / "a", recipe=recipe, data=data, cache=cache)
    again = optimise(ckpt, tmp_path / "b", recipe=recipe, data=data, cache=cache)
    assert again.manifest.lineage[1].cached and cache.hits == 1
    assert again.manifest.lineage[1].output_sha256 == first.manifest.lineage[1].output_sha256
    other = {**data, DataRole.VALIDATION: TextDataset(("jalapeños and zebras",))}
    third = optimise(ckpt, tmp_path / "c", recipe=recipe, data=other, cache=cache)
    assert not third.manifest.lineage[1].cached, "other validation data must not reuse the trimmed model"
    assert third.manifest.lineage[1].details["validation_texts_unchanged"] == 1.0


def test_cli_recipe_file_and_bad_option(checkpoint_factory, tmp_path, capsys):
    from bench.cli.optimise import main

    ckpt = checkpoint_factory("bert", "text-classification")
    (tmp_path / "train.csv").write_text("text\n" + "\n".join(TRAIN_TEXTS) + "\n")
    (tmp_path / "val.csv").write_text("text\n" + "\n".join(VALIDATION_TEXTS) + "\n")
    recipe = tmp_path / "trim.toml"
    recipe.write_text('[[steps]]\nkind = "trim-vocab"\nalphabet = "data"\n[[steps]]\nkind = "export-onnx"\n')
    data = ["--train-data", str(tmp_path / "train.csv"), "--eval-data", str(tmp_path / "val.csv")]
    assert main([str(ckpt), "--out", str(tmp_path / "art"), "--recipe", str(recipe), "-q", "--no-cache", *data]) == 0
    manifest = json.loads((tmp_path / "art" / "manifest.json").read_text())
    assert manifest["lineage"][1]["step"] == "trim-vocab" and manifest["vocab_size"] < 160
    recipe.write_text('[[steps]]\nkind = "trim-vocab"\nmin_count = -1\n[[steps]]\nkind = "export-onnx"\n')
    capsys.readouterr()
    assert main([str(ckpt), "--out", str(tmp_path / "bad"), "--recipe", str(recipe), "-q", *data]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("optimise: error: invalid recipe") and "\n" not in err
    assert "min_count: Input should be greater than or equal to 1" in err


def test_estimates_how_much_new_text_survives(checkpoint_factory, tmp_path, caplog):
    """Validation always survives (its tokens are kept); the step also says how much would have if unseen."""
    ckpt = checkpoint_factory("bert", "text-classification")
    covered = {DataRole.TRAIN: TextDataset(TRAIN_TEXTS * 2),
               DataRole.VALIDATION: TextDataset(("the film was bad", "ada wrote the report in paris"))}
    details = trim(ckpt, "text-classification", tmp_path / "a", data=covered).lineage[-1].details
    assert details["unseen_texts_unchanged_estimate"] == 1.0 and details["validation_texts_unchanged"] == 1.0
    novel = {DataRole.TRAIN: covered[DataRole.TRAIN],
             DataRole.VALIDATION: TextDataset(("the film was bad", "where is the station? 東京 opened"))}
    with caplog.at_level("WARNING", logger="toolchain"):
        details = trim(ckpt, "text-classification", tmp_path / "b", data=novel, alphabet="none").lineage[-1].details
    assert details["unseen_texts_unchanged_estimate"] == 0.5 and details["validation_texts_unchanged"] == 1.0
    assert "only 50% of the validation texts would read exactly as before" in caplog.text
