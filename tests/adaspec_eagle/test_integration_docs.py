"""docs/integration.md: the patches for SafeAILab/EAGLE and SpecForge are complete and current."""

import os
import re
import subprocess
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "integration.md"
UPSTREAM = {  # section title -> (env var with a git dir of the repository, files the diffs patch)
    "EAGLE-1/2": ("ADASPEC_UPSTREAM_EAGLE", ["eagle/train/main.py"]),
    "EAGLE-3": ("ADASPEC_UPSTREAM_EAGLE", ["eagle/traineagle3/cnets.py", "eagle/traineagle3/main.py"]),
    "SpecForge": ("ADASPEC_UPSTREAM_SPECFORGE", ["specforge/algorithms/eagle3/model.py"]),
}  # fmt: skip


def _sections() -> dict[str, str]:
    parts = re.split(r"^## ", DOC.read_text(), flags=re.M)
    out = {}
    for part in parts[1:]:
        title = part.splitlines()[0]
        for key in UPSTREAM:
            if key in title:
                out[key] = part
    return out


def _diffs(section: str) -> list[list[str]]:
    return [b.splitlines() for b in re.findall(r"```diff\n(.*?)```", section, flags=re.S)]


def test_integration_doc_patches_import_the_plugin_they_call():
    sections = _sections()
    assert set(sections) == set(UPSTREAM)
    for name, text in sections.items():
        added = [ln[1:] for block in _diffs(text) for ln in block if ln.startswith("+")]
        if any("adaspec_filtered_loss(" in ln for ln in added):
            assert any("import adaspec_filtered_loss" in ln for ln in added), name


def test_integration_doc_eagle3_call_sites_unpack_what_forward_returns():
    text = _sections()["EAGLE-3"]
    added = [ln[1:] for block in _diffs(text) for ln in block if ln.startswith("+")]
    (ret,) = [ln for ln in added if ln.strip().startswith("return plosses")]
    n = ret.count(",") + 1
    calls = [ln for ln in added if re.search(r"= (model_engine|ref_model)\(", ln)]
    assert calls and all(ln.split("=")[0].count(",") + 1 == n for ln in calls), (n, calls)
    assert "line 324" in text  # the evaluation loop's call site changes too


def test_integration_doc_names_the_upstream_commits():
    text = DOC.read_text()
    for repo in (
        "SafeAILab/EAGLE",
        "sgl-project/SpecForge",
        "sgl-project/sglang",
        "vllm-project/vllm",
    ):
        assert re.search(rf"{re.escape(repo)} \| `[0-9a-f]{{40}}`", text), repo
    assert "get_draft_sp_group" in text and "use_eagle3=False" in text


@pytest.mark.parametrize("name", list(UPSTREAM))
def test_integration_doc_patch_context_exists_upstream(name):
    env, files = UPSTREAM[name]
    git_dir = os.environ.get(env)
    if not git_dir:
        pytest.skip(f"set {env} to a git dir of the upstream repository to check the patches")
    source = set()
    for path in files:
        text = subprocess.run(["git", f"--git-dir={git_dir}", "show", f"HEAD:{path}"],
                              capture_output=True, text=True, check=True).stdout  # fmt: skip
        source |= {ln.strip() for ln in text.splitlines()}
    for block in _diffs(_sections()[name]):
        for ln in block:
            body = ln[1:].strip()
            if ln[:1] in (" ", "-") and body and body != "...":
                assert body in source, f"{name}: {body!r} not in {files}"
