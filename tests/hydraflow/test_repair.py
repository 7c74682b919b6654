"""Crash repair decided from what can be asked: the launching process and the tasks, never time.

Runs are written into a real sqlite store the way the callback writes them; the launcher identity
of a dead process comes from a real process that was started and reaped.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from hydraflow._process import Liveness, _boot_id, _start_tick, process_liveness, this_process
from hydraflow.cli import main
from hydraflow.repair import inspect_sweeps, repair_store


@pytest.fixture(autouse=True)
def _no_leaked_hydra_state() -> Iterator[None]:
    """Tests here drive the callback in this process: keep its Hydra singletons from leaking into
    later tests (a later in-process sweep would ship them to its jobs)."""
    from hydra.core.singleton import Singleton

    state = Singleton.get_state()
    yield
    Singleton.set_state(state)


def _dead_identity() -> str:
    child = subprocess.Popen(["sleep", "30"])
    identity = f"{socket.gethostname()} {_boot_id()} {child.pid} {_start_tick(child.pid)}"
    child.kill()
    child.wait()
    return identity


def test_process_liveness_asks_the_operating_system() -> None:
    assert process_liveness(this_process()) is Liveness.ALIVE
    assert process_liveness(_dead_identity()) is Liveness.GONE
    host, boot, pid, _tick = this_process().split()
    assert process_liveness(f"{host} {boot} {pid} 1") is Liveness.GONE  # the pid was reused
    assert process_liveness(f"{host} another-boot {pid} {_tick}") is Liveness.GONE  # rebooted
    assert process_liveness(f"elsewhere.example {boot} {pid} {_tick}") is Liveness.UNKNOWN
    assert process_liveness(None) is Liveness.UNKNOWN
    assert process_liveness("garbage") is Liveness.UNKNOWN


@pytest.fixture
def store(tmp_path: Path, migrated_store: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    shutil.copyfile(migrated_store, tmp_path / "mlflow.db")
    monkeypatch.setenv("FLOW_HOME", str(tmp_path / "flow-home"))
    monkeypatch.setenv("FLOW_CONFIG_PATH", str(tmp_path / "flow-config.yaml"))
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


def _sweep(uri: str, launcher: str, job_tags: dict[str, str] | None = None) -> dict[str, Any]:
    """A sweep as the callback records it: a parent, job 0 FINISHED, job 1 RUNNING with metrics."""
    client = MlflowClient(uri)
    experiment = client.create_experiment("app")
    base = {"hydraflow.sweep_id": "cafe0001"}
    parent = client.create_run(
        experiment, tags={**base, "hydraflow.role": "sweep", "hydraflow.launcher": launcher}
    )
    runs = {"parent": parent.info.run_id}
    for num in (0, 1):
        run = client.create_run(
            experiment,
            tags={
                **base,
                **(job_tags or {}),
                "hydraflow.role": "job",
                "hydraflow.job_num": str(num),
                "mlflow.parentRunId": parent.info.run_id,
            },
        )
        for step in range(3):
            client.log_metric(run.info.run_id, "loss", 1.0 / (step + 1), step=step)
        runs[str(num)] = run.info.run_id
    client.set_terminated(runs["0"], "FINISHED")
    return runs


def _status(uri: str, run_id: str) -> tuple[str, str | None]:
    run = MlflowClient(uri).get_run(run_id)
    return run.info.status, run.data.tags.get("hydraflow.end_reason")


def test_jobs_that_ran_in_a_dead_launcher_end_killed_with_their_metrics(store: str) -> None:
    runs = _sweep(store, _dead_identity())
    (report,) = repair_store(store)
    assert report.state == "killed" and report.ended == 2
    status, reason = _status(store, runs["1"])
    assert status == "KILLED"
    assert reason is not None and "is gone; the job ran in it" in reason
    history = MlflowClient(store).get_metric_history(runs["1"], "loss")
    assert [m.value for m in history] == [1.0, 0.5, pytest.approx(1 / 3)]
    assert _status(store, runs["0"]) == ("FINISHED", None)
    parent = MlflowClient(store).get_run(runs["parent"])
    assert parent.info.status == "KILLED" and parent.info.end_time is not None
    assert "no task of sweep cafe0001 is live" in parent.data.tags["hydraflow.end_reason"]
    assert parent.data.metrics["completed"] == 1.0 and parent.data.metrics["killed"] == 1.0
    assert repair_store(store) == []  # nothing RUNNING is left
    (listed,) = inspect_sweeps(MlflowClient(store))  # read from the parent's summary
    assert (listed.state, listed.counts) == ("killed", {"FINISHED": 1, "KILLED": 1})


def test_a_live_launcher_keeps_its_whole_sweep_running(store: str) -> None:
    runs = _sweep(store, this_process())
    (report,) = repair_store(store)
    assert (report.state, report.note, report.ended) == ("running", "launcher alive", 0)
    assert _status(store, runs["1"]) == ("RUNNING", None)
    assert _status(store, runs["parent"]) == ("RUNNING", None)


def test_what_cannot_be_asked_is_left_running(store: str) -> None:
    # A launcher on another machine, and a job whose task its provider does not know.
    _host, boot, pid, tick = this_process().split()
    runs = _sweep(
        store,
        f"elsewhere.example {boot} {pid} {tick}",
        job_tags={"flow.provider": "local", "flow.task_id": "local-nosuchtask"},
    )
    (report,) = repair_store(store)
    assert report.state == "unknown" and report.ended == 0
    assert "task local-nosuchtask unknown to provider local" in report.note
    assert "hydraflow repair --sweep cafe0001 --force" in report.note
    assert _status(store, runs["1"]) == ("RUNNING", None)
    assert _status(store, runs["parent"]) == ("RUNNING", None)


def test_force_ends_what_cannot_be_asked_for_one_sweep_only(
    store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _host, boot, pid, tick = this_process().split()
    runs = _sweep(
        store,
        f"elsewhere.example {boot} {pid} {tick}",
        job_tags={"flow.provider": "local", "flow.task_id": "local-nosuchtask"},
    )
    assert main(["repair", "--force"]) == 1
    assert "--force needs --sweep ID" in capsys.readouterr().err
    assert main(["repair", "--sweep", "cafe0001", "--force"]) == 0
    status, reason = _status(store, runs["1"])
    assert status == "KILLED"
    assert (
        reason
        == "ended by `hydraflow repair --force`: task local-nosuchtask unknown to provider local"
    )
    status, reason = _status(store, runs["parent"])
    assert status == "KILLED" and reason is not None and "--force" in reason


def test_dry_run_and_sweeps_change_nothing(store: str, capsys: pytest.CaptureFixture[str]) -> None:
    runs = _sweep(store, _dead_identity())
    assert main(["repair", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "sweep cafe0001 (app): would end 2 run(s) KILLED" in out
    assert main(["sweeps"]) == 0
    assert "dead" in capsys.readouterr().out
    assert _status(store, runs["1"]) == ("RUNNING", None)
    (report,) = inspect_sweeps(MlflowClient(store))
    assert report.state == "dead"


def test_bad_input_gets_one_line(
    store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _sweep(store, this_process())
    assert main(["repair", "--sweep", "nosuch"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("hydraflow: error: --sweep nosuch: no sweep with this id")
    assert "`hydraflow sweeps` lists them" in err and err.count("\n") == 1
    missing = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    assert main(["sweeps", "--tracking-uri", missing]) == 1
    err = capsys.readouterr().err
    assert "does not exist" in err and "Traceback" not in err
    assert not (tmp_path / "elsewhere.db").exists()  # reading never creates a store


def test_flow_cancel_sweep_calls_the_hook_hydraflow_registers(
    store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from flow_backend.cli import main as flow_main

    runs = _sweep(store, _dead_identity())
    assert flow_main(["--provider", "local", "cancel", "--sweep", "cafe0001"]) == 0
    out = capsys.readouterr().out
    assert "hydraflow: sweep cafe0001: 2 MLflow run(s) ended KILLED" in out
    assert _status(store, runs["1"])[0] == _status(store, runs["parent"])[0] == "KILLED"


def test_flow_cancel_sweep_without_a_store_says_where_it_looked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from flow_backend.cli import main as flow_main

    monkeypatch.setenv("FLOW_HOME", str(tmp_path / "flow-home"))
    monkeypatch.setenv("FLOW_CONFIG_PATH", str(tmp_path / "flow-config.yaml"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    assert flow_main(["--provider", "local", "cancel", "--sweep", "cafe0001"]) == 0
    out = capsys.readouterr().out
    assert "hydraflow: MLflow runs not checked:" in out
    assert "hydraflow repair --sweep cafe0001 --tracking-uri URI" in out
    assert not (tmp_path / "mlflow.db").exists()


def _sweep_config(tmp_path: Path, job_name: str) -> Any:
    """A composed sweep config as the launching process has it, made writable (a launcher's copy)."""
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf, open_dict

    with initialize_config_module("hydra.test_utils.configs", version_base="1.3"):
        config = compose("compose.yaml", ["+a=0"], return_hydra_config=True)
    for node in (config, config.hydra, config.hydra.job, config.hydra.runtime, config.hydra.sweep):
        OmegaConf.set_readonly(node, False)
    OmegaConf.set_readonly(config.hydra.overrides, False)
    with open_dict(config):
        config.hydra.runtime.cwd = str(tmp_path)
        config.hydra.runtime.output_dir = str(tmp_path / "sweep")
        config.hydra.job.name = job_name
        config.hydra.sweep.dir = "sweep"
    return config


def test_the_next_sweep_on_the_store_repairs_it_first(store: str, tmp_path: Path) -> None:
    from hydra.core.hydra_config import HydraConfig

    from hydraflow.callbacks import MLflowCallback

    runs = _sweep(store, _dead_identity())
    config = _sweep_config(tmp_path, "app")
    HydraConfig.instance().set_config(config)
    callback = MLflowCallback()
    callback.on_multirun_start(config)
    assert _status(store, runs["1"])[0] == _status(store, runs["parent"])[0] == "KILLED"
    callback.on_multirun_end(config)


def test_a_100_job_sweep_ends_with_100_finished_runs_and_a_finished_parent(
    store: str, tmp_path: Path
) -> None:
    """The callback as a launcher drives it (each job gets its own unpickled copy); Hydra's own
    composing of 100 configs is left out: it would cost 5x the callback and test nothing of ours."""
    import cloudpickle
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.utils import JobReturn, JobStatus
    from omegaconf import open_dict

    from hydraflow.callbacks import MLflowCallback

    config = _sweep_config(tmp_path, "noop")
    HydraConfig.instance().set_config(config)
    sweep = MLflowCallback()
    sweep.on_multirun_start(config)
    pickled = cloudpickle.dumps(sweep)
    for num in range(100):
        with open_dict(config):
            config.hydra.job.num = num
            config.hydra.overrides.task = [f"+a={num}"]
            config.a = num
            config.hydra.runtime.output_dir = str(tmp_path / "sweep" / str(num))
        job = cloudpickle.loads(pickled)
        job.on_job_start(config)
        ret = JobReturn()
        ret.status, ret.return_value = JobStatus.COMPLETED, None
        job.on_job_end(config, ret)
    sweep.on_multirun_end(config)

    client = MlflowClient(store)
    experiment = client.get_experiment_by_name("noop")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    jobs = [r for r in runs if r.data.tags.get("hydraflow.role") == "job"]
    (parent,) = [r for r in runs if r.data.tags.get("hydraflow.role") == "sweep"]
    assert len(jobs) == 100
    assert {r.info.status for r in jobs} == {"FINISHED"}
    assert sorted(int(r.data.tags["hydraflow.job_num"]) for r in jobs) == list(range(100))
    assert {r.data.params["a"] for r in jobs} == {str(n) for n in range(100)}
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["jobs"] == parent.data.metrics["completed"] == 100.0


def test_a_malformed_sweep_id_is_one_clear_error(
    store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["repair", "--sweep", "x' or '1'='1"]) == 1
    err = capsys.readouterr().err
    assert "--sweep \"x' or '1'='1\": a sweep id is letters, digits" in err
    assert err.count("\n") == 1


def test_relaunching_a_sweep_whose_tasks_still_run_warns(
    store: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from hydra.core.hydra_config import HydraConfig

    from flow_backend import Flow
    from hydraflow.callbacks import MLflowCallback, sweep_key

    config = _sweep_config(tmp_path, "app")
    HydraConfig.instance().set_config(config)
    with Flow(provider="local") as flow:
        task = flow.run(["sleep", "60"], name="hf-cafe0001-1", unique_name=False)
        try:
            local = {"flow.provider": "local", "flow.task_id": task.task_id}
            runs = _sweep(store, _dead_identity(), job_tags=local)
            client = MlflowClient(store)
            client.set_tag(runs["parent"], "hydraflow.sweep_key", sweep_key(config))
            client.set_tag(runs["parent"], "flow.provider", "local")
            callback = MLflowCallback()
            with caplog.at_level("WARNING", logger="hydraflow.callbacks"):
                callback.on_multirun_start(config)
            assert "an earlier launch of this sweep (cafe0001) still runs" in caplog.text
            assert "flow cancel --sweep cafe0001" in caplog.text
            assert _status(store, runs["parent"]) == ("RUNNING", None)  # its task is live
            assert _status(store, runs["1"]) == ("RUNNING", None)
            callback.on_multirun_end(config)
        finally:
            flow.cancel(task.task_id)
