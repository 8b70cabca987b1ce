import json

import yaml
from helpers import make_tiny_model

from adaspec_eagle.checkpoint import save_head
from adaspec_eagle.cli import main
from adaspec_eagle.export import load_export
from adaspec_eagle.heads import build_head


def test_cli_export_eagle3_writes_serving_layout(tmp_path, capsys):
    target = make_tiny_model("llama", seed=0, num_layers=4)
    head = build_head(target.config, "eagle3", aux_layers=[1, 2, 3])
    save_head(head, tmp_path / "head")
    assert main(["export", str(tmp_path / "head"), str(tmp_path / "out")]) == 0
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLMEagle3"]
    reloaded = load_export(tmp_path / "out").state_dict()
    original = head.state_dict()
    assert set(reloaded) == set(original)
    for name, tensor in original.items():
        assert reloaded[name].equal(tensor), name
    assert "exported" in capsys.readouterr().out


def test_cli_train_rejects_unknown_key(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"target": "x", "kk": 0.4}))
    assert main(["train", str(path)]) == 2
    assert "unknown config key 'kk'" in capsys.readouterr().err


def test_cli_export_missing_head_is_a_clear_error(tmp_path, capsys):
    assert main(["export", str(tmp_path / "absent"), str(tmp_path / "out")]) == 2
    assert "absent" in capsys.readouterr().err
