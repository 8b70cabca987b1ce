"""Import direction inside adaspec: the decoding core and the eval config sit below their users."""

import ast
from pathlib import Path

import adaspec

ROOT = Path(adaspec.__file__).parent


def _adaspec_imports(path: Path) -> set[str]:
    """Modules of ``adaspec`` imported anywhere in ``path`` (lazy imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m == "adaspec" or m.startswith("adaspec.")}


def test_decoding_core_imports_only_itself_and_the_base_layer():
    for path in sorted((ROOT / "decoding").glob("*.py")):
        above = {
            m
            for m in _adaspec_imports(path)
            if not (m.startswith("adaspec.decoding") or m.startswith("adaspec._base"))
        }
        assert not above, f"{path.name} imports from the layers above it: {sorted(above)}"


def test_base_layer_imports_nothing_from_adaspec():
    paths = sorted((ROOT / "_base").glob("*.py"))
    assert len(paths) >= 2
    for path in paths:
        imported = {m for m in _adaspec_imports(path) if not m.startswith("adaspec._base")}
        assert not imported, f"_base/{path.name} imports {sorted(imported)}"


def test_eval_loading_and_config_do_not_import_the_runner():
    for name in ("loading.py", "config.py"):
        assert "adaspec.eval.evaluate" not in _adaspec_imports(ROOT / "eval" / name), name


def test_old_import_paths_still_work():
    from adaspec._base.config import ConfigBase as base
    from adaspec._base.models import model_vocab_size as vocab
    from adaspec.config import ConfigBase
    from adaspec.eval import EvalConfig
    from adaspec.eval.config import EvalConfig as moved
    from adaspec.eval.evaluate import EvalConfig as old
    from adaspec.modeling import model_vocab_size

    assert ConfigBase is base and model_vocab_size is vocab
    assert EvalConfig is moved is old
