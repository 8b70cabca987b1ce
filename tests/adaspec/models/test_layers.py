import pytest
import torch
from helpers import make_tiny_model

from adaspec.models import first_layers_draft
from adaspec.models.layers import same_prefix_weights


def _greedy(model, ids, n=12, **kw):
    return model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        do_sample=False,
        max_new_tokens=n,
        pad_token_id=2,
        eos_token_id=None,
        **kw,
    )


@pytest.mark.parametrize("family", ["llama", "gpt_neox"])
def test_first_layers_draft_copies_prefix_of_target(family):
    target = make_tiny_model(family, num_layers=3)
    draft = first_layers_draft(target, 1)
    assert draft.config.num_hidden_layers == 1 and target.config.num_hidden_layers == 3
    assert same_prefix_weights(target, draft)
    with torch.no_grad():
        next(draft.parameters()).add_(1.0)  # training the draft leaves the target alone
    assert not same_prefix_weights(target, draft)


def test_first_layers_draft_with_all_layers_equals_target_and_keeps_tied_head():
    target = make_tiny_model("llama", num_layers=2, tie_word_embeddings=True)
    assert target.lm_head.weight is target.model.embed_tokens.weight
    ids = torch.randint(3, 256, (1, 9))
    draft = first_layers_draft(target, 2)
    with torch.no_grad():
        assert torch.allclose(draft(ids).logits, target(ids).logits)
    assert draft.lm_head.weight is draft.model.embed_tokens.weight


def test_first_layers_draft_out_of_range():
    with pytest.raises(ValueError, match="from_target_layers=3 is out of range.*1..2"):
        first_layers_draft(make_tiny_model("llama"), 3)


def test_first_layers_draft_is_assistant_for_assisted_generation():
    target = make_tiny_model("llama", num_layers=3, seed=1)
    draft = first_layers_draft(target, 1)
    ids = torch.randint(3, 256, (1, 7))
    plain = _greedy(target, ids)
    assisted = _greedy(target, ids, assistant_model=draft)
    assert assisted.shape == plain.shape
    assert torch.equal(assisted, plain)


def test_smollm2_first_two_layers_assist_greedy(smollm2_dir):
    from adaspec.data import build_prompt_ids
    from adaspec.modeling import load_model, load_tokenizer

    target = load_model(str(smollm2_dir)).eval()
    tok = load_tokenizer(str(smollm2_dir))
    draft = first_layers_draft(target, 2)
    ids = torch.tensor([build_prompt_ids("Say hello.", tok, chat_template="always")])
    kw = dict(
        attention_mask=torch.ones_like(ids),
        do_sample=False,
        max_new_tokens=8,
        pad_token_id=tok.pad_token_id,
    )
    plain = target.generate(ids, **kw)
    assert torch.equal(target.generate(ids, assistant_model=draft, **kw), plain)
