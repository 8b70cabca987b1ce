import torch

from adaspec_eagle.unroll import shift_left, ttt_mask


def test_shift_left_drops_the_first_n_and_pads_with_zeros():
    x = torch.arange(1, 6, dtype=torch.float32)[None, :, None]  # [1, 5, 1]
    assert shift_left(x, 0) is x
    assert shift_left(x, 2)[0, :, 0].tolist() == [3, 4, 5, 0, 0]
    assert shift_left(x, 7)[0, :, 0].tolist() == [0, 0, 0, 0, 0]  # past the end: all padding


def test_ttt_mask_is_causal_then_one_diagonal_block_per_step():
    neg = torch.finfo(torch.float32).min
    mask = ttt_mask(torch.tensor([[1, 1, 1]]), 1, 3, 2, torch.float32, torch.device("cpu"))
    assert mask.shape == (1, 1, 3, 9)
    allowed = mask[0, 0] == 0
    assert allowed[:, :3].tolist() == torch.ones(3, 3, dtype=torch.bool).tril().tolist()
    for block in (allowed[:, 3:6], allowed[:, 6:9]):  # each earlier step: only the same position
        assert block.tolist() == torch.eye(3, dtype=torch.bool).tolist()
    assert bool((mask[0, 0][~allowed] == neg).all())
    padded = ttt_mask(torch.tensor([[1, 1, 0]]), 1, 3, 0, torch.float32, torch.device("cpu"))
    assert bool((padded[0, 0, :, 2] == neg).all())  # no query sees the padded key
