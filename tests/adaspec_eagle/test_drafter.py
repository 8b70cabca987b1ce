import pytest
import torch
from helpers import make_tiny_model

from adaspec.decoding import DynamicTree, SpeculativeDecoder, chain, tree_from_spec
from adaspec_eagle.drafter import EagleDrafter
from adaspec_eagle.heads import Eagle1Head, Eagle3Head


def _reference(target, prompt, n):
    target.generation_config.eos_token_id = None  # the decoder below runs without EOS too
    out = target.generate(prompt, max_new_tokens=n, do_sample=False, pad_token_id=2)
    return out[:, prompt.shape[1] :]


CASES = [(k, p) for k in ("eagle1", "eagle3") for p in ("static", "dynamic")] + [
    ("eagle1", "chain")
]


def _head(target, kind):
    torch.manual_seed(1)
    if kind == "eagle1":
        return Eagle1Head(target.config)
    return Eagle3Head(target.config, draft_vocab_size=48)


@pytest.mark.parametrize(("kind", "policy"), CASES)
def test_eagle_drafter_greedy_tree_decoding_is_lossless(family, kind, policy):
    target = make_tiny_model(family, vocab_size=64, num_layers=4)
    tree = {
        "chain": chain(3),
        "static": tree_from_spec("static:small_10"),
        "dynamic": DynamicTree(depth=3, top_k=3, total_tokens=8),
    }[policy]
    prompt = torch.randint(3, 64, (1, 6), generator=torch.Generator().manual_seed(0))
    dec = SpeculativeDecoder(target, EagleDrafter(_head(target, kind), target), tree=tree)
    res = dec.generate(prompt, max_new_tokens=10)
    assert torch.equal(res.new_tokens, _reference(target, prompt, 10))


@pytest.mark.parametrize("kind", ["eagle1", "eagle3"])
def test_eagle_drafter_head_cache_matches_fresh_pass(kind):
    """After several commits the cached head state equals one fresh pass over the sequence."""
    target = make_tiny_model("llama", vocab_size=64, num_layers=4)
    head = _head(target, kind)
    drafter = EagleDrafter(head, target)
    prompt = torch.randint(3, 64, (1, 5), generator=torch.Generator().manual_seed(3))
    res = SpeculativeDecoder(target, drafter, tree="static:small_10").generate(
        prompt, max_new_tokens=9
    )
    c = drafter._committed
    seq = res.sequences[:, :c]
    assert drafter._entries == c - 1 and len(res.steps) > 1
    with torch.no_grad():
        hs = target(seq[:, :-1], output_hidden_states=True).hidden_states
        feats = torch.cat([hs[i] for i in drafter.target_layers], -1)
        if kind == "eagle1":
            logits = head.logits(head(feats, input_ids=seq[:, 1:]))
        else:
            logits = head.draft_logits_to_target(
                head.logits(head.step(head.fuse(feats), input_ids=seq[:, 1:]))
            )
    torch.testing.assert_close(drafter._root_logits, logits[0, -1].float(), atol=1e-5, rtol=1e-5)


def test_eagle_drafter_one_token_prompt_and_head_cache_in_step():
    target = make_tiny_model("llama", vocab_size=64, num_layers=4)
    drafter = EagleDrafter(Eagle1Head(target.config), target)
    prompt = torch.tensor([[5]])
    res = SpeculativeDecoder(target, drafter, tree=chain(2)).generate(prompt, max_new_tokens=7)
    assert torch.equal(res.new_tokens, _reference(target, prompt, 7))
    # after the last commit the head holds one entry per committed token but the root
    assert drafter._entries == drafter._committed - 1 or res.stopped is not None
