"""The MLflow callback's params: flattened config, reversible key sanitising, no silent truncation."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.test_utils.test_utils import TSweepRunner
from launcher_helpers import job_runs
from omegaconf import DictConfig

from hydraflow.conventions import sanitize_key

ODD = {"a,b": 1, "ratio%": 0.5, "nested": {"x?y": "z", "list": [1, 2]}, "long": "v" * 7000}


def _task(cfg: DictConfig) -> Any:
    return ["not", "numbers"]  # anything that is not a number or a dict of numbers → JSON artifact


def test_params_tags_and_json_return_value_with_the_basic_launcher(
    tmp_path: Path, hydra_sweep_runner: TSweepRunner
) -> None:
    ConfigStore.instance().store(name="odd_keys", node=ODD)
    sweep = hydra_sweep_runner(
        calling_file=None,
        calling_module="hydra.test_utils.a_module",
        task_function=_task,
        config_path=None,
        config_name="odd_keys",
        overrides=["hydra/callbacks=mlflow", "hydra.callbacks.mlflow.experiment=odd", "+seed=1,2"],
        temp_dir=tmp_path / "sweep",
    )
    with sweep:
        assert sweep.returns is not None
    from mlflow.tracking import MlflowClient

    uri = os.environ["MLFLOW_TRACKING_URI"]
    jobs = [r for r in job_runs(uri, "odd") if r.data.tags.get("hydraflow.role") == "job"]
    assert len(jobs) == 2
    run = jobs[0]
    params, tags = run.data.params, run.data.tags
    for original, value in (("a,b", "1"), ("ratio%", "0.5"), ("nested.x?y", "z")):
        safe = sanitize_key(original)
        assert safe != original
        assert params[safe] == value
        assert tags[f"hydraflow.key.{safe}"] == original  # the original key is kept: reversible
    assert params["nested.list"] == "[1, 2]"
    assert "long" not in params  # too long for an MLflow param: stored whole, not cut
    client = MlflowClient(uri)

    def artifact(name: str) -> Any:
        local = client.download_artifacts(run.info.run_id, name, str(tmp_path))
        return json.loads(Path(local).read_text())

    assert artifact("long_params.json") == {"long": "v" * 7000}
    assert artifact("return_value.json") == ["not", "numbers"]
    assert json.loads(tags["hydraflow.return_value"]) == ["not", "numbers"]
    assert run.info.status == "FINISHED"


def _fail(cfg: DictConfig) -> Any:
    raise ValueError("this job fails, so the sweeper aborts the sweep")


def test_an_aborted_sweep_leaves_its_sweep_id_to_no_later_sweep(
    tmp_path: Path, hydra_sweep_runner: TSweepRunner
) -> None:
    """The sweep id goes from the callback to the launcher through Hydra's context, not os.environ:
    a sweep that aborts (Hydra skips on_multirun_end) leaves nothing a later sweep in the same
    process, or a child process, would take for its own (its tasks would be named after it, and
    ``flow cancel --sweep`` of the old sweep would stop them)."""
    import pytest
    from hydra._internal.callbacks import Callbacks
    from hydra.types import HydraContext

    from hydra_plugins.hydraflow_plugins.flow_launcher import FlowLauncher

    ConfigStore.instance().store(name="plain", node={"seed": 0})
    sweep = hydra_sweep_runner(
        calling_file=None,
        calling_module="hydra.test_utils.a_module",
        task_function=_fail,
        config_path=None,
        config_name="plain",
        overrides=["hydra/callbacks=mlflow", "hydra.callbacks.mlflow.experiment=aborts", "seed=1"],
        temp_dir=tmp_path / "sweep",
    )
    with pytest.raises(ValueError, match="this job fails"), sweep:
        pass
    runs = job_runs(os.environ["MLFLOW_TRACKING_URI"], "aborts")
    (parent,) = [r for r in runs if r.data.tags.get("hydraflow.role") == "sweep"]
    (job,) = [r for r in runs if r.data.tags.get("hydraflow.role") == "job"]
    sweep_id = parent.data.tags["hydraflow.sweep_id"]
    assert job.data.tags["hydraflow.sweep_id"] == sweep_id  # the job still got it
    assert job.data.tags["mlflow.parentRunId"] == parent.info.run_id
    left = {k: v for k, v in os.environ.items() if v in (sweep_id, parent.info.run_id)}
    assert left == {}

    launcher = FlowLauncher()  # the next sweep, without the MLflow callback
    context = HydraContext(config_loader=None, callbacks=Callbacks())  # type: ignore[arg-type]
    launcher.setup(hydra_context=context, task_function=_fail, config=DictConfig({}))
    assert launcher.sweep_id and launcher.sweep_id != sweep_id
