"""hydraflow: Hydra sweeps as Flow tasks, every job in MLflow, every result queryable with polars.

Imports are lazy: ``import hydraflow`` loads neither mlflow nor polars (the Hydra job runner imports
hydraflow modules on every task start). ``from hydraflow import Run, RunCollection`` loads them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hydraflow.config import load_config
    from hydraflow.core.collection import RunCollection
    from hydraflow.core.run import Run

__all__ = ["Run", "RunCollection", "load_config"]

_WHERE = {
    "Run": "hydraflow.core.run",
    "RunCollection": "hydraflow.core.collection",
    "load_config": "hydraflow.config",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'hydraflow' has no attribute {name!r}")
