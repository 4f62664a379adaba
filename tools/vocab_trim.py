"""Vocabulary trimming on the demo model: vocabulary kept, artifact sizes, test-token survival, test accuracy.

    python -m tools.vocab_trim CHECKPOINT [--out out/vocab-trim]

CHECKPOINT is the demo's fine-tuned MiniLM (~/.cache/edge-toolchain/minilm-l6-rotten-tomatoes-*).
Trimming keeps the tokens of the training and validation splits; the test split only scores.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from bench.data import load_rotten_tomatoes
from runtimes import load
from toolchain import DataRole, DropLayers, DynamicInt8, ExportOnnx, FuseGraph, Recipe, TextDataset, TrimVocab, optimise

parser = argparse.ArgumentParser(prog="python -m tools.vocab_trim", description=__doc__.splitlines()[0])
parser.add_argument("checkpoint", type=Path)
parser.add_argument("--out", type=Path, default=Path("out/vocab-trim"))
args = parser.parse_args()
out, ckpt = args.out, args.checkpoint
out.mkdir(parents=True, exist_ok=True)
splits = load_rotten_tomatoes()
data = {DataRole.TRAIN: TextDataset(tuple(e.text for e in splits.train), tuple(e.label for e in splits.train)),
        DataRole.VALIDATION: TextDataset(tuple(e.text for e in splits.validation),
                                         tuple(e.label for e in splits.validation))}
test_texts = [e.text for e in splits.test]
test_labels = np.array([e.label for e in splits.test])

VARIANTS = {
    "6L fp32": [ExportOnnx(), FuseGraph()],
    "6L int8": [ExportOnnx(), FuseGraph(), DynamicInt8()],
    "6L trim fp32": [TrimVocab(), ExportOnnx(), FuseGraph()],
    "6L trim int8": [TrimVocab(), ExportOnnx(), FuseGraph(), DynamicInt8()],
    "3L fp32": [DropLayers(num_layers=3), ExportOnnx(), FuseGraph()],
    "3L int8": [DropLayers(num_layers=3), ExportOnnx(), FuseGraph(), DynamicInt8()],
    "3L trim fp32": [DropLayers(num_layers=3), TrimVocab(), ExportOnnx(), FuseGraph()],
    "3L trim int8": [DropLayers(num_layers=3), TrimVocab(), ExportOnnx(), FuseGraph(), DynamicInt8()],
}
results, predictions = {}, {}
for name, steps in VARIANTS.items():
    t0 = time.perf_counter()
    art = optimise(ckpt, out / name.replace(" ", "-"), recipe=Recipe(steps=steps), data=data, overwrite=True)
    built = time.perf_counter() - t0
    pipe = load(art.path, threads=2, batch_size=32)
    scores = pipe(test_texts, top_k=None)
    positive = np.array([{s["label"]: s["score"] for s in row}["positive"] for row in scores])
    predictions[name] = positive
    trim = next((r.details for r in art.manifest.lineage if r.step == "trim-vocab"), None)
    results[name] = {
        "model_mb": art.model_path.stat().st_size / 1e6,
        "folder_mb": sum(p.stat().st_size for p in art.path.iterdir()) / 1e6,
        "test_accuracy": float(((positive > 0.5).astype(int) == test_labels).mean()),
        "vocab_size": art.manifest.vocab_size,
        "build_s": round(built, 1),
        "trim": trim,
    }
    print(name, json.dumps({k: v for k, v in results[name].items() if k != "trim"}), flush=True)

# the same model with and without trimming: predictions on the test split
for layers in ("6L", "3L"):
    for precision in ("fp32", "int8"):
        a, b = predictions[f"{layers} {precision}"], predictions[f"{layers} trim {precision}"]
        results[f"{layers} trim {precision}"]["vs_untrimmed"] = {
            "same_label": float(((a > 0.5) == (b > 0.5)).mean()), "max_score_diff": float(np.abs(a - b).max())}

# test tokens: removed by trimming, [UNK] before/after, texts that encode differently
before = Tokenizer.from_file(str(out / "6L-fp32" / "tokenizer.json"))
after = Tokenizer.from_file(str(out / "6L-trim-fp32" / "tokenizer.json"))
for tk in (before, after):
    tk.no_truncation()
    tk.no_padding()
kept = set(after.get_vocab())
old = before.encode_batch(test_texts, add_special_tokens=False)
new = after.encode_batch(test_texts, add_special_tokens=False)
tokens = sum(len(e.tokens) for e in old)
unchanged = [o.tokens == n.tokens for o, n in zip(old, new)]
same_texts = [t for t, u in zip(range(len(test_texts)), unchanged) if u]
a, b = predictions["6L fp32"], predictions["6L trim fp32"]
results["test_tokens"] = {
    "tokens": tokens,
    "removed_share": sum(t not in kept for e in old for t in e.tokens) / tokens,
    "unk_share_before": sum(t == "[UNK]" for e in old for t in e.tokens) / tokens,
    "unk_share_after": sum(t == "[UNK]" for e in new for t in e.tokens) / sum(len(e.tokens) for e in new),
    "texts_encoded_differently": 1 - float(np.mean(unchanged)),
    "texts_with_a_new_unk": float(np.mean([n.tokens.count("[UNK]") > o.tokens.count("[UNK]")
                                           for o, n in zip(old, new)])),
    "max_score_diff_on_unchanged_texts_fp32": float(np.abs(a[same_texts] - b[same_texts]).max()),
}
print(json.dumps(results["test_tokens"], indent=1))
(out / "results.json").write_text(json.dumps(results, indent=1))
