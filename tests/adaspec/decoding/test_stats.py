import math

from adaspec.decoding.decoder import StepRecord
from adaspec.decoding.stats import acceptance_counts


def _rec(accepted, committed, rejected_depth, stopped=None, depth=4):
    return StepRecord(depth, depth, accepted, committed, rejected_depth, stopped)


def test_acceptance_counts_all_accepted():
    out = acceptance_counts([_rec(4, 5, None), _rec(4, 5, None)])
    assert (out["accepted"], out["rejected"], out["alpha"]) == (8, 0, 1.0)
    assert out["tau"] == 5.0
    assert out["attempts_by_depth"] == [2, 2, 2, 2]


def test_acceptance_counts_first_rejected():
    out = acceptance_counts([_rec(0, 1, 1), _rec(2, 3, 3)])
    assert (out["accepted"], out["rejected"]) == (2, 2)
    assert out["alpha"] == 0.5
    assert out["attempts_by_depth"] == [2, 1, 1]
    assert out["accepted_by_depth"] == [1, 1, 0]


def test_acceptance_counts_eos_inside_accepted_block():
    # 3 of 4 drafted tokens accepted, EOS was the 2nd: 2 committed, no rejection counted
    out = acceptance_counts([_rec(3, 2, 4, stopped="eos")])
    assert (out["accepted"], out["rejected"]) == (2, 0)
    # EOS as the correction token: the rejection still counts
    out = acceptance_counts([_rec(1, 2, 2, stopped="eos")])
    assert (out["accepted"], out["rejected"]) == (1, 1)


def test_acceptance_counts_empty_is_nan():
    out = acceptance_counts([])
    assert math.isnan(out["alpha"]) and out["rounds"] == 0
