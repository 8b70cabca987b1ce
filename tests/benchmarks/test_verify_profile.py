import importlib.util
import json
from pathlib import Path

import torch
from helpers import make_tiny_model

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "verify_profile.py"
_spec = importlib.util.spec_from_file_location("verify_profile", _PATH)
verify_profile = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(verify_profile)


def test_random_tree_allowed_rows_are_ancestor_sets():
    gen = torch.Generator().manual_seed(3)
    allowed = verify_profile.random_tree_allowed(7, gen)
    assert allowed[0].tolist() == [True] + [False] * 6  # the root sees only itself
    for i in range(1, 7):
        row = allowed[i].nonzero().flatten().tolist()
        assert row[-1] == i and row[0] == 0  # itself and, through its parent, the root
        parent = row[-2]
        assert torch.equal(allowed[i] & ~torch.eye(7, dtype=torch.bool)[i], allowed[parent])
    pos = verify_profile.tree_positions(allowed, past=10)
    assert pos[0, 0] == 10 and pos.shape == (1, 7)
    assert (pos[0, 1:] > 10).all()


def test_verify_profile_reports_every_variant(tmp_path):
    model = make_tiny_model("llama", vocab_size=64)
    model.save_pretrained(tmp_path / "m")
    out = tmp_path / "profile.json"
    argv = [str(tmp_path / "m"), "--prefix", "12", "--sizes", "1", "3", "--repeats", "2",
            "--warmup", "1", "--out", str(out)]  # fmt: skip
    assert verify_profile.main(argv) == 0
    report = json.loads(out.read_text())
    names = {"stock_decode", "tree_1", "tree_1_hidden", "body_1", "stock_chunk_3", "tree_3",
             "tree_3_hidden", "body_3"}  # fmt: skip
    assert set(report["median_ms"]) == names
    assert report["ratio_to_stock_decode"]["stock_decode"] == 1.0
    assert all(v > 0 for v in report["median_ms"].values())


def test_verify_profile_times_the_transposed_copy_beside_the_stock_model(tmp_path):
    model = make_tiny_model("llama", vocab_size=64)
    model.save_pretrained(tmp_path / "m")
    argv = [str(tmp_path / "m"), "--prefix", "12", "--sizes", "1", "3", "--repeats", "2",
            "--warmup", "1", "--transposed"]  # fmt: skip
    report = verify_profile.run(verify_profile.parse_args(argv))
    extra = {"stock_decode_transposed", "tree_1_transposed", "tree_3_transposed"}
    assert extra <= set(report["median_ms"])
    assert not any(n.startswith("body") and n.endswith("_transposed") for n in report["median_ms"])
