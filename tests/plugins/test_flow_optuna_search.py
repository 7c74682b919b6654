"""The ``flow_optuna`` search loop, in memory: a fake job session with a virtual clock.

Durations, results and logged metric curves are functions of a trial's params, so start times
prove there is no batch barrier, and pruning, failures, interruption and resume are exact.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest
from omegaconf import OmegaConf
from optuna_fakes import FakeMetrics, FakeSession, Recorded

from hydra_plugins.hydraflow_plugins._optuna_core import results_of, sampler_and_trials
from hydra_plugins.hydraflow_plugins._optuna_options import FlowOptunaError, SweeperOptions
from hydra_plugins.hydraflow_plugins._optuna_search import Search
from hydra_plugins.hydraflow_plugins._optuna_space import SearchSpace
from hydra_plugins.hydraflow_plugins._optuna_study import StudyJournal, open_study

optuna.logging.set_verbosity(optuna.logging.WARNING)
TPE = {"_target_": "optuna.samplers.TPESampler", "seed": 7}
RANDOM = {"_target_": "optuna.samplers.RandomSampler", "seed": 3}


def _options(**fields: Any) -> SweeperOptions:
    return SweeperOptions.from_params({"sampler": TPE, **fields})


def _search(
    session: FakeSession,
    options: SweeperOptions,
    space: SearchSpace,
    journal: StudyJournal | None = None,
    **kwargs: Any,
) -> optuna.study.Study:
    study = open_study(options, options.sampler, "s", journal)
    search = Search(
        study,
        session,
        lambda: space.ask(study, OmegaConf.create({})),
        options.n_trials,
        parallel=options.n_jobs,
        journal=journal,
        clock=session.clock,
        **kwargs,
    )
    with session:
        search.run()
    return study


def _quadratic(params: dict[str, Any]) -> float:
    return float((params["x"] - 2) ** 2)


def test_search_on_a_quadratic_reaches_its_neighbourhood() -> None:
    session = FakeSession(slots=4, duration=lambda p: 1 + abs(p["x"]), result=_quadratic)
    options = _options(n_trials=40, n_jobs=4)
    space = SearchSpace.parse({"x": "interval(-10, 10)"}, [])
    study = _search(session, options, space)
    assert len(study.trials) == 40
    assert all(t.state.name == "COMPLETE" for t in study.trials)
    assert abs(study.best_params["x"] - 2) < 1.0, study.best_params
    assert results_of(study)["best_value"] == study.best_value


def test_a_slot_is_refilled_the_moment_its_trial_ends_no_batch_barrier() -> None:
    # Job 0 runs 10 s; every other job 1 s. With 2 slots, a batched sweeper would start job 2 only
    # when job 0 ends (t=10); here job 2 starts at t=1, and job 0's slot is the only one kept busy.
    session = FakeSession(
        slots=2, duration=lambda p: 10.0 if p["x"] == 0 else 1.0, result=lambda p: p["x"]
    )
    options = _options(n_trials=8, n_jobs=2, sampler=RANDOM)
    space = SearchSpace.parse({"x": "range(0, 1000)"}, [])
    first = {"x": 0}
    study = open_study(options, options.sampler, "s", None)
    study.enqueue_trial(first)
    search = Search(
        study, session, lambda: space.ask(study, OmegaConf.create({})), 8, clock=session.clock
    )
    with session:
        search.run()
    jobs = session.jobs
    assert jobs[0].params["x"] == 0 and jobs[0].started == 0.0 and jobs[0].ended == 10.0
    starts = [jobs[n].started for n in range(1, 8)]
    assert starts == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    # never more than 2 at once, and the study ended when job 0 did
    assert max(sum(1 for j in jobs.values() if j.started <= t < j.ended) for t in starts) == 2
    assert session.now == 10.0
    assert [t.user_attrs["job_num"] for t in study.trials] == list(range(8))


def test_n_jobs_caps_the_trials_running_at_once_below_the_slots() -> None:
    session = FakeSession(slots=8, duration=lambda p: 1.0, result=lambda p: p["x"])
    _search(session, _options(n_trials=6, n_jobs=3), SearchSpace.parse({"x": "range(0,9)"}, []))
    assert sorted(j.started for j in session.jobs.values()) == [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]


def _loss_curve(params: dict[str, Any], step: int) -> float:
    return float(params["x"]) + 1.0 / (step + 1)  # a bad x stays bad at every step


def test_a_pruned_trial_is_cancelled_and_its_slot_reused_at_once() -> None:
    session = FakeSession(
        slots=2,
        duration=lambda p: 10.0,
        result=lambda p: float(p["x"]),
        curve=_loss_curve,
        steps=10,
    )
    options = _options(
        n_trials=6,
        n_jobs=2,
        sampler=RANDOM,
        prune_on="val_loss",
        pruner={"_target_": "optuna.pruners.MedianPruner", "n_startup_trials": 2},
    )
    study = open_study(options, options.sampler, "s", None)
    for x in (1, 2, 9, 0, 8, 7):  # two good ones finish; 9, 8 and 7 are worse than their median
        study.enqueue_trial({"x": x})
    space = SearchSpace.parse({"x": "range(0,10)"}, [])
    records = Recorded()
    metrics = FakeMetrics(session)
    search = Search(
        study,
        session,
        lambda: space.ask(study, OmegaConf.create({})),
        6,
        records=records,
        watch=metrics,
        poll=0.5,
        clock=session.clock,
    )
    with session:
        search.run()
    states = {t.params["x"]: t.state.name for t in study.trials}
    assert states == {
        1: "COMPLETE",
        2: "COMPLETE",
        9: "PRUNED",
        0: "COMPLETE",
        8: "PRUNED",
        7: "PRUNED",
    }
    pruned = [j for j in session.jobs.values() if j.params["x"] in (9, 8, 7)]
    assert all(j.cancelled and j.ended is not None and j.ended < j.started + 10 for j in pruned)
    # the job after a pruned one starts the moment the pruned one was stopped
    by_num = sorted(session.jobs.values(), key=lambda j: j.num)
    for job in pruned:
        successor = next((j for j in by_num if j.num > job.num and j.submitted >= job.ended), None)
        if successor is not None:
            assert successor.started == job.ended
    # each trial is recorded once, the pruned ones after their job stopped
    assert sorted(records.entries) == sorted(
        (t.user_attrs["job_num"], t.number, t.state.name) for t in study.trials
    )
    assert study.trials[2].intermediate_values  # what the pruner saw is kept


def test_a_failing_trial_is_fail_and_the_study_goes_on(capfd: pytest.CaptureFixture[str]) -> None:
    def result(params: dict[str, Any]) -> Any:
        if params["x"] == 3:
            raise ValueError("diverged")
        return "not a number" if params["x"] == 4 else float(params["x"])

    session = FakeSession(slots=2, duration=lambda p: 1.0, result=result)
    options = _options(n_trials=5, n_jobs=2, sampler=RANDOM)
    study = open_study(options, options.sampler, "s", None)
    for x in (1, 3, 4, 2, 5):
        study.enqueue_trial({"x": x})
    space = SearchSpace.parse({"x": "range(0,10)"}, [])
    Search(
        study, session, lambda: space.ask(study, OmegaConf.create({})), 5, clock=session.clock
    ).run()
    assert [t.state.name for t in study.trials] == [
        "COMPLETE",
        "FAIL",
        "FAIL",
        "COMPLETE",
        "COMPLETE",
    ]
    assert study.best_value == 1.0
    err = capfd.readouterr().err
    assert "trial 1 (job #1) FAILED: diverged — the study goes on" in err
    assert "trial 2 (job #2) is FAIL: its return value 'not a number' is not a number" in err


def test_resume_continues_numbering_and_skips_finished_trials(tmp_path: Path) -> None:
    journal = StudyJournal(tmp_path / "optuna" / "s.jsonl")
    space = SearchSpace.parse({"x": "interval(0, 4)"}, [])
    first = FakeSession(slots=2, duration=lambda p: 1.0, result=_quadratic)
    before = _search(first, _options(n_trials=4, n_jobs=2), space, journal)
    done = [(t.number, t.params, t.value) for t in before.trials]

    again = FakeSession(slots=2, duration=lambda p: 1.0, result=_quadratic)
    after = _search(again, _options(n_trials=7, n_jobs=2), space, journal)
    assert sorted(again.jobs) == [4, 5, 6]  # only the 3 missing trials ran, numbered on
    assert [(t.number, t.params, t.value) for t in after.trials[:4]] == done
    assert [t.user_attrs["job_num"] for t in after.trials] == list(range(7))

    third = FakeSession(slots=2, duration=lambda p: 1.0, result=_quadratic)
    _search(third, _options(n_trials=7, n_jobs=2), space, journal)
    assert third.jobs == {}  # n_trials counts the whole study: nothing left to run


def test_a_storage_url_keeps_the_study_and_a_rerun_continues_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    space = SearchSpace.parse({"x": "interval(0, 4)"}, [])
    first = FakeSession(slots=2, duration=lambda p: 1.0, result=_quadratic)
    before = _search(first, _options(n_trials=3, n_jobs=2, storage=url), space)
    done = [(t.number, t.params, t.value) for t in before.trials]

    again = FakeSession(slots=2, duration=lambda p: 1.0, result=_quadratic)
    after = _search(again, _options(n_trials=5, n_jobs=2, storage=url), space)
    assert sorted(again.jobs) == [3, 4]  # only the missing trials ran, numbered on
    assert [(t.number, t.params, t.value) for t in after.trials[:3]] == done
    assert [t.user_attrs["job_num"] for t in after.trials] == list(range(5))
    assert (tmp_path / "optuna.db").is_file()


def test_a_storage_url_that_cannot_be_opened_names_the_key() -> None:
    options = _options(storage="nosuchdb://host/study")
    with pytest.raises(FlowOptunaError) as raised:
        open_study(options, options.sampler, "s", None)
    message = str(raised.value)
    assert message.startswith("hydra.sweeper.storage='nosuchdb://host/study' cannot be opened")
    assert "or null to keep the study beside the MLflow store" in message


def test_ended_trials_are_written_down_after_their_slots_are_refilled(tmp_path: Path) -> None:
    session = FakeSession(slots=2, duration=lambda p: 1.0, result=_quadratic)
    journal = StudyJournal(tmp_path / "s.jsonl")
    newest_job_when_written: dict[int, int] = {}

    class Spy(StudyJournal):
        def record(
            self, trial: Any, submitted_at: float | None = None, ended_at: float | None = None
        ) -> None:
            newest_job_when_written[trial.user_attrs["job_num"]] = max(session.jobs)
            super().record(trial, submitted_at, ended_at)

    class Records:
        def ended(self, num: int, trial: Any) -> None:
            assert max(session.jobs) >= min(num + 2, 5)  # its successor was submitted first

    spy = Spy(journal.path)
    space = SearchSpace.parse({"x": "interval(0, 4)"}, [])
    study = _search(session, _options(n_trials=6, n_jobs=2), space, spy, records=Records())
    assert sorted(newest_job_when_written) == list(range(6))
    assert all(newest >= min(n + 2, 5) for n, newest in newest_job_when_written.items())
    entries = journal.load("s", ["minimize"])
    assert len(entries) == len(study.trials) == 6
    assert all(e["submitted_at"] <= e["ended_at"] for e in entries)


def test_ctrl_c_marks_running_trials_fail_and_a_rerun_runs_them_again(tmp_path: Path) -> None:
    journal = StudyJournal(tmp_path / "s.jsonl")
    space = SearchSpace.parse({"x": "interval(0, 4)"}, [])
    session = FakeSession(slots=2, duration=lambda p: 2.0, result=_quadratic, interrupt_at=3.0)
    options = _options(n_trials=6, n_jobs=2)
    study = open_study(options, options.sampler, "s", journal)
    ask = lambda: space.ask(study, OmegaConf.create({}))  # noqa: E731
    search = Search(study, session, ask, 6, parallel=2, journal=journal, clock=session.clock)
    with pytest.raises(KeyboardInterrupt), session:
        search.run()
    assert session.exited  # the session's exit cancels what still runs
    assert search.done == 2  # the "stopped" message's count: the interrupted 2 do not count
    resumed = FakeSession(slots=2, duration=lambda p: 2.0, result=_quadratic)
    study = _search(resumed, _options(n_trials=6, n_jobs=2), space, journal)
    states = [t.state.name for t in study.trials]
    assert states[:4] == ["COMPLETE", "COMPLETE", "FAIL", "FAIL"]
    assert all(t.user_attrs.get("interrupted") for t in study.trials[2:4])
    assert states[4:] == ["COMPLETE"] * 4  # 6 counted trials: the 2 interrupted ran again
    assert sorted(resumed.jobs) == [4, 5, 6, 7]


def test_multi_objective_returns_list_the_pareto_front() -> None:
    session = FakeSession(
        slots=3, duration=lambda p: 1.0, result=lambda p: (p["x"] ** 2, (p["x"] - 2) ** 2)
    )
    options = SweeperOptions.from_params(
        {
            "sampler": {"_target_": "optuna.samplers.NSGAIISampler", "seed": 1},
            "directions": ["minimize", "minimize"],
            "n_trials": 12,
            "n_jobs": 3,
        }
    )
    study = _search(session, options, SearchSpace.parse({"x": "interval(-1, 3)"}, []))
    front = results_of(study)["solutions"]
    assert front and all(0 <= s["params"]["x"] <= 2 for s in front)  # the Pareto set is [0, 2]
    assert len(front) == len(study.best_trials)


def test_a_metric_never_logged_is_reported_once_naming_the_key(
    capfd: pytest.CaptureFixture[str],
) -> None:
    session = FakeSession(slots=2, duration=lambda p: 3.0, result=lambda p: 1.0, curve=_loss_curve)
    options = _options(n_trials=4, n_jobs=2, prune_on="val_los")
    metrics = FakeMetrics(session, metric="val_los", logs=False)
    _search(session, options, SearchSpace.parse({"x": "range(0,5)"}, []), watch=metrics)
    err = capfd.readouterr().err
    assert err.count("hydra.sweeper.prune_on='val_los'") == 1
    assert "ended without logging 'val_los' (it logged ['accuracy'])" in err
    assert metrics.reads > 0


@pytest.mark.parametrize(
    "fields, expected",
    [
        ({"n_jobs": 0}, "hydra.sweeper.n_jobs=0 is invalid: it must be a whole number greater"),
        ({"n_trials": -1}, "hydra.sweeper.n_trials=-1 is invalid"),
        ({"direction": "up"}, "hydra.sweeper.direction='up' is invalid"),
        ({"directions": ["minimize", "up"]}, "hydra.sweeper.directions=['minimize', 'up'] is"),
        ({"search_space": {"x": {"type": "float"}}}, "hydra.sweeper.search_space (deprecated"),
        (
            {"sampler": {"_target_": "optuna.samplers.NopeSampler"}},
            "hydra.sweeper.sampler (optuna.samplers.NopeSampler) cannot be created: "
            "'optuna.samplers.NopeSampler' cannot be imported",
        ),
        (
            {"sampler": {**TPE, "bogus": 1}},
            "TypeError: TPESampler.__init__() got an unexpected keyword argument 'bogus'",
        ),
        ({"pruner": {"_target_": "optuna.pruners.MedianPruner"}}, "hydra.sweeper.prune_on is null"),
        (
            {"prune_on": "loss", "direction": ["minimize", "maximize"]},
            "hydra.sweeper.prune_on='loss' is invalid with several directions",
        ),
    ],
)
def test_bad_sweeper_settings_get_one_message_naming_the_key(
    fields: dict[str, Any], expected: str
) -> None:
    with pytest.raises(FlowOptunaError) as raised:
        SweeperOptions.from_params({"sampler": TPE, **fields})
    assert expected in str(raised.value)


@pytest.mark.parametrize(
    "params, expected",
    [
        ({"x": "interval(1"}, "hydra.sweeper.params.x: 'x=interval(1' is not valid sweep grammar"),
        (
            {"x": "interval(3, 1)"},
            "hydra.sweeper.params.x='interval(3, 1)' is invalid: an interval",
        ),
        ({"lr": "tag(log, interval(0, 1))"}, "hydra.sweeper.params.lr='tag(log, interval(0, 1))'"),
        ({"n": "tag(log, range(0, 9))"}, "hydra.sweeper.params.n='tag(log, range(0, 9))' is inv"),
        (
            {"n": "tag(log, range(1, 9, 2))"},
            "a log range needs whole numbers from 1 up with step 1",
        ),
    ],
)
def test_a_bad_params_expression_names_its_key(params: dict[str, str], expected: str) -> None:
    with pytest.raises(FlowOptunaError) as raised:
        SearchSpace.parse(params, [])
    assert expected in str(raised.value)


def test_the_sweep_grammar_makes_optuna_distributions() -> None:
    from optuna.distributions import CategoricalDistribution as Categorical
    from optuna.distributions import FloatDistribution as Float
    from optuna.distributions import IntDistribution as Int

    space = SearchSpace.parse(
        {
            "a": "choice(x, 2)",
            "b": "range(1, 10, 3)",
            "c": "interval(0, 2)",
            "d": "tag(log, interval(1e-4, 1))",
            "e": "tag(log, range(1, 65))",
            "f": "range(0.5, 2.0, 0.5)",
            "g": "7",
        },
        ["b=range(2, 5)"],  # the command line wins
    )
    assert space.distributions == {
        "a": Categorical(["x", 2]),
        "b": Int(2, 4),
        "c": Float(0.0, 2.0),
        "d": Float(1e-4, 1.0, log=True),
        "e": Int(1, 64, log=True),
        "f": Float(0.5, 1.5, step=0.5),
    }
    assert space.fixed == {"g": "7"}


@pytest.mark.parametrize(
    "conf, sampler",
    [
        ("TPESamplerConf", "TPESampler"),
        ("MOTPESamplerConf", "TPESampler"),
        ("RandomSamplerConf", "RandomSampler"),
        ("CmaEsSamplerConf", "CmaEsSampler"),
        ("NSGAIISamplerConf", "NSGAIISampler"),
    ],
)
def test_our_sampler_configs_make_optuna_samplers_without_deprecation_warnings(
    conf: str, sampler: str
) -> None:
    import warnings

    from hydra_plugins.hydraflow_plugins import config

    node = OmegaConf.structured(getattr(config, conf))
    node.seed = 5
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        made = SweeperOptions.from_params({"sampler": node}).sampler
    assert type(made) is getattr(optuna.samplers, sampler)


def test_cmaes_samples_and_a_missing_sampler_package_is_one_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib.util

    cmaes = {"_target_": "optuna.samplers.CmaEsSampler", "seed": 1, "n_startup_trials": 1}
    session = FakeSession(slots=2, duration=lambda p: 1.0, result=_quadratic)
    space = SearchSpace.parse({"x": "interval(0, 4)"}, [])
    study = _search(session, _options(sampler=cmaes, n_trials=4), space)
    assert len(study.trials) == 4  # trials after the first are CMA-ES's (the cmaes package)
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "cmaes" else find_spec(name)
    )
    with pytest.raises(FlowOptunaError) as raised:
        _options(sampler=cmaes)
    assert "hydra.sweeper.sampler (CmaEsSampler) needs the Python package(s) cmaes" in str(
        raised.value
    )


def test_grid_sampler_needs_discrete_params_and_covers_the_grid() -> None:
    from hydra_plugins.hydraflow_plugins.config import GridSamplerConf

    options = _options(sampler=OmegaConf.structured(GridSamplerConf))
    assert options.is_grid
    with pytest.raises(FlowOptunaError, match=r"hydra.sweeper.params.x is continuous"):
        SearchSpace.parse({"x": "interval(0, 1)"}, []).grid()
    space = SearchSpace.parse({"x": "range(1, 4)", "y": "choice(a, b)"}, ["z=5"])
    assert space.grid() == {"x": [1, 2, 3], "y": ["a", "b"]}
    assert space.fixed == {"z": "5"}

    sampler, n_trials = sampler_and_trials(
        options, space
    )  # n_trials (20) capped at the grid's 6 points
    assert n_trials == 6
    session = FakeSession(slots=2, duration=lambda p: 1.0, result=lambda p: p["x"])
    study = open_study(options, sampler, "s", None)
    search = Search(study, session, lambda: space.ask(study, OmegaConf.create({})), n_trials)
    with session:
        search.run()
    points = sorted((j.params["x"], j.params["y"]) for j in session.jobs.values())
    assert points == [(x, y) for x in (1, 2, 3) for y in ("a", "b")]


@pytest.mark.parametrize("where", ["journal", "storage"])
def test_a_resumed_grid_search_runs_only_the_points_not_run_yet(tmp_path: Path, where: str) -> None:
    from hydra_plugins.hydraflow_plugins.config import GridSamplerConf

    storage = f"sqlite:///{tmp_path / 'optuna.db'}" if where == "storage" else None
    options = _options(
        sampler=OmegaConf.structured(GridSamplerConf), n_trials=6, n_jobs=2, storage=storage
    )
    space = SearchSpace.parse({"x": "range(1, 4)", "y": "choice(a, b)"}, [])
    grid = [(x, y) for x in (1, 2, 3) for y in ("a", "b")]
    journal = StudyJournal(tmp_path / "grid.jsonl") if where == "journal" else None

    def run(session: FakeSession, n_trials: int) -> optuna.study.Study:
        sampler, _ = sampler_and_trials(options, space)
        study = open_study(options, sampler, "grid", journal)
        search = Search(
            study,
            session,
            lambda: space.ask(study, OmegaConf.create({})),
            n_trials,
            journal=journal,
            clock=session.clock,
        )
        with session:
            search.run()
        return study

    def points(session: FakeSession) -> list[tuple[Any, Any]]:
        return [(job.params["x"], job.params["y"]) for job in session.jobs.values()]

    first = FakeSession(slots=2, duration=lambda p: 1.0, result=lambda p: p["x"])
    run(first, 2)
    stopped = FakeSession(
        slots=2, duration=lambda p: 1.0, result=lambda p: p["x"], interrupt_at=1.5
    )
    with pytest.raises(KeyboardInterrupt):
        run(stopped, 6)  # two more complete, the next two are interrupted
    rest = FakeSession(slots=2, duration=lambda p: 1.0, result=lambda p: p["x"])
    study = run(rest, 6)
    completed = points(first) + points(stopped)[:2] + points(rest)
    assert sorted(completed) == grid  # every point once: none repeated, none left out
    assert set(points(stopped)[2:]) <= set(points(rest))  # the interrupted points ran again
    assert sum(t.state.name == "COMPLETE" for t in study.trials) == 6


def test_a_launcher_without_a_session_runs_trials_in_batches_of_n_jobs() -> None:
    from hydra.core.utils import JobReturn, JobStatus

    from hydra_plugins.hydraflow_plugins._optuna_session import BatchSession

    calls: list[tuple[int, list[list[str]]]] = []

    class Launcher:
        def launch(self, overrides: Any, initial_job_idx: int) -> list[JobReturn]:
            calls.append((initial_job_idx, [list(o) for o in overrides]))
            returns = []
            for o in overrides:
                ret = JobReturn()
                ret.status, ret.return_value = JobStatus.COMPLETED, float(o[0].split("=")[1])
                returns.append(ret)
            return returns

    options = _options(n_trials=5, n_jobs=2)
    space = SearchSpace.parse({"x": "interval(0, 1)"}, [])
    study = open_study(options, options.sampler, "s", None)
    with BatchSession(Launcher(), 2) as session:  # type: ignore[arg-type]
        Search(study, session, lambda: space.ask(study, OmegaConf.create({})), 5).run()
    assert [(start, len(batch)) for start, batch in calls] == [(0, 2), (2, 2), (4, 1)]
    assert [t.value for t in study.trials] == [float(t.params["x"]) for t in study.trials]


def test_custom_search_space_adds_params_and_refuses_a_fixed_one() -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    space = SearchSpace.parse({"x": "choice(a,b)"}, ["y=1"], "optuna_fakes.suggest_depth")
    trial, overrides = space.ask(study, OmegaConf.create({}))
    assert overrides == [f"x={trial.params['x']}", f"depth={trial.params['depth']}", "y=1"]
    clash = SearchSpace.parse({}, ["depth=2"], "optuna_fakes.suggest_depth")
    with pytest.raises(FlowOptunaError, match=r"custom_search_space suggests \['depth'\]"):
        clash.ask(study, OmegaConf.create({}))
    with pytest.raises(FlowOptunaError, match=r"custom_search_space='nowhere.fn' cannot be"):
        SearchSpace.parse({}, [], "nowhere.fn")
