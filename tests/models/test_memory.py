"""The memory estimator: the parts of an estimate, single placements and whole-catalog plans."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from suanli.catalog import load_catalog
from suanli.errors import UnknownChipError, ValidationError
from suanli.models import (
    TP_SIZES,
    Fit,
    ModelCatalog,
    ModelInfo,
    estimate,
    fits_on,
    load_models,
    plan,
)
from suanli.models.memory import RUNTIME_OVERHEAD_BYTES, chip_precisions

CATALOG = load_models()
SERVED_STACKS = ("CUDA", "CANN")


@pytest.fixture(scope="module")
def models() -> ModelCatalog:
    return CATALOG


def pick(fits: list[Fit], chip: str, precision: str) -> Fit:
    (found,) = [f for f in fits if f.chip_model == chip and f.precision == precision]
    return found


def test_an_estimate_adds_its_parts(models: ModelCatalog) -> None:
    qwen = models.get("qwen2.5-7b-instruct")
    est = estimate(qwen, "bf16", 4096, concurrent_sequences=2)
    assert est.weights == qwen.weight_bytes("bf16")
    assert est.kv_cache == qwen.kv_bytes_per_token() * 4096 * 2
    assert est.overhead == RUNTIME_OVERHEAD_BYTES
    assert 0 < est.activations < 2 * 2**30
    assert (
        est.total == est.per_device == est.weights + est.kv_cache + est.activations + est.overhead
    )
    assert (est.model, est.precision, est.devices) == ("qwen2.5-7b-instruct", "bf16", 1)


def test_tensor_parallel_splits_gqa_caches_but_not_below_one_head(models: ModelCatalog) -> None:
    llama = models.get("llama-3.1-8b-instruct")  # 8 KV heads
    one = estimate(llama, "bf16", 8192)
    eight = estimate(llama, "bf16", 8192, devices=8)
    sixteen = estimate(llama, "bf16", 8192, devices=16)
    assert eight.kv_cache_per_device == one.kv_cache // 8 == sixteen.kv_cache_per_device
    assert eight.weights_per_device == -(-one.weights // 8)
    assert eight.total == eight.per_device * 8


def test_an_mla_latent_is_held_whole_on_every_device(models: ModelCatalog) -> None:
    r1 = models.get("deepseek-r1")
    one = estimate(r1, "fp8", 32768)
    eight = estimate(r1, "fp8", 32768, devices=8)
    assert one.kv_cache == eight.kv_cache_per_device == 70272 * 32768


def test_an_encoder_needs_no_cache_and_no_logits(models: ModelCatalog) -> None:
    est = estimate(models.get("all-minilm-l6-v2"), "fp32", 256, concurrent_sequences=32)
    assert est.kv_cache == 0
    assert est.activations == 256 * 32 * 384 * 32
    assert est.weights == 90_868_376


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"context_tokens": 0}, "context_tokens"),
        ({"context_tokens": 40000}, "context_tokens"),  # more than the model's 32768
        ({"concurrent_sequences": 0}, "concurrent_sequences"),
        ({"kv_dtype_bytes": 0}, "kv_dtype_bytes"),
        ({"devices": 0}, "devices"),
        ({"precision": "int2"}, "precision"),
    ],
)
def test_bad_estimate_arguments_name_the_field(
    models: ModelCatalog, kwargs: dict[str, object], field: str
) -> None:
    args: dict[str, object] = {"precision": "bf16", "context_tokens": 1024} | kwargs
    with pytest.raises(ValidationError) as err:
        estimate(models.get("qwen2.5-7b-instruct"), **args)  # type: ignore[arg-type]
    assert err.value.field == field


def test_a_7b_model_fits_on_one_h100_at_bf16(models: ModelCatalog) -> None:
    fits = plan(models.get("qwen2.5-7b-instruct"))
    h100 = pick(fits, "H100 SXM", "bf16")
    assert (h100.fits, h100.count, h100.vendor, h100.domestic) == (True, 1, "NVIDIA", False)
    assert h100.per_device_bytes < h100.device_memory_bytes * 0.9  # type: ignore[operator]
    assert set(h100.engines) == {"vllm", "sglang", "llama.cpp"}
    assert "18.3 GiB per device" in h100.reason
    assert fits[0].fits
    assert fits[0].count == 1


def test_llama_405b_needs_8_h100_at_fp8_or_16_at_bf16(models: ModelCatalog) -> None:
    llama = models.get("llama-3.1-405b-instruct")
    fits = plan(llama, chips=["H100 SXM"])
    assert pick(fits, "H100 SXM", "fp8").count == 8
    assert pick(fits, "H100 SXM", "bf16").count == 16
    assert not fits_on(llama, "H100 SXM", 8, "bf16").fits
    assert not fits_on(llama, "H100 SXM", 4, "fp8").fits
    assert pick(fits, "H100 SXM", "fp8").engines == ("vllm", "sglang")  # llama.cpp has no fp8


def test_deepseek_r1_does_not_fit_on_eight_910b_at_bf16(models: ModelCatalog) -> None:
    r1 = models.get("deepseek-r1")
    verdict = fits_on(r1, "Ascend 910B", 8, "bf16")
    assert not verdict.fits
    assert "needs" in verdict.reason
    assert verdict.engines == ("vllm-ascend", "mindie")
    assert verdict.domestic
    at_bf16 = pick(plan(r1, chips=["Ascend 910B"]), "Ascend 910B", "bf16")
    assert not at_bf16.fits
    assert at_bf16.count == 16


def test_smollm2_fits_on_anything_with_an_engine(models: ModelCatalog) -> None:
    fits = plan(models.get("smollm2-135m-instruct"))
    served = {c.model for c in load_catalog() if c.software_stack in SERVED_STACKS}
    assert {f.chip_model for f in fits if f.fits and f.count == 1} == served
    assert {f.chip_model for f in fits} == served
    gguf = pick(fits, "H100 SXM", "q4_1")
    assert gguf.fits
    assert gguf.engines == ("llama.cpp",)


def test_a_model_without_an_engine_for_a_stack_has_no_fits_there(models: ModelCatalog) -> None:
    cuda_only = dataclasses.replace(models.get("qwen2.5-7b-instruct"), engines=("vllm",))
    fits = plan(cuda_only, chips=["Ascend 910B", "H100 SXM", "MLU370-X8"])
    assert {f.chip_model for f in fits} == {"H100 SXM"}
    verdict = fits_on(cuda_only, "Ascend 910B", 1, "bf16")
    assert not verdict.fits
    assert verdict.engines == ()
    assert "no engine serves" in verdict.reason


def test_precisions_follow_the_chip(models: ModelCatalog) -> None:
    catalog = load_catalog()
    assert "fp8" not in chip_precisions(catalog.get("A100 80GB SXM"))
    assert "fp8" in chip_precisions(catalog.get("H100 SXM"))
    v100 = chip_precisions(catalog.get("V100"))
    assert "fp16" in v100
    assert "bf16" not in v100
    assert "bf16" in chip_precisions(catalog.get("Ascend 910B"))  # no figures published
    qwen = models.get("qwen2.5-7b-instruct")
    refusal = fits_on(qwen, "A100 80GB SXM", 1, "fp8")
    assert not refusal.fits
    assert "does not support fp8" in refusal.reason
    assert {f.precision for f in plan(qwen, chips=["V100"])} == {"fp16", "int8", "int4"}
    assert not fits_on(qwen, "Ascend 910B", 1, "fp32").fits  # no CANN engine loads fp32


def test_heads_must_split_over_tensor_parallel_devices(models: ModelCatalog) -> None:
    qwen = models.get("qwen2.5-7b-instruct")  # 28 attention heads
    on_ascend = fits_on(qwen, "Ascend 910B", 8, "bf16")
    assert not on_ascend.fits
    assert "do not split over 8" in on_ascend.reason
    on_cuda = fits_on(qwen, "H100 SXM", 8, "bf16")  # llama.cpp splits by layers
    assert on_cuda.fits
    assert on_cuda.engines == ("llama.cpp",)


def test_plans_list_placements_that_fit_first(models: ModelCatalog) -> None:
    fits = plan(models.get("qwen2.5-72b-instruct"), context_tokens=8192)
    flags = [f.fits for f in fits]
    assert flags == sorted(flags, reverse=True)
    counts = [f.count for f in fits if f.fits]
    assert counts == sorted(counts)
    assert all(f.count in TP_SIZES for f in fits)
    only_bf16 = plan(models.get("qwen2.5-72b-instruct"), precision="bf16", context_tokens=8192)
    assert {f.precision for f in only_bf16} == {"bf16"}
    assert not any(f.fits for f in only_bf16 if f.chip_model == "V100")  # fp16 only


def test_bad_placement_arguments(models: ModelCatalog) -> None:
    qwen = models.get("qwen2.5-7b-instruct")
    with pytest.raises(UnknownChipError):
        fits_on(qwen, "H1000", 1, "bf16")
    with pytest.raises(ValidationError) as err:
        fits_on(qwen, "H100 SXM", 1, "bf16", memory_utilization=1.5)
    assert err.value.field == "memory_utilization"


@settings(max_examples=60, deadline=None)
@given(
    model=st.sampled_from(CATALOG.all()),
    precision=st.sampled_from(["fp32", "bf16", "fp8", "int8", "int4", "q4_1"]),
    devices=st.lists(st.sampled_from(TP_SIZES), min_size=2, max_size=2, unique=True),
    context=st.floats(min_value=0.0, max_value=1.0),
    sequences=st.integers(min_value=1, max_value=64),
)
def test_more_devices_never_need_more_per_device(
    model: ModelInfo, precision: str, devices: list[int], context: float, sequences: int
) -> None:
    tokens = max(1, int(context * model.context_length))
    fewer, more = sorted(devices)
    a = estimate(model, precision, tokens, sequences, devices=fewer)
    b = estimate(model, precision, tokens, sequences, devices=more)
    assert b.per_device <= a.per_device
    assert b.weights == a.weights
    assert b.kv_cache == a.kv_cache
