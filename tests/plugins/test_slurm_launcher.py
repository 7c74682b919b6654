"""Sweeps with ``hydra.launcher.provider=slurm`` on the session's one-node SLURM cluster.

Every job is one SLURM job (sbatch) that runs from the launch dir on the cluster's shared
filesystem (here: this machine) and writes its output folder and result into the sweep dir.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hydra.test_utils.launcher_common_tests import IntegrationTestSuite, LauncherTestSuite
from launcher_helpers import APPS, INTEGRATION_DEFAULTS, job_runs
from remote_helpers import EXPERIMENT, copy_project, run_sweep, sweep_command
from slurm import counting_commands
from sshd import SSHServer

from flow_backend.providers.slurm.cluster import SlurmCluster

SLURM = [
    "hydra.launcher.provider=slurm",
    f"hydra.launcher.python={sys.executable}",
    "hydra.launcher.poll_interval=0.2",
]


def _state_files() -> list[Path]:
    """The slurm provider's task records in this test's FLOW_HOME."""
    return sorted((Path(os.environ["FLOW_HOME"]) / "slurm" / "state").glob("*.json"))


def _jobs_with_states(slurm: SlurmCluster, under: Path) -> list[tuple[str, str]]:
    """``(job id, state)`` of the jobs SLURM still has pending, running or completing submitted
    from ``under``."""
    result = subprocess.run(
        ["squeue", "--noheader", "--array", "--format=%i|%T|%Z"],
        env=slurm.env,
        capture_output=True,
        text=True,
    )
    lines = [line.split("|", 2) for line in result.stdout.splitlines() if line.count("|") == 2]
    return [(job, state) for job, state, workdir in lines if Path(workdir).is_relative_to(under)]


def _live_jobs(slurm: SlurmCluster, under: Path, state: str = "") -> list[str]:
    """Jobs SLURM still has pending or running (or in ``state``) submitted from ``under``."""
    return [job for job, job_state in _jobs_with_states(slurm, under) if state in ("", job_state)]


@pytest.fixture
def on_slurm(
    slurm: SlurmCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[SlurmCluster]:
    """The cluster in the settings (FLOW_SLURM_CONF); no job may be left in SLURM afterwards."""
    monkeypatch.setenv("FLOW_SLURM_CONF", str(slurm.conf))
    launch = tmp_path / "launch"
    launch.mkdir(exist_ok=True)
    monkeypatch.chdir(launch)
    yield slurm
    assert _live_jobs(slurm, tmp_path) == [], "a test left a SLURM job behind"


def _behaviour_sweep(cwd: Path, env: dict[str, str], *overrides: str) -> subprocess.Popen[str]:
    """A multirun of the behaviour app on slurm, started in ``cwd`` (not waited for)."""
    return subprocess.Popen(
        [
            sys.executable,
            str(APPS / "behaviour_app.py"),
            "-m",
            "hydra/launcher=flow",
            *SLURM,
            *overrides,
        ],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


@pytest.fixture(scope="session")
def overtime_sweep(
    slurm: SlurmCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    """A one-job sweep past its one-minute time limit, started when the module starts.

    SLURM's time limits are whole minutes and slurmctld enforces them every 30 s, so the job ends
    60-90 s after it starts: the rest of the suite runs meanwhile, and the test that checks it is
    marked ``run_last`` (session scope keeps this one sweep alive until then).
    """
    folder = tmp_path_factory.mktemp("overtime")
    env = {
        **os.environ,
        "FLOW_HOME": str(folder / "flow-home"),
        "FLOW_CONFIG_PATH": str(folder / "flow-config.yaml"),
        "FLOW_SLURM_CONF": str(slurm.conf),
        "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}",
    }
    sweep = _behaviour_sweep(
        folder,
        env,
        "hydra.launcher.max_run_time_hours=0.01",  # --time=1 (minute)
        "mode=sleep",
        "seconds=600",
    )
    try:
        yield sweep, folder
    finally:
        if sweep.poll() is None:
            sweep.kill()
            sweep.wait()


def test_four_job_sweep_on_slurm_gives_four_finished_runs(
    on_slurm: SlurmCluster, tmp_path: Path, overtime_sweep: object
) -> None:
    project = copy_project(tmp_path)
    proc = run_sweep(project, "slurm", "lr=0.1,0.01,0.001,0.0001", "hydra.launcher.max_parallel=3")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # the sweep went in as one job array (one sbatch), at most 3 elements at once
    states = [json.loads(p.read_text()) for p in _state_files()]
    assert len(states) == 4
    assert {s["job_id"].split("_")[0] for s in states} == {states[0]["job_id"].split("_")[0]}
    script = (Path(states[0]["task_dir"]).parent / "batch.sh").read_text()
    assert "#SBATCH --array=0-3%3\n" in script

    runs = job_runs(os.environ["MLFLOW_TRACKING_URI"], EXPERIMENT)
    parents = [r for r in runs if r.data.tags.get("hydraflow.role") == "sweep"]
    children = [r for r in runs if r.data.tags.get("hydraflow.role") == "job"]
    assert len(parents) == 1 and len(children) == 4
    assert sorted(r.data.params["lr"] for r in children) == ["0.0001", "0.001", "0.01", "0.1"]
    for run in children:
        assert run.info.status == "FINISHED"
        assert run.data.tags["flow.provider"] == "slurm"
        assert float(run.data.tags["flow.total_cost"]) == 0.0
        assert run.data.metrics["score"] > 0
        assert run.data.tags["flow.task_id"].startswith("slurm-")
        returned = json.loads(run.data.tags["hydraflow.return_value"])
        # on the cluster's shared filesystem the job ran in the launch dir itself
        assert returned["cwd"] == returned["original_cwd"] == str(project)
    sweep_dir = project / "multirun" / "sweep"
    for num in range(4):
        assert (sweep_dir / str(num) / ".hydra" / "config.yaml").is_file()
        assert (sweep_dir / str(num) / "model.txt").read_text().startswith("lr=")


def test_sweep_through_a_login_node_over_ssh_brings_results_home(
    on_slurm: SlurmCluster, sshd: SSHServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    login_node = tmp_path / "login-node"
    monkeypatch.setenv("FLOW_SLURM_LOGIN", sshd.destination)
    monkeypatch.setenv("FLOW_SSH_KEY_PATH", str(sshd.key_path))
    monkeypatch.setenv("FLOW_SLURM_DIR", str(login_node))
    project = copy_project(tmp_path)
    proc = run_sweep(project, "slurm", "lr=0.1,0.01")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # one job array through the login node too: one sbatch there, its elements the jobs
    states = [json.loads(p.read_text()) for p in _state_files()]
    assert sorted(s["job_id"].split("_")[1] for s in states) == ["0", "1"]
    assert len({s["job_id"].split("_")[0] for s in states}) == 1
    batch = Path(states[0]["task_dir"]).parent / "batch.sh"  # on the login node's filesystem
    assert batch.is_relative_to(login_node) and "#SBATCH --array=0-1" in batch.read_text()
    runs = job_runs(os.environ["MLFLOW_TRACKING_URI"], EXPERIMENT)
    children = [r for r in runs if r.data.tags.get("hydraflow.role") == "job"]
    assert sorted(r.data.params["lr"] for r in children) == ["0.01", "0.1"]
    for run in children:
        assert run.info.status == "FINISHED"
        returned = json.loads(run.data.tags["hydraflow.return_value"])
        assert Path(returned["cwd"]).is_relative_to(login_node / "code")  # the uploaded code
    for num in range(2):  # each job's output came home
        assert (project / "multirun" / "sweep" / str(num) / "model.txt").is_file()


@pytest.mark.usefixtures("on_slurm")
@pytest.mark.parametrize("launcher_name, overrides", [("flow", SLURM)])
class TestFlowLauncherOnSlurm(LauncherTestSuite):
    """Results, configs and output dirs as after a basic-launcher run, every job a SLURM job."""


@pytest.mark.usefixtures("on_slurm")
@pytest.mark.parametrize(
    "task_launcher_cfg, extra_flags",
    [
        (
            {
                "defaults": INTEGRATION_DEFAULTS,
                "hydra": {
                    "launcher": {
                        "provider": "slurm",
                        "python": sys.executable,
                        "poll_interval": 0.2,
                    }
                },
            },
            ["-m"],
        )
    ],
)
class TestFlowLauncherIntegrationOnSlurm(IntegrationTestSuite):
    """Hydra's integration suite: real app processes launching SLURM jobs."""


def test_ctrl_c_leaves_no_slurm_job_behind(on_slurm: SlurmCluster, tmp_path: Path) -> None:
    calls = counting_commands(tmp_path / "bin", "scancel")
    sweep = _behaviour_sweep(
        tmp_path,
        {**os.environ, "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}"},
        "hydra.launcher.max_parallel=2",
        "mode=sleep",
        "seconds=120",
        "value=1,2,3",
    )
    try:
        deadline = time.monotonic() + 90
        while len(list(tmp_path.glob("started-*"))) < 2:  # two jobs inside their task function
            assert time.monotonic() < deadline, "timed out waiting for 2 running jobs"
            time.sleep(0.2)
        # one array of 3 (at most 2 at once): 2 elements running, 1 pending in SLURM
        assert len(_live_jobs(on_slurm, tmp_path, "RUNNING")) == 2
        (array,) = {job.split("_")[0] for job in _live_jobs(on_slurm, tmp_path)}
        sweep.send_signal(signal.SIGINT)
        _out, err = sweep.communicate(timeout=90)
    finally:
        if sweep.poll() is None:
            sweep.kill()
            sweep.wait()
    assert sweep.returncode != 0
    assert "cancelled 2 live task(s)" in err, err[-2000:]
    assert "Traceback" not in err
    assert _live_jobs(on_slurm, tmp_path) == []  # squeue is empty at once, not eventually
    # the running elements and the pending one: one scancel for the array
    assert calls.read_text().splitlines() == [f"scancel {array}_[0-2]"]


@pytest.mark.run_last
def test_a_job_past_its_time_limit_fails_with_slurms_reason(
    overtime_sweep: tuple[subprocess.Popen[str], Path], slurm: SlurmCluster
) -> None:
    sweep, folder = overtime_sweep  # started with the module's first test
    _out, err = sweep.communicate(timeout=180)
    assert sweep.returncode != 0
    assert "time limit" in err and "TIMEOUT" in err, err[-3000:]
    assert "DUE TO TIME LIMIT" in err  # the job's log tail (slurmstepd's line)
    assert "Traceback" not in err
    assert _live_jobs(slurm, folder) == []


def test_a_100_job_sweep_goes_in_as_one_array(on_slurm: SlurmCluster, tmp_path: Path) -> None:
    calls = counting_commands(tmp_path / "bin", "sbatch")
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    # SLURM runs the elements by itself: a poll a second is enough, and leaves the CPU to them.
    # slurmctld starts pending elements about once a second and an element takes about as long,
    # so a wave of 16 (the cluster's 16 job slots) ends sooner than twice as many waves of 8
    poll = "hydra.launcher.poll_interval=1"
    sweep = _behaviour_sweep(
        tmp_path, env, poll, "hydra.launcher.max_parallel=16", "value=range(100)"
    )
    out, err = sweep.communicate(timeout=400)
    assert sweep.returncode == 0, out[-2000:] + err[-3000:]
    sbatch_calls = calls.read_text().splitlines()
    assert len(sbatch_calls) == 1, sbatch_calls  # one sbatch for 100 jobs: the array
    states = [json.loads(p.read_text()) for p in _state_files()]
    assert len(states) == 100
    assert len({s["job_id"].split("_")[0] for s in states}) == 1
    assert (
        "#SBATCH --array=0-99%16\n" in (Path(states[0]["task_dir"]).parent / "batch.sh").read_text()
    )
    results = {p.parent.name: p for p in tmp_path.glob("multirun/*/*/.flow/*/result.pkl")}
    values = {pickle.loads(p.read_bytes()).return_value["value"] for p in results.values()}
    assert values == {float(v) for v in range(100)}  # every job came home with its result
    assert len(list(tmp_path.glob("multirun/*/*/*/.hydra/config.yaml"))) == 100


def _wait_for(predicate: Callable[[], bool], proc: subprocess.Popen[str], what: str) -> None:
    deadline = time.monotonic() + 120
    while not predicate():
        if proc.poll() is not None:
            pytest.fail(f"the sweep ended before {what}:\n{proc.communicate()[0][-3000:]}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _scontrol(slurm: SlurmCluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["scontrol", *args], env=slurm.env, capture_output=True, text=True)


def _element_of(num: int) -> str:
    """The SLURM job id (``123_4``) of job ``num``'s first attempt, from the provider's records."""
    (element,) = [
        s["job_id"]
        for s in (json.loads(p.read_text()) for p in _state_files())
        if s["record"]["name"].endswith(f"-{num}")
    ]
    assert "_" in element  # an element of the sweep's array
    return element


def test_requeued_and_killed_array_elements_run_again_with_one_mlflow_run_per_job(
    on_slurm: SlurmCluster, tmp_path: Path
) -> None:
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient

    project = copy_project(tmp_path)
    # the first starts hold (until the gate exists) until SLURM has ended them; the second starts
    # find the gate and go through at once instead of sleeping
    gate = tmp_path / "gate"
    sweep = subprocess.Popen(
        sweep_command(
            "slurm", "lr=0.1,0.01", "sleep=120", f"gate={gate}", "hydra.launcher.max_retries=1"
        ),
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=dict(os.environ),
    )
    try:
        # both jobs are inside their task function: their MLflow runs are RUNNING with metrics
        models = [project / "multirun" / "sweep" / str(num) / "model.txt" for num in (0, 1)]
        _wait_for(lambda: all(m.is_file() for m in models), sweep, "both jobs to start")
        # job 0: SLURM requeues its element (as on preemption with PreemptMode=REQUEUE); SLURM
        # holds it back for the credential lifetime (the cluster's cred_expire), then reruns it
        requeued = _scontrol(on_slurm, "requeue", _element_of(0))
        assert requeued.returncode == 0, requeued.stderr
        # job 1: its element ends without a result (scancel from another shell, as a preemption
        # that cancels): the launcher retries it as a task of its own
        killed = subprocess.run(["scancel", _element_of(1)], env=on_slurm.env, check=False)
        assert killed.returncode == 0
        # both first starts are over (no element of the array running or completing) before the
        # gate opens: neither could finish by itself
        array = _element_of(0).split("_")[0]

        def first_starts_ended() -> bool:
            states = [
                state
                for job, state in _jobs_with_states(on_slurm, project)
                if job.startswith(f"{array}_")
            ]
            return all(state == "PENDING" for state in states)

        _wait_for(first_starts_ended, sweep, "both first starts to end")
        gate.touch()
        out, _ = sweep.communicate(timeout=180)
    finally:
        if sweep.poll() is None:
            sweep.kill()
            sweep.wait()
    assert sweep.returncode == 0, out[-3000:]
    assert "job #1" in out and "retry 1/1" in out
    # job 0's element ran again in SLURM, job 1 had one more task: 3 records, the retry a job
    jobs = sorted(json.loads(p.read_text())["job_id"] for p in _state_files())
    assert len(jobs) == 3 and sum("_" not in job for job in jobs) == 1

    runs = job_runs(os.environ["MLFLOW_TRACKING_URI"], EXPERIMENT)
    children = [r for r in runs if r.data.tags.get("hydraflow.role") == "job"]
    assert sorted(r.data.params["lr"] for r in children) == ["0.01", "0.1"]  # one run per job
    assert [r.info.status for r in children] == ["FINISHED", "FINISHED"]
    # the runs the first starts left behind are replaced (deleted, ended KILLED with the reason)
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment is not None
    replaced = client.search_runs([experiment.experiment_id], run_view_type=ViewType.DELETED_ONLY)
    assert sorted(r.data.params["lr"] for r in replaced) == ["0.01", "0.1"]
    for run in replaced:
        assert run.info.status == "KILLED"
        assert "later start" in run.data.tags["hydraflow.end_reason"]
    task_log = (project / "multirun" / "sweep" / "0" / "flow-task.log").read_text()
    assert "DUE TO JOB REQUEUE" in task_log  # both starts' output, SLURM's line between them
