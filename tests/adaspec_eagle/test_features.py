import json

import pytest
import torch
from helpers import make_tiny_model

from adaspec_eagle.features import OfflineFeatures, capture_features, disk_bytes, dump_features
from adaspec_eagle.masks import chat_loss_mask, collate, tokenize_for_heads


def _examples(n=7):
    g = torch.Generator().manual_seed(0)
    out = []
    for i in range(n):
        length = 4 + i % 3
        ids = torch.randint(3, 64, (length,), generator=g).tolist()
        out.append({"input_ids": ids, "attention_mask": [1] * length,
                    "loss_mask": [0, 0] + [1] * (length - 2)})  # fmt: skip
    return out


def test_capture_features_matches_target(family):
    target = make_tiny_model(family, vocab_size=64, num_layers=4)
    batch = collate(_examples(3))
    f = capture_features(target, batch["input_ids"], batch["attention_mask"], aux_layers=[1, 2, 3])
    out = target(batch["input_ids"], attention_mask=batch["attention_mask"])
    torch.testing.assert_close(target.get_output_embeddings()(f.hidden), out.logits)
    assert f.aux.shape == (3, 6, 3 * 32)


def test_dump_resumes_and_index_is_consistent(tmp_path):
    target = make_tiny_model("llama", vocab_size=64, num_layers=4)
    ex = _examples(7)
    logs = []
    dump_features(target, ex[:], tmp_path, aux_layers=[1, 3], shard_size=3, batch_size=2,
                  dtype=torch.float32, log=logs.append)  # fmt: skip
    assert "GiB" in logs[0]
    index = json.loads((tmp_path / "index.json").read_text())
    assert index["complete"] and len(index["shards"]) == 3
    assert [v["start"] for v in index["shards"].values()] == [0, 3, 6]
    assert sum(v["num_tokens"] for v in index["shards"].values()) == sum(
        len(e["input_ids"]) for e in ex
    )
    # resume: delete one shard's index entry and file -> only that shard is redone
    (tmp_path / "shard-00001.safetensors").unlink()
    logs.clear()
    dump_features(target, ex, tmp_path, aux_layers=[1, 3], shard_size=3, batch_size=2,
                  dtype=torch.float32, log=logs.append)  # fmt: skip
    assert sum("skipped" in line for line in logs) == 2
    ds = OfflineFeatures(tmp_path)
    assert len(ds) == 7
    item = ds[4]
    assert item["input_ids"].tolist() == ex[4]["input_ids"]
    live = capture_features(target, item["input_ids"][None], aux_layers=[1, 3])
    torch.testing.assert_close(item["hidden"], live.hidden[0])
    torch.testing.assert_close(item["aux"], live.aux[0])
    with pytest.raises(ValueError, match="other settings"):
        dump_features(target, ex, tmp_path, aux_layers=[1], shard_size=3, log=logs.append)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_disk_bytes_estimate_bounds_written_dump(tmp_path, dtype):
    """The estimate covers the shards actually written, within the safetensors headers."""
    target = make_tiny_model("llama", vocab_size=64, num_layers=4)
    ex = _examples(7)
    dump_features(target, ex, tmp_path, aux_layers=[1, 2, 3], shard_size=3, dtype=dtype,
                  log=lambda _: None)  # fmt: skip
    written = sum(p.stat().st_size for p in tmp_path.glob("shard-*.safetensors"))
    tokens = sum(len(e["input_ids"]) for e in ex)
    estimate = disk_bytes(tokens, 4, 32, dtype)
    headers = 3 * 2048  # a safetensors JSON header per shard
    assert estimate - headers <= written <= estimate + headers


def test_chat_template_masks_with_and_without_generation_markers(tiny_tokenizer):
    msgs = [{"role": "user", "content": "what is 2 plus 3?"},
            {"role": "assistant", "content": "2 plus 3 is 5."}]  # fmt: skip
    tok = tiny_tokenizer
    plain = (
        "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}assistant: {% endif %}"
    )
    marked = (
        "{% for m in messages %}{% if m['role'] == 'assistant' %}assistant: "
        "{% generation %}{{ m['content'] }}{% endgeneration %}\n{% else %}"
        "{{ m['role'] }}: {{ m['content'] }}\n{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}assistant: {% endif %}"
    )
    old = tok.chat_template
    try:
        for template in (plain, marked):
            tok.chat_template = template
            out = chat_loss_mask(tok, msgs, 128)
            masked = [i for i, m in zip(out["input_ids"], out["loss_mask"]) if m]
            text = tok.decode(masked)
            assert "2 plus 3 is 5" in text and "what is" not in text
    finally:
        tok.chat_template = old


def test_prompt_response_masks_without_template(tiny_tokenizer):
    feats = tokenize_for_heads(
        [{"prompt": "Question: what is 1 plus 2?", "response": " Answer: 3."}], tiny_tokenizer, 64
    )
    f = feats[0]
    masked = tiny_tokenizer.decode([i for i, m in zip(f["input_ids"], f["loss_mask"]) if m])
    assert "Answer" in masked and "Question" not in masked
