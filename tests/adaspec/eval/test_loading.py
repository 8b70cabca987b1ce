import pytest
import torch
from helpers import make_tiny_model

from adaspec.eval.config import EvalConfig
from adaspec.eval.loading import _default_dtype, check_same_tokenizer, load_eval_models
from adaspec.modeling import train_bpe_tokenizer


def _save(model, tok, path):
    model.save_pretrained(path)
    if tok is not None:
        tok.save_pretrained(path)
    return str(path)


def test_check_same_tokenizer_accepts_equal_and_names_the_draft_otherwise(tiny_tokenizer):
    check_same_tokenizer(tiny_tokenizer, tiny_tokenizer, "same")
    other = train_bpe_tokenizer(["entirely other words in here"] * 20, vocab_size=300)
    sizes = f"{len(tiny_tokenizer.get_vocab())} and {len(other.get_vocab())} tokens"
    with pytest.raises(ValueError, match=rf"draft 'foreign' does not share .*{sizes}"):
        check_same_tokenizer(tiny_tokenizer, other, "foreign")


def test_load_eval_models_loads_frozen_models_on_device(tmp_path, tiny_tokenizer):
    n = len(tiny_tokenizer)
    target = _save(make_tiny_model("llama", seed=0, vocab_size=n), tiny_tokenizer, tmp_path / "t")
    draft = _save(make_tiny_model("llama", seed=1, vocab_size=n), None, tmp_path / "d")
    cfg = EvalConfig(target=target, drafts={"d": draft}, source="unused.jsonl", dtype="auto")
    tgt, drafts, tok = load_eval_models(cfg, torch.device("cpu"))
    assert list(drafts) == ["d"] and tok.get_vocab() == tiny_tokenizer.get_vocab()
    for model in (tgt, drafts["d"]):
        assert not model.training
        assert all(not p.requires_grad for p in model.parameters())
        assert next(model.parameters()).dtype == torch.float32  # auto on CPU
    # the draft's own weights were loaded, not the target's
    assert not torch.equal(
        tgt.get_output_embeddings().weight, drafts["d"].get_output_embeddings().weight
    )


def test_load_eval_models_refuses_a_draft_smaller_than_the_tokenizer(tmp_path, tiny_tokenizer):
    n = len(tiny_tokenizer)
    target = _save(make_tiny_model("llama", seed=0, vocab_size=n), tiny_tokenizer, tmp_path / "t")
    small = _save(make_tiny_model("llama", seed=1, vocab_size=n // 2), None, tmp_path / "s")
    cfg = EvalConfig(target=target, drafts={"small": small}, source="unused.jsonl")
    with pytest.raises(ValueError, match="vocabulary mismatch"):
        load_eval_models(cfg, torch.device("cpu"))


def test_default_dtype_auto_is_float32_on_cpu_only():
    assert _default_dtype("auto", torch.device("cpu")) == "float32"
    assert _default_dtype("auto", torch.device("cuda")) == "auto"
    assert _default_dtype("bfloat16", torch.device("cpu")) == "bfloat16"
