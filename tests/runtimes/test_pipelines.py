"""Runtime pipelines agree with transformers (and with PyTorch's own logits for QA)."""

import numpy as np
import pytest

from runtimes import load
from toolchain.families import FAMILIES
from toolchain.parity import PARITY_TEXTS

TEXTS = [*list(PARITY_TEXTS), "Ada Lovelace met Charles Babbage in London.", "x"]


@pytest.fixture(scope="module")
def hf_pipeline(checkpoint_factory):
    from transformers import pipeline

    def make(family, task, **kwargs):
        return pipeline(task, model=str(checkpoint_factory(family, task)), device="cpu", **kwargs)

    return make


@pytest.mark.parametrize("family", FAMILIES)
def test_text_classification_matches_transformers(artifact_factory, hf_pipeline, family):
    ours = load(artifact_factory(family, "text-classification").path)
    theirs = hf_pipeline(family, "text-classification")
    for mine, ref in zip(ours(TEXTS), theirs(TEXTS, truncation=True)):
        assert mine["label"] == ref["label"]
        assert mine["score"] == pytest.approx(ref["score"], abs=1e-4)
    for mine, ref in zip(ours(TEXTS, top_k=None), theirs(TEXTS, truncation=True, top_k=None)):
        assert [m["label"] for m in mine] == [r["label"] for r in ref]
        assert [m["score"] for m in mine] == pytest.approx([r["score"] for r in ref], abs=1e-4)
    assert len(ours(TEXTS[:2], top_k=2)[0]) == 2
    assert isinstance(ours("one text"), dict)


@pytest.mark.parametrize("family", FAMILIES)
def test_token_classification_matches_transformers(artifact_factory, hf_pipeline, family):
    ours = load(artifact_factory(family, "token-classification").path)
    theirs = hf_pipeline(family, "token-classification", aggregation_strategy="simple")
    mine_all, ref_all = ours(TEXTS), theirs(TEXTS)
    assert sum(len(m) for m in mine_all) > 0, "random tiny models should still tag something"
    for text, mine, ref in zip(TEXTS, mine_all, ref_all):
        assert [(e["entity_group"], e["word"], e["start"], e["end"]) for e in mine] == \
               [(e["entity_group"], e["word"], e["start"], e["end"]) for e in ref], text
        assert [e["score"] for e in mine] == pytest.approx([float(e["score"]) for e in ref], abs=1e-4)


QA = [
    ("Who wrote the report?", "The report was written by Ada Lovelace in 1843 and published in London."),
    ("Where is the café?", "Le café « Chez Zoë » 😀 se trouve à Paris, near the Seine."),
    ("What colour is the door?", " ".join(["The house has many rooms and a long corridor."] * 12)
     + " The front door is painted bright red."),
    ("Is it empty?", ""),
]


def softmax_at(logits, positions):
    x = logits[0].double().numpy()[positions]
    z = np.exp(x - x.max())
    return dict(zip(positions, z / z.sum()))


def reference_answer(checkpoint, question, context, max_length, stride, max_answer_len=15):
    """Brute-force decoding of the PyTorch model's own logits over every window and span."""
    import torch
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(checkpoint)
    model = AutoModelForQuestionAnswering.from_pretrained(checkpoint).eval()
    enc = tok(question, context, truncation="only_second", max_length=max_length, stride=stride,
              return_overflowing_tokens=True, return_offsets_mapping=True)
    best = (0.0, 0, 0)
    for w in range(len(enc["input_ids"])):
        ids = enc["input_ids"][w]
        feeds = {k: torch.tensor([enc[k][w]]) for k in tok.model_input_names if k in enc}
        with torch.no_grad():
            out = model(**feeds)
        seq = enc.sequence_ids(w)
        allowed = [i for i, s in enumerate(seq) if s == 1]
        if not allowed:
            continue
        softmax_over = allowed + ([0] if ids[0] == tok.cls_token_id else [])

        ps, pe = (softmax_at(out.start_logits, softmax_over), softmax_at(out.end_logits, softmax_over))
        for s in allowed:
            for e in allowed:
                if s <= e < s + max_answer_len and ps[s] * pe[e] > best[0]:
                    best = (ps[s] * pe[e], enc["offset_mapping"][w][s][0], enc["offset_mapping"][w][e][1])
    return best, len(enc["input_ids"])


@pytest.mark.parametrize("family", FAMILIES)
def test_question_answering_matches_pytorch_decoding(artifact_factory, checkpoint_factory, family):
    artifact = artifact_factory(family, "question-answering")
    ours = load(artifact.path)
    windows_seen = 0
    for question, context in QA:
        got = ours(question=question, context=context)
        (score, start, end), windows = reference_answer(
            checkpoint_factory(family, "question-answering"), question, context,
            artifact.manifest.max_length, ours.stride)
        windows_seen = max(windows_seen, windows)
        assert (got["start"], got["end"]) == (start, end), question
        assert got["answer"] == context[start:end]
        assert got["score"] == pytest.approx(score, abs=1e-4)
    assert windows_seen > 1, "the long context must be split into strided windows"
    batch = ours(question=[q for q, _ in QA], context=[c for _, c in QA])
    assert [b["answer"] for b in batch] == [ours(question=q, context=c)["answer"] for q, c in QA]
    top = ours(question=QA[0][0], context=QA[0][1], top_k=3)
    assert len(top) == 3 and top[0]["score"] >= top[1]["score"] >= top[2]["score"]
