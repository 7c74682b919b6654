"""Bearer authentication whose key never shows up in reprs, logs or exceptions."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import httpx
from pydantic import SecretStr

__all__ = ["BearerAuth"]


class BearerAuth(httpx.Auth):
    """Adds ``Authorization: Bearer <key>`` to every request.

    The key is kept as a :class:`pydantic.SecretStr`; ``repr()`` shows only whether one is set.
    httpx itself masks the ``Authorization`` header in ``repr(request.headers)``.
    """

    def __init__(self, api_key: SecretStr | str | None) -> None:
        if isinstance(api_key, str):
            api_key = SecretStr(api_key)
        self._api_key = api_key

    @property
    def has_key(self) -> bool:
        """Whether a non-empty key is configured."""
        return self._api_key is not None and bool(self._api_key.get_secret_value().strip())

    def redact(self, value: Any) -> Any:
        """``value`` (a server's error detail: text, or lists and dicts of it) without the key.

        Servers sometimes echo the key they refused; it is replaced by ``**********`` before a
        detail is quoted in an error.
        """
        key = self._api_key.get_secret_value().strip() if self._api_key is not None else ""
        if not key:
            return value
        if isinstance(value, str):
            return value.replace(key, "**********")
        if isinstance(value, list):
            return [self.redact(item) for item in value]
        if isinstance(value, dict):
            return {self.redact(name): self.redact(item) for name, item in value.items()}
        return value

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self._api_key is not None and self.has_key:
            key = self._api_key.get_secret_value().strip()
            request.headers["Authorization"] = f"Bearer {key}"
        yield request

    def __repr__(self) -> str:
        return f"BearerAuth(api_key={'**********' if self.has_key else None})"
