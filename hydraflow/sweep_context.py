"""The sweep a multirun belongs to, handed from the MLflow callback to the launcher and sweepers.

Hydra calls the callbacks' ``on_multirun_start`` before it instantiates the sweeper, and hands the
sweeper (and the launcher the sweeper makes) the same ``HydraContext`` whose ``callbacks`` ran it.
So the sweep id and parent run the callback chose are read from the callback itself, through that
context: nothing is left in ``os.environ`` for a later sweep in the same process (or a child
process) to pick up, and a launcher's tasks get them with the pickled callback in their spec.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SweepIds:
    """The sweep id (``hydraflow.sweep_id``) and the MLflow run id of the sweep's parent run."""

    sweep_id: str
    parent_run_id: str


def sweep_ids(hydra_context: Any) -> SweepIds | None:
    """The ids the MLflow callback in ``hydra_context`` chose for this multirun, if it did.

    ``None`` when the callback is not configured or its ``on_multirun_start`` has not run (or
    failed: Hydra turns a callback's error into a warning).
    """
    module = sys.modules.get("hydraflow.callbacks")
    if module is None:  # nothing imported the callback, so no instance of it exists
        return None
    callbacks = getattr(getattr(hydra_context, "callbacks", None), "callbacks", None) or []
    for callback in callbacks:
        if isinstance(callback, module.MLflowCallback):
            ids = callback.sweep_ids()
            if ids is not None:
                return ids
    return None
