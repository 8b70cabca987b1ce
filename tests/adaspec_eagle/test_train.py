import json

import pytest
import torch
import yaml
from helpers import make_tiny_model

from adaspec.config import ConfigError
from adaspec.losses import SelectiveLossSettings
from adaspec_eagle.checkpoint import load_head
from adaspec_eagle.features import capture_features
from adaspec_eagle.heads import Eagle1Head, Eagle3Head
from adaspec_eagle.masks import collate
from adaspec_eagle.train import EagleTrainConfig, run_train
from adaspec_eagle.trainer import LossSettings, head_loss, head_pass


def _batch(n=6, length=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    ex = [{"input_ids": torch.randint(3, 64, (length,), generator=g).tolist(),
           "attention_mask": [1] * length, "loss_mask": [0] * 3 + [1] * (length - 3)}
          for _ in range(n)]  # fmt: skip
    return collate(ex)


@pytest.mark.parametrize("kind", ["eagle1", "eagle3"])
def test_head_training_lowers_loss(family, kind):
    target = make_tiny_model(family, vocab_size=64, num_layers=4)
    head = Eagle1Head(target.config) if kind == "eagle1" else Eagle3Head(target.config)
    head.attach(target)
    settings = LossSettings(ttt_steps=2)
    b = _batch()
    f = capture_features(target, b["input_ids"], b["attention_mask"], b["loss_mask"],
                         getattr(head, "aux_layers", None))  # fmt: skip
    opt = torch.optim.AdamW(head.parameters(), lr=3e-3)

    def loss():
        out = head_pass(head, settings, f.hidden, f.input_ids, f.attention_mask, f.loss_mask, f.aux)
        return head_loss(head, out, f, settings).loss

    first = float(loss().detach())
    for _ in range(15):
        opt.zero_grad()
        value = loss()
        value.backward()
        opt.step()
    assert float(loss().detach()) < 0.97 * first  # soft CE is bounded below by the target entropy


def test_adaspec_loss_uses_reference_and_keeps_fraction():
    target = make_tiny_model("llama", vocab_size=64, num_layers=4)
    torch.manual_seed(0)
    head, ref = Eagle3Head(target.config).attach(target), Eagle3Head(target.config).attach(target)
    b = _batch()
    f = capture_features(target, b["input_ids"], b["attention_mask"], b["loss_mask"],
                         head.aux_layers)  # fmt: skip
    s = LossSettings(selective=SelectiveLossSettings(k=0.4), ttt_steps=2)
    out = head_pass(head, s, f.hidden, f.input_ids, f.attention_mask, f.loss_mask, f.aux)
    with torch.no_grad():
        ref_out = head_pass(ref, s, f.hidden, f.input_ids, f.attention_mask, f.loss_mask, f.aux)
    res = head_loss(head, out, f, s, ref_out, ref)
    plain = head_loss(
        head,
        out,
        f,
        LossSettings(selective=SelectiveLossSettings(k=1.0), ttt_steps=2),
        ref_out,
        ref,
    )
    for kept, all_kept in zip(res.kept, plain.kept):
        frac = float(kept.sum()) / float(all_kept.sum())
        # The 0.6-quantile threshold keeps ceil-ish 40% of the valid tokens (ties kept too).
        assert frac == pytest.approx(0.4, abs=1.5 / float(all_kept.sum()))
        assert not (kept & ~all_kept).any()
    assert not torch.isclose(res.loss, plain.loss)


def test_eagle_config_rejects_bad_values():
    with pytest.raises(ConfigError, match="k must be"):
        EagleTrainConfig.from_dict({"target": "x", "loss": {"k": 0.0}})
    with pytest.raises(ConfigError, match="reference"):
        EagleTrainConfig(target="x", runs=["adaspec"])
    with pytest.raises(ConfigError, match="optim.per_device_batch_size must be in"):
        EagleTrainConfig.from_dict({"target": "x", "optim": {"per_device_batch_size": 0}})
    with pytest.raises(ConfigError, match="loss.selection must be 'delta'"):
        EagleTrainConfig.from_dict({"target": "x", "loss": {"selection": "random"}})


def test_eagle_config_names_where_an_old_flat_key_moved():
    for key, new in [
        ("batch_size", "optim.per_device_batch_size"),
        ("lr", "optim.learning_rate"),
        ("grad_accum", "optim.gradient_accumulation_steps"),
        ("k", "loss.k"),
    ]:
        with pytest.raises(ConfigError, match=f"'{key}' moved to '{new}'"):
            EagleTrainConfig.from_dict({"target": "x", key: 1})  # fmt: skip


def test_eagle_config_shares_the_pipeline_vocabulary_with_eagle_defaults(tmp_path):
    from adaspec.training.config import OptimConfig
    from adaspec.training.stages import training_arguments

    cfg = EagleTrainConfig.from_dict({"target": "x", "optim": {"learning_rate": 1e-3}})
    assert isinstance(cfg.optim, OptimConfig) and isinstance(cfg.loss, SelectiveLossSettings)
    assert (cfg.optim.learning_rate, cfg.optim.per_device_batch_size, cfg.optim.epochs) == (
        1e-3, 8, 1.0)  # fmt: skip
    args = training_arguments(cfg.optim, tmp_path, run_name="adaspec")
    assert (args.learning_rate, args.per_device_train_batch_size, args.max_grad_norm) == (
        1e-3, 8, 0.5)  # fmt: skip
    assert (args.weight_decay, str(args.lr_scheduler_type.value)) == (0.0, "linear")
    assert cfg.loss.plain_kd().k == 1.0 and cfg.loss.k == 0.4


def test_run_train_reference_then_adaspec(tmp_path, tiny_tokenizer):
    target = make_tiny_model("llama", vocab_size=256, num_layers=4)
    target.save_pretrained(tmp_path / "target")
    tiny_tokenizer.save_pretrained(tmp_path / "target")
    cfg = EagleTrainConfig.from_dict({
        "target": str(tmp_path / "target"), "output_dir": str(tmp_path / "out"),
        "head": "eagle3", "draft_vocab_size": 128, "ttt_steps": 2,
        "optim": {"max_steps": 3, "per_device_batch_size": 4, "learning_rate": 1e-3,
                  "logging_steps": 1, "save_steps": 2},
        "data": {"task": "synthetic", "num_synthetic_train": 16, "max_length": 160},
    })  # fmt: skip
    res = run_train(cfg)
    assert set(res.heads) == {"reference", "adaspec"}
    ref, ada = load_head(res.heads["reference"]), load_head(res.heads["adaspec"])
    assert torch.equal(ref.t2d, ada.t2d) and int(ref.t2d.sum()) == 128
    saved = yaml.safe_load((tmp_path / "out" / "adaspec_config.yaml").read_text())
    assert saved["loss"]["k"] == 0.4 and saved["head"] == "eagle3"
    record = json.loads((tmp_path / "out" / "training_data.json").read_text())
    assert record == {"training_data": {"responses": "gold"}, "chat_template": False}
    cfg_json = json.loads((tmp_path / "out" / "adaspec" / "final" / "config.json").read_text())
    assert cfg_json["adaspec_eagle"]["kind"] == "eagle3"
    assert (tmp_path / "out" / "adaspec" / "checkpoint-2" / "model.safetensors").is_file()
    # resumable (a rerun with more steps continues from checkpoint-2), here on dumped features
    cfg2 = cfg.replace(optim=cfg.optim.replace(max_steps=4), runs=["adaspec"],
                       reference_head=res.heads["reference"], features="offline")  # fmt: skip
    res2 = run_train(cfg2)
    assert (tmp_path / "out" / "features" / "index.json").is_file()
    assert (tmp_path / "out" / "adaspec" / "checkpoint-4" / "model.safetensors").is_file()
    assert res2.metrics["adaspec"]["last_step"] == 4
