"""Runs recorded by the hydraflow MLflow callback (a real Hydra multirun of the demo app) read back
with their configs — and the README's analysis examples, run as written against that sweep."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hydraflow import Run, RunCollection
from hydraflow.core.errors import RunSelectionError

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = REPO / "examples"


def _readme_blocks(language: str) -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text.split("<!-- section: analysis -->")[1].split("<!-- /section: analysis -->")[0]
    return re.findall(rf"```{language}\n(.*?)```", section, flags=re.S)


@pytest.fixture(scope="module")
def demo(
    tmp_path_factory: pytest.TempPathFactory, migrated_store: Path
) -> tuple[Path, dict[str, str]]:
    """The README's demo sweep, run in a fresh directory with the default store (./mlflow.db, an
    empty one already migrated: creating a store is the launcher tests' subject)."""
    if not (EXAMPLES / "train.py").exists():
        pytest.skip("examples/train.py is not in this checkout")
    root = tmp_path_factory.mktemp("demo")
    shutil.copytree(EXAMPLES, root / "examples", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copyfile(migrated_store, root / "mlflow.db")
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID")}
    result = subprocess.run(
        [
            sys.executable,
            "examples/train.py",
            "-m",
            "lr=1e-3,1e-2",
            "model.type=mlp,cnn",
            "epochs=3",
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return root, env


def test_sweep_runs_come_back_with_their_hydra_configs(demo: tuple[Path, dict[str, str]]) -> None:
    root, _ = demo
    uri = f"sqlite:///{root / 'mlflow.db'}"
    runs = RunCollection.load("train", tracking_uri=uri)
    assert len(runs) == 4
    assert sorted(zip(runs["model.type"].to_list(), runs["lr"].to_list(), strict=True)) == [
        ("cnn", 0.001),
        ("cnn", 0.01),
        ("mlp", 0.001),
        ("mlp", 0.01),
    ]
    assert runs["model.hidden"].to_list() == ["[64, 64]"] * 4
    # The sweep's parent run is left out, and so are the columns only it has (its summary).
    assert "metrics.jobs" not in runs.to_frame().columns
    with_parent = RunCollection.load("train", tracking_uri=uri, include_sweep_runs=True)
    assert with_parent.filter({"tags.hydraflow.role": "sweep"}).one().metrics["jobs"] == 4
    sweep_ids = set(runs["tags.hydraflow.sweep_id"].to_list())
    assert len(sweep_ids) == 1
    assert len(RunCollection.load("train", tracking_uri=uri, sweep_id=sweep_ids.pop())) == 4
    for run in runs:
        assert run.cfg is not None
        assert run.cfg.lr == run.params["lr"] and run.cfg.model.type == run.params["model.type"]
        assert run.params["model.hidden"] == [64, 64]
        assert run.metric_history("loss")["step"].to_list() == [0, 1, 2]
    assert runs.best("metrics.loss").params["lr"] == 0.01
    assert runs.group_by("model.type").mean("metrics.accuracy")["model.type"].to_list() == [
        "cnn",
        "mlp",
    ]


def test_readme_examples_run_as_written(demo: tuple[Path, dict[str, str]]) -> None:
    root, env = demo
    blocks = _readme_blocks("python")
    assert len(blocks) == 2
    for block in blocks:
        result = subprocess.run(
            [sys.executable, "-c", block],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert result.returncode == 0, f"{block}\n{result.stderr[-2000:]}"
    assert (root / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert (root / "curves.png").read_bytes()[:4] == b"\x89PNG"
    manual = RunCollection.load("manual", tracking_uri=str(root / "mlflow.db")).one()
    assert manual.params["batch_size"] == 64 and manual.info.status == "FINISHED"
    assert manual.tags["hydraflow.artifact.model.pt"] == "Model checkpoint"
    assert (manual.artifacts_dir / "model.pt").read_bytes() == b"weights"
    assert not (root / "model.pt").exists()  # the example leaves nothing in the user's folder
    script = Path(sys.executable).with_name("hydraflow")
    for line in _readme_blocks("bash")[0].splitlines():
        command = shlex.split(line.split("#")[0])
        if not command:
            continue
        assert command[0] == "hydraflow"
        result = subprocess.run(
            [str(script), *command[1:]],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, f"{line}\n{result.stderr}"
    assert (root / "loss.png").is_file()


def test_tracking_helpers_log_into_the_callbacks_job_runs(
    tmp_path: Path, migrated_store: Path
) -> None:
    app = Path(__file__).with_name("apps") / "track_app.py"
    shutil.copyfile(migrated_store, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    env.pop("MLFLOW_RUN_ID", None)
    result = subprocess.run(
        [sys.executable, str(app), "-m", "scale=1,2"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    runs = RunCollection.load("track_app", tracking_uri=uri).sort("scale")
    assert runs["scale"].to_list() == [1, 2]
    for run, scale in zip(runs, (1, 2), strict=True):
        history = run.metric_history("loss")
        assert history["step"].to_list() == [0, 1, 2]
        assert history["value"].to_list() == [3.0 * scale, 2.0 * scale, 1.0 * scale]
        assert run.metrics["acc"] == 0.5 * scale
        assert run.tags["note"] == f"scale={scale}"
        assert run.tags["hydraflow.artifact.weights.bin"] == "Trained weights"
        assert run.cfg is not None and run.cfg.scale == scale


def test_hydra_output_folders_load_as_their_runs(
    demo: tuple[Path, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a Hydra user has is ``multirun/<date>/<time>/<n>``: it resolves to the job's run (the
    store found from the folder's saved Hydra config), and the sweep folder to all its job runs."""
    root, env = demo
    monkeypatch.chdir(root)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (sweep,) = [p.parent for p in (root / "multirun").glob("*/*/multirun.yaml")]
    by_folder = RunCollection.load(str(sweep))
    assert len(by_folder) == 4
    assert by_folder["tags.hydraflow.job_num"].to_list() == ["0", "1", "2", "3"]
    for job in range(4):
        relative = sweep.relative_to(root) / str(job)
        run = Run.load(relative)
        overrides = (relative / ".hydra" / "overrides.yaml").read_text()
        (lr,) = [line.split("=")[1] for line in overrides.splitlines() if "lr=" in line]
        assert run.params["lr"] == float(lr)
        assert run.tags["hydraflow.job_num"] == str(job)
        assert run.params["model.type"] in overrides
    assert Run.load([sweep / "1", sweep / "0"])["tags.hydraflow.job_num"].to_list() == ["1", "0"]
    with pytest.raises(RunSelectionError, match=r"RunCollection\.load"):
        Run.load(sweep)
    # From another folder, with no MLFLOW_TRACKING_URI: the launch dir's mlflow.db is found.
    monkeypatch.chdir(root.parent)
    assert Run.load(sweep / "2").info.run_id == by_folder[2].info.run_id
    script = Path(sys.executable).with_name("hydraflow")
    listed = subprocess.run(
        [str(script), "runs", str(sweep), "--json"], env=env, capture_output=True, text=True
    )
    assert listed.returncode == 0, listed.stderr
    assert {r["run_id"] for r in json.loads(listed.stdout)} == set(by_folder["run_id"].to_list())


def test_a_single_run_folder_loads_as_its_run(demo: tuple[Path, dict[str, str]]) -> None:
    root, env = demo
    result = subprocess.run(
        [
            sys.executable,
            "examples/train.py",
            "epochs=2",
            "model.type=cnn",
            "hydra.callbacks.mlflow.experiment=single",  # the other tests read experiment train
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (folder,) = [p.parent.parent for p in (root / "outputs").glob("*/*/.hydra/hydra.yaml")]
    run = Run.load(folder, tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    assert run.params["model.type"] == "cnn" and run.params["epochs"] == 2
    assert run.info.experiment_name == "single"


def test_jobs_of_hydras_basic_launcher_have_no_flow_tags(demo: tuple[Path, dict[str, str]]) -> None:
    root, _ = demo
    runs = RunCollection.load(
        "train", tracking_uri=str(root / "mlflow.db"), include_sweep_runs=True
    )
    assert len(runs) >= 5
    flow_columns = [c for c in runs.to_frame().columns if c.startswith("tags.flow.")]
    assert flow_columns == []


def test_every_swept_key_of_the_demo_changes_its_numbers(demo: tuple[Path, dict[str, str]]) -> None:
    root, _ = demo
    runs = RunCollection.load("train", tracking_uri=str(root / "mlflow.db"))
    for lr in (0.001, 0.01):  # same lr, same seed: the model alone makes the difference
        losses = runs.filter(lr=lr).to_frame()["metrics.final_loss"].to_list()
        assert len(set(losses)) == 2, losses
    for run in runs:
        for key in ("accuracy", "loss", "val_loss"):
            values = run.metric_history(key)["value"].to_list()
            assert len(values) == 3
            if key == "accuracy":
                assert all(0.1 <= v <= 1.0 for v in values), values
            else:
                assert all(0.0 < v <= 3.0 for v in values), values
