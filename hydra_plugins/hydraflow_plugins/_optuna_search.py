"""The ``flow_optuna`` scheduling loop: no batch barrier, pruning from live metrics.

``n_jobs`` trials run at once in the launcher's ``JobSession`` (``_session``). The moment one
ends its value is told to Optuna and the next trial is asked and submitted. While trials run, the
pruning metric's new steps are read (every ``poll`` seconds), reported to the trial, and a trial the
pruner stops is told PRUNED at once and its job cancelled, so its slot is filled again. A failed
job is FAIL and the study goes on. On any exception (Ctrl-C included) the running trials become
FAIL marked ``interrupted`` and the exception goes on, so the study can be resumed.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any, Protocol

from hydra.core.utils import JobReturn, JobStatus

from hydra_plugins.hydraflow_plugins._optuna_study import (
    ATTR_INTERRUPTED,
    ATTR_JOB_NUM,
    StudyJournal,
    counted,
    next_job_num,
)

if TYPE_CHECKING:
    from optuna.study import Study
    from optuna.trial import FrozenTrial, Trial, TrialState

    from hydra_plugins.hydraflow_plugins._session import JobSession

__all__ = ["IntermediateValues", "Search", "TrialRecords"]

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
        self._warned_never_logged = False
        self._last_read = -math.inf
        self._unrecorded: list[tuple[int, int]] = []  # (job num, trial number) to record

    def run(self) -> None:
        """Run trials until ``n_trials`` of the study have ended (resumed ones count)."""
        try:
            while True:
                self._fill()
                self._record()  # after the refill: MLflow writes do not delay the next trial
                if not self.running and not self.cancelled:
                    return
                timeout = self.poll if self.watch is not None else None
                for num, ret in self.session.outcomes(timeout=timeout):
                    self._settle(num, ret)
                if self.watch is not None and self.clock() - self._last_read >= self.poll:
                    self._last_read = self.clock()
                    self._prune()
        except BaseException:
            self._interrupt()
            raise

    # -- the slots -----------------------------------------------------------------------------
    def _fill(self) -> None:
        slots = min(self.session.slots, self.parallel or self.session.slots)
        while len(self.running) < slots and self.done + len(self.running) < self.n_trials:
            trial, overrides = self.ask()
            num = self.next_num
            self.next_num += 1
            trial.set_user_attr(ATTR_JOB_NUM, num)
            self.running[num] = trial
            self.session.submit(num, overrides)
            log.info(f"[flow_optuna] trial {trial.number} → job #{num}: {' '.join(overrides)}")

    def _settle(self, num: int, ret: JobReturn) -> None:
        from optuna.trial import TrialState

        if num in self.cancelled:  # a pruned trial's job has stopped: record it now
            self._unrecorded.append((num, self.cancelled.pop(num)))
            return
        trial = self.running.pop(num, None)
        if trial is None:
            return
        if self.watch is not None:
            self._report(trial, self.watch.read([num]).get(num, {}))
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
    ) -> None:
        try:
            self.study.tell(trial, values=values, state=state)
        except RuntimeError as error:  # GridSampler stops the study once its grid is covered
            if "Study.stop" not in str(error):
                raise
        frozen = self._frozen(trial.number)
        if not frozen.user_attrs.get(ATTR_INTERRUPTED):
            self.done += 1
        if self.journal is not None:
            self.journal.record(frozen)
        if record:
            self._unrecorded.append((num, trial.number))

    def _record(self) -> None:
        pending, self._unrecorded = self._unrecorded, []
        for num, number in pending:
            self.records.ended(num, self._frozen(number))

    def _frozen(self, number: int) -> FrozenTrial:
        return self.study.get_trials(deepcopy=False)[number]

    # -- pruning -------------------------------------------------------------------------------
    def _prune(self) -> None:
        from optuna.trial import TrialState

        assert self.watch is not None
        if not self.running:
            return
        for num, steps in self.watch.read(list(self.running)).items():
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
                trial.set_user_attr(ATTR_INTERRUPTED, True)
                self._end(num, trial, TrialState.FAIL)
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
