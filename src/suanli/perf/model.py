"""Throughput of a workload on a chip type, from the chip catalog or from measurements.

The estimate is a roofline of two ceilings, each a published (or measured) peak times an
efficiency:

* compute: ``dense TFLOPS at the precision x COMPUTE_EFFICIENCY[stack] x count`` divided by
  the FLOPs one token costs, ``FLOPS_PER_PARAM[kind] x active parameters``: 6 for training
  (forward 2, backward 4), 4 for a LoRA fine-tune (no weight gradients of the frozen base),
  2 for prefill and for each decoded token. Attention FLOPs are left out (small next to the
  matmuls at the context lengths used here).
* memory: ``bandwidth x MEMORY_EFFICIENCY[stack] x count`` divided by the bytes one decoded
  token moves: the weights read once per decode step and shared by the ``batch`` sequences
  of that step, plus the sequence's own KV cache (``context_tokens`` tokens).

Training, fine-tuning and prefill are compute-bound; decode (and ``inference``, which is
decode for chat models and prefill for embedding models) takes the lower ceiling. Devices
scale linearly: communication is not modelled, so compare chips at the same ``count``.

The efficiencies are model FLOPs utilisation and achieved-bandwidth fractions typical of
well-tuned stacks (CUDA: ~45 % MFU for large-model training, ~80 % of peak bandwidth in
decode); the younger CANN and other domestic stacks are set lower. They are assumptions, in
one table, meant to be replaced by measurement: ``PerfModel(calibration=...)`` takes
measured figures per ``(chip, metric)`` (see ``CALIBRATION_METRICS``), which replace the
catalog's. A figure the catalog leaves empty (Ascend 910B's TFLOPS, for one) is never
guessed: the estimate says so, and only a calibration fills it in.

Whether the workload fits in memory reuses ``suanli.models.memory``: serving kinds ask
``fits_on``; training adds mixed-precision Adam state (``TRAINING_BYTES_PER_PARAM``, sharded
over the devices) to the activations and runtime overhead of ``estimate``; a LoRA fine-tune
holds the frozen weights at the precision plus what ``estimate`` adds for one sequence.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from suanli.catalog.chips import Chip, ChipCatalog, load_catalog
from suanli.errors import ValidationError
from suanli.models.catalog import ModelCatalog, ModelInfo, load_models
from suanli.models.memory import DEFAULT_MEMORY_UTILIZATION, GIB, estimate, fits_on

__all__ = [
    "CALIBRATION_METRICS",
    "COMPUTE_EFFICIENCY",
    "DEFAULT_BATCH",
    "DEFAULT_CONTEXT",
    "FLOPS_PER_PARAM",
    "KINDS",
    "MEMORY_EFFICIENCY",
    "TRAINING_BYTES_PER_PARAM",
    "Bound",
    "Estimate",
    "PerfModel",
]

Kind = Literal["training", "finetune", "prefill", "decode", "inference", "rental"]
Bound = Literal["compute", "memory"]
KINDS: tuple[str, ...] = ("training", "finetune", "prefill", "decode", "inference", "rental")

FLOPS_PER_PARAM: Mapping[str, int] = {"training": 6, "finetune": 4, "prefill": 2, "decode": 2}
"""FLOPs per token and active parameter."""

COMPUTE_EFFICIENCY: Mapping[str, float] = {"CUDA": 0.45, "CANN": 0.35}
"""Fraction of the dense peak a large model reaches (MFU), per software stack."""
DEFAULT_COMPUTE_EFFICIENCY = 0.30  # other stacks: younger compilers and kernels

MEMORY_EFFICIENCY: Mapping[str, float] = {"CUDA": 0.80, "CANN": 0.70}
"""Fraction of the peak memory bandwidth a decode step reaches, per software stack."""
DEFAULT_MEMORY_EFFICIENCY = 0.65

TRAINING_BYTES_PER_PARAM = 16  # bf16 weights 2 + grads 2 + fp32 master 4 + Adam m, v 8
DEFAULT_BATCH = 16  # sequences decoded together
DEFAULT_CONTEXT = 4096  # tokens per sequence (prompt and output)

CALIBRATION_METRICS: Mapping[str, str] = {
    "matmul_bf16_tflops": "bf16_dense_tflops",
    "matmul_fp16_tflops": "fp16_dense_tflops",
    "matmul_fp8_tflops": "fp8_dense_tflops",
    "matmul_int8_tops": "int8_dense_tops",
    "memory_bandwidth_gbps": "memory_bw_gbps",
    "memory_gb": "memory_gb",
}
"""Measured metrics a calibration may give, and the catalog field each one replaces."""

_COMPUTE_FIELD = {
    "bf16": "bf16_dense_tflops",
    "fp16": "fp16_dense_tflops",
    "fp8": "fp8_dense_tflops",
    "int8": "int8_dense_tops",
}
_WEIGHT_ONLY = frozenset({"int4", "awq", "gptq", "q4_1"})  # 4-bit weights, 16-bit matmuls


@dataclass(frozen=True, slots=True)
class Estimate:
    """Throughput of ``count`` x ``chip`` on one workload.

    ``tokens_per_s`` is ``None`` when no model was named or a figure is missing (``reason``
    says which). ``compute_tflops`` and ``bandwidth_gbps`` are the effective ceilings of all
    devices together. ``fits`` says whether the model fits in the devices' memory."""

    kind: str
    chip: str
    model: str | None
    precision: str
    count: int
    tokens_per_s: float | None
    bound: Bound | None
    fits: bool
    reason: str
    compute_tflops: float | None = None
    bandwidth_gbps: float | None = None
    memory: str = ""  # the memory fit in words

    @property
    def rate(self) -> float | None:
        """A speed to compare chips on for this workload: tokens/s when a model is named;
        otherwise the effective ceiling that bounds the kind (TFLOPS, or GB/s for decode)."""
        if self.tokens_per_s is not None:
            return self.tokens_per_s
        if self.kind == "decode":
            return self.bandwidth_gbps
        return self.compute_tflops


def _float(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


class PerfModel:
    """Estimates from the chip and model catalogs; ``calibration`` maps ``(chip, metric)`` to
    a measured figure that replaces the catalog's (chip by model name or alias)."""

    def __init__(
        self,
        calibration: Mapping[tuple[str, str], float] | None = None,
        *,
        chips: ChipCatalog | None = None,
        models: ModelCatalog | None = None,
        batch: int = DEFAULT_BATCH,
        context_tokens: int = DEFAULT_CONTEXT,
    ) -> None:
        self.chips = chips if chips is not None else load_catalog()
        self.models = models if models is not None else load_models()
        if batch < 1 or context_tokens < 1:
            raise ValidationError("batch and context_tokens must be at least 1")
        self.batch = batch
        self.context_tokens = context_tokens
        overrides: dict[str, dict[str, Decimal]] = {}
        for (name, metric), value in (calibration or {}).items():
            field = CALIBRATION_METRICS.get(metric)
            if field is None:
                known = ", ".join(CALIBRATION_METRICS)
                raise ValidationError(f"unknown metric {metric!r}; known: {known}", "metric")
            if not math.isfinite(value) or value <= 0:
                raise ValidationError(f"{name} {metric}: {value!r} is not a positive number")
            chip = self.chips.get(name, field="chip")
            overrides.setdefault(chip.model, {})[field] = Decimal(repr(float(value)))
        self._chip_cache: dict[str, Chip | None] = {}
        self._overrides = overrides
        self._cache: dict[tuple[str, str | None, str, str, int, int], Estimate] = {}

    def chip(self, name: str) -> Chip | None:
        """The catalog chip called ``name`` with calibrated figures in place, or ``None``."""
        if name in self._chip_cache:
            return self._chip_cache[name]
        chip = self.chips.find(name)
        if chip is not None and chip.model in self._overrides:
            chip = dataclasses.replace(chip, **self._overrides[chip.model])  # type: ignore[arg-type]
        self._chip_cache[name] = chip
        return chip

    def peak_tflops(self, chip: str, precision: str) -> float | None:
        """Dense peak (TFLOPS, TOPS for int8) at ``precision``; weight-only 4-bit formats
        compute at 16 bit. ``None`` where the figure is unknown or the precision unsupported."""
        spec = self.chip(chip)
        if spec is None:
            return None
        if precision in _WEIGHT_ONLY:
            return _float(spec.dense_16bit_tflops)
        field = _COMPUTE_FIELD.get(precision)
        return None if field is None else _float(getattr(spec, field))

    def bandwidth_gbps(self, chip: str) -> float | None:
        spec = self.chip(chip)
        return None if spec is None else _float(spec.memory_bw_gbps)

    def throughput(
        self,
        workload_kind: str,
        model_id: str | None,
        chip: str,
        precision: str = "bf16",
        count: int = 1,
        *,
        gpu_milli: int = 1000,
    ) -> Estimate:
        """Tokens per second of ``workload_kind`` for ``model_id`` on ``count`` x ``chip``.

        ``gpu_milli`` below 1000 is a share of one device: its memory and its speed are that
        fraction of the device's."""
        key = (workload_kind, model_id, chip, precision, count, gpu_milli)
        cached = self._cache.get(key)
        if cached is None:
            cached = self._cache[key] = self._throughput(*key)
        return cached

    def relative_speed(
        self,
        workload_kind: str,
        model_id: str | None,
        chip: str,
        reference: str,
        precision: str = "bf16",
        count: int = 1,
    ) -> float | None:
        """How many times faster ``chip`` runs the workload than ``reference``; ``None`` when
        either rate is unknown."""
        mine = self.throughput(workload_kind, model_id, chip, precision, count).rate
        theirs = self.throughput(workload_kind, model_id, reference, precision, count).rate
        if mine is None or not theirs:
            return None
        return mine / theirs

    # --- internals ------------------------------------------------------------------------

    def _throughput(
        self, kind: str, model_id: str | None, chip: str, precision: str, count: int, milli: int
    ) -> Estimate:
        if kind not in KINDS:
            raise ValidationError(f"unknown workload kind {kind!r}; one of {', '.join(KINDS)}")
        if count < 1 or not 0 < milli <= 1000 or (milli < 1000 and count != 1):
            raise ValidationError("count >= 1, and a share of a device (gpu_milli) only of one")
        model = None if model_id is None else self.models.get(model_id)
        spec = self.chip(chip)

        if spec is None:
            why = f"{chip} is not in the chip catalog"
            return Estimate(
                kind, chip, model_id, precision, count, None, None, False, why, memory=why
            )
        share = count * milli / 1000
        stack = spec.software_stack
        peak = self.peak_tflops(chip, precision)
        bw = self.bandwidth_gbps(chip)
        flops = None
        if peak is not None:
            flops = peak * COMPUTE_EFFICIENCY.get(stack, DEFAULT_COMPUTE_EFFICIENCY) * share
        gbps = None
        if bw is not None:
            gbps = bw * MEMORY_EFFICIENCY.get(stack, DEFAULT_MEMORY_EFFICIENCY) * share

        fit = ""

        def out(tps: float | None, bound: Bound | None, fits: bool, reason: str) -> Estimate:
            return Estimate(
                kind, chip, model_id, precision, count, tps, bound, fits, reason, flops, gbps, fit
            )

        if model is None:
            needs = "bandwidth" if kind == "decode" else f"{precision} TFLOPS"
            have = gbps if kind == "decode" else flops
            missing = "" if have is not None else f"; {spec.model} has no {needs} figure"
            return out(None, None, True, f"no model named{missing}")
        fits, fit_reason = self._fits(kind, model, spec, precision, count, milli)
        fit = fit_reason
        if kind == "inference":
            kind = "prefill" if model.kind == "embedding" else "decode"
        if kind == "rental":
            return out(None, None, fits, fit_reason)
        per_token = FLOPS_PER_PARAM[kind] * model.active_params
        compute_rate = None if flops is None else flops * 1e12 / per_token
        memory_rate = None
        if kind == "decode" and gbps is not None:
            memory_rate = gbps * 1e9 / self._decode_bytes(model, precision)
        rates: dict[Bound, float | None] = {"compute": compute_rate, "memory": memory_rate}
        if kind != "decode":
            del rates["memory"]
        known = {b: r for b, r in rates.items() if r is not None}
        if len(known) < len(rates):
            lacking = "bandwidth" if compute_rate is not None else f"{precision} TFLOPS"
            why = f"{spec.model} has no {lacking} figure (calibrate it with a qualification run)"
            return out(None, None, fits, f"{why}; {fit_reason}")
        bound = min(known, key=lambda b: known[b])
        tps = known[bound]
        return out(tps, bound, fits, f"{tps:,.0f} tokens/s, {bound}-bound; {fit_reason}")

    def _decode_bytes(self, model: ModelInfo, precision: str) -> float:
        """Bytes moved per decoded token: one step's weights over the batch, plus the KV cache
        of the sequence. A MoE step reads at most the experts the batch's tokens touch."""
        weights = model.weight_bytes(precision)
        active = weights * model.active_params / model.params
        step = min(float(weights), active * self.batch)
        return step / self.batch + model.kv_bytes_per_token() * self.context_tokens

    def _fits(
        self, kind: str, model: ModelInfo, chip: Chip, precision: str, count: int, milli: int
    ) -> tuple[bool, str]:
        utilisation = DEFAULT_MEMORY_UTILIZATION * milli / 1000
        ctx = min(self.context_tokens, model.context_length)
        if kind in ("inference", "decode", "prefill", "rental"):
            fit = fits_on(model, chip, count, precision, ctx, self.batch, utilisation)
            return fit.fits, fit.reason
        if chip.memory_gb is None:
            return False, f"{chip.model} has no published memory size"
        est = estimate(model, precision, ctx, 1, devices=count)
        if kind == "training":
            state = math.ceil(model.params * TRAINING_BYTES_PER_PARAM / count)
            need = state + est.activations + est.overhead
            what = "weights, gradients and Adam state"
        else:
            need = est.per_device
            what = f"frozen {precision} weights"
        usable = int(chip.memory_gb * GIB) * utilisation
        where = f"{count} x {chip.model}"
        need_gib = need / GIB
        limit = f"{usable / GIB:.1f} GiB usable"
        if need > usable:
            return False, f"{where} needs {need_gib:.1f} GiB per device ({what}); {limit}"
        return True, f"{where}: {need_gib:.1f} GiB per device of {limit}"
