"""An OpenAI-compatible HTTP front for a CPU sentence-embedding model.

Routes:

* ``POST /v1/embeddings``: OpenAI's request and response, ``encoding_format``
  ``float`` or ``base64`` (little-endian float32, as OpenAI sends it);
* ``GET /v1/models`` and ``GET /v1/models/{id}``: the one served model;
* ``GET /health``: 200 once the model is loaded (it is loaded before the port opens).

Every error has OpenAI's shape ``{"error": {"message", "type", "param", "code"}}``.

The forward pass runs on one worker thread (numpy's BLAS already uses the cores), one
batch of at most ``max_batch`` inputs at a time, so concurrent requests take turns batch
by batch and the event loop stays free to accept and answer.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from suanli.engines.cpu_server.bert import plan_batches

log = logging.getLogger(__name__)

MAX_INPUTS = 2048  # OpenAI's limit on the number of inputs in one request
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024


class Embedder(Protocol):
    """What the server needs of a model (``BertEmbedder`` is one)."""

    @property
    def dimensions(self) -> int: ...

    def tokenize(self, texts: Sequence[str]) -> list[npt.NDArray[np.int64]]: ...

    def forward(self, batch: Sequence[npt.NDArray[np.int64]]) -> npt.NDArray[np.float32]: ...


class ApiError(Exception):
    """An error answered to the client in OpenAI's shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.param = param
        self.code = code

    def response(self) -> JSONResponse:
        body = {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }
        return JSONResponse(body, status_code=self.status)


@dataclass(frozen=True)
class EmbeddingRequest:
    texts: list[str]
    encoding_format: str  # "float" | "base64"


class EmbeddingService:
    """Runs the model off the event loop, one bounded batch at a time."""

    def __init__(self, embedder: Embedder, model_name: str, max_batch: int = 32) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.embedder = embedder
        self.model_name = model_name
        self.max_batch = max_batch
        self.created = int(time.time())
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed")

    async def embed(self, texts: Sequence[str]) -> tuple[npt.NDArray[np.float32], list[int]]:
        loop = asyncio.get_running_loop()
        token_ids = await loop.run_in_executor(self._executor, self.embedder.tokenize, texts)
        counts = [len(ids) for ids in token_ids]
        out = np.empty((len(token_ids), self.embedder.dimensions), dtype=np.float32)
        # each batch is its own job, so another request's batches can run in between
        for chunk in plan_batches(counts, self.max_batch):
            batch = [token_ids[i] for i in chunk]
            out[chunk] = await loop.run_in_executor(self._executor, self.embedder.forward, batch)
        return out, counts

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def parse_embedding_request(body: Any, model_name: str, dimensions: int) -> EmbeddingRequest:
    """Validate an OpenAI embeddings request body; raise ``ApiError`` when it is wrong."""
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.")

    model = body.get("model")
    if model is None:
        raise ApiError(400, "You must provide a model parameter.", param="model")
    if not isinstance(model, str):
        raise ApiError(400, "'model' must be a string.", param="model")
    if model != model_name:
        raise ApiError(
            404,
            f"The model `{model}` does not exist or you do not have access to it.",
            param="model",
            code="model_not_found",
        )

    texts = _parse_input(body.get("input"))

    encoding_format = body.get("encoding_format")
    if encoding_format is None:
        encoding_format = "float"
    if encoding_format not in ("float", "base64"):
        raise ApiError(
            400,
            f"Invalid encoding_format {encoding_format!r}: expected 'float' or 'base64'.",
            param="encoding_format",
        )

    wanted = body.get("dimensions")
    if wanted is not None:
        if not isinstance(wanted, int) or isinstance(wanted, bool):
            raise ApiError(400, "'dimensions' must be an integer.", param="dimensions")
        if wanted != dimensions:
            raise ApiError(
                400,
                f"This model only produces {dimensions}-dimensional embeddings; "
                f"it does not support dimensions={wanted}.",
                param="dimensions",
            )

    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise ApiError(400, "'user' must be a string.", param="user")

    return EmbeddingRequest(texts=texts, encoding_format=encoding_format)


def _parse_input(value: Any) -> list[str]:
    if value is None:
        raise ApiError(400, "You must provide an input parameter.", param="input")
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise ApiError(400, "'input' must be a string or an array of strings.", param="input")
    if not value:
        raise ApiError(400, "'input' must not be empty.", param="input")
    if len(value) > MAX_INPUTS:
        raise ApiError(
            400,
            f"'input' holds {len(value)} items; at most {MAX_INPUTS} are allowed.",
            param="input",
        )
    for i, item in enumerate(value):
        if isinstance(item, str):
            if not item:
                raise ApiError(400, f"'input[{i}]' is an empty string.", param="input")
            continue
        if isinstance(item, int | list) and not isinstance(item, bool):
            # OpenAI clients send ids of OpenAI's own tokenizer here (some libraries do
            # so unasked); reading them as this model's ids would embed the wrong text.
            raise ApiError(
                400,
                "Token-id input is not supported by this model; send the text instead.",
                param="input",
                code="unsupported_input",
            )
        raise ApiError(400, f"'input[{i}]' must be a string.", param="input")
    return value


def render_embeddings(
    vectors: npt.NDArray[np.float32],
    counts: Sequence[int],
    model_name: str,
    encoding_format: str,
) -> bytes:
    """The response body of ``POST /v1/embeddings``."""
    data: list[dict[str, Any]] = []
    for index, row in enumerate(vectors):
        embedding: str | list[float]
        if encoding_format == "base64":
            embedding = base64.b64encode(row.astype("<f4").tobytes()).decode("ascii")
        else:
            embedding = row.tolist()
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    tokens = int(sum(counts))
    body = {
        "object": "list",
        "data": data,
        "model": model_name,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    return json.dumps(body, separators=(",", ":"), allow_nan=False).encode("utf-8")


async def _read_json(request: Request, max_body_bytes: int) -> Any:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_body_bytes:
        raise _too_large(max_body_bytes)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_body_bytes:
            raise _too_large(max_body_bytes)
        chunks.append(chunk)
    try:
        return json.loads(b"".join(chunks))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(
            400,
            "We could not parse the JSON body of your request. "
            "The request body must be valid JSON.",
        ) from exc


def _too_large(limit: int) -> ApiError:
    return ApiError(413, f"The request body is larger than {limit} bytes.", code="too_large")


def create_app(
    service: EmbeddingService, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
) -> Starlette:
    """The ASGI app serving ``service``; closes the service on shutdown."""

    def model_card() -> dict[str, Any]:
        return {
            "id": service.model_name,
            "object": "model",
            "created": service.created,
            "owned_by": "suanli",
        }

    async def embeddings(request: Request) -> Response:
        body = await _read_json(request, max_body_bytes)
        parsed = parse_embedding_request(body, service.model_name, service.embedder.dimensions)
        vectors, counts = await service.embed(parsed.texts)
        # a large float response takes a while to print; keep that off the event loop
        content = await asyncio.to_thread(
            render_embeddings, vectors, counts, service.model_name, parsed.encoding_format
        )
        return Response(content, media_type="application/json")

    async def list_models(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [model_card()]})

    async def get_model(request: Request) -> Response:
        model = request.path_params["model"]
        if model != service.model_name:
            raise ApiError(
                404,
                f"The model `{model}` does not exist or you do not have access to it.",
                param="model",
                code="model_not_found",
            )
        return JSONResponse(model_card())

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "model": service.model_name})

    async def on_api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return exc.response()

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 404:
            message = f"Invalid URL ({request.method} {request.url.path})"
            code: str | None = "not_found"
        elif exc.status_code == 405:
            message = f"Method {request.method} is not allowed on {request.url.path}"
            code = "method_not_allowed"
        else:
            message, code = str(exc.detail), None
        error = ApiError(exc.status_code, message, code=code).response()
        if exc.headers:
            error.headers.update(exc.headers)
        return error

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        log.exception("error while serving %s %s", request.method, request.url.path)
        return ApiError(
            500, "The server had an error while processing your request.", type_="server_error"
        ).response()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            service.close()

    return Starlette(
        routes=[
            Route("/v1/embeddings", embeddings, methods=["POST"]),
            Route("/v1/models", list_models, methods=["GET"]),
            Route("/v1/models/{model:path}", get_model, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
        ],
        exception_handlers={
            ApiError: on_api_error,
            HTTPException: on_http_error,
            Exception: on_unexpected,
        },
        lifespan=lifespan,
    )
