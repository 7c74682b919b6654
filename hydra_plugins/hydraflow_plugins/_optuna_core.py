"""The ``flow_optuna`` sweeper's work: open the study, run the search in a job session, report.

Steps: parse the search space; open (or continue) the study — by default a journal beside the
MLflow store; open the launcher's job session; run :class:`Search` (no batch barrier, pruning from
the jobs' MLflow runs); write ``optimization_results.yaml`` in the sweep dir (as
hydra-optuna-sweeper does) and the best trial or Pareto front on the sweep's parent run.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import OmegaConf

from hydra_plugins.hydraflow_plugins._job_runner import skip_final_collections
from hydra_plugins.hydraflow_plugins._optuna_options import FlowOptunaError, SweeperOptions
from hydra_plugins.hydraflow_plugins._optuna_search import Search
from hydra_plugins.hydraflow_plugins._optuna_space import SearchSpace
from hydra_plugins.hydraflow_plugins._optuna_study import (
    StudyJournal,
    counted,
    journal_path,
    open_study,
)

if TYPE_CHECKING:
    from hydra.plugins.launcher import Launcher
    from optuna.study import Study

    from hydra_plugins.hydraflow_plugins._optuna_mlflow import MlflowTrials
    from hydra_plugins.hydraflow_plugins._session import JobSession
    from hydra_plugins.hydraflow_plugins.flow_optuna_sweeper import FlowOptunaSweeper

__all__ = ["results_of", "sampler_and_trials", "sweep"]

log = logging.getLogger(__name__)

PRUNE_POLL_SECONDS = 1.0


def sweep(sweeper: FlowOptunaSweeper, arguments: list[str]) -> dict[str, Any]:
    """Run the study to ``n_trials`` ended trials; return what ``optimization_results.yaml`` holds."""
    import optuna

    from hydra_plugins.hydraflow_plugins._resume import mlflow_callback_settings
    from hydraflow.conventions import resolve_tracking_uri
    from hydraflow.sweep_context import sweep_ids

    assert sweeper.config is not None and sweeper.launcher is not None
    options, config = sweeper.options, sweeper.config
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = SearchSpace.parse(options.params, arguments, options.custom_search_space)
    sampler, n_trials = sampler_and_trials(options, space)
    settings = mlflow_callback_settings(config)
    if options.prune_on and settings is None:
        raise FlowOptunaError(
            f"hydra.sweeper.prune_on={options.prune_on!r} needs the MLflow callback: the sweeper "
            "reads running jobs' intermediate values from their MLflow runs. Add "
            "hydra/callbacks=mlflow (or set hydra.sweeper.prune_on=null)"
        )
    launch_dir = str(config.hydra.runtime.cwd)
    uri = (settings or {}).get("tracking_uri") or resolve_tracking_uri(launch_dir)
    ids = sweep_ids(sweeper.hydra_context)
    sweep_id = ids.sweep_id if ids is not None else None
    study_name = options.study_name or f"{config.hydra.job.name}-{sweep_id or os.getpid()}"
    journal = None
    if options.storage is None:
        journal = StudyJournal(journal_path(uri, launch_dir, study_name))
    study = open_study(options, sampler, study_name, journal)
    where = journal.path if journal is not None else options.storage
    log.info(
        f"[flow_optuna] study {study_name!r} in {where}: {counted(study)} of {n_trials} trials "
        f"ended before; continue it with hydra.sweeper.study_name={study_name}"
    )
    records = None
    if settings is not None and ids is not None:
        from hydra_plugins.hydraflow_plugins._optuna_mlflow import MlflowTrials

        experiment = settings.get("experiment") or str(config.hydra.job.name)
        records = MlflowTrials(
            uri, experiment, ids.sweep_id, ids.parent_run_id, study_name, options.prune_on
        )
    with _session(sweeper.launcher, options.n_jobs) as session:
        if session.slots < options.n_jobs:
            log.info(
                f"[flow_optuna] {session.slots} trial(s) at once, not hydra.sweeper.n_jobs="
                f"{options.n_jobs}: the launcher runs at most {session.slots} jobs at once "
                "(raise hydra.launcher.max_parallel)"
            )
        search = Search(
            study,
            session,
            lambda: space.ask(study, config),
            n_trials,
            parallel=options.n_jobs,
            journal=journal,
            records=records,
            watch=records if options.prune_on else None,
            poll=PRUNE_POLL_SECONDS,
        )
        try:
            search.run()
        except BaseException:
            print(
                f"[flow_optuna] stopped: the trials that were running are FAIL in study "
                f"{study_name!r} ({where}); {search.done} of {n_trials} trials have ended. Run "
                f"the same command with hydra.sweeper.study_name={study_name} to continue it",
                file=sys.stderr,
                flush=True,
            )
            raise
        finally:
            log.info(f"[flow_optuna] sweeper time: {search.times.summary()}")
    results = _report(study, str(config.hydra.sweep.dir), records)
    skip_final_collections()  # the sweep's process ends soon: a quicker exit
    return results


def sampler_and_trials(options: SweeperOptions, space: SearchSpace) -> tuple[Any, int]:
    """The sampler (a grid gets its search space) and the number of trials to run."""
    if not options.is_grid:
        return options.sampler, options.n_trials
    grid = space.grid()
    size = math.prod(len(values) for values in grid.values())
    if size < options.n_trials:
        log.info(f"[flow_optuna] the grid has {size} points: n_trials is {size}")
    return options.sampler(grid), min(options.n_trials, size)


def _session(launcher: Launcher, n_jobs: int) -> AbstractContextManager[JobSession]:
    """The launcher's streaming session; for other launchers, batches of ``n_jobs`` (a barrier)."""
    session = getattr(launcher, "session", None)
    if session is None:
        from hydra_plugins.hydraflow_plugins._optuna_session import BatchSession

        log.info(
            f"[flow_optuna] {type(launcher).__name__} does not stream results: trials run in "
            "batches of hydra.sweeper.n_jobs (hydra/launcher=flow runs them without a barrier)"
        )
        return BatchSession(launcher, n_jobs)
    opened: AbstractContextManager[JobSession] = session()
    return opened


def results_of(study: Study) -> dict[str, Any]:
    """The best trial (one objective) or the Pareto front, as hydra-optuna-sweeper writes them."""
    if len(study.directions) == 1:
        try:
            best = study.best_trial
        except ValueError:  # no trial completed
            return {"name": "flow_optuna", "best_params": {}, "best_value": None}
        return {"name": "flow_optuna", "best_params": best.params, "best_value": best.value}
    front = [{"params": t.params, "values": t.values} for t in study.best_trials]
    return {"name": "flow_optuna", "solutions": front}


def _report(study: Study, sweep_dir: str, records: MlflowTrials | None) -> dict[str, Any]:
    results = results_of(study)
    if "best_value" in results:
        log.info(f"[flow_optuna] best value {results['best_value']}: {results['best_params']}")
    else:
        log.info(f"[flow_optuna] Pareto front: {len(results['solutions'])} trial(s)")
    Path(sweep_dir).mkdir(parents=True, exist_ok=True)
    OmegaConf.save(OmegaConf.create(results), Path(sweep_dir, "optimization_results.yaml"))
    if records is not None and results.get("best_value", 0) is not None:
        records.summary(study, results)
    return results
