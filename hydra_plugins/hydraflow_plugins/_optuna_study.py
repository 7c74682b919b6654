"""Where a ``flow_optuna`` study lives, and how a rerun continues it.

``hydra.sweeper.storage`` set: an Optuna storage URL, used as is (``load_if_exists``).
``storage: null`` (the default): a journal beside the MLflow store, ``optuna/<study_name>.jsonl`` —
one JSON line per ended trial (number, state, values, params and their distributions, intermediate
values, user and sampler attributes, when its job was submitted and when it ended). A rerun with the same ``study_name`` replays it into an in-memory study,
so finished trials are not rerun and no database server is needed. A trial's ``job_num`` user
attribute ties it to its Hydra job; ``interrupted`` marks trials stopped by Ctrl-C (FAIL in Optuna,
not counted against ``n_trials``, so a resumed study runs that many new ones).
"""

from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

from hydra_plugins.hydraflow_plugins._optuna_options import FlowOptunaError, SweeperOptions

if TYPE_CHECKING:
    from optuna.study import Study
    from optuna.trial import FrozenTrial

__all__ = [
    "StudyJournal",
    "counted",
    "interrupted",
    "journal_path",
    "next_job_num",
    "open_study",
]

ATTR_JOB_NUM = "job_num"
ATTR_INTERRUPTED = "interrupted"


def journal_path(tracking_uri: str, launch_dir: str, study_name: str) -> Path:
    """``optuna/<study_name>.jsonl`` beside a sqlite or file MLflow store, else in ``launch_dir``."""
    if tracking_uri.startswith("sqlite:///"):
        base = Path(tracking_uri.removeprefix("sqlite:///")).parent
    elif tracking_uri.startswith("file:"):
        base = Path(tracking_uri.removeprefix("file://").removeprefix("file:")).parent
    elif "://" not in tracking_uri:
        base = Path(tracking_uri).parent
    else:  # a server: keep the journal where the sweep was launched
        base = Path(launch_dir)
    safe = re.sub(r"[^\w.-]", "_", study_name)
    return (base / "optuna" / f"{safe}.jsonl").resolve()


class StudyJournal:
    """An append-only JSON-lines record of a study's ended trials."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self, study_name: str, directions: list[str]) -> list[dict[str, Any]]:
        """The recorded trials; a journal of other directions is refused."""
        if not self.path.is_file():
            return []
        trials: list[dict[str, Any]] = []
        for line in self.path.read_text().splitlines():
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a line cut by a crash: that trial is run again
            if entry.get("kind") == "study" and entry.get("directions") != directions:
                raise FlowOptunaError(
                    f"hydra.sweeper.direction={directions} differs from the study "
                    f"{study_name!r} recorded in {self.path} ({entry.get('directions')}). "
                    "Use the study's directions, or a new hydra.sweeper.study_name"
                )
            if entry.get("kind") == "trial":
                trials.append(entry)
        return trials

    def start(self, study_name: str, directions: list[str]) -> None:
        """Write the header of a new journal."""
        if not self.path.is_file():
            self._append({"kind": "study", "study_name": study_name, "directions": directions})

    def record(
        self,
        trial: FrozenTrial,
        submitted_at: float | None = None,
        ended_at: float | None = None,
    ) -> None:
        """Append one ended trial; with when its job was submitted and when the sweeper learnt it
        ended (Unix seconds), where known."""
        from optuna.distributions import distribution_to_json

        self._append(
            {
                "kind": "trial",
                "number": trial.number,
                "state": trial.state.name,
                "values": trial.values,
                "params": trial.params,
                "distributions": {
                    k: distribution_to_json(d) for k, d in trial.distributions.items()
                },
                "intermediate": {str(k): v for k, v in trial.intermediate_values.items()},
                "user_attrs": trial.user_attrs,
                "system_attrs": _json_values(trial.system_attrs),
                "submitted_at": submitted_at,
                "ended_at": ended_at,
            }
        )

    def _append(self, entry: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as stream:
            stream.write(json.dumps(entry, default=str) + "\n")
            stream.flush()
            os.fsync(stream.fileno())


def _json_values(attrs: dict[str, Any]) -> dict[str, Any]:
    """The attributes that survive JSON as they are (a sampler's own: the grid point, ...)."""
    kept = {}
    for key, value in attrs.items():
        try:
            if json.loads(json.dumps(value)) == value:
                kept[key] = value
        except (TypeError, ValueError):
            continue
    return kept


def interrupted(study: Study, trial_id: int) -> None:
    """Mark a running trial stopped before its end (Ctrl-C, a crash): it does not count against
    ``n_trials`` and its grid point (if a grid sampler gave it one) is free to be run again."""
    study._storage.set_trial_user_attr(trial_id, ATTR_INTERRUPTED, True)
    if "grid_id" in study._storage.get_trial_system_attrs(trial_id):
        study._storage.set_trial_system_attr(trial_id, "grid_id", -1)  # GridSampler's own attribute


def _replay(study: Study, entries: list[dict[str, Any]]) -> None:
    """Add recorded trials in number order (a gap — a trial never recorded — becomes FAIL).

    Trials keep their samplers' attributes, so a grid sampler skips the points already run.
    """
    from optuna.distributions import json_to_distribution
    from optuna.exceptions import ExperimentalWarning
    from optuna.trial import TrialState, create_trial

    warnings.simplefilter("ignore", ExperimentalWarning)  # add_trial/create_trial in Optuna 2
    by_number = {int(e["number"]): e for e in entries}
    for number in range(max(by_number, default=-1) + 1):
        entry = by_number.get(number)
        if entry is None:
            study.add_trial(
                create_trial(state=TrialState.FAIL, user_attrs={ATTR_INTERRUPTED: True})
            )
            continue
        state = TrialState[entry["state"]]
        values = entry.get("values")
        study.add_trial(
            create_trial(
                state=state,
                values=values if state == TrialState.COMPLETE else None,
                params=entry.get("params") or {},
                distributions={
                    k: json_to_distribution(v)
                    for k, v in (entry.get("distributions") or {}).items()
                },
                intermediate_values={
                    int(k): v for k, v in (entry.get("intermediate") or {}).items()
                },
                user_attrs=entry.get("user_attrs") or {},
                system_attrs=entry.get("system_attrs") or {},
            )
        )


def open_study(
    options: SweeperOptions, sampler: Any, study_name: str, journal: StudyJournal | None
) -> Study:
    """Create the study, or continue the one recorded under ``study_name``."""
    import optuna

    if journal is None:
        try:
            study = optuna.create_study(
                study_name=study_name,
                storage=options.storage,
                sampler=sampler,
                pruner=options.pruner,
                directions=_directions(options),
                load_if_exists=True,
            )
        except Exception as error:
            hint = ""
            if int(optuna.__version__.split(".")[0]) < 4:  # Optuna 2 cannot use SQLAlchemy 2
                hint = f"Optuna {optuna.__version__} is too old: pip install 'hydraflow[optuna]'. "
            raise FlowOptunaError(
                f"hydra.sweeper.storage={options.storage!r} cannot be opened "
                f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}). "
                f"{hint}Give an Optuna storage URL (e.g. sqlite:///optuna.db), or null to keep "
                "the study beside the MLflow store"
            ) from None
        for stale in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            interrupted(study, stale._trial_id)  # a crashed earlier run: its trial runs again
            study.tell(stale.number, state=optuna.trial.TrialState.FAIL)
        return study
    entries = journal.load(study_name, options.directions)
    study = optuna.create_study(
        study_name=study_name,
        sampler=sampler,
        pruner=options.pruner,
        directions=_directions(options),
    )
    _replay(study, entries)
    journal.start(study_name, options.directions)
    return study


def _directions(options: SweeperOptions) -> list[Literal["minimize", "maximize"]]:
    """The checked directions, as Optuna's type names them (``SweeperOptions`` checked each)."""
    return cast('list[Literal["minimize", "maximize"]]', options.directions)


def counted(study: Study) -> int:
    """Trials that count against ``n_trials``: ended ones, except those Ctrl-C interrupted."""
    from optuna.trial import TrialState

    ended = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    return sum(
        1
        for t in study.get_trials(deepcopy=False, states=ended)
        if not t.user_attrs.get(ATTR_INTERRUPTED)
    )


def next_job_num(study: Study) -> int:
    """One past the highest job number of the study's trials (0 for a new study)."""
    trials = study.get_trials(deepcopy=False)
    nums = [int(t.user_attrs[ATTR_JOB_NUM]) for t in trials if ATTR_JOB_NUM in t.user_attrs]
    return max(nums, default=-1) + 1
