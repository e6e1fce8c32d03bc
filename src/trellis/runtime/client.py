"""A small JSON-over-unix-socket client for trellisd's and the runtime's local APIs."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from trellis.errors import (
    BadRequest,
    Conflict,
    NotFound,
    RuntimeProblem,
    TrellisError,
    ValidationError,
)


@dataclass(frozen=True, slots=True)
class LocalApi:
    socket: Path
    what: str  # "trellisd" or "the runtime", for error messages

    def call(self, method: str, path: str, body: Any = None, *, timeout: float = 60.0) -> Any:
        return asyncio.run(self.acall(method, path, body, timeout=timeout))

    async def acall(
        self, method: str, path: str, body: Any = None, *, timeout: float = 60.0
    ) -> Any:
        if not self.socket.exists():
            raise RuntimeProblem(
                f"{self.what} is not running (no {self.socket}); start the mesh with `trellis up`"
            )
        connector = aiohttp.UnixConnector(path=str(self.socket))
        try:
            async with (
                aiohttp.ClientSession(
                    connector=connector, timeout=aiohttp.ClientTimeout(total=timeout)
                ) as session,
                session.request(method, f"http://local{path}", json=body) as resp,
            ):
                status = resp.status
                text = await resp.text()
        except aiohttp.ClientConnectionError as e:
            raise RuntimeProblem(
                f"{self.what} does not answer on {self.socket} ({e}); "
                "check `trellis status`, or restart with `trellis down` then `trellis up`"
            ) from e
        data = _decode(text, status, self.what)
        if status >= 400:
            raise _error_for(status, data)
        return data


def _decode(text: str, status: int, what: str) -> Any:
    """The JSON body; a non-JSON answer (an unexpected server error) as one readable error."""
    try:
        return json.loads(text) if text else None
    except ValueError:
        raise RuntimeProblem(f"{what} answered HTTP {status}: {text.strip()[:200]}") from None


def _error_for(status: int, data: Any) -> TrellisError:
    message = str(data.get("error", data)) if isinstance(data, dict) else str(data)
    if status == 422:
        problems = data.get("errors", []) if isinstance(data, dict) else []
        if len(problems) > 1:
            message = "\n".join(problems)
        return ValidationError(message)
    if status == 404:
        return NotFound(message)
    if status == 409:
        return Conflict(message)
    if 400 <= status < 500:
        return BadRequest(message, status)  # the request was refused, the server is fine
    return RuntimeProblem(message)
