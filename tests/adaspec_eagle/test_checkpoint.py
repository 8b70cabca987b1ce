"""Native head checkpoints (adaspec_eagle.checkpoint): round trip, refusals, old configs."""

import json

import pytest
import torch
from helpers import make_tiny_model
from safetensors.torch import load_file, save_file

from adaspec_eagle.checkpoint import CONFIG_NAME, WEIGHTS_NAME, load_head, save_head
from adaspec_eagle.heads import Eagle1Head, Eagle3Head


def _target(family="llama"):
    return make_tiny_model(family, vocab_size=64, num_layers=4)


def _eagle3(family="llama", **kw):
    torch.manual_seed(0)
    head = Eagle3Head(_target(family).config, aux_layers=[1, 2, 3], draft_vocab_size=40, **kw)
    head.set_draft_vocab(torch.arange(24, 64))
    return head


def _assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert sa[key].dtype == sb[key].dtype and torch.equal(sa[key], sb[key]), key


def test_checkpoint_roundtrip_keeps_weights_settings_and_outputs(tmp_path):
    target = _target()
    torch.manual_seed(1)
    for i, head in enumerate([Eagle1Head(target.config, bias=False), _eagle3()]):
        folder = save_head(head, tmp_path / str(i))
        assert sorted(p.name for p in folder.iterdir()) == [CONFIG_NAME, WEIGHTS_NAME]
        loaded = load_head(folder, target=target)
        assert type(loaded) is type(head) and loaded.head_config() == head.head_config()
        _assert_same_weights(head, loaded)
        head.attach(target)
        ids = torch.randint(0, 64, (1, 5))
        hidden = torch.randn(1, 5, 32)
        torch.testing.assert_close(loaded(hidden, input_ids=ids), head(hidden, input_ids=ids))


def test_checkpoint_state_dict_argument_strips_the_head_prefix(tmp_path):
    head = _eagle3()
    wrapped = {
        f"head.{k}": v + 1 if v.is_floating_point() else v for k, v in head.state_dict().items()
    }
    loaded = load_head(save_head(head, tmp_path / "h", state_dict=wrapped))
    assert torch.equal(loaded.fc.weight, head.fc.weight + 1)
    assert torch.equal(loaded.d2t, head.d2t)


def test_checkpoint_overwrite_leaves_no_temporary_file(tmp_path):
    save_head(_eagle3(), tmp_path / "h")
    save_head(_eagle3(), tmp_path / "h")
    assert not list((tmp_path / "h").glob("*.tmp"))


@pytest.mark.parametrize("missing", [CONFIG_NAME, WEIGHTS_NAME])
def test_checkpoint_load_of_an_incomplete_folder_names_the_missing_file(tmp_path, missing):
    folder = save_head(_eagle3(), tmp_path / "h")
    (folder / missing).unlink()
    with pytest.raises(FileNotFoundError, match=missing):
        load_head(folder)


def test_checkpoint_load_refuses_a_config_that_is_not_a_head(tmp_path):
    folder = save_head(_eagle3(), tmp_path / "h")
    (folder / CONFIG_NAME).write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(ValueError, match="not an adaspec_eagle head config"):
        load_head(folder)


def test_checkpoint_load_refuses_weights_of_another_head(tmp_path):
    folder = save_head(_eagle3(), tmp_path / "h")
    state = load_file(str(folder / WEIGHTS_NAME))
    save_file({k: v for k, v in state.items() if k != "norm.weight"}, str(folder / WEIGHTS_NAME))
    with pytest.raises(RuntimeError, match="norm.weight"):
        load_head(folder)
    state["fc.weight"] = torch.zeros(32, 64)  # a two-layer fusion, not three
    save_file(state, str(folder / WEIGHTS_NAME))
    with pytest.raises(RuntimeError, match="fc.weight"):
        load_head(folder)


def test_checkpoint_load_refuses_truncated_weights(tmp_path):
    folder = save_head(_eagle3(), tmp_path / "h")
    path = folder / WEIGHTS_NAME
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(OSError, match=r"model.safetensors: the safetensors weights are truncated"):
        load_head(folder)


@pytest.mark.parametrize(("family", "biased"), [("llama", False), ("qwen2", True)])
def test_checkpoint_without_attention_bias_infers_it_from_the_weights(tmp_path, family, biased):
    head = _eagle3(family, attention_bias=biased)
    folder = save_head(head, tmp_path / "h")
    cfg = json.loads((folder / CONFIG_NAME).read_text())
    del cfg["adaspec_eagle"]["attention_bias"]  # written before the setting existed
    (folder / CONFIG_NAME).write_text(json.dumps(cfg))
    loaded = load_head(folder)
    assert loaded.attention_bias is biased
    assert (loaded.midlayer.self_attn.q_proj.bias is not None) is biased
    _assert_same_weights(head, loaded)
