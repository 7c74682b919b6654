"""The ``flow_optuna`` scheduling loop: no batch barrier, pruning from live metrics.

``n_jobs`` trials run at once in the launcher's ``JobSession`` (``_session``). The moment one
ends its value is told to Optuna and the next trial is asked and submitted; nothing else comes
between a trial's end and its successor's submission: the journal line and the MLflow tags of
ended trials are written after the refill. The next trial is asked only then, not ahead of time: a
trial asked while the slot's trial still runs would be sampled without that trial's result (and
without any other that ends meanwhile), and asking costs milliseconds (``SearchTimes`` measures it).

While trials run, the pruning metric's new steps are read for all running trials at once (every
``poll`` seconds), reported to the trials, and a trial the pruner stops is told PRUNED at once and
its job cancelled, so its slot is filled again. A failed job is FAIL and the study goes on. On any
exception (Ctrl-C included) the running trials become FAIL marked ``interrupted`` and the exception
goes on, so the study can be resumed.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from hydra.core.utils import JobReturn, JobStatus

from hydra_plugins.hydraflow_plugins._optuna_study import (
    ATTR_JOB_NUM,
    StudyJournal,
    counted,
    interrupted,
    next_job_num,
)

if TYPE_CHECKING:
    from optuna.study import Study
    from optuna.trial import FrozenTrial, Trial, TrialState

    from hydra_plugins.hydraflow_plugins._session import JobSession

__all__ = ["IntermediateValues", "Search", "SearchTimes", "TrialRecords"]

log = logging.getLogger(__name__)


class IntermediateValues(Protocol):
    """What running jobs have logged of the pruning metric."""

    metric: str

    def read(self, nums: Collection[int]) -> dict[int, dict[int, float]]:
        """``{job num: {step: value}}`` for the given jobs (those that logged nothing may be absent)."""
        ...

    def logged_metrics(self, num: int) -> list[str]:
        """The names of the metrics job ``num`` logged (for the "never logged" message)."""
        ...


class TrialRecords(Protocol):
    """Where ended trials are recorded besides Optuna (the MLflow runs)."""

    def ended(self, num: int, trial: FrozenTrial) -> None: ...


class _NoRecords:
    def ended(self, num: int, trial: FrozenTrial) -> None:
        return None


@dataclass
class SearchTimes:
    """Where the sweeper's own time went: seconds and count per phase (``ask``, ``tell``,
    ``submit``, ``read`` of metrics, ``record`` of journal lines and MLflow tags, ``wait`` for
    outcomes), and each job's wall-clock submission and end (when the sweeper learnt of it)."""

    seconds: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    longest: dict[str, float] = field(default_factory=dict)
    submitted_at: dict[int, float] = field(default_factory=dict)
    ended_at: dict[int, float] = field(default_factory=dict)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time the block as one occurrence of ``name``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            took = time.perf_counter() - start
            self.seconds[name] = self.seconds.get(name, 0.0) + took
            self.counts[name] = self.counts.get(name, 0) + 1
            self.longest[name] = max(self.longest.get(name, 0.0), took)

    def summary(self) -> str:
        """One line: each phase's total, count and longest."""
        return "; ".join(
            f"{name} {self.seconds[name]:.2f} s ({self.counts[name]}×, longest "
            f"{self.longest[name] * 1000:.0f} ms)"
            for name in ("wait", "ask", "tell", "submit", "read", "record")
            if name in self.seconds
        )


def trial_values(value: Any, objectives: int) -> list[float]:
    """A job's return value as the study's objective values; ``ValueError`` says why not."""
    raw = [value] if objectives == 1 else value
    try:
        values = [float(v) for v in raw]
    except (TypeError, ValueError):
        expected = "a number" if objectives == 1 else f"a list or tuple of {objectives} numbers"
        raise ValueError(f"its return value {value!r} is not {expected}") from None
    if len(values) != objectives:
        raise ValueError(f"it returned {len(values)} values for {objectives} directions")
    if any(math.isnan(v) for v in values):
        raise ValueError(f"its return value {value!r} is NaN")
    return values


class Search:
    """One run of the study in a session: ask, submit, tell, prune, until ``n_trials`` ended.

    ``parallel`` (``n_jobs``) caps the trials running at once below the session's slots.
    """

    def __init__(
        self,
        study: Study,
        session: JobSession,
        ask: Callable[[], tuple[Trial, list[str]]],
        n_trials: int,
        parallel: int | None = None,
        journal: StudyJournal | None = None,
        records: TrialRecords | None = None,
        watch: IntermediateValues | None = None,
        poll: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.study = study
        self.session = session
        self.ask = ask
        self.n_trials = n_trials
        self.parallel = parallel
        self.journal = journal
        self.records = records or _NoRecords()
        self.watch = watch
        self.poll = poll
        self.clock = clock
        self.running: dict[int, Trial] = {}  # job num → its trial
        self.cancelled: dict[int, int] = {}  # pruned job num → trial number (outcome pending)
        self.reported: dict[int, int] = {}  # trial number → last step reported
        self.done = counted(study)
        self.next_num = next_job_num(study)
        self.times = SearchTimes()
        self._warned_never_logged = False
        self._last_read = -math.inf
        self._unjournaled: list[tuple[int, int]] = []  # (job num, trial number) to journal
        self._unrecorded: list[tuple[int, int]] = []  # (job num, trial number) to tag in MLflow

    def run(self) -> None:
        """Run trials until ``n_trials`` of the study have ended (resumed ones count)."""
        try:
            while True:
                self._fill()
                self._record()  # after the refill: journal and MLflow writes never delay a trial
                if not self.running and not self.cancelled:
                    return
                if self._prune_due():
                    self._prune()
                    continue
                with self.times.phase("wait"):
                    ended = self.session.outcomes(timeout=self._timeout())
                self._settle_all(ended)
        except BaseException:
            self._interrupt()
            raise

    def _timeout(self) -> float | None:
        """Wait for an outcome until the next metric read is due (for ever without pruning)."""
        if self.watch is None or not self.running:
            return None if self.watch is None else self.poll
        return max(0.0, self._last_read + self.poll - self.clock())

    def _prune_due(self) -> bool:
        return (
            self.watch is not None
            and bool(self.running)
            and self.clock() - self._last_read >= self.poll
        )

    # -- the slots -----------------------------------------------------------------------------
    def _fill(self) -> None:
        slots = min(self.session.slots, self.parallel or self.session.slots)
        while len(self.running) < slots and self.done + len(self.running) < self.n_trials:
            with self.times.phase("ask"):
                trial, overrides = self.ask()
            num = self.next_num
            self.next_num += 1
            trial.set_user_attr(ATTR_JOB_NUM, num)
            self.running[num] = trial
            with self.times.phase("submit"):
                self.session.submit(num, overrides)
            self.times.submitted_at[num] = time.time()
            log.info(f"[flow_optuna] trial {trial.number} → job #{num}: {' '.join(overrides)}")

    def _settle_all(self, ended: list[tuple[int, JobReturn]]) -> None:
        """Tell the ended jobs' trials (their last metric steps read in one query)."""
        now = time.time()
        for num, _ in ended:
            self.times.ended_at.setdefault(num, now)
        steps: dict[int, dict[int, float]] = {}
        finished = [num for num, _ in ended if num in self.running]
        if self.watch is not None and finished:
            with self.times.phase("read"):
                steps = self.watch.read(finished)
        for num, ret in ended:
            self._settle(num, ret, steps.get(num, {}))

    def _settle(self, num: int, ret: JobReturn, steps: dict[int, float]) -> None:
        from optuna.trial import TrialState

        if num in self.cancelled:  # a pruned trial's job has stopped: record it now
            self._unrecorded.append((num, self.cancelled.pop(num)))
            return
        trial = self.running.pop(num, None)
        if trial is None:
            return
        self._report(trial, steps)
        label = f"trial {trial.number} (job #{num})"
        if ret.status != JobStatus.COMPLETED:
            error = ret._return_value
            first = str(error).splitlines()[0] if str(error) else type(error).__name__
            _say(f"[flow_optuna] {label} FAILED: {first} — the study goes on")
            self._end(num, trial, TrialState.FAIL)
            return
        try:
            values = trial_values(ret.return_value, len(self.study.directions))
        except ValueError as error:
            _say(f"[flow_optuna] {label} is FAIL: {error} — the study goes on")
            self._end(num, trial, TrialState.FAIL)
            return
        self._end(num, trial, TrialState.COMPLETE, values)
        if self.watch is not None and trial.number not in self.reported:
            self._never_logged(num, trial.number)

    def _end(
        self,
        num: int,
        trial: Trial,
        state: TrialState,
        values: list[float] | None = None,
        record: bool = True,
        counts: bool = True,
    ) -> None:
        """Tell the trial's end; ``counts``: it counts against ``n_trials`` (not interrupted)."""
        with self.times.phase("tell"):
            try:
                self.study.tell(trial, values=values, state=state)
            except RuntimeError as error:  # GridSampler stops the study once its grid is covered
                if "Study.stop" not in str(error):
                    raise
        self.times.ended_at.setdefault(num, time.time())
        if counts:
            self.done += 1
        self._unjournaled.append((num, trial.number))
        if record:
            self._unrecorded.append((num, trial.number))

    def _record(self) -> None:
        """Write the ended trials' journal lines, then their MLflow tags."""
        if not self._unjournaled and not self._unrecorded:
            return
        with self.times.phase("record"):
            journal, self._unjournaled = self._unjournaled, []
            for num, number in journal:
                if self.journal is not None:
                    self.journal.record(
                        self._frozen(number),
                        submitted_at=self.times.submitted_at.get(num),
                        ended_at=self.times.ended_at.get(num),
                    )
            pending, self._unrecorded = self._unrecorded, []
            for num, number in pending:
                self.records.ended(num, self._frozen(number))

    def _frozen(self, number: int) -> FrozenTrial:
        return self.study.get_trials(deepcopy=False)[number]

    # -- pruning -------------------------------------------------------------------------------
    def _prune(self) -> None:
        from optuna.trial import TrialState

        assert self.watch is not None
        self._last_read = self.clock()
        if not self.running:
            return
        with self.times.phase("read"):
            read = self.watch.read(list(self.running))
        for num, steps in read.items():
            trial = self.running.get(num)
            if trial is None or not self._report(trial, steps) or not trial.should_prune():
                continue
            del self.running[num]
            self.cancelled[num] = trial.number
            self.session.cancel(num)
            step = self.reported[trial.number]
            log.info(f"[flow_optuna] trial {trial.number} (job #{num}) pruned at step {step}")
            self._end(num, trial, TrialState.PRUNED, record=False)

    def _report(self, trial: Trial, steps: dict[int, float]) -> bool:
        """Report the steps not reported yet; whether there was one."""
        last = self.reported.get(trial.number, -1)
        new = sorted(step for step in steps if step > last)
        for step in new:
            trial.report(steps[step], step)
        if new:
            self.reported[trial.number] = new[-1]
        return bool(new)

    def _never_logged(self, num: int, number: int) -> None:
        if self._warned_never_logged:
            return
        self._warned_never_logged = True
        assert self.watch is not None
        metric = self.watch.metric
        logged = self.watch.logged_metrics(num)
        _say(
            f"hydra.sweeper.prune_on={metric!r}: trial {number} (job #{num}) ended without "
            f"logging {metric!r} (it logged {logged or 'no metric'}), so no trial can be pruned. "
            f"Log it at each step with hydraflow.tracking.log_metric({metric!r}, value, step=k), "
            "or set hydra.sweeper.prune_on to a metric the job logs"
        )

    # -- the end -------------------------------------------------------------------------------
    def _interrupt(self) -> None:
        """Mark the running trials FAIL (interrupted), so a rerun runs as many new ones."""
        from optuna.trial import TrialState

        for num, trial in list(self.running.items()):
            del self.running[num]
            try:
                interrupted(self.study, trial._trial_id)
                self._end(num, trial, TrialState.FAIL, counts=False)
            except Exception as error:  # recording must not hide the interruption itself
                log.warning(f"[flow_optuna] could not record trial {trial.number}: {error}")
        self._unrecorded += list(self.cancelled.items())
        self.cancelled.clear()
        try:
            self._record()
        except Exception as error:
            log.warning(f"[flow_optuna] could not record the stopped trials: {error}")


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
    log.info(message)
