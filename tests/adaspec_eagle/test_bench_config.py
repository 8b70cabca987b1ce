import pytest

from adaspec.config import ConfigError
from adaspec_eagle.bench_config import BenchConfig, BenchMethod


def test_bench_config_defaults_parse_into_methods():
    cfg = BenchConfig(target="t", prompts="p.jsonl", draft="d")
    methods = cfg.parsed_methods()
    assert [m.name for m in methods] == [m["name"] for m in cfg.methods]
    assert all(isinstance(m, BenchMethod) for m in methods)
    assert {m.kind for m in methods} == {"vanilla", "assisted", "prompt_lookup", "speculative"}


def test_bench_method_errors_name_the_field():
    with pytest.raises(ConfigError, match="name is empty"):
        BenchMethod(name="")
    with pytest.raises(ValueError, match="unknown tree spec"):
        BenchMethod(name="x", tree="tree:9")
    with pytest.raises(ConfigError, match="needs head"):
        BenchMethod(name="e", drafter="eagle")
    with pytest.raises(ConfigError, match="duplicate names"):
        BenchConfig(target="t", prompts="p", methods=[{"name": "a", "kind": "vanilla"}] * 2)
    with pytest.raises(ConfigError, match="methods is empty"):
        BenchConfig(target="t", prompts="p", methods=[])
