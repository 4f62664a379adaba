"""The gate's decision rule on synthetic timing samples: no clock, no model, deterministic seeds."""

import numpy as np
import pytest

from bench.gate.decision import GatePolicy, Outcome, decide, parse_slowdown, ratio_interval, run_sequential

POLICY = GatePolicy(max_slowdown=0.10)


def rounds(n, slowdown, seed, noise=0.03, bimodal=0.0):
    """Per-round block medians (ms): a drift shared by both sides (they are interleaved), each side's
    own noise, and optionally a second mode: blocks that ran 1.8x slower (a neighbour's job)."""
    rng = np.random.default_rng(seed)
    drift = np.exp(rng.normal(0, 0.05, n))  # the machine's speed, round by round
    base = 2.5 * drift * np.exp(rng.normal(0, noise, n))
    cand = 2.5 * slowdown * drift * np.exp(rng.normal(0, noise, n))
    if bimodal:
        base *= np.where(rng.random(n) < bimodal, 1.8, 1.0)
        cand *= np.where(rng.random(n) < bimodal, 1.8, 1.0)
    return base.tolist(), cand.tolist()


def sampler(slowdown, seed, **kw):
    """Give back more rounds on request, as the gate's measurement loop does; counts the rounds taken."""
    base, cand = rounds(400, slowdown, seed, **kw)
    taken = {"n": 0}

    def sample(n):
        taken["n"] += n
        return base[: taken["n"]], cand[: taken["n"]]

    return sample, taken


@pytest.mark.parametrize("seed", range(20))
def test_identical_samples_pass(seed):
    v = decide(*rounds(20, 1.0, seed), POLICY)
    assert v.outcome is Outcome.PASS and v.conclusive
    assert v.ci_low < 1.0 < v.ci_high or abs(v.ratio - 1) < 0.03
    assert v.exit_code == 0


@pytest.mark.parametrize("seed", range(20))
def test_five_percent_slower_is_within_a_ten_percent_tolerance(seed):
    sample, _ = sampler(1.05, seed)
    v = run_sequential(sample, POLICY)
    assert v.outcome is Outcome.PASS
    assert 1.0 < v.ratio < 1.10


@pytest.mark.parametrize("seed", range(20))
def test_fifteen_percent_slower_is_a_regression(seed):
    sample, _ = sampler(1.15, seed)
    v = run_sequential(sample, POLICY)
    assert v.outcome is Outcome.REGRESSION and v.exit_code == 1
    assert v.p_value < POLICY.alpha
    assert v.ci_low > 1.0


@pytest.mark.parametrize("seed", range(10))
def test_bimodal_noise_neither_cries_wolf_nor_hides_a_regression(seed):
    sample, _ = sampler(1.0, seed, bimodal=0.2)
    assert run_sequential(sample, POLICY).outcome is Outcome.PASS
    sample, _ = sampler(1.15, seed, bimodal=0.2)
    assert run_sequential(sample, POLICY).outcome is Outcome.REGRESSION


def test_clear_cases_stop_at_the_first_batch_of_rounds():
    for slowdown in (1.0, 1.4):
        sample, taken = sampler(slowdown, 0)
        v = run_sequential(sample, POLICY)
        assert v.conclusive and taken["n"] == POLICY.min_rounds


def test_a_borderline_case_takes_more_rounds_then_says_it_is_not_conclusive():
    sample, taken = sampler(1.10, 3, noise=0.06)
    v = run_sequential(sample, POLICY)
    assert taken["n"] > POLICY.min_rounds
    assert not v.conclusive and v.rounds == POLICY.max_rounds
    assert "not conclusive" in v.reason


def test_the_pairing_of_rounds_narrows_the_interval_under_drift():
    base, cand = rounds(30, 1.0, 7)
    _, lo_p, hi_p = ratio_interval(base, cand, 0.99, paired=True)
    _, lo_u, hi_u = ratio_interval(base, cand, 0.99, paired=False)
    assert hi_p - lo_p < hi_u - lo_u


def test_unpaired_samples_of_different_lengths_are_accepted():
    base, _ = rounds(25, 1.0, 1)
    _, cand = rounds(10, 1.3, 2)
    v = decide(base, cand, POLICY, paired=False)
    assert v.outcome is Outcome.REGRESSION


@pytest.mark.parametrize("text, value", [("10%", 0.10), ("0.1", 0.10), ("2.5%", 0.025), (" 15% ", 0.15)])
def test_parse_slowdown(text, value):
    assert parse_slowdown(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["10", "ten", "-5%", "0", "%"])
def test_parse_slowdown_refuses_ambiguous_or_bad_values(text):
    with pytest.raises(ValueError):
        parse_slowdown(text)


def test_policy_validation():
    with pytest.raises(ValueError):
        GatePolicy(min_rounds=2)
    with pytest.raises(ValueError):
        GatePolicy(min_rounds=30, max_rounds=20)
