"""A small client of Trino's HTTP protocol (``POST /v1/statement``, then ``nextUri`` until done).

Enough for readiness probes, tests and scripts: one query at a time, rows as JSON values.
Timestamps keep their precision (the client declares ``PARAMETRIC_DATETIME``; without it Trino
rounds them to milliseconds). A query Trino fails raises ``TrinoQueryError`` with Trino's
message and error name; an unreachable server raises ``LakehouseError``.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any

import httpx

from streampulse.errors import LakehouseError, TrinoQueryError


@dataclass(frozen=True)
class QueryResult:
    """The rows of one query, with its column names and Trino types."""

    columns: tuple[str, ...]
    types: tuple[str, ...]
    rows: list[list[Any]]

    def dicts(self) -> list[dict[str, Any]]:
        """One ``{column: value}`` per row."""
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


class TrinoClient:
    """Queries against one Trino coordinator, as ``user`` (no authentication: loopback)."""

    def __init__(
        self,
        uri: str,
        *,
        user: str = "streampulse",
        catalog: str | None = None,
        schema: str | None = None,
        timeout_s: float = 120.0,
    ) -> None:
        self.uri = uri.rstrip("/")
        self.timeout_s = timeout_s
        headers = {
            "X-Trino-User": user,
            "X-Trino-Source": "streampulse",
            "X-Trino-Client-Capabilities": "PARAMETRIC_DATETIME",
        }
        if catalog:
            headers["X-Trino-Catalog"] = catalog
        if schema:
            headers["X-Trino-Schema"] = schema
        # Each poll returns within about a second: Trino long-polls, not the client.
        self._http = httpx.Client(headers=headers, timeout=30.0, trust_env=False)

    def query(self, sql: str) -> QueryResult:
        """Run ``sql`` to its end and return every row; the query is cancelled past the
        client's timeout."""
        deadline = time.monotonic() + self.timeout_s
        page = self._request("POST", f"{self.uri}/v1/statement", sql)
        columns: list[dict[str, Any]] = []
        rows: list[list[Any]] = []
        while True:
            if "error" in page:
                error = page["error"]
                raise TrinoQueryError(
                    str(error.get("message", error)),
                    name=str(error.get("errorName", "")),
                    kind=str(error.get("errorType", "")),
                )
            columns = columns or page.get("columns", [])
            rows.extend(page.get("data", []))
            next_uri = page.get("nextUri")
            if next_uri is None:
                break
            if time.monotonic() > deadline:
                self._cancel(next_uri)
                raise LakehouseError(f"Trino query still running after {self.timeout_s}s")
            page = self._request("GET", next_uri)
        return QueryResult(
            columns=tuple(column["name"] for column in columns),
            types=tuple(column["type"] for column in columns),
            rows=rows,
        )

    def _request(self, method: str, url: str, body: str | None = None) -> dict[str, Any]:
        try:
            response = self._http.request(method, url, content=body)
        except httpx.HTTPError as exc:
            raise LakehouseError(f"Trino at {self.uri} unreachable: {exc}") from exc
        if response.status_code == 503:  # starting up or shutting down: no JSON body
            raise LakehouseError(f"Trino at {self.uri} is not serving (503)")
        try:
            page: dict[str, Any] = response.json()
        except ValueError as exc:
            raise LakehouseError(
                f"Trino at {self.uri} answered {response.status_code}: {response.text[:300]}"
            ) from exc
        return page

    def _cancel(self, next_uri: str) -> None:
        # cancelling is a courtesy: the server abandons a query nobody polls anyway
        with contextlib.suppress(httpx.HTTPError):
            self._http.delete(next_uri)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> TrinoClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
