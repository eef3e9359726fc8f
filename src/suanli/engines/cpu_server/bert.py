"""A BERT sentence-embedding forward pass in plain numpy (float32, no torch).

It reproduces the sentence-transformers pipeline of a model directory laid out the
usual way (``config.json``, ``model.safetensors``, ``tokenizer.json``,
``sentence_bert_config.json``, ``1_Pooling/config.json``, ``modules.json``):

    WordPiece tokens -> BERT encoder -> mean pooling over real tokens -> L2 normalise

Only what all-MiniLM-L6-v2 and its siblings use is supported: absolute position
embeddings, exact (erf) GELU, mean pooling, and an optional Normalize module.
Anything else is refused when loading rather than silently computed differently.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
from safetensors.numpy import load_file
from tokenizers import Tokenizer

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
_Float = TypeVar("_Float", bound=np.floating[Any])

_SQRT_HALF = np.float32(1.0 / math.sqrt(2.0))
_GELU_BLOCK = 1 << 16  # elements per block: the temporaries stay in the CPU cache

# Chebyshev fit of erfc(z) = t * exp(-z^2 + P(t)), t = 1 / (1 + z/2), z >= 0
# (Press et al., Numerical Recipes, section 6.2): fractional error below 1.2e-7 for
# every z >= 0, so erf is within 2.4e-7 everywhere, below float32 resolution near 1.
_ERFC_COEFFS = (
    0.17087277,
    -0.82215223,
    1.48851587,
    -1.13520398,
    0.27886807,
    -0.18628806,
    0.09678418,
    0.37409196,
    1.00002368,
    -1.26551223,
)


class ModelFormatError(ValueError):
    """The model directory is missing a file or asks for something this engine lacks."""


def erfc_nonneg(z: npt.NDArray[_Float]) -> npt.NDArray[_Float]:
    """erfc for z >= 0, elementwise, in the dtype of ``z`` (a new array)."""
    t = 0.5 * z
    t += 1.0
    np.reciprocal(t, out=t)
    poly = np.full_like(z, _ERFC_COEFFS[0])
    for c in _ERFC_COEFFS[1:]:
        poly *= t
        poly += c
    poly -= z * z
    np.exp(poly, out=poly)
    poly *= t
    return poly


def erf(x: npt.NDArray[_Float]) -> npt.NDArray[_Float]:
    """The error function, elementwise, accurate to about 2.4e-7 (absolute)."""
    e = erfc_nonneg(np.abs(x))
    return np.where(x >= 0, 1.0 - e, e - 1.0).astype(x.dtype, copy=False)


def gelu(x: npt.NDArray[_Float]) -> npt.NDArray[_Float]:
    """Exact GELU, ``x * Phi(x) = x/2 * (1 + erf(x/sqrt 2))``, as BERT's ``gelu``."""
    return gelu_inplace(np.array(x, copy=True, order="C"))


def gelu_inplace(x: npt.NDArray[_Float]) -> npt.NDArray[_Float]:
    """GELU of ``x`` written over ``x`` (which is returned), a cache-sized block at a time.

    It goes through erfc of the absolute value so that the negative tail, where GELU
    is tiny, keeps its relative precision instead of cancelling in ``1 + erf``.
    """
    if not x.flags.c_contiguous:
        raise ValueError("gelu_inplace needs a C-contiguous array")
    flat = x.reshape(-1)
    for start in range(0, flat.size, _GELU_BLOCK):
        block = flat[start : start + _GELU_BLOCK]
        z = np.abs(block)
        z *= _SQRT_HALF
        half_x_erfc = erfc_nonneg(z)
        half_x_erfc *= block
        half_x_erfc *= 0.5  # x/2 * erfc(|x|/sqrt 2)
        negative = block < 0
        # x >= 0: x/2 * (2 - erfc(x/sqrt 2)) = x - that; x < 0: x/2 * erfc(-x/sqrt 2) = that
        block -= half_x_erfc
        np.copyto(block, half_x_erfc, where=negative)
    return x


def layer_norm(x: F32, weight: F32, bias: F32, eps: float) -> F32:
    centred: F32 = x - x.mean(axis=-1, keepdims=True)
    var = np.mean(centred * centred, axis=-1, keepdims=True)
    centred /= np.sqrt(var + np.float32(eps))
    centred *= weight
    centred += bias
    return centred


@dataclass(frozen=True)
class _Layer:
    qkv_w: F32  # (hidden, 3*hidden), the query part pre-scaled by 1/sqrt(head_dim)
    qkv_b: F32
    attn_out_w: F32  # (hidden, hidden)
    attn_out_b: F32
    attn_ln_w: F32
    attn_ln_b: F32
    inter_w: F32  # (hidden, intermediate)
    inter_b: F32
    out_w: F32  # (intermediate, hidden)
    out_b: F32
    out_ln_w: F32
    out_ln_b: F32


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ModelFormatError(f"missing {path.name} in {path.parent}") from exc


class BertEmbedder:
    """A loaded sentence-embedding model; thread-compatible (no mutable state)."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        weights: dict[str, npt.NDArray[Any]],
        config: dict[str, Any],
        max_seq_length: int,
        normalize: bool = True,
    ) -> None:
        if config.get("position_embedding_type", "absolute") != "absolute":
            raise ModelFormatError("only absolute position embeddings are supported")
        if config.get("hidden_act", "gelu") != "gelu":
            raise ModelFormatError(f"unsupported activation {config.get('hidden_act')!r}")
        self.hidden: int = int(config["hidden_size"])
        self.heads: int = int(config["num_attention_heads"])
        if self.hidden % self.heads:
            raise ModelFormatError("hidden_size is not a multiple of num_attention_heads")
        self.head_dim = self.hidden // self.heads
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        self.normalize = normalize
        self.max_seq_length = min(max_seq_length, int(config["max_position_embeddings"]))
        self.pad_id = int(config.get("pad_token_id", 0))

        self._tokenizer = tokenizer
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(max_length=self.max_seq_length)

        w = _strip_prefix(weights)

        def get(name: str) -> F32:
            if name not in w:
                raise ModelFormatError(f"weight {name} missing from model.safetensors")
            return np.ascontiguousarray(w[name], dtype=np.float32)

        def linear(name: str) -> tuple[F32, F32]:
            # stored as torch Linear, (out, in); keep (in, out) so that y = x @ W + b
            return np.ascontiguousarray(get(f"{name}.weight").T), get(f"{name}.bias")

        self.word_emb = get("embeddings.word_embeddings.weight")
        self.pos_emb = get("embeddings.position_embeddings.weight")
        self.type_emb = get("embeddings.token_type_embeddings.weight")
        self.emb_ln_w = get("embeddings.LayerNorm.weight")
        self.emb_ln_b = get("embeddings.LayerNorm.bias")
        if self.word_emb.shape[1] != self.hidden:
            raise ModelFormatError("word embedding width differs from hidden_size")

        scale = np.float32(1.0 / math.sqrt(self.head_dim))
        self.layers: list[_Layer] = []
        for i in range(int(config["num_hidden_layers"])):
            p = f"encoder.layer.{i}."
            qw, qb = linear(p + "attention.self.query")
            kw, kb = linear(p + "attention.self.key")
            vw, vb = linear(p + "attention.self.value")
            ow, ob = linear(p + "attention.output.dense")
            iw, ib = linear(p + "intermediate.dense")
            o2w, o2b = linear(p + "output.dense")
            self.layers.append(
                _Layer(
                    qkv_w=np.ascontiguousarray(np.concatenate([qw * scale, kw, vw], axis=1)),
                    qkv_b=np.concatenate([qb * scale, kb, vb]),
                    attn_out_w=ow,
                    attn_out_b=ob,
                    attn_ln_w=get(p + "attention.output.LayerNorm.weight"),
                    attn_ln_b=get(p + "attention.output.LayerNorm.bias"),
                    inter_w=iw,
                    inter_b=ib,
                    out_w=o2w,
                    out_b=o2b,
                    out_ln_w=get(p + "output.LayerNorm.weight"),
                    out_ln_b=get(p + "output.LayerNorm.bias"),
                )
            )

    @classmethod
    def from_dir(cls, path: str | Path) -> BertEmbedder:
        """Load a sentence-transformers model directory (mean pooling BERT)."""
        root = Path(path)
        if not root.is_dir():
            raise ModelFormatError(f"{root} is not a directory")
        config = _read_json(root / "config.json")
        if config.get("model_type", "bert") != "bert":
            raise ModelFormatError(f"unsupported model_type {config.get('model_type')!r}")

        max_len = int(config["max_position_embeddings"])
        st_config = root / "sentence_bert_config.json"
        if st_config.exists():
            max_len = int(_read_json(st_config).get("max_seq_length", max_len))

        normalize = False
        modules_file = root / "modules.json"
        if modules_file.exists():
            kinds = [str(m["type"]).rsplit(".", 1)[-1] for m in _read_json(modules_file)]
            unknown = set(kinds) - {"Transformer", "Pooling", "Normalize"}
            if unknown:
                raise ModelFormatError(f"unsupported sentence-transformers modules {unknown}")
            normalize = "Normalize" in kinds
        pooling_file = root / "1_Pooling" / "config.json"
        if pooling_file.exists():
            pooling = _read_json(pooling_file)
            modes = {k for k, v in pooling.items() if k.startswith("pooling_mode") and v}
            if modes != {"pooling_mode_mean_tokens"}:
                raise ModelFormatError(f"only mean pooling is supported, got {sorted(modes)}")

        weights_file = root / "model.safetensors"
        if not weights_file.exists():
            raise ModelFormatError(f"missing model.safetensors in {root}")
        tokenizer_file = root / "tokenizer.json"
        if not tokenizer_file.exists():
            raise ModelFormatError(f"missing tokenizer.json in {root}")
        return cls(
            tokenizer=Tokenizer.from_file(str(tokenizer_file)),
            weights=load_file(str(weights_file)),
            config=config,
            max_seq_length=max_len,
            normalize=normalize,
        )

    @property
    def dimensions(self) -> int:
        return self.hidden

    def tokenize(self, texts: Sequence[str]) -> list[I64]:
        """Token ids of each text, with [CLS]/[SEP], truncated to ``max_seq_length``."""
        encodings = self._tokenizer.encode_batch(list(texts))
        return [np.asarray(e.ids, dtype=np.int64) for e in encodings]

    def forward(self, batch: Sequence[I64]) -> F32:
        """Sentence embeddings of already tokenized sequences, padded here to the longest."""
        if not batch:
            return np.zeros((0, self.hidden), dtype=np.float32)
        n = len(batch)
        length = max(len(ids) for ids in batch)
        if length > self.max_seq_length:
            raise ValueError(f"a sequence is longer than {self.max_seq_length} tokens")
        ids = np.full((n, length), self.pad_id, dtype=np.int64)
        mask = np.zeros((n, length), dtype=np.float32)
        for row, seq in enumerate(batch):
            ids[row, : len(seq)] = seq
            mask[row, : len(seq)] = 1.0

        x = self.word_emb[ids] + self.pos_emb[:length] + self.type_emb[0]
        x = layer_norm(x, self.emb_ln_w, self.emb_ln_b, self.eps).reshape(n * length, -1)
        # additive mask: padded keys get the lowest float, so their softmax weight is 0
        bias = ((1.0 - mask) * np.finfo(np.float32).min)[:, None, None, :]
        for layer in self.layers:
            x = self._layer(layer, x, bias, n, length)

        hidden = x.reshape(n, length, self.hidden)
        summed = np.einsum("bld,bl->bd", hidden, mask)
        counts = np.maximum(mask.sum(axis=1, keepdims=True), np.float32(1e-9))
        pooled: F32 = (summed / counts).astype(np.float32, copy=False)
        if self.normalize:
            norms = np.linalg.norm(pooled, axis=1, keepdims=True)
            pooled = pooled / np.maximum(norms, np.float32(1e-12))
        return pooled

    def _layer(self, p: _Layer, x: F32, bias: F32, n: int, length: int) -> F32:
        h, d = self.heads, self.head_dim
        qkv = x @ p.qkv_w
        qkv += p.qkv_b
        # (n*L, 3*H) -> (3, n, heads, L, head_dim)
        q, k, v = qkv.reshape(n, length, 3, h, d).transpose(2, 0, 3, 1, 4)
        scores = q @ k.transpose(0, 1, 3, 2)
        scores += bias
        scores -= scores.max(axis=-1, keepdims=True)
        np.exp(scores, out=scores)
        scores /= scores.sum(axis=-1, keepdims=True)
        context = (scores @ v).transpose(0, 2, 1, 3).reshape(n * length, self.hidden)

        attn = context @ p.attn_out_w
        attn += p.attn_out_b
        attn += x
        x = layer_norm(attn, p.attn_ln_w, p.attn_ln_b, self.eps)

        inter: F32 = x @ p.inter_w
        inter += p.inter_b
        out: F32 = gelu_inplace(inter) @ p.out_w
        out += p.out_b
        out += x
        return layer_norm(out, p.out_ln_w, p.out_ln_b, self.eps)

    def embed(self, texts: Sequence[str], batch_size: int = 32) -> tuple[F32, list[int]]:
        """Embeddings (one row per text, in order) and each text's token count.

        The token count includes the [CLS] and [SEP] tokens the model actually read.
        Texts are batched by similar length so little time goes into padding.
        """
        token_ids = self.tokenize(texts)
        out = np.zeros((len(token_ids), self.hidden), dtype=np.float32)
        for chunk in plan_batches([len(t) for t in token_ids], batch_size):
            out[chunk] = self.forward([token_ids[i] for i in chunk])
        return out, [len(t) for t in token_ids]


def plan_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of at most ``batch_size``, longest first.

    A batch is padded to its first (longest) member, so a new batch also starts when
    a sequence is less than half as long as that: no sequence is padded to more than
    twice its length, and one long text does not make a whole batch expensive.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    for i in order:
        current = batches[-1] if batches else None
        if current is None or len(current) >= batch_size or 2 * lengths[i] < lengths[current[0]]:
            batches.append([i])
        else:
            current.append(i)
    return batches


def _strip_prefix(weights: dict[str, npt.NDArray[Any]]) -> dict[str, npt.NDArray[Any]]:
    """Accept checkpoints saved from ``BertForX`` (keys under ``bert.``) as well."""
    if "embeddings.word_embeddings.weight" in weights:
        return weights
    prefix = "bert."
    if f"{prefix}embeddings.word_embeddings.weight" in weights:
        return {k.removeprefix(prefix): v for k, v in weights.items()}
    raise ModelFormatError("model.safetensors holds no BERT embeddings")
