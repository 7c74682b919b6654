"""The sweep a multirun belongs to, handed from the MLflow callback to the launcher and sweepers,
and the callback's copy a launcher ships to jobs on remote hosts (:func:`with_job_stores`).

Hydra calls the callbacks' ``on_multirun_start`` before it instantiates the sweeper, and hands the
sweeper (and the launcher the sweeper makes) the same ``HydraContext`` whose ``callbacks`` ran it.
So the sweep id and parent run the callback chose are read from the callback itself, through that
context: nothing is left in ``os.environ`` for a later sweep in the same process (or a child
process) to pick up, and a launcher's tasks get them with the pickled callback in their spec.

Which task runs a job *this time* (:class:`TaskAttempt`: its name, provider, instance type, price
and attempt number) varies per attempt, so it cannot ride in the job's spec: the ``flow`` launcher
hands it to the job runner as an argument (a task of its own: ``--attempt JSON``; a warm worker:
in the job's order), and the runner hands it to the MLflow callback in the job's copy of the
context (:func:`with_attempt`). None of it is in the job's environment.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import sys
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class SweepIds:
    """The sweep id (``hydraflow.sweep_id``) and the MLflow run id of the sweep's parent run."""

    sweep_id: str
    parent_run_id: str


def _mlflow_callback_class() -> Any:
    """``MLflowCallback``, if anything imported it (else no instance of it exists)."""
    module = sys.modules.get("hydraflow.callbacks")
    return None if module is None else module.MLflowCallback


@dataclass(frozen=True)
class TaskAttempt:
    """The Flow task that runs a job of a ``flow`` launch this time, as the launcher started it.

    The job's MLflow run is tagged with it (``flow.task_id`` — unless the provider's
    ``FLOW_TASK_ID`` names the task, as on a warm worker — ``flow.provider``,
    ``flow.instance_type``, ``flow.cost_per_hour``, and ``flow.total_cost`` from the price);
    ``attempt`` > 0 (a launcher retry) makes the callback replace the run an earlier attempt left.
    """

    task_name: str
    provider: str
    instance_type: str
    cost_per_hour: str  # as tagged: dollars per hour, ``%g``
    attempt: int = 0

    def to_json(self) -> str:
        """The job runner's ``--attempt`` argument (and a worker order's ``attempt``)."""
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> TaskAttempt:
        """The attempt :meth:`to_json` wrote."""
        return cls(**json.loads(text))


def _with_callback_fields(hydra_context: Any, **fields: Any) -> Any:
    """A copy of ``hydra_context`` whose MLflow callback (a copy) has ``fields`` set."""
    cls = _mlflow_callback_class()
    callbacks: list[Any] = getattr(getattr(hydra_context, "callbacks", None), "callbacks", [])
    if cls is None or not any(isinstance(c, cls) for c in callbacks):
        return hydra_context
    copied = copy.copy(hydra_context.callbacks)
    copied.callbacks = [copy.copy(c) if isinstance(c, cls) else c for c in callbacks]
    for callback in copied.callbacks:
        if isinstance(callback, cls):
            for name, value in fields.items():
                setattr(callback, name, value)
    return dataclasses.replace(hydra_context, callbacks=copied)


def with_job_stores(hydra_context: Any) -> Any:
    """A copy of ``hydra_context`` for jobs on hosts without this machine's files: its MLflow
    callback logs each job into a store in the job's output folder (the launcher imports it when
    the folder comes home). It travels inside the jobs' specs; the launcher's own is unchanged."""
    return _with_callback_fields(hydra_context, job_store=True)


def with_attempt(hydra_context: Any, attempt: TaskAttempt) -> Any:
    """A copy of ``hydra_context`` whose MLflow callback records the job as run by ``attempt``
    (the job runner's, on the task side)."""
    return _with_callback_fields(hydra_context, attempt=attempt)


def sweep_ids(hydra_context: Any) -> SweepIds | None:
    """The ids the MLflow callback in ``hydra_context`` chose for this multirun, if it did.

    ``None`` when the callback is not configured or its ``on_multirun_start`` has not run (or
    failed: Hydra turns a callback's error into a warning).
    """
    cls = _mlflow_callback_class()
    if cls is None:
        return None
    callbacks = getattr(getattr(hydra_context, "callbacks", None), "callbacks", None) or []
    for callback in callbacks:
        if isinstance(callback, cls):
            ids = callback.sweep_ids()
            if ids is not None:
                return ids
    return None
