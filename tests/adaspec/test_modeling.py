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


def test_load_model_truncated_safetensors_names_path(tmp_path):
    from adaspec.modeling import load_model

    make_tiny_model().save_pretrained(tmp_path / "m")
    weights = tmp_path / "m" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(OSError, match=rf"{weights}.*(truncated|corrupt)"):
        load_model(str(tmp_path / "m"))


@pytest.mark.parametrize("path", ["./runs/no-such-model", "/no/such/model", "~/nope", "a/b/c"])
def test_load_model_mistyped_local_path_fails_at_once(monkeypatch, path):
    import adaspec.modeling as modeling

    def hub(*args, **kwargs):
        raise AssertionError("went to the hub")

    monkeypatch.setattr(modeling.AutoModelForCausalLM, "from_pretrained", hub)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        modeling.load_model(path)


def test_check_max_length_refuses_beyond_positions():
    from adaspec.modeling import check_max_length

    model = make_tiny_model(max_position_embeddings=32)
    check_max_length(model, 32, "target")
    with pytest.raises(ValueError, match=r"data\.max_length=64.*target.*32 positions"):
        check_max_length(model, 64, "target")
