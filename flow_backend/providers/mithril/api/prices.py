"""Dollar-string prices as the Mithril API writes them (``"$12.00"``)."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer

__all__ = ["Dollars", "format_dollars", "parse_dollars"]

# the ``$`` is optional: a newer API (or a proxy) may write "12.00"
_DOLLARS = re.compile(r"^\$?\s*(\d[\d,]*(?:\.\d+)?)$")


def parse_dollars(value: object) -> float:
    """Read a price such as ``"$12.00"`` (or an already numeric value) as a float of dollars.

    Raises:
        ValueError: The value is not a ``"$<number>"`` string or a non-negative number.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a price like '$12.00', got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"a price cannot be negative, got {value!r}")
        return float(value)
    if isinstance(value, str):
        match = _DOLLARS.match(value.strip())
        if match:
            return float(match.group(1).replace(",", ""))
    raise ValueError(f"expected a price like '$12.00', got {value!r}")


def format_dollars(dollars: float) -> str:
    """Write dollars the way the API does: ``12`` → ``"$12.00"`` (no thousands separator)."""
    return f"${dollars:.2f}"


Dollars = Annotated[
    float,
    BeforeValidator(parse_dollars),
    PlainSerializer(format_dollars, return_type=str, when_used="json-unless-none"),
]
"""A price held as float dollars in Python and written as ``"$12.00"`` in JSON."""
