import pytest

from adaspec.decoding import StepRecord
from adaspec.eval.aggregate import DraftAccumulator, summary_rows


def rec(accepted, committed, rejected_depth, stopped=None):
    return StepRecord(4, 4, accepted, committed, rejected_depth, stopped)


def test_draft_accumulator_pools_rounds_over_prompts():
    acc = DraftAccumulator(gamma=4)
    # prompt A: all four accepted (+ bonus), then one accepted and a rejection at depth 2
    alpha_a = acc.add([rec(4, 5, None), rec(1, 2, 2)], 7, 1.0, True, [1.0, 0.5], {"f": 1.0})
    # prompt B: first drafted token rejected
    alpha_b = acc.add([rec(0, 1, 1)], 1, 1.0, True, [0.0], {"f": 0.0})
    assert alpha_a == pytest.approx(5 / 6)
    assert alpha_b == 0.0
    s = acc.summary(target_seconds=4.0)
    assert (s["accepted"], s["rejected"], s["rounds"]) == (5, 2, 3)
    assert s["alpha"] == pytest.approx(5 / 7)
    assert s["alpha_macro"] == pytest.approx((5 / 6 + 0) / 2)
    assert s["mean_accepted_per_round"] == pytest.approx(5 / 3)
    assert s["reached_at_position"] == [3, 2, 1, 1]
    assert s["accepted_at_position"] == [2, 1, 1, 1]
    assert s["acceptance_by_position"] == pytest.approx([2 / 3, 1 / 2, 1.0, 1.0])
    assert sum(s["accepted_at_position"]) / sum(s["reached_at_position"]) == pytest.approx(
        s["alpha"]
    )
    assert s["token_acceptance"] == pytest.approx(0.5)
    assert s["total_variation"] == pytest.approx(0.5)
    assert s["quality"] == {"f": 0.5}
    assert s["speedup"] == pytest.approx(2.0)
    assert s["identical_to_target"] is True


def test_draft_accumulator_eos_inside_accepted_block_counts_no_rejection():
    acc = DraftAccumulator(gamma=4)
    # EOS at the 2nd accepted token: 2 committed, the rejection at depth 4 never counts
    acc.add([rec(3, 2, 4, stopped="eos")], 2, 0.1, False, None, {})
    s = acc.summary()
    assert (s["accepted"], s["rejected"]) == (2, 0)
    assert s["acceptance_by_position"] == [1.0, 1.0, None, None]
    assert s["identical_to_target"] is False and s["token_acceptance"] is None


def test_summary_rows_one_row_per_draft():
    acc = DraftAccumulator(gamma=2)
    acc.add([rec(1, 2, 2)], 2, 1.0, True, [0.9], {"accuracy": 1.0})
    rows = summary_rows({"drafts": {"kd": acc.summary()}})
    assert rows[0]["draft"] == "kd" and rows[0]["alpha"] == pytest.approx(0.5)
    assert rows[0]["pos 1"] == 1.0 and rows[0]["pos 2"] == 0.0
    assert rows[0]["accuracy"] == 1.0
