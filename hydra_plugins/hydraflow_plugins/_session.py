"""``JobSession``: a ``flow`` launcher's jobs streamed in and their outcomes streamed out.

``FlowLauncher.session()`` opens one; Hydra's ``launch()`` is "open a session, submit all, gather
all, return in job order", and a sweeper may submit jobs one at a time and act on each outcome as it
arrives::

    with launcher.session() as session:
        session.submit(0, ["x=1"])
        for num, ret in session.outcomes(timeout=5.0): ...

Whatever ends the session — its end, an exception, Ctrl-C or SIGTERM — every job still active is
cancelled and every task or worker the session started is released.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from hydra.core.utils import JobReturn, configure_log, setup_globals

from hydra_plugins.hydraflow_plugins._job_runner import skip_final_collections
from hydra_plugins.hydraflow_plugins._jobs import Job, JobContext
from hydra_plugins.hydraflow_plugins._options import FlowLauncherError, LauncherOptions
from hydra_plugins.hydraflow_plugins._paths import copy_task_log
from hydra_plugins.hydraflow_plugins._plan import bid_prices, check_volumes
from hydra_plugins.hydraflow_plugins._progress import Progress
from hydra_plugins.hydraflow_plugins._scheduler import Entry, Scheduler
from hydra_plugins.hydraflow_plugins._strategy import RunStrategy, choose_strategy

if TYPE_CHECKING:
    from flow_backend import Flow
    from hydra_plugins.hydraflow_plugins.flow_launcher import FlowLauncher

__all__ = ["FlowJobSession", "JobSession"]

log = logging.getLogger(__name__)


class JobSession(Protocol):
    """The streaming-launcher contract (what a sweeper may rely on)."""

    def submit(self, num: int, overrides: Sequence[str]) -> None:
        """Start job ``num`` as soon as a slot is free (queue it otherwise); returns at once."""

    def outcomes(self, timeout: float | None = None) -> list[tuple[int, JobReturn]]:
        """Jobs ended since the last call; blocks until one is there or ``timeout`` passes."""

    def cancel(self, num: int) -> None:
        """Stop a queued or running job; its outcome is ``FAILED`` ("cancelled")."""

    @property
    def active(self) -> set[int]:
        """Jobs submitted and not yet reported."""

    @property
    def slots(self) -> int:
        """How many jobs run at once (``max_parallel``)."""

    def __enter__(self) -> JobSession: ...

    def __exit__(self, *exc: Any) -> None: ...


class FlowJobSession:
    """The ``flow`` launcher's :class:`JobSession`.

    Args:
        launcher: A set-up launcher.
        expected_jobs: How many jobs will be submitted, when known (a remote provider's default
            parallelism is every job).
    """

    def __init__(self, launcher: FlowLauncher, expected_jobs: int | None = None) -> None:
        assert launcher.config is not None and launcher.hydra_context is not None
        assert launcher.task_function is not None
        setup_globals()
        configure_log(launcher.config.hydra.hydra_logging, launcher.config.hydra.verbose)
        self.launcher = launcher
        self.options = LauncherOptions.from_params(launcher.params)
        self.flow = open_flow(self.options)
        self.provider = self.flow.settings.provider
        provider = self.flow.provider
        self.context = JobContext(
            launcher,
            self.options,
            bid_prices(provider, self.options),
            offered=provider.instance_types,
            provider=self.provider,
        )
        self._limit = self.options.parallelism(self.provider, expected_jobs)
        self._entries: list[Entry] = []
        self.progress = Progress(self._entries)
        self._scheduler: Scheduler | None = None
        self._strategy: RunStrategy | None = None
        self._signals = ExitStack()

    # -- the contract ----------------------------------------------------------------------------
    @property
    def slots(self) -> int:
        return self._limit

    @property
    def active(self) -> set[int]:
        return self._scheduler.active if self._scheduler is not None else set()

    def submit(self, num: int, overrides: Sequence[str]) -> None:
        self.submit_jobs([self.context.job(num, list(overrides))])

    def submit_jobs(self, jobs: Sequence[Job]) -> None:
        """Submit several jobs at once: all are prepared (and checked) before the first starts."""
        scheduler = self._ensure_scheduler()
        scheduler.submit(jobs)
        self._entries[:] = list(scheduler.entries.values())

    def no_more_jobs(self) -> None:
        """Say that nothing more will be submitted: what the queue cannot use goes at once."""
        if self._scheduler is not None:
            self._scheduler.final = True

    def cancel(self, num: int) -> None:
        if self._scheduler is not None:
            self._scheduler.cancel(num)

    def outcomes(self, timeout: float | None = None) -> list[tuple[int, JobReturn]]:
        scheduler = self._scheduler
        if scheduler is None:
            return []
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = self.options.poll_seconds(self.provider)
        while True:
            scheduler.step()
            ended = scheduler.take()
            if ended:
                return self._returns(ended)
            if not scheduler.live and not scheduler.queue:
                return []  # nothing could ever end: do not wait for it
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return []
            assert self._strategy is not None
            self._strategy.wait(pause if left is None else min(pause, left))

    def __enter__(self) -> FlowJobSession:
        self._signals.enter_context(_sigterm_as_interrupt())
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            if self._scheduler is not None:
                self._stop(error)
        finally:
            try:
                if self._strategy is not None:
                    self._strategy.close()
                if self._scheduler is not None:
                    entries = list(self._scheduler.entries.values())
                    self._close_orphan_runs(entries)
                    if error is not None:
                        self._keep_task_logs(entries)
            finally:
                self.progress.__exit__(None, None, None)
                self.flow.close()
                self._signals.close()
                skip_final_collections()  # the sweep's process ends soon: a quicker exit
        if error is None and self._entries:
            self.progress.summary()  # after the live table is gone
            self._report_failures()
        if isinstance(error, KeyboardInterrupt):  # Ctrl-C / SIGTERM: no traceback, usual codes
            raise SystemExit(143 if "signal" in str(error) else 130) from None

    # -- inside ----------------------------------------------------------------------------------
    def _ensure_scheduler(self) -> Scheduler:
        if self._scheduler is None:
            check_volumes(self.flow.provider, self.options, self._limit)
            self._strategy = choose_strategy(self.context, self.flow, self.options)
            self._scheduler = Scheduler(
                self._strategy,
                self.options,
                self._limit,
                on_change=self.progress.update,
                message=self.progress.message,
            )
            self.progress.__enter__()
        return self._scheduler

    def _stop(self, error: BaseException | None) -> None:
        """Cancel what is still active: every live attempt on an error, else job by job."""
        assert self._scheduler is not None
        if error is None:  # an exit path: no grace for what still runs
            for num in sorted(self._scheduler.active):
                self._scheduler.cancel(num, graceful=False)
            return
        stopped = self._scheduler.stop_all()
        reason = (
            "Interrupted"
            if isinstance(error, KeyboardInterrupt)
            else f"Stopped by {type(error).__name__}"
        )
        if stopped:
            self.progress.message(
                f"[flow] {reason}: cancelled {len(stopped)} live task(s): {', '.join(stopped)}"
            )
        else:
            self.progress.message(f"[flow] {reason}: no task was live")

    def _returns(self, ended: list[Entry]) -> list[tuple[int, JobReturn]]:
        self._close_orphan_runs(ended)
        returns = []
        for entry in ended:
            if entry.result is not None:
                returns.append((entry.num, entry.result))
            else:
                assert entry.failure is not None
                returns.append((entry.num, self.context.failed_return(entry.job, entry.failure)))
        return returns

    def _report_failures(self) -> None:
        for entry in sorted(self._entries, key=lambda e: e.num):
            if not entry.failed:
                continue
            error = entry.failure or (entry.result._return_value if entry.result else None)
            first = str(error).splitlines()[0] if str(error) else ""
            self.progress.message(
                f"[flow] job #{entry.num} ({entry.overrides_text}) FAILED: "
                f"{type(error).__name__}: {first} (task output: {entry.job.files.task_log})"
            )

    def _keep_task_logs(self, entries: Sequence[Entry]) -> None:
        """Jobs stopped without a result (Ctrl-C, an error) keep their output in their folder too."""
        for entry in entries:
            if entry.result is not None or not entry.job.files.task_log.is_file():
                continue
            try:
                output_dir = Path(str(self.context.compose(entry.job).hydra.runtime.output_dir))
                output_dir.mkdir(parents=True, exist_ok=True)
                copy_task_log(entry.num, entry.job.files, output_dir)
            except Exception as error:  # keeping a log must not hide why the sweep stopped
                log.warning(f"job #{entry.num}: could not keep its task log: {error}")

    def _close_orphan_runs(self, entries: Sequence[Entry]) -> None:
        """Mark FAILED the MLflow runs of jobs whose process died before the callback ended them."""
        died = [e for e in entries if e.result is None]
        if not died:
            return
        from hydra_plugins.hydraflow_plugins._resume import mlflow_callback_settings

        config = self.context.config
        settings = mlflow_callback_settings(config)
        if settings is None:
            return
        try:
            from hydraflow._mlflow_store import fail_running_job_runs
            from hydraflow.conventions import resolve_tracking_uri

            uri = settings.get("tracking_uri") or resolve_tracking_uri(
                str(config.hydra.runtime.cwd)
            )
            experiment = settings.get("experiment") or str(config.hydra.job.name)
            reasons = {e.num: str(e.failure or "the task died").splitlines()[0] for e in died}
            fail_running_job_runs(uri, experiment, self.context.sweep_id, reasons)
        except Exception as error:  # recording the failure must not hide the failure itself
            log.warning(f"could not mark the runs of jobs that died as FAILED: {error}")


def open_flow(options: LauncherOptions) -> Flow:
    """The Flow client of ``hydra.launcher.provider`` (one clear error for a bad one)."""
    from flow_backend import Flow
    from flow_backend.errors import FlowError

    try:
        return Flow(provider=options.provider)
    except FlowError as error:
        raise FlowLauncherError(f"hydra.launcher.provider={options.provider!r}: {error}") from None


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt while the session runs, so the same cleanup runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: FrameType | None) -> Any:
        raise KeyboardInterrupt(f"signal {signum}")  # "signal" marks SIGTERM (exit 143)

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
