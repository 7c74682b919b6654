"""The ``flow_optuna`` sweeper's MLflow side: live metrics of running trials, and trial records.

A trial's run is its Hydra job's run, which the MLflow callback makes a child of the sweep's parent
run and tags with ``hydraflow.sweep_id`` and ``hydraflow.job_num`` (DESIGN.md); that is how the
sweeper finds it while the job runs. An ended trial's run gets the ``hydraflow.optuna.*`` tags
(study, trial number, state); a pruned trial's run ends KILLED. The parent run gets the best value
and params (or the Pareto front of a multi-objective study).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection
from functools import partial
from typing import TYPE_CHECKING, Any

from hydraflow import _mlflow_store as store
from hydraflow.conventions import TAG_JOB_NUM, TAG_ROLE, TAG_SWEEP_ID, sanitize_key

if TYPE_CHECKING:
    from optuna.study import Study
    from optuna.trial import FrozenTrial

    from hydraflow.core.store import Store

__all__ = ["TAG_STATE", "TAG_STUDY", "TAG_TRIAL", "MlflowTrials"]

log = logging.getLogger(__name__)

TAG_STUDY = "hydraflow.optuna.study"
TAG_TRIAL = "hydraflow.optuna.trial"
TAG_STATE = "hydraflow.optuna.state"  # COMPLETE, PRUNED, FAIL
TAG_INTERRUPTED = "hydraflow.optuna.interrupted"
TAG_PRUNED_AT = "hydraflow.optuna.pruned_at_step"
TAG_BEST_TRIAL = "hydraflow.optuna.best_trial"
TAG_PARETO = "hydraflow.optuna.pareto_front"  # JSON list of trial numbers


class MlflowTrials:
    """One sweep's job runs in the store: read a metric's history, tag ended trials."""

    def __init__(
        self,
        tracking_uri: str,
        experiment: str,
        sweep_id: str,
        parent_run_id: str | None,
        study_name: str,
        metric: str | None = None,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.client = store.client_for(tracking_uri)
        self._store: Store | None = None
        found = store.retry_busy(lambda: self.client.get_experiment_by_name(experiment))
        self.experiment_id = found.experiment_id if found is not None else None
        self.sweep_id = sweep_id
        self.parent_run_id = parent_run_id
        self.study_name = study_name
        self.metric = metric or ""
        self._runs: dict[int, str] = {}

    def _run_ids(self, nums: Collection[int]) -> dict[int, str]:
        """The run ids of these jobs that have a run yet (found once, then cached)."""
        if self.experiment_id is not None and any(num not in self._runs for num in nums):
            runs = store.search_all(
                self.client,
                self.experiment_id,
                f"tags.`{TAG_SWEEP_ID}` = '{self.sweep_id}' and tags.`{TAG_ROLE}` = 'job'",
            )
            for run in runs:
                num = run.data.tags.get(TAG_JOB_NUM)
                if num is not None and num.isdigit():
                    self._runs.setdefault(int(num), run.info.run_id)
        return {num: self._runs[num] for num in nums if num in self._runs}

    def read(self, nums: Collection[int]) -> dict[int, dict[int, float]]:
        """``{job num: {step: value}}`` of the pruning metric, for the jobs that logged it.

        One read for all the jobs (one SQL query on a sqlite store, one bulk request to a server).
        """
        import polars as pl

        from hydraflow.core.history import read_histories
        from hydraflow.core.store import open_store

        runs = self._run_ids(nums)
        if not runs:
            return {}
        if self._store is None:
            self._store = open_store(self.tracking_uri)
        num_of = {run_id: num for num, run_id in runs.items()}
        frame = pl.DataFrame(
            {"run_id": list(num_of), "experiment_id": [self.experiment_id] * len(num_of)}
        )
        history = read_histories(self._store, frame, [self.metric]).sort("timestamp")
        values: dict[int, dict[int, float]] = {}
        for run_id, step, value in history.select("run_id", "step", "value").iter_rows():
            values.setdefault(num_of[run_id], {})[int(step)] = float(value)
        return values

    def logged_metrics(self, num: int) -> list[str]:
        """The metrics job ``num`` logged."""
        run_id = self._run_ids([num]).get(num)
        if run_id is None:
            return []
        run = store.retry_busy(partial(self.client.get_run, run_id))
        return sorted(run.data.metrics)

    def ended(self, num: int, trial: FrozenTrial) -> None:
        """Tag the job's run with the trial; a pruned one ends KILLED."""
        from optuna.trial import TrialState

        run_id = self._run_ids([num]).get(num)
        if run_id is None:
            return  # the job ended before its run started (e.g. it was cancelled while queued)
        tags = {
            TAG_STUDY: self.study_name,
            TAG_TRIAL: str(trial.number),
            TAG_STATE: trial.state.name,
        }
        if trial.user_attrs.get("interrupted"):
            tags[TAG_INTERRUPTED] = "true"
        if trial.state == TrialState.PRUNED and trial.last_step is not None:
            tags[TAG_PRUNED_AT] = str(trial.last_step)
        try:
            store.log_batches(self.client, run_id, tags=tags)
            if trial.state == TrialState.PRUNED:
                store.retry_busy(partial(self.client.set_terminated, run_id, "KILLED"))
        except Exception as error:  # the study goes on without this record
            log.warning(f"[flow_optuna] could not tag run {run_id} of job #{num}: {error}")

    def summary(self, study: Study, results: dict[str, Any]) -> None:
        """The parent run gets the best trial (or the Pareto front as ``pareto_front.json``)."""
        if self.parent_run_id is None:
            return
        parent = self.parent_run_id
        try:
            tags = {TAG_STUDY: self.study_name}
            if "best_value" in results:
                best = study.best_trial
                tags[TAG_BEST_TRIAL] = str(best.number)
                params = {
                    sanitize_key(f"best.{k.lstrip('+~')}"): str(v) for k, v in best.params.items()
                }
                store.log_batches(
                    self.client,
                    parent,
                    params=params,
                    tags=tags,
                    metrics={"best_value": float(results["best_value"])},
                )
            elif "solutions" in results:
                tags[TAG_PARETO] = json.dumps([t.number for t in study.best_trials])
                store.log_batches(self.client, parent, tags=tags)
                store.retry_busy(
                    partial(self.client.log_dict, parent, results, "pareto_front.json")
                )
        except Exception as error:
            log.warning(f"[flow_optuna] could not record the study on run {parent}: {error}")
