import json

import pytest
import torch
from helpers import make_tiny_model
from safetensors.torch import load_file, save_file

from adaspec_eagle.checkpoint import load_head, save_head
from adaspec_eagle.export import ExportError, export_head, load_export
from adaspec_eagle.heads import Eagle1Head, Eagle3Head


def _heads(family):
    target = make_tiny_model(family, vocab_size=64, num_layers=4)
    torch.manual_seed(0)
    h3 = Eagle3Head(target.config, aux_layers=[1, 2, 3], draft_vocab_size=40)
    h3.set_draft_vocab(torch.arange(24, 64))
    return [Eagle1Head(target.config), h3]


def _same(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]), k


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_export_roundtrips_every_tensor(family, tmp_path):
    for i, head in enumerate(_heads(family)):
        out = export_head(head, tmp_path / str(i))
        _same(head, load_export(out))
        cfg = json.loads((out / "config.json").read_text())
        assert cfg["num_hidden_layers"] == 1
        if isinstance(head, Eagle3Head):
            assert cfg["architectures"] == ["LlamaForCausalLMEagle3"]
            assert cfg["draft_vocab_size"] == 40
            keys = set(load_file(str(out / "model.safetensors")))
            assert {"d2t", "t2d", "fc.weight", "norm.weight", "lm_head.weight"} <= keys
            assert "midlayer.self_attn.q_proj.weight" in keys
        else:
            assert "layers.0.self_attn.q_proj.weight" in load_file(str(out / "model.safetensors"))


def test_export_validator_rejects_missing_and_unexpected_keys(tmp_path):
    head = _heads("llama")[1]
    out = export_head(head, tmp_path / "h")
    path = out / "model.safetensors"
    state = load_file(str(path))
    missing = {k: v for k, v in state.items() if k != "midlayer.hidden_norm.weight"}
    save_file(missing, str(path))
    with pytest.raises(ExportError, match=r"missing keys \['midlayer.hidden_norm.weight'\]"):
        load_export(out)
    extra = dict(state, **{"midlayer.extra.weight": torch.zeros(2)})
    save_file(extra, str(path))
    with pytest.raises(ExportError, match=r"unexpected keys \['midlayer.extra.weight'\]"):
        load_export(out)
    bad = dict(state, **{"norm.weight": torch.zeros(3)})
    save_file(bad, str(path))
    with pytest.raises(ExportError, match="shape mismatches"):
        load_export(out)


def test_export_refuses_gpt_neox(tmp_path):
    with pytest.raises(ExportError, match="gpt_neox"):
        export_head(_heads("gpt_neox")[0], tmp_path)


def test_native_checkpoint_roundtrip(family, tmp_path):
    for i, head in enumerate(_heads(family)):
        _same(head, load_head(save_head(head, tmp_path / str(i))))
