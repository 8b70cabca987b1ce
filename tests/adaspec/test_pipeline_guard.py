"""Reruns that would corrupt an output folder: config drift, tokenizer provenance, two runs at once."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from helpers import TINY_PIPELINE as TINY

import adaspec.pipeline as pipeline_module
from adaspec.cli import main
from adaspec.config import ConfigError
from adaspec.modeling import load_tokenizer, train_bpe_tokenizer
from adaspec.pipeline import Pipeline, run_pipeline
from adaspec.pipeline_config import PipelineConfig
from adaspec.pipeline_guard import OutputDirInUse, OutputLock, stage_settings
from adaspec.tokenizer_io import tokenizer_fingerprint
from adaspec.training.checkpoints import latest_complete_checkpoint

ROOT = Path(__file__).resolve().parents[2]


class Killed(Exception):
    pass


def _data(tmp_path, **changes):
    data = yaml.safe_load(yaml.safe_dump(TINY))
    data["output_dir"] = str(tmp_path / "run")
    data["evaluation"] = {"enabled": False}
    data["draft"]["budget"] = {"modes": ["equal_steps"]}
    for key, value in changes.items():
        section = data
        *parents, leaf = key.split(".")
        for name in parents:
            section = section.setdefault(name, {})
        section[leaf] = value
    return data


def _config(tmp_path, **changes):
    return PipelineConfig.from_dict(_data(tmp_path, **changes))


def _saved_k(folder):
    return yaml.safe_load((folder / "adaspec_config.yaml").read_text())["draft"]["loss"]["k"]


def test_rerun_with_other_k_refuses_the_finished_draft_and_keeps_the_config(tmp_path):
    run_pipeline(_config(tmp_path))
    out = tmp_path / "run"
    with pytest.raises(ConfigError) as err:
        run_pipeline(_config(tmp_path, **{"draft.loss.k": 0.2}))
    message = str(err.value)
    assert "adaspec-equal_steps" in message and "draft.loss.k: 0.5 -> 0.2" in message
    assert "--retrain-changed" in message and "new output_dir" in message
    assert "target (" not in message and "reference (" not in message  # k does not change them
    assert _saved_k(out) == 0.5 and _saved_k(out / "adaspec-equal_steps") == 0.5


def test_rerun_with_neutral_changes_skips_every_stage(tmp_path):
    run_pipeline(_config(tmp_path))
    again = run_pipeline(
        _config(
            tmp_path,
            **{
                "reference.optim.logging_steps": 3,
                "reference.optim.save_total_limit": 1,
                "teacher_cache": True,
                "data.num_synthetic_eval": 5,
            },
        )
    )
    assert again["stage_seconds"] == {}


def test_killed_draft_resumed_with_other_k_is_refused(tmp_path, monkeypatch):
    from transformers import TrainerCallback

    class KillAt3(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 3:
                raise Killed

    real = pipeline_module.run_stage

    def killing(kind, *args, **kwargs):
        if kind == "draft":
            kwargs["callbacks"] = [KillAt3()]
        return real(kind, *args, **kwargs)

    optim = dict(TINY["reference"]["optim"], per_device_batch_size=8, save_steps=2)
    monkeypatch.setattr(pipeline_module, "run_stage", killing)
    with pytest.raises(Killed):
        run_pipeline(_config(tmp_path, **{"reference.optim": optim}))
    monkeypatch.setattr(pipeline_module, "run_stage", real)
    ckpts = tmp_path / "run" / "adaspec-equal_steps-checkpoints"
    assert latest_complete_checkpoint(ckpts) == str(ckpts / "checkpoint-2")
    with pytest.raises(ConfigError, match=r"checkpoint-2\):\n    draft.loss.k: 0.5 -> 0.2"):
        run_pipeline(_config(tmp_path, **{"reference.optim": optim, "draft.loss.k": 0.2}))


def test_retrain_changed_retrains_only_the_changed_stage(tmp_path):
    run_pipeline(_config(tmp_path))
    out = tmp_path / "run"
    target_mtime = (out / "target" / "model.safetensors").stat().st_mtime_ns
    result = run_pipeline(_config(tmp_path, **{"draft.loss.k": 0.2}), retrain_changed=True)
    assert set(result["stage_seconds"]) == {"adaspec-equal_steps"}
    assert _saved_k(out / "adaspec-equal_steps") == 0.2 and _saved_k(out) == 0.2
    assert (out / "target" / "model.safetensors").stat().st_mtime_ns == target_mtime


def test_cli_rerun_with_other_k_exits_2_naming_the_change(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(_data(tmp_path)))
    assert main(["train", "target", str(path)]) == 0
    assert main(["train", "target", str(path), "--set", "target.optim.learning_rate=0.01"]) == 2
    assert "target.optim.learning_rate: 0.003 -> 0.01" in capsys.readouterr().err


def test_stage_settings_ignore_neutral_keys_and_follow_dependencies(tmp_path):
    base = _config(tmp_path)
    neutral = _config(tmp_path, **{"target.optim.save_steps": 7, "evaluation.gamma": 2})
    assert stage_settings(base, "target") == stage_settings(neutral, "target")
    lr = _config(tmp_path, **{"target.optim.learning_rate": 0.5})
    for stage in ("target", "reference", "adaspec-equal_steps"):
        assert stage_settings(base, stage) != stage_settings(lr, stage), stage
    assert stage_settings(base, "draft_init") == stage_settings(lr, "draft_init")


def test_stage_settings_cover_draft_init_and_sweep_recipes(tmp_path):
    base = _config(tmp_path)
    frozen = _config(tmp_path, **{"draft_init.freeze_embeddings": True})
    for stage in ("draft_init", "reference", "sweep-late_phase"):
        assert stage_settings(base, stage) != stage_settings(frozen, stage), stage
    late = _config(tmp_path, **{"sweep.late_phase_fraction": 0.25})
    assert stage_settings(base, "sweep-late_phase") != stage_settings(late, "sweep-late_phase")
    assert stage_settings(base, "reference") == stage_settings(late, "reference")
    seeds = _config(tmp_path, **{"sweep.seeds": [5], "teacher_cache_kind": "hidden"})
    assert stage_settings(base, "sweep-late_phase") == stage_settings(seeds, "sweep-late_phase")


# --- tokenizer provenance -------------------------------------------------------------------------


def _other_tokenizer(size=300, words=("colour", "sea", "shades")):
    a, b, c = words
    texts = [f"{a} {i} of the {b} is {i * 7 % 13} {c} {i * i}" for i in range(400)]
    return train_bpe_tokenizer(texts, vocab_size=size)


def _trained_target(tmp_path, tokenizer):
    from helpers import make_tiny_model

    from adaspec.training.checkpoints import save_final

    folder = tmp_path / "pretrained-target"
    save_final(make_tiny_model(vocab_size=len(tokenizer)), folder, tokenizer)
    return folder


def test_loaded_target_with_other_same_size_tokenizer_is_refused(tmp_path):
    theirs = _other_tokenizer()
    target = _trained_target(tmp_path, theirs)
    ours = tmp_path / "ours"
    _other_tokenizer(words=("river", "moon", "stones")).save_pretrained(ours)
    assert len(load_tokenizer(str(ours))) == len(theirs)
    config = _config(
        tmp_path,
        **{"tokenizer.name_or_path": str(ours), "target.model": {"name_or_path": str(target)}},
    )
    with pytest.raises(ValueError, match="tokenizer mismatch.*pretrained-target"):
        Pipeline(config).target()


def test_loaded_target_without_configured_tokenizer_brings_its_own(tmp_path):
    theirs = _other_tokenizer()
    target = _trained_target(tmp_path, theirs)
    pipe = Pipeline(_config(tmp_path, **{"target.model": {"name_or_path": str(target)}}))
    assert tokenizer_fingerprint(pipe.tokenizer) == tokenizer_fingerprint(theirs)


def test_trained_stage_with_other_tokenizer_is_refused(tmp_path):
    run_pipeline(_config(tmp_path), stages=("target",))
    folder = tmp_path / "run" / "tokenizer"
    _other_tokenizer(len(load_tokenizer(str(folder)))).save_pretrained(folder)
    with pytest.raises(ValueError, match=r"tokenizer mismatch: \{'target'"):
        run_pipeline(_config(tmp_path), stages=("target",))


def test_truncated_tokenizer_is_rebuilt_and_checked(tmp_path):
    first = Pipeline(_config(tmp_path))
    want = tokenizer_fingerprint(first.tokenizer)
    first.close()
    path = tmp_path / "run" / "tokenizer" / "tokenizer.json"
    path.write_bytes(path.read_bytes()[:1000])
    again = Pipeline(_config(tmp_path))
    assert tokenizer_fingerprint(again.tokenizer) == want
    assert tokenizer_fingerprint(load_tokenizer(str(path.parent))) == want


def test_load_tokenizer_names_a_truncated_file(tmp_path):
    _other_tokenizer().save_pretrained(tmp_path)
    path = tmp_path / "tokenizer.json"
    path.write_bytes(path.read_bytes()[:500])
    for source in (str(path), str(tmp_path)):
        with pytest.raises(ValueError, match=f"cannot read the tokenizer at {source}.*truncated"):
            load_tokenizer(source)


def test_tokenizer_save_cut_short_leaves_no_truncated_file(tmp_path, monkeypatch):
    from transformers import PreTrainedTokenizerFast

    def disk_full(self, directory, *args, **kwargs):
        Path(directory, "tokenizer.json").write_text('{"version": "1.0", "trunc')
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(PreTrainedTokenizerFast, "save_pretrained", disk_full)
    with pytest.raises(OSError, match="No space"):
        Pipeline(_config(tmp_path))
    assert not (tmp_path / "run" / "tokenizer" / "tokenizer.json").exists()
    monkeypatch.undo()
    pipe = Pipeline(_config(tmp_path))  # the rerun is not blocked
    assert (tmp_path / "run" / "tokenizer" / "tokenizer.json").exists() and len(pipe.tokenizer)


# --- one run per output folder --------------------------------------------------------------------


def test_output_lock_refuses_a_second_holder(tmp_path):
    first = OutputLock(tmp_path)
    with pytest.raises(OutputDirInUse, match=f"{tmp_path} is in use .*pid {os.getpid()}"):
        OutputLock(tmp_path)
    first.close()
    OutputLock(tmp_path).close()


def test_second_run_on_a_locked_folder_fails_at_once_and_a_killed_holder_does_not_block(tmp_path):
    out = tmp_path / "run"
    code = (
        "import sys, time; from adaspec.pipeline_guard import OutputLock; "
        f"lock = OutputLock({str(out)!r}); print('locked', flush=True); time.sleep(60)"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, env=env)
    try:
        assert holder.stdout.readline().strip() == b"locked"
        start = time.monotonic()
        with pytest.raises(OutputDirInUse, match=rf"{out} is in use .*\(pid {holder.pid}\)"):
            Pipeline(_config(tmp_path))
        assert time.monotonic() - start < 5
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    Pipeline(_config(tmp_path)).close()  # the lock died with its holder
