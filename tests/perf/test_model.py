"""The perf model against numbers worked out by hand from the chip and model catalogs."""

from __future__ import annotations

import pytest

from suanli.errors import UnknownChipError, ValidationError
from suanli.models.catalog import load_models
from suanli.perf.model import COMPUTE_EFFICIENCY, MEMORY_EFFICIENCY, PerfModel

LLAMA_8B = "llama-3.1-8b-instruct"
PARAMS_8B = 8_030_261_248  # model catalog
KV_8B = 2 * 32 * 8 * 128 * 2  # K and V x layers x KV heads x head dim x 2 bytes


@pytest.fixture(scope="module")
def perf() -> PerfModel:
    return PerfModel()


def test_training_on_h100_is_peak_times_mfu_over_six_flops_per_parameter(perf: PerfModel) -> None:
    est = perf.throughput("training", LLAMA_8B, "H100 SXM")
    assert est.bound == "compute"
    assert est.tokens_per_s == pytest.approx(989e12 * 0.45 / (6 * PARAMS_8B))  # ~9,237
    assert est.compute_tflops == pytest.approx(989 * COMPUTE_EFFICIENCY["CUDA"])


def test_decode_on_h100_is_bandwidth_over_bytes_per_token(perf: PerfModel) -> None:
    est = perf.throughput("decode", LLAMA_8B, "H100 SXM")
    per_token = 2 * PARAMS_8B / 16 + KV_8B * 4096  # weights over a batch of 16, own KV cache
    assert est.bound == "memory"
    assert est.tokens_per_s == pytest.approx(3350e9 * MEMORY_EFFICIENCY["CUDA"] / per_token)
    assert est.fits
    assert perf.throughput("inference", LLAMA_8B, "H100 SXM").tokens_per_s == est.tokens_per_s


def test_h20_decodes_faster_than_h100_by_the_bandwidth_ratio(perf: PerfModel) -> None:
    assert perf.relative_speed("decode", LLAMA_8B, "H20", "H100 SXM") == pytest.approx(4000 / 3350)


def test_h100_trains_faster_than_h20_by_the_tflops_ratio(perf: PerfModel) -> None:
    ratio = perf.relative_speed("training", LLAMA_8B, "H100 SXM", "H20")
    assert ratio == pytest.approx(989 / 148)


def test_lora_costs_four_flops_per_parameter_and_prefill_two(perf: PerfModel) -> None:
    train = perf.throughput("training", LLAMA_8B, "A800 80GB SXM").tokens_per_s
    lora = perf.throughput("finetune", LLAMA_8B, "A800 80GB SXM").tokens_per_s
    prefill = perf.throughput("prefill", LLAMA_8B, "A800 80GB SXM").tokens_per_s
    assert train
    assert lora
    assert prefill
    assert lora / train == pytest.approx(6 / 4)
    assert prefill / train == pytest.approx(6 / 2)


def test_devices_scale_linearly_and_a_share_of_one_scales_down(perf: PerfModel) -> None:
    one = perf.throughput("training", LLAMA_8B, "H100 SXM").tokens_per_s
    eight = perf.throughput("training", LLAMA_8B, "H100 SXM", count=8).tokens_per_s
    half = perf.throughput("prefill", LLAMA_8B, "H100 SXM", gpu_milli=500)
    full = perf.throughput("prefill", LLAMA_8B, "H100 SXM")
    assert one
    assert eight
    assert half.tokens_per_s
    assert full.tokens_per_s
    assert eight == pytest.approx(8 * one)
    assert half.tokens_per_s == pytest.approx(full.tokens_per_s / 2)
    assert "36.0 GiB usable" in half.memory  # 90 % of half of 80 GiB


def test_memory_fit_training_fine_tune_and_serving(perf: PerfModel) -> None:
    # 70B full training: 16 bytes per parameter over 8 x 80 GiB does not fit; over 64 it does
    assert not perf.throughput("training", "llama-3.1-70b-instruct", "H100 SXM", count=8).fits
    assert perf.throughput("training", "llama-3.1-70b-instruct", "H100 SXM", count=64).fits
    assert "Adam" in perf.throughput("training", LLAMA_8B, "H100 SXM").memory
    assert perf.throughput("finetune", LLAMA_8B, "H100 SXM").fits  # frozen bf16 weights: 16 GB
    serve = perf.throughput("inference", "llama-3.1-70b-instruct", "H100 SXM")
    assert not serve.fits
    assert "needs" in serve.memory
    assert perf.throughput("inference", "llama-3.1-70b-instruct", "H100 SXM", count=4).fits


def test_missing_catalog_figures_are_not_guessed(perf: PerfModel) -> None:
    est = perf.throughput("training", LLAMA_8B, "Ascend 910B")
    assert est.tokens_per_s is None
    assert "no bf16 TFLOPS figure" in est.reason
    assert perf.relative_speed("training", LLAMA_8B, "Ascend 910B", "H100 SXM") is None
    unknown = perf.throughput("training", LLAMA_8B, "V100M32")
    assert not unknown.fits
    assert "not in the chip catalog" in unknown.reason


def test_calibration_replaces_the_catalog_figure() -> None:
    measured = PerfModel(
        {
            ("Ascend 910B", "matmul_bf16_tflops"): 300.0,
            ("Ascend 910B", "memory_bandwidth_gbps"): 1600.0,
            ("H100 SXM", "memory_bandwidth_gbps"): 3000.0,
        }
    )
    train = measured.throughput("training", LLAMA_8B, "Ascend 910B")
    assert train.tokens_per_s == pytest.approx(300e12 * 0.35 / (6 * PARAMS_8B))  # CANN MFU
    ratio = measured.relative_speed("decode", LLAMA_8B, "Ascend 910B", "H100 SXM")
    assert ratio == pytest.approx(1600 * 0.70 / (3000 * 0.80))
    assert measured.chip("ascend910b") is not None  # aliases and spelling resolve


def test_calibration_rejects_unknown_metrics_chips_and_bad_values() -> None:
    with pytest.raises(ValidationError, match="unknown metric"):
        PerfModel({("H100 SXM", "flops"): 1.0})
    with pytest.raises(UnknownChipError):
        PerfModel({("H1000", "memory_bandwidth_gbps"): 1.0})
    with pytest.raises(ValidationError, match="positive"):
        PerfModel({("H100 SXM", "memory_bandwidth_gbps"): -1.0})


def test_moe_decode_reads_only_the_experts_a_batch_touches() -> None:
    model = load_models().get("qwen3-30b-a3b")
    one = PerfModel(batch=1).throughput("decode", model.id, "H200 SXM", count=2)
    dense_bytes = model.weight_bytes("bf16") + model.kv_bytes_per_token() * 4096
    assert one.tokens_per_s is not None
    assert one.tokens_per_s > 4800e9 * 0.8 * 2 / dense_bytes * 5  # active 3B of 30B


def test_rental_and_unnamed_models_compare_on_the_ceilings(perf: PerfModel) -> None:
    rental = perf.throughput("rental", None, "H100 SXM")
    assert rental.tokens_per_s is None
    assert rental.rate == pytest.approx(989 * 0.45)
    decode = perf.throughput("decode", None, "H20")
    assert decode.rate == pytest.approx(4000 * 0.8)
    assert perf.relative_speed("rental", None, "H100 SXM", "H20") == pytest.approx(989 / 148)


def test_bad_requests_are_refused(perf: PerfModel) -> None:
    with pytest.raises(ValidationError, match="kind"):
        perf.throughput("mining", LLAMA_8B, "H100 SXM")
    with pytest.raises(ValidationError, match="share"):
        perf.throughput("decode", LLAMA_8B, "H100 SXM", count=2, gpu_milli=500)
