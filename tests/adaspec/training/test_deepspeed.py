"""DeepSpeed ZeRO-2 runs the AdaSPEC draft stage in one CPU process (in a subprocess, for isolation)."""

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("deepspeed")
ROOT = Path(__file__).resolve().parents[3]

SCRIPT = textwrap.dedent(
    """
    import json, sys, torch
    from transformers import TrainingArguments
    from adaspec.data import DataCollatorForCompletion, make_synthetic_examples, to_hf_dataset, tokenize_examples
    from adaspec.modeling import build_model, tiny_config, train_bpe_tokenizer
    from adaspec.training.trainers import AdaSPECTrainer

    out, ds_config = sys.argv[1], sys.argv[2]
    examples = make_synthetic_examples(16, seed=0)
    tok = train_bpe_tokenizer([e.prompt + e.response for e in examples], vocab_size=300)
    features, _ = tokenize_examples(examples, tok, max_length=96)
    n = len(tok)
    target, ref, draft = (build_model(tiny_config(vocab_size=n), seed=s) for s in (1, 2, 3))
    before = [p.detach().clone() for p in draft.parameters()]
    args = TrainingArguments(out, max_steps=3, per_device_train_batch_size=4, learning_rate=1e-2,
        deepspeed=ds_config, report_to="none", save_strategy="no", logging_steps=1,
        disable_tqdm=True, remove_unused_columns=False)
    trainer = AdaSPECTrainer(model=draft.train(), args=args, train_dataset=to_hf_dataset(features),
        data_collator=DataCollatorForCompletion(tok), processing_class=tok,
        target_model=target, ref_model=ref, k=0.4)
    result = trainer.train()
    model = trainer.accelerator.unwrap_model(trainer.model)
    changed = any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    kept = [h["adaspec/kept_fraction"] for h in trainer.state.log_history if "adaspec/kept_fraction" in h]
    print("RESULT " + json.dumps({"steps": result.global_step, "changed": changed, "kept": kept,
        "zero": trainer.accelerator.state.deepspeed_plugin.zero_stage}))
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_deepspeed_zero2_draft_stage_one_cpu_process(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    env = dict(
        os.environ,
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(_free_port()),
        RANK="0",
        LOCAL_RANK="0",
        WORLD_SIZE="1",
        OMP_NUM_THREADS="1",
    )
    proc = subprocess.run(
        [
            sys.executable,
            str(script),
            str(tmp_path / "out"),
            str(ROOT / "configs/deepspeed/zero2.json"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    result = json.loads(lines[-1][len("RESULT ") :])
    assert result["zero"] == 2
    assert result["steps"] == 3 and result["changed"]
    assert result["kept"] and all(0.3 < k <= 0.5 for k in result["kept"])
