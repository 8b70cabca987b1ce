"""The independent EAGLE-3 serving re-implementation against the project's head (issue 12, item 7)."""

import json

import pytest
import torch
from helpers import make_tiny_model

from adaspec.decoding import SpeculativeDecoder
from adaspec_eagle.cli import main
from adaspec_eagle.drafter import EagleDrafter
from adaspec_eagle.export import export_head
from adaspec_eagle.heads import Eagle3Head
from adaspec_eagle.serving_check import check_export, serving_head
from adaspec_eagle.serving_ref import ServingEagle3

DRAFT_IDS = torch.arange(8, 64)


def _fit(head, target, steps=60, seed=0):
    """A few soft-CE steps on the target's own features, so the head drafts something right."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam([p for p in head.parameters() if p.requires_grad], lr=3e-3)
    head.attach(target)
    for _ in range(steps):
        ids = torch.randint(3, 64, (4, 20), generator=g)
        with torch.no_grad():
            out = target(ids, output_hidden_states=True)
            aux = torch.cat([out.hidden_states[i] for i in head.aux_layers], -1)[:, :-1]
            p = torch.softmax(head.target_to_draft_logits(out.logits[:, 1:]), -1)
        logq = torch.log_softmax(head.logits(head.step(head.fuse(aux), input_ids=ids[:, 1:])), -1)
        loss = -(p * logq).sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return head.eval()


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def exported(request, tmp_path_factory):
    torch.manual_seed(0)
    target = make_tiny_model(request.param, vocab_size=64, num_layers=4).eval()
    torch.manual_seed(1)
    head = Eagle3Head(target.config, aux_layers=[1, 2, 3], draft_vocab_size=DRAFT_IDS.numel())
    head.set_draft_vocab(DRAFT_IDS)
    _fit(head, target)
    out = export_head(head, tmp_path_factory.mktemp(request.param) / "export")
    return target, head, out


@pytest.mark.parametrize("engine", ["sglang", "vllm"])
def test_serving_ref_logits_match_project_head(exported, engine):
    target, head, out = exported
    ref = ServingEagle3.load(out, target.get_input_embeddings().weight, engine=engine)
    assert ref.problems == [] and ref.aux_layer_ids == [1, 2, 3]
    ids = torch.randint(3, 64, (2, 12), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        hs = target(ids, output_hidden_states=True).hidden_states
        mine = head.draft_logits_to_target(
            head.logits(
                head.step(head.fuse(torch.cat([hs[i] for i in (1, 2, 3)], -1)), input_ids=ids)
            )
        )
        aux = torch.cat([hs[i] for i in ref.aux_layer_ids], -1)
        theirs = ref.target_logits(ref.logits(ref.step(ref.fuse(aux), input_ids=ids)))
    finite = torch.isfinite(mine)
    assert torch.equal(finite, torch.isfinite(theirs)) and finite.sum() == 2 * 12 * 56
    assert (mine[finite] - theirs[finite]).abs().max() < 1e-5


def test_serving_ref_tau_in_tree_decoder_equals_project_head(exported):
    target, head, out = exported
    report = check_export(out, target, head=head, max_new_tokens=24, num_prompts=3)
    assert report.ok, report.to_dict()
    assert report.accepted_project == report.accepted_serving
    assert sum(report.accepted_project) > 0  # the check compares heads that do draft correctly
    assert report.tau_project == report.tau_serving > 1.0


def test_serving_head_drives_the_project_drafter(exported):
    target, head, out = exported
    prompt = torch.randint(3, 64, (1, 6), generator=torch.Generator().manual_seed(7))
    runs = []
    for h in (head, serving_head(out, target)):
        dec = SpeculativeDecoder(target, EagleDrafter(h, target), tree="static:small_10")
        runs.append(dec.generate(prompt, max_new_tokens=12))
    assert torch.equal(runs[0].new_tokens, runs[1].new_tokens)
    assert [s.accepted for s in runs[0].steps] == [s.accepted for s in runs[1].steps]


def test_serving_check_catches_what_the_engine_drops(tmp_path):
    """Today's Qwen2 export: q/k/v biases and attention_bias: true. SGLang drops the biases and
    builds an o_proj bias nothing fills; the check must fail where training would look fine."""
    from safetensors.torch import save_file

    from adaspec_eagle.export import _state

    target = make_tiny_model("qwen2", vocab_size=64, num_layers=4).eval()
    torch.manual_seed(2)
    head = Eagle3Head(target.config, aux_layers=[1, 2, 3], attention_bias=True)
    with torch.no_grad():
        head.midlayer.self_attn.q_proj.bias.normal_(0, 1.0)
    clean = Eagle3Head(target.config, aux_layers=[1, 2, 3])
    out = export_head(clean, tmp_path / "h")
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps(dict(config, attention_bias=True)))
    save_file(_state(head, None), str(out / "model.safetensors"))
    report = check_export(out, target, head=head, max_new_tokens=8, num_prompts=1)
    assert not report.ok
    assert any("q_proj.bias" in p for p in report.problems)
    assert any("o.bias" in p for p in report.problems)
    assert report.max_abs_logit_diff > 1e-3


def test_cli_check_export_on_a_saved_target(exported, tmp_path, capsys):
    target, head, out = exported
    target.save_pretrained(tmp_path / "target")
    code = main(["check-export", str(out), "--target", str(tmp_path / "target"),
                 "--max-new-tokens", "8", "--prompts", "1"])  # fmt: skip
    out = capsys.readouterr().out
    report = json.loads(out[out.index("{\n") :])  # after any library banner
    assert code == 0 and report["ok"] is True and report["engine"] == "sglang"


def test_vllm_ignores_sglang_only_aux_layers(exported, tmp_path):
    """An export with only eagle_config's ids (the old layout): vLLM falls back to its default."""
    target, _, out = exported
    config = json.loads((out / "config.json").read_text())
    del config["eagle_aux_hidden_state_layer_ids"]
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "config.json").write_text(json.dumps(config))
    (tmp_path / "old" / "model.safetensors").write_bytes((out / "model.safetensors").read_bytes())
    ref = ServingEagle3.load(tmp_path / "old", target.get_input_embeddings().weight, "vllm")
    assert ref.aux_layer_ids == [2, 2, 1] and any("default" in p for p in ref.problems)
    assert ServingEagle3.load(tmp_path / "old", target.get_input_embeddings().weight).problems == []
