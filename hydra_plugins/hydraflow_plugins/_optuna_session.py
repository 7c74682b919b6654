"""A job session over any Hydra launcher's ``launch()``, for launchers that do not stream results.

``hydra/sweeper=flow_optuna`` runs on the flow launcher's streaming session. With another launcher
(basic, joblib, ...) this adapter keeps it working the way Hydra's sweepers do: the jobs submitted
since the last call are launched together in one ``launch()`` and all their outcomes come back
when the slowest has ended (so there is a batch barrier, and nothing can be cancelled mid-run).
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType

from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.launcher import Launcher

__all__ = ["BatchSession"]


class BatchSession:
    """Launch the submitted jobs as one batch per ``outcomes`` call (job numbers consecutive)."""

    def __init__(self, launcher: Launcher, slots: int) -> None:
        self.launcher = launcher
        self._slots = slots
        self._queued: list[tuple[int, list[str]]] = []
        self._cancelled: list[tuple[int, JobReturn]] = []

    def submit(self, num: int, overrides: Sequence[str]) -> None:
        """Queue job ``num``; it runs at the next :meth:`outcomes`."""
        self._queued.append((num, list(overrides)))

    def outcomes(self, timeout: float | None = None) -> list[tuple[int, JobReturn]]:
        """Launch the queued jobs and return their outcomes (``timeout`` cannot apply)."""
        from hydra_plugins.hydraflow_plugins._resume import launch_numbered

        ended, self._cancelled = self._cancelled, []
        batch, self._queued = self._queued, []
        returns = launch_numbered(self.launcher, batch)
        return ended + [(num, ret) for (num, _), ret in zip(batch, returns, strict=True)]

    def cancel(self, num: int) -> None:
        """A queued job is dropped (its outcome: FAILED, cancelled); a launched one has ended."""
        for entry in [e for e in self._queued if e[0] == num]:
            self._queued.remove(entry)
            ret = JobReturn()
            ret.overrides = entry[1]
            ret.status = JobStatus.FAILED
            ret.return_value = RuntimeError(f"job #{num} cancelled before it started")
            self._cancelled.append((num, ret))

    @property
    def active(self) -> set[int]:
        return {num for num, _ in self._queued} | {num for num, _ in self._cancelled}

    @property
    def slots(self) -> int:
        return self._slots

    def __enter__(self) -> BatchSession:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._queued.clear()
