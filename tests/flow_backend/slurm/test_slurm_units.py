"""The slurm provider's pure parts, in memory: squeue parsing, state mapping, resources, settings."""

from __future__ import annotations

import pytest

from flow_backend.errors import ValidationError
from flow_backend.instance_types import parse_instance_type
from flow_backend.models import TaskStatus
from flow_backend.providers.slurm.arrays import ArrayPart, array_parts
from flow_backend.providers.slurm.resources import ResourceMap
from flow_backend.providers.slurm.script import JobOptions, batch_script, time_limit
from flow_backend.providers.slurm.states import job_list, parse_squeue, status_of
from flow_backend.settings import load_settings

SQUEUE = """\
7|RUNNING|None|2026-11-29T10:00:00|N/A|vm
8_0|PENDING|Resources|N/A|N/A|
8_1|TIMEOUT|TimeLimit|2026-11-29T10:00:00|2026-11-29T10:01:30|vm
9|CANCELLED+|None|2026-11-29T10:00:00|2026-11-29T10:00:05|vm
10|OUT_OF_MEMORY|OutOfMemory|2026-11-29T10:00:00|2026-11-29T10:00:05|vm
11|PREEMPTED|None|2026-11-29T10:00:00|2026-11-29T10:00:05|vm
12|COMPLETED|None|2026-11-29T10:00:00|2026-11-29T10:00:05|vm
13|FAILED|NonZeroExitCode|2026-11-29T10:00:00|2026-11-29T10:00:05|vm
14|CONFIGURING|None|N/A|N/A|vm
"""


def test_squeue_lines_become_our_states_with_slurms_reason() -> None:
    jobs = parse_squeue(SQUEUE)
    assert set(jobs) == {"7", "8_0", "8_1", "9", "10", "11", "12", "13", "14"}
    assert jobs["7"].started_at is not None and jobs["7"].ended_at is None
    assert status_of(jobs["7"], None, cancel_requested=False) == (TaskStatus.RUNNING, None)
    assert status_of(jobs["14"], None, cancel_requested=False)[0] is TaskStatus.PROVISIONING
    pending = status_of(jobs["8_0"], None, cancel_requested=False)
    assert pending == (TaskStatus.PENDING, "SLURM: waiting (Resources)")
    status, message = status_of(jobs["8_1"], None, cancel_requested=False)
    assert status is TaskStatus.FAILED and "time limit" in (message or "")
    assert "TIMEOUT" in (message or "") and "TimeLimit" in (message or "")
    # cancelled through us: cancelled; by anyone else: failed
    assert status_of(jobs["9"], None, cancel_requested=True)[0] is TaskStatus.CANCELLED
    status, message = status_of(jobs["9"], None, cancel_requested=False)
    assert status is TaskStatus.FAILED and "scancel" in (message or "")
    assert "out of memory" in (status_of(jobs["10"], None, cancel_requested=False)[1] or "")
    assert "preempted" in (status_of(jobs["11"], None, cancel_requested=False)[1] or "")
    assert status_of(jobs["12"], 0, cancel_requested=False) == (TaskStatus.COMPLETED, None)
    status, message = status_of(jobs["13"], 2, cancel_requested=False)
    assert status is TaskStatus.FAILED and "exited with code 2" in (message or "")


def test_an_arrays_elements_are_cancelled_with_one_expression() -> None:
    ids = ["41_0", "41_1", "41_3", "41_5", "41_6", "41_7", "12", "7_2"]
    assert job_list(ids) == ["12", "7_2", "41_[0-1,3,5-7]"]


def test_instance_types_map_to_sbatch_options() -> None:
    default = ResourceMap(None)
    assert default.options(parse_instance_type("cpu")) == []
    assert default.options(parse_instance_type("4xa100")) == ["--gres=gpu:4"]
    mapped = ResourceMap({"a100": "--gres=gpu:a100:1 --cpus-per-task=8", "cpu": "-c 1"})
    assert mapped.options(parse_instance_type("a100")) == ["--gres=gpu:a100:1", "--cpus-per-task=8"]
    assert mapped.options(parse_instance_type("cpu")) == ["-c 1"]
    with pytest.raises(ValidationError) as caught:
        mapped.options(parse_instance_type("h100"))
    assert caught.value.field == "instance_type"
    assert "'h100' is not in slurm_instance_types" in str(caught.value)
    assert "a100" in str(caught.value)  # says what it maps
    with pytest.raises(ValidationError, match="not an instance type"):
        ResourceMap({"b200x": "--gres=gpu:1"})


def test_time_limits_round_up_to_whole_minutes() -> None:
    assert time_limit(1 / 60) == "1"
    assert time_limit(0.001) == "1"
    assert time_limit(1.5) == "90"
    assert time_limit(1 / 120) == "1"


def test_batch_script_carries_the_options() -> None:
    options = JobOptions(
        name="t", output="/x/output.log", nodes=2, partition="gpu", time_limit="5", array="0-9%2"
    )
    script = batch_script(options, "exec run.sh")
    assert "#SBATCH --nodes=2\n" in script and "#SBATCH --partition=gpu\n" in script
    assert "#SBATCH --time=5\n" in script and "#SBATCH --array=0-9%2\n" in script
    assert script.endswith("exec run.sh\n")


def test_slurm_settings_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    monkeypatch.setenv("FLOW_CONFIG_PATH", "/nonexistent/flow.yaml")
    monkeypatch.setenv("FLOW_SLURM_PARTITION", "gpu")
    monkeypatch.setenv("FLOW_SLURM_SBATCH_LINES", "--constraint=v100;#SBATCH --exclusive")
    monkeypatch.setenv("FLOW_SLURM_INSTANCE_TYPES", "a100=--gres=gpu:a100:1 -c 8;cpu=-c 1")
    monkeypatch.setenv("FLOW_SLURM_VOLUMES_DIR", "/scratch/me/volumes")
    settings = load_settings()
    assert str(settings.slurm_volumes_dir) == "/scratch/me/volumes"
    assert settings.slurm_partition == "gpu"
    assert settings.slurm_sbatch_lines == ["--constraint=v100", "#SBATCH --exclusive"]
    assert settings.slurm_instance_types == {"a100": "--gres=gpu:a100:1 -c 8", "cpu": "-c 1"}
    assert load_settings(slurm_partition="debug").slurm_partition == "debug"  # argument wins
    monkeypatch.setenv("FLOW_SLURM_INSTANCE_TYPES", "a100")
    with pytest.raises(ValidationError, match="FLOW_SLURM_INSTANCE_TYPES"):
        load_settings()


def test_a_batch_larger_than_an_array_may_be_is_cut_into_arrays_that_keep_max_parallel() -> None:
    assert array_parts(100, 1001, 16) == [ArrayPart(range(100), 16, None)]  # fits: one array
    # 2,500 tasks, MaxArraySize 1001: three near-equal arrays running at once, 16 shared out
    parts = array_parts(2500, 1001, 16)
    assert [len(p.indices) for p in parts] == [834, 833, 833]
    assert [p.indices.start for p in parts] == [0, 834, 1667]
    assert [(p.limit, p.after) for p in parts] == [(6, None), (5, None), (5, None)]
    # fewer tasks may run at once than there are arrays: two lanes, the third waits for the first
    assert [(p.limit, p.after) for p in array_parts(5, 2, 2)] == [(1, None), (1, None), (1, 0)]
    assert [(p.limit, p.after) for p in array_parts(5, 2, None)] == [(None, None)] * 3
    assert [len(p.indices) for p in array_parts(3, 0, 1)] == [1, 1, 1]  # arrays off: a job each
