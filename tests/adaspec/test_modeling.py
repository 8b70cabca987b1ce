import pytest
import torch
from helpers import make_tiny_model

from adaspec.modeling import check_same_vocabulary


def test_build_model_same_seed_same_weights(family):
    a, b = make_tiny_model(family, seed=3), make_tiny_model(family, seed=3)
    for (na, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        assert torch.equal(pa, pb), na


def test_tokenizer_special_ids(tiny_tokenizer):
    assert (tiny_tokenizer.bos_token_id, tiny_tokenizer.eos_token_id) == (0, 1)
    assert tiny_tokenizer.pad_token_id == 2


def test_check_same_vocabulary_allows_padded_rows(tiny_tokenizer):
    n = len(tiny_tokenizer)
    models = {"target": make_tiny_model(vocab_size=n + 8), "draft": make_tiny_model(vocab_size=n)}
    assert check_same_vocabulary(models, tiny_tokenizer) == n


def test_check_same_vocabulary_rejects_smaller_model(tiny_tokenizer):
    n = len(tiny_tokenizer)
    models = {"target": make_tiny_model(vocab_size=n), "draft": make_tiny_model(vocab_size=n - 10)}
    with pytest.raises(ValueError, match="draft"):
        check_same_vocabulary(models, tiny_tokenizer)


def test_check_same_vocabulary_rejects_mismatch_without_tokenizer():
    models = {"target": make_tiny_model(vocab_size=300), "draft": make_tiny_model(vocab_size=256)}
    with pytest.raises(ValueError, match="vocabulary mismatch"):
        check_same_vocabulary(models)
