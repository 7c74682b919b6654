"""Read MLflow stores fast: :class:`Run` and the polars-backed :class:`RunCollection`.

Imports are lazy so that ``import hydraflow.core`` stays light until a class is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hydraflow.core.collection import RunCollection
    from hydraflow.core.run import Run, RunInfo

__all__ = ["Run", "RunCollection", "RunInfo"]

_WHERE = {
    "Run": "hydraflow.core.run",
    "RunInfo": "hydraflow.core.run",
    "RunCollection": "hydraflow.core.collection",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'hydraflow.core' has no attribute {name!r}")
