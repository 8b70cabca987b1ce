"""Exports checked against what SGLang, vLLM and EAGLE's EaModel build from them (issue 12)."""

import json

import pytest
import torch
from helpers import make_tiny_model
from safetensors.torch import load_file, save_file

from adaspec_eagle.checkpoint import load_head, save_head
from adaspec_eagle.cli import main
from adaspec_eagle.export import ExportError, export_head, load_export, validate_state_dict
from adaspec_eagle.heads import Eagle1Head, Eagle3Head


def _eagle3(family="llama", layers=4, aux=(1, 2, 3), **kw):
    target = make_tiny_model(family, vocab_size=64, num_layers=layers)
    torch.manual_seed(0)
    head = Eagle3Head(
        target.config, aux_layers=list(aux) if aux else None, draft_vocab_size=40, **kw
    )
    head.set_draft_vocab(torch.arange(24, 64))
    return head


def _econfig_accepts(config: dict) -> None:
    """SafeAILab/EAGLE eagle/model/configs.py _rope_scaling_validation and cnets1._init_rope,
    written out independently: None, or exactly {type: linear|dynamic, factor: float > 1}."""
    rs = config.get("rope_scaling")
    if rs is None:
        assert "rope_theta" in config  # cnets1 builds LlamaRotaryEmbedding(base=rope_theta)
        return
    assert isinstance(rs, dict) and len(rs) == 2, rs
    assert rs.get("type") in ("linear", "dynamic"), rs
    assert isinstance(rs.get("factor"), float) and rs["factor"] > 1.0, rs


# ----------------------------------------------------------------------------- item 1
@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_eagle1_export_rope_config_is_what_econfig_accepts(family, tmp_path):
    target = make_tiny_model(family, vocab_size=64, num_layers=2)
    out = export_head(Eagle1Head(target.config), tmp_path / "h")
    config = json.loads((out / "config.json").read_text())
    _econfig_accepts(config)
    assert "rope_parameters" not in config
    assert config["rope_theta"] == 10000.0


def test_eagle1_export_converts_linear_and_refuses_llama3_rope(tmp_path):
    linear = make_tiny_model("llama", vocab_size=64, num_layers=2)
    linear.config.rope_parameters = {"rope_type": "linear", "factor": 2, "rope_theta": 5e5}
    config = json.loads(
        (export_head(Eagle1Head(linear.config), tmp_path / "a") / "config.json").read_text()
    )
    _econfig_accepts(config)
    assert config["rope_scaling"] == {"type": "linear", "factor": 2.0}
    assert config["rope_theta"] == 5e5
    llama3 = make_tiny_model("llama", vocab_size=64, num_layers=2)
    llama3.config.rope_parameters = {
        "rope_type": "llama3", "factor": 8.0, "rope_theta": 5e5, "low_freq_factor": 1.0,
        "high_freq_factor": 4.0, "original_max_position_embeddings": 8192,
    }  # fmt: skip
    with pytest.raises(ExportError, match="llama3"):
        export_head(Eagle1Head(llama3.config), tmp_path / "b")


# ----------------------------------------------------------------------------- item 2
def test_eagle3_qwen2_serving_head_is_bias_free(tmp_path):
    head = _eagle3("qwen2")
    assert head.midlayer.self_attn.q_proj.bias is None
    out = export_head(head, tmp_path / "h")
    config = json.loads((out / "config.json").read_text())
    assert config["attention_bias"] is False and "bias" not in config
    assert not [k for k in load_file(str(out / "model.safetensors")) if k.endswith(".bias")]


def test_eagle3_export_refuses_attention_bias(tmp_path):
    head = _eagle3("qwen2", attention_bias=True)
    assert head.midlayer.self_attn.q_proj.bias is not None
    with pytest.raises(ExportError, match="bias"):
        export_head(head, tmp_path / "h")


def test_eagle3_validator_checks_what_the_engine_builds(tmp_path):
    out = export_head(_eagle3(), tmp_path / "h")
    config = json.loads((out / "config.json").read_text())
    state = load_file(str(out / "model.safetensors"))
    validate_state_dict(state, config, "eagle3")
    with pytest.raises(ExportError, match="o_proj"):  # engines build an o_proj bias no tensor fills
        validate_state_dict(state, dict(config, attention_bias=True), "eagle3")
    with pytest.raises(ExportError, match="fc.bias"):  # SGLang: fc bias=config.bias
        validate_state_dict(state, dict(config, bias=True), "eagle3")
    with pytest.raises(ExportError, match="tie_word_embeddings"):  # SGLang: lm_head = embed
        validate_state_dict(state, dict(config, tie_word_embeddings=True), "eagle3")


def test_checkpoint_without_attention_bias_setting_still_loads(tmp_path):
    head = _eagle3("qwen2", attention_bias=True)
    path = save_head(head, tmp_path / "h")
    cfg = json.loads((path / "config.json").read_text())
    del cfg["adaspec_eagle"]["attention_bias"]  # checkpoints written before the setting existed
    (path / "config.json").write_text(json.dumps(cfg))
    assert load_head(path).midlayer.self_attn.q_proj.bias is not None


# ----------------------------------------------------------------------------- item 3
def test_eagle3_export_writes_aux_layers_in_each_engines_convention(tmp_path):
    head = _eagle3(layers=6, aux=(1, 3, 5))
    config = json.loads((export_head(head, tmp_path / "h") / "config.json").read_text())
    assert config["eagle_aux_hidden_state_layer_ids"] == [1, 3, 5]  # vLLM: hidden_states index
    assert config["eagle_config"]["eagle_aux_hidden_state_layer_ids"] == [0, 2, 4]  # SGLang: -1
    assert load_export(tmp_path / "h").aux_layers == [1, 3, 5]


@pytest.mark.parametrize(
    ("layers", "aux"), [(4, None), (6, None), (4, (1, 2)), (6, (1, 2, 3, 4)), (6, (3, 1, 4))]
)
def test_eagle3_export_requires_three_distinct_sorted_layers(layers, aux, tmp_path):
    head = _eagle3(layers=layers, aux=aux)
    with pytest.raises(ExportError, match="three"):
        export_head(head, tmp_path / "h")


# ----------------------------------------------------------------------------- item 4
@pytest.mark.parametrize("bad", ["decreasing", "out_of_vocab", "t2d_mismatch"])
def test_eagle3_validator_checks_d2t_values(bad, tmp_path):
    out = export_head(_eagle3(), tmp_path / "h")
    path = out / "model.safetensors"
    state = load_file(str(path))
    d2t, t2d = state["d2t"].clone(), state["t2d"].clone()
    if bad == "decreasing":
        d2t[5] = d2t[4] - 1  # draft 5 maps below draft 4
    elif bad == "out_of_vocab":
        d2t[-1] = 100
    else:
        t2d[24], t2d[0] = False, True
    save_file(dict(state, d2t=d2t, t2d=t2d), str(path))
    with pytest.raises(ExportError, match="d2t"):
        load_export(out)


# ----------------------------------------------------------------------------- issue 14 item 7
def test_cli_export_of_an_exported_folder_reexports_it(tmp_path, capsys):
    head = _eagle3("qwen2")
    export_head(head, tmp_path / "a")
    assert main(["export", str(tmp_path / "a"), str(tmp_path / "b"), "--dtype", "bfloat16"]) == 0
    again = load_file(str(tmp_path / "b" / "model.safetensors"))
    assert again["fc.weight"].dtype == torch.bfloat16
    assert torch.equal(again["fc.weight"], head.fc.weight.detach().to(torch.bfloat16))
    assert torch.equal(again["d2t"], head.d2t)


def test_load_head_of_an_exported_folder_is_a_clear_error(tmp_path):
    export_head(_eagle3(), tmp_path / "a")
    with pytest.raises(ValueError, match="load_export"):
        load_head(tmp_path / "a")
