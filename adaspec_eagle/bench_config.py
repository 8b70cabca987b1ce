"""Config of ``adaspec-eagle bench``: the target, the prompts, and the methods to compare."""

from __future__ import annotations

from dataclasses import dataclass

from adaspec.config import ConfigBase, ConfigError, cfg_field, check_choice, check_range
from adaspec.data import CHAT_MODES
from adaspec.decoding import tree_from_spec

KINDS = ("vanilla", "assisted", "prompt_lookup", "speculative")
DTYPES = ("float32", "bfloat16", "float16")
DRAFTERS = ("draft_model", "eagle")
LINEARS = ("stock", "transposed")


@dataclass
class BenchMethod(ConfigBase):
    """One decoding method of the benchmark."""

    name: str = cfg_field("", help="label in the tables and plots")
    kind: str = cfg_field(
        "speculative",
        help="vanilla: target.generate; assisted: transformers' assisted generation with the "
        "standalone draft; prompt_lookup: transformers' prompt-lookup decoding "
        "(prompt_lookup_num_tokens); speculative: adaspec's decoder (chain or tree)",
    )
    dtype: str | None = cfg_field(
        None,
        help="vanilla / assisted / prompt_lookup: run the target in this dtype (e.g. a bfloat16 "
        "vanilla row); None: the config's dtype. Speedups are against the vanilla row in the "
        "config's dtype",
    )
    linear: str = cfg_field(
        "stock",
        help="stock: the models as loaded; transposed: every linear layer of this row's target "
        "and draft (or head) stores its weight transposed, faster few-row matmuls on CPU "
        "(adaspec.decoding.linear). Speedups stay against the stock vanilla row",
    )
    prompt_lookup_num_tokens: int = cfg_field(
        10, help="prompt_lookup: tokens copied from the prompt per guess"
    )
    max_matching_ngram_size: int | None = cfg_field(
        None, help="prompt_lookup: longest n-gram matched in the prompt (None: transformers' 2)"
    )
    drafter: str = cfg_field(
        "draft_model", help="speculative: draft_model (standalone LM) or eagle (a head)"
    )
    draft: str | None = cfg_field(
        None, help="standalone draft checkpoint (default: the top-level draft)"
    )
    head: str | None = cfg_field(
        None, help="eagle: folder of a trained head (adaspec-eagle train output)"
    )
    tree: str = cfg_field(
        "chain:4",
        help="speculative: 'chain:G', 'static:PRESET' (mc_sim_7b_63, small_10, ...) or "
        "'dynamic:depth=D,top_k=K,total_tokens=N'",
    )

    def validate(self) -> None:
        super().validate()
        if not self.name:
            raise ConfigError("name is empty: give every method a label")
        check_choice("kind", self.kind, KINDS)
        check_choice("drafter", self.drafter, DRAFTERS)
        check_choice(f"method {self.name!r}: linear", self.linear, LINEARS)
        check_range(
            f"method {self.name!r}: prompt_lookup_num_tokens", self.prompt_lookup_num_tokens, 1
        )
        if self.dtype is not None:
            check_choice("dtype", self.dtype, DTYPES)
            if self.kind == "speculative":
                raise ConfigError(
                    f"method {self.name!r}: dtype is for vanilla, assisted and prompt_lookup rows; "
                    "a speculative row runs the target in the config's dtype (remove dtype)"
                )
        if self.kind == "speculative":
            tree_from_spec(self.tree)
            if self.drafter == "eagle" and not self.head:
                raise ConfigError(f"method {self.name!r}: drafter 'eagle' needs head: PATH")


DEFAULT_METHODS = [
    {"name": "vanilla", "kind": "vanilla"},
    {"name": "vanilla-bf16", "kind": "vanilla", "dtype": "bfloat16"},
    {"name": "assisted", "kind": "assisted"},
    {"name": "prompt-lookup", "kind": "prompt_lookup", "prompt_lookup_num_tokens": 10},
    {"name": "chain-4", "kind": "speculative", "tree": "chain:4"},
    {"name": "tree-mc_sim_7b_63", "kind": "speculative", "tree": "static:mc_sim_7b_63"},
    {
        "name": "dynamic-d5",
        "kind": "speculative",
        "tree": "dynamic:depth=5,top_k=8,total_tokens=32",
    },
]


@dataclass
class BenchConfig(ConfigBase):
    """What ``adaspec-eagle bench`` measures."""

    target: str = cfg_field("", help="target checkpoint (hub id or folder)")
    draft: str | None = cfg_field(
        None, help="standalone draft used by assisted and draft_model methods"
    )
    tokenizer: str | None = cfg_field(None, help="tokenizer (default: the target's folder)")
    prompts: str = cfg_field(
        "",
        help="prompt file: MT-bench style .jsonl with 'turns' (the first turn is used), or a dataset "
        "file formatted with `task` (e.g. GSM8K test.jsonl with task: gsm8k), or .jsonl with 'prompt'",
    )
    task: str | None = cfg_field(
        None, help="formatter of a dataset prompt file (gsm8k, mbpp, xsum, ...)"
    )
    chat_template: str = cfg_field(
        "auto",
        help="prompts through the tokenizer's chat template (one user turn, then the assistant "
        "header): auto (when it has one), always or never",
    )
    num_prompts: int = cfg_field(
        10, help="prompts to time: N records from first_record on, every `every`-th one"
    )
    every: int = cfg_field(
        1, help="take every n-th record (MT-bench is sorted by category: 4 spreads 20 over all 8)"
    )
    first_record: int = cfg_field(
        0, help="records of the prompt file skipped first (e.g. 10 for MBPP's test split, 11-510)"
    )
    temperature: float = cfg_field(
        0.0,
        help="0: greedy (outputs compared with vanilla's); > 0: every row samples at this "
        "temperature, without top-k/top-p (speculative rows stay exact in distribution)",
    )
    max_new_tokens: int = cfg_field(128, help="new tokens per prompt (stops early at EOS)")
    warmup: int = cfg_field(1, help="untimed prompts run through every method first")
    methods: list = cfg_field(
        DEFAULT_METHODS, help="methods to compare (list of BenchMethod fields)"
    )
    dtype: str = cfg_field("float32", help="model dtype: float32, bfloat16 or float16")
    device: str = cfg_field("auto", help="'auto' (cuda if available, else cpu) or a torch device")
    threads: int | None = cfg_field(None, help="torch CPU threads (default: torch's choice)")
    seed: int = cfg_field(0, help="torch seed")
    output_dir: str = cfg_field("runs/bench", help="folder for bench.json, bench.md and bench.png")

    def validate(self) -> None:
        super().validate()
        if not self.target:
            raise ConfigError("target is empty: give the target checkpoint (hub id or folder)")
        if not self.prompts:
            raise ConfigError(
                "prompts is empty: give a prompt .jsonl (MT-bench turns or a dataset file)"
            )
        check_range("num_prompts", self.num_prompts, 1)
        check_range("first_record", self.first_record, 0)
        check_range("every", self.every, 1)
        check_range("temperature", self.temperature, 0.0, hint="use 0 for greedy decoding")
        check_range("max_new_tokens", self.max_new_tokens, 1)
        check_range("warmup", self.warmup, 0)
        check_choice("dtype", self.dtype, DTYPES)
        check_choice("chat_template", self.chat_template, CHAT_MODES)
        names = [m.get("name") for m in self.methods]
        if len(set(names)) != len(names):
            raise ConfigError(f"methods have duplicate names: {names}")
        for method in self.parsed_methods():
            needs_draft = method.kind == "assisted" or (
                method.kind == "speculative" and method.drafter == "draft_model"
            )
            if needs_draft and not (method.draft or self.draft):
                raise ConfigError(
                    f"method {method.name!r} needs a standalone draft: set draft: PATH"
                )

    def parsed_methods(self) -> list[BenchMethod]:
        """The methods as validated :class:`BenchMethod` objects."""
        if not self.methods:
            raise ConfigError("methods is empty: list at least the vanilla baseline")
        return [
            BenchMethod.from_dict(m, prefix=f"methods[{i}].") for i, m in enumerate(self.methods)
        ]
