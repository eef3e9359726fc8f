"""A small synchronous client of the control-plane API, used by the CLI and the agent."""

from __future__ import annotations

from typing import Any

import httpx

from suanli import __version__


class ApiError(Exception):
    """An error answer of the API, with its status and OpenAI-shaped body."""

    def __init__(self, status: int, message: str, param: str | None = None, **extra: Any) -> None:
        where = f" (field: {param})" if param else ""
        line = f" (line {extra['line']})" if extra.get("line") else ""
        super().__init__(f"{message}{where}{line} [HTTP {status}]")
        self.status = status
        self.message = message
        self.param = param
        self.extra = extra


class ApiClient:
    def __init__(
        self,
        server: str,
        token: str | None,
        timeout: float = 60.0,
        http: httpx.Client | None = None,
    ) -> None:
        """``http`` replaces the network client (tests pass an in-process one)."""
        self._http = http or httpx.Client(base_url=server.rstrip("/"), timeout=timeout)
        self._http.headers["user-agent"] = f"suanli/{__version__}"
        if token:
            self._http.headers["authorization"] = f"Bearer {token}"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def raw(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The response itself (for bytes: PDF, PNG); ApiError on an error status."""
        response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise _error(response)
        return response

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise _error(response)
        if response.status_code == 204 or not response.content:
            return None
        ctype = response.headers.get("content-type", "")
        return response.json() if "json" in ctype else response.text

    def get(self, path: str, **params: Any) -> Any:
        clean = {k: v for k, v in params.items() if v is not None}
        return self.request("GET", path, params=clean)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> Any:
        return self.request("POST", path, json=body, **kwargs)

    def patch(self, path: str, body: Any) -> Any:
        return self.request("PATCH", path, json=body)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)


def _error(response: httpx.Response) -> ApiError:
    try:
        err = response.json()["error"]
        extra = {k: v for k, v in err.items() if k not in ("message", "param")}
        return ApiError(response.status_code, err["message"], err.get("param"), **extra)
    except (ValueError, KeyError, TypeError):
        return ApiError(response.status_code, response.text[:500] or response.reason_phrase)
