"""How much accelerator memory serving a model takes, and which chips can hold it.

``estimate`` adds up four parts, all in bytes:

* weights: ``ModelInfo.weight_bytes(precision)``, split evenly over the devices (tensor
  parallel; beyond one node the same split holds for pipeline stages);
* KV cache: ``kv_bytes_per_token x context_tokens x concurrent_sequences``. Tensor parallel
  splits GQA/MHA caches by KV head, but a device always holds at least one head (engines
  replicate heads when devices outnumber them); an MLA latent is replicated on every device;
* activations, a rule of thumb: a prefill chunk of up to ``PREFILL_CHUNK_TOKENS`` tokens keeps
  about ``ACTIVATION_BYTES_PER_HIDDEN`` bytes per token and hidden unit alive (residual,
  normed input, QKV, MLP gate/up and activation at 16 bit), plus fp32 logits over the
  vocabulary for each sequence being sampled. Not divided over devices (conservative);
* runtime overhead: ``RUNTIME_OVERHEAD_BYTES`` per device for the runtime context, CUDA or
  ACL graphs, communication buffers and workspaces.

``fits_on`` applies that to one placement; ``plan`` searches every chip of the catalog.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType

from suanli.catalog.chips import Chip, load_catalog
from suanli.errors import ValidationError
from suanli.models.catalog import PRECISIONS, STACK_ENGINES, ModelInfo

__all__ = [
    "ACTIVATION_BYTES_PER_HIDDEN",
    "ENGINE_PRECISIONS",
    "GIB",
    "PREFILL_CHUNK_TOKENS",
    "RUNTIME_OVERHEAD_BYTES",
    "TP_SIZES",
    "Fit",
    "MemoryEstimate",
    "chip_precisions",
    "estimate",
    "fits_on",
    "plan",
]

GIB = 1 << 30
TP_SIZES = (1, 2, 4, 8, 16)
PREFILL_CHUNK_TOKENS = 8192  # the order of the engines' default chunked-prefill token budget
ACTIVATION_BYTES_PER_HIDDEN = 32  # ~16 live 16-bit values per token and hidden unit
LOGIT_BYTES = 4  # fp32 logits per vocabulary entry for each sampled sequence
RUNTIME_OVERHEAD_BYTES = 3 * GIB // 2  # per device: runtime context, graphs, workspaces
DEFAULT_MEMORY_UTILIZATION = 0.9

ENGINE_PRECISIONS: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "vllm": frozenset({"fp32", "bf16", "fp16", "fp8", "int8", "int4", "awq", "gptq"}),
        "sglang": frozenset({"fp32", "bf16", "fp16", "fp8", "int8", "int4", "awq", "gptq"}),
        "vllm-ascend": frozenset({"bf16", "fp16", "int8", "int4"}),  # W8A8, W4A8/W4A16
        "mindie": frozenset({"bf16", "fp16", "int8", "int4"}),  # W8A8, W8A16, W4A16
        "llama.cpp": frozenset({"fp32", "bf16", "fp16", "int8", "int4", "q4_1"}),  # GGUF types
        "cpu": frozenset({"fp32"}),
    }
)
"""Weight precisions each engine loads (quantized formats by their storage width)."""

_PRECISION_RANK = {p: i for i, p in enumerate(PRECISIONS)}  # fp32 first, 4-bit last
_HEAD_SPLIT_ENGINES = frozenset({"vllm", "vllm-ascend", "sglang", "mindie"})


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes needed to serve ``model``. ``weights`` and ``kv_cache`` are whole-model figures;
    ``*_per_device``, ``activations`` and ``overhead`` are what each of ``devices`` holds;
    ``total`` is ``per_device x devices`` (replicated parts counted on every device)."""

    model: str
    precision: str
    context_tokens: int
    concurrent_sequences: int
    kv_dtype_bytes: int
    devices: int
    weights: int
    kv_cache: int
    activations: int
    overhead: int
    weights_per_device: int
    kv_cache_per_device: int
    per_device: int
    total: int


@dataclass(frozen=True)
class Fit:
    """One placement: ``count`` devices of ``chip_model`` at ``precision``; ``engines`` that
    could serve it; ``fits`` and, either way, the reason in words."""

    chip_model: str
    vendor: str
    domestic: bool
    precision: str
    count: int
    per_device_bytes: int
    device_memory_bytes: int | None
    engines: tuple[str, ...]
    fits: bool
    reason: str


def _positive(value: int, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValidationError(f"{name} must be a whole number >= 1, not {value!r}", field=name)


def _kv_per_device_per_token(model: ModelInfo, kv_dtype_bytes: int, devices: int) -> int:
    if model.architecture == "encoder" or model.mla is not None:
        return model.kv_bytes_per_token(kv_dtype_bytes)  # nothing, or a replicated latent
    heads = math.ceil(model.kv_heads / devices)
    return 2 * model.layers * heads * model.head_dim * kv_dtype_bytes


def _activations(model: ModelInfo, context_tokens: int, concurrent_sequences: int) -> int:
    chunk = min(context_tokens * concurrent_sequences, PREFILL_CHUNK_TOKENS)
    hidden = chunk * model.hidden_size * ACTIVATION_BYTES_PER_HIDDEN
    logits = 0 if model.kind == "embedding" else concurrent_sequences * model.vocab_size
    return hidden + logits * LOGIT_BYTES


def estimate(
    model: ModelInfo,
    precision: str,
    context_tokens: int,
    concurrent_sequences: int = 1,
    kv_dtype_bytes: int = 2,
    *,
    devices: int = 1,
) -> MemoryEstimate:
    """Memory to serve ``concurrent_sequences`` of ``context_tokens`` each on ``devices``
    devices (see the module docstring for the rules)."""
    _positive(context_tokens, "context_tokens")
    _positive(concurrent_sequences, "concurrent_sequences")
    _positive(kv_dtype_bytes, "kv_dtype_bytes")
    _positive(devices, "devices")
    if context_tokens > model.context_length:
        raise ValidationError(
            f"context_tokens {context_tokens} exceeds the {model.context_length} tokens "
            f"{model.id} supports",
            field="context_tokens",
        )
    tokens = context_tokens * concurrent_sequences
    weights = model.weight_bytes(precision)
    weights_per_device = math.ceil(weights / devices)
    kv_cache = model.kv_bytes_per_token(kv_dtype_bytes) * tokens
    kv_per_device = _kv_per_device_per_token(model, kv_dtype_bytes, devices) * tokens
    activations = _activations(model, context_tokens, concurrent_sequences)
    per_device = weights_per_device + kv_per_device + activations + RUNTIME_OVERHEAD_BYTES
    return MemoryEstimate(
        model=model.id,
        precision=precision,
        context_tokens=context_tokens,
        concurrent_sequences=concurrent_sequences,
        kv_dtype_bytes=kv_dtype_bytes,
        devices=devices,
        weights=weights,
        kv_cache=kv_cache,
        activations=activations,
        overhead=RUNTIME_OVERHEAD_BYTES,
        weights_per_device=weights_per_device,
        kv_cache_per_device=kv_per_device,
        per_device=per_device,
        total=per_device * devices,
    )


def chip_precisions(chip: Chip) -> tuple[str, ...]:
    """Weight precisions ``chip`` can serve, best first.

    16-bit is bf16, except on chips that publish an FP16 but no BF16 figure (V100, T4, P100,
    Ascend 310P), which get fp16. fp8 needs a published dense FP8 figure. int8, the 4-bit
    formats, q4_1 and fp32 are dequantized or computed natively everywhere."""
    fp16_only = chip.bf16_dense_tflops is None and chip.fp16_dense_tflops is not None
    sixteen = "fp16" if fp16_only else "bf16"
    fp8 = ("fp8",) if chip.fp8_dense_tflops is not None else ()
    return ("fp32", sixteen, *fp8, "int8", "q4_1", "int4", "awq", "gptq")


def _splits(model: ModelInfo, engine: str, count: int) -> bool:
    """Tensor-parallel engines split attention heads evenly, and KV heads evenly or by
    replication; llama.cpp splits by layers, so any count works for it."""
    if count == 1 or engine not in _HEAD_SPLIT_ENGINES:
        return True
    if model.attention_heads % count:
        return False
    return model.mla is not None or model.kv_heads % count == 0 or count % model.kv_heads == 0


def _gib(n: int | Decimal) -> str:
    return f"{Decimal(n) / GIB:.1f} GiB"


def _resolve(chip: Chip | str) -> Chip:
    return chip if isinstance(chip, Chip) else load_catalog().get(chip, field="chip")


def fits_on(
    model: ModelInfo,
    chip: Chip | str,
    count: int,
    precision: str,
    context_tokens: int | None = None,
    concurrent_sequences: int = 1,
    memory_utilization: float = DEFAULT_MEMORY_UTILIZATION,
    kv_dtype_bytes: int = 2,
) -> Fit:
    """Whether ``count`` x ``chip`` can serve ``model`` at ``precision``.

    In order: an engine of the chip's software stack must serve the model, the chip and that
    engine must support the precision, the engine must split the model over ``count`` devices
    (see ``_splits``), and ``estimate(...).per_device`` must be at most ``memory_utilization``
    of the device memory (``memory_gb`` of the chip catalog, read as GiB: vendors' "80 GB" of
    HBM are binary gigabytes). ``context_tokens`` defaults to the model's context length."""
    chip = _resolve(chip)
    if not 0 < memory_utilization <= 1:
        raise ValidationError("memory_utilization must be in (0, 1]", field="memory_utilization")
    ctx = model.context_length if context_tokens is None else context_tokens
    est = estimate(model, precision, ctx, concurrent_sequences, kv_dtype_bytes, devices=count)
    memory = None if chip.memory_gb is None else int(chip.memory_gb * GIB)
    placement = f"{count} x {chip.model} at {precision}"

    def fit(engines: tuple[str, ...], ok: bool, reason: str) -> Fit:
        return Fit(
            chip.model, chip.vendor, chip.domestic_cn, precision, count, est.per_device,
            memory, engines, ok, reason,
        )  # fmt: skip

    stack = chip.software_stack
    engines = tuple(e for e in model.engines if e in STACK_ENGINES.get(stack, ()))
    if not engines:
        runs_on = ", ".join(model.engines)
        return fit((), False, f"no engine serves {model.id} on {stack} (its engines: {runs_on})")
    if precision not in chip_precisions(chip):
        return fit(engines, False, f"{chip.model} does not support {precision}")
    by_precision = tuple(e for e in engines if precision in ENGINE_PRECISIONS[e])
    if not by_precision:
        return fit(engines, False, f"none of {', '.join(engines)} serves {precision} weights")
    by_layout = tuple(e for e in by_precision if _splits(model, e, count))
    if not by_layout:
        return fit(
            by_precision,
            False,
            f"{model.attention_heads} attention / {model.kv_heads} KV heads do not split "
            f"over {count} devices",
        )
    if memory is None:
        return fit(by_layout, False, f"{chip.model} has no published memory size")
    usable = int(memory * Decimal(str(memory_utilization)))
    limit = f"{_gib(usable)} usable ({memory_utilization:.0%} of {_gib(memory)})"
    if est.per_device > usable:
        need = _gib(est.per_device)
        return fit(by_layout, False, f"{placement} needs {need} per device; {limit}")
    via = ", ".join(by_layout)
    return fit(by_layout, True, f"{placement}: {_gib(est.per_device)} per device of {limit}; {via}")


def _candidates(model: ModelInfo, chip: Chip) -> list[str]:
    """Precisions worth planning: 16-bit, fp8, int8 and int4, plus fp32 for a native fp32
    model and the precision of a shipped local file (q4_1 for a GGUF); engine-supported."""
    stack_engines = [e for e in model.engines if e in STACK_ENGINES.get(chip.software_stack, ())]
    wanted = {"bf16", "fp16", "fp8", "int8", "int4", model.precision}
    if model.local is not None:
        wanted.add(model.local.precision)
    return [
        p
        for p in chip_precisions(chip)
        if p in wanted and any(p in ENGINE_PRECISIONS[e] for e in stack_engines)
    ]


def plan(
    model: ModelInfo,
    chips: Iterable[Chip | str] | None = None,
    precision: str | None = None,
    context_tokens: int | None = None,
    concurrent_sequences: int = 1,
    memory_utilization: float = DEFAULT_MEMORY_UTILIZATION,
    kv_dtype_bytes: int = 2,
) -> list[Fit]:
    """Which chips, how many, at which precision can serve ``model``.

    For every chip (default: the whole chip catalog) whose software stack has an engine for
    the model, and every precision (``precision``, or those of ``_candidates``), the smallest
    count in ``TP_SIZES`` that ``fits_on``; where none fits, the refusal at the largest count
    the model splits over, with its reason. Chips without an engine for the model are left
    out. Sorted: placements that fit first, then fewest devices, highest precision, catalog
    order."""
    catalog = load_catalog()
    chosen = list(catalog) if chips is None else [_resolve(c) for c in chips]
    order = {c.model: i for i, c in enumerate(catalog)}
    fits: list[Fit] = []
    for chip in chosen:
        engines = [e for e in model.engines if e in STACK_ENGINES.get(chip.software_stack, ())]
        if not engines:
            continue
        for prec in [precision] if precision is not None else _candidates(model, chip):
            best: Fit | None = None
            for count in TP_SIZES:
                result = fits_on(
                    model, chip, count, prec, context_tokens, concurrent_sequences,
                    memory_utilization, kv_dtype_bytes,
                )  # fmt: skip
                if result.fits or best is None or any(_splits(model, e, count) for e in engines):
                    best = result
                if result.fits:
                    break
            if best is not None:
                fits.append(best)
    fits.sort(
        key=lambda f: (
            not f.fits,
            f.count,
            _PRECISION_RANK.get(f.precision, len(_PRECISION_RANK)),
            order.get(f.chip_model, len(order)),
        )
    )
    return fits
