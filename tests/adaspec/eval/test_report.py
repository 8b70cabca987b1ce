import json

import pytest

from adaspec.eval.report import markdown_table, plot_acceptance_by_position, write_json


def test_markdown_table_text():
    rows = [{"draft": "kd", "alpha": 0.5, "n": 3}, {"draft": "a|b", "alpha": None}]
    text = markdown_table(rows, {"draft": "Draft", "alpha": "α", "n": "N"}, digits=2)
    assert text == ("| Draft | α | N |\n|---|---|---|\n| kd | 0.50 | 3 |\n| a\\|b | - | - |\n")
    assert markdown_table([], ["x"]) == "| x |\n|---|\n"
    with pytest.raises(ValueError, match="column"):
        markdown_table(rows, [])


def test_write_json_roundtrip_and_sanitizes(tmp_path):
    import torch

    path = write_json(
        {"alpha": 0.75, "pos": torch.tensor([1.0, 0.5]), "bad": float("nan")},
        tmp_path / "sub" / "r.json",
    )
    data = json.loads(path.read_text())
    assert data == {"alpha": 0.75, "pos": [1.0, 0.5], "bad": None}
    first = path.read_bytes()
    write_json({"alpha": 0.75, "pos": [1.0, 0.5], "bad": None}, path)
    assert path.read_bytes() == first


def test_plot_acceptance_by_position_writes_png(tmp_path):
    results = {"kd": {"acceptance_by_position": [0.9, 0.8, 0.7, None]}, "adaspec": [0.95, 0.9]}
    path = plot_acceptance_by_position(results, tmp_path / "plot.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    again = plot_acceptance_by_position(results, tmp_path / "plot2.png").read_bytes()
    assert again == data
