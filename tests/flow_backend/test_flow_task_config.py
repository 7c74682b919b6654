"""TaskConfig and VolumeSpec: the seed's example, each bad input, YAML round trips."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flow_backend import TaskConfig, VolumeSpec
from flow_backend.errors import FlowError, ResourceNotFoundError, ValidationError


def test_seed_example_builds_and_gets_a_unique_name() -> None:
    seed: dict[str, Any] = {  # the seed's example, verbatim (volumes as plain dicts)
        "name": "experiment-42",
        "command": "python train.py",
        "instance_type": "a100",
        "volumes": [{"name": "data", "size_gb": 100}],
        "env": {"WANDB_PROJECT": "ml-research"},
        "max_price_per_hour": 10.0,
        "max_run_time_hours": 24.0,
    }
    config = TaskConfig(**seed)
    other = TaskConfig(name="experiment-42", command="python train.py")
    assert (
        config.name.startswith("experiment-42-") and len(config.name) == len("experiment-42-") + 6
    )
    assert config.name != other.name
    assert config.volumes == [VolumeSpec(name="data", size_gb=100)]
    assert config.volumes[0].resolved_mount_path == "/volumes/data"
    assert config.volumes[0].env_var == "FLOW_VOLUME_DATA"
    assert config.instance.name == "a100-80gb.sxm.1x"


def test_unique_name_false_keeps_the_name() -> None:
    assert TaskConfig(name="hf-abc-3", command="x", unique_name=False).name == "hf-abc-3"


def test_dump_and_validate_again_keeps_the_name() -> None:
    fields: dict[str, Any] = {"env": {"A": 1}}  # non-string values become strings
    config = TaskConfig(name="exp", command=["python", "-m", "mod"], **fields)
    again = TaskConfig.model_validate(config.model_dump())
    assert again.name == config.name
    assert again.env == {"A": "1"}
    assert again.command_string == "python -m mod"


def test_min_gpu_memory_picks_the_cheapest_type_and_no_type_means_cpu() -> None:
    assert TaskConfig(command="x", min_gpu_memory_gb=40).instance.name == "a100-40gb.pcie.1x"
    assert TaskConfig(command="x").instance.name == "cpu"


BAD_INPUTS: list[tuple[dict[str, Any], type[FlowError], list[str]]] = [
    ({"instance_type": "a1000"}, ResourceNotFoundError, ["a1000", "a100"]),
    (
        {"instance_type": "a100", "min_gpu_memory_gb": 40},
        ValidationError,
        ["mutually exclusive", "instance_type", "min_gpu_memory_gb"],
    ),
    ({"min_gpu_memory_gb": 500}, ValidationError, ["min_gpu_memory_gb=500", "192 GB"]),
    ({"max_price_per_hour": 0}, ValidationError, ["max_price_per_hour", "0"]),
    ({"max_price_per_hour": -3}, ValidationError, ["max_price_per_hour", "-3"]),
    (
        {"instance_type": "h100", "max_price_per_hour": 10},
        ValidationError,
        ["max_price_per_hour=10", "$25.60"],
    ),
    ({"max_run_time_hours": 0}, ValidationError, ["max_run_time_hours", "(0, 168]"]),
    ({"max_run_time_hours": 169}, ValidationError, ["max_run_time_hours", "169"]),
    ({"volumes": [{"name": "Bad_Name"}]}, ValidationError, ["name", "'Bad_Name'", "lowercase"]),
    ({"volumes": [{"name": "-data"}]}, ValidationError, ["'-data'"]),
    (
        {"volumes": [{"name": "data", "mount_path": "data"}]},
        ValidationError,
        ["mount_path", "'data'", "absolute"],
    ),
    (
        {
            "volumes": [
                {"name": "a1", "mount_path": "/data"},
                {"name": "b1", "mount_path": "/data/b"},
            ]
        },
        ValidationError,
        ["nested", "/data/b"],
    ),
    ({"volumes": [{"name": "a1"}, {"name": "a1"}]}, ValidationError, ["'a1'", "twice"]),
    ({"env": {"1BAD": "x"}}, ValidationError, ["env", "'1BAD'"]),
    ({"env": {"BAD-KEY": "x"}}, ValidationError, ["'BAD-KEY'"]),
    ({"num_instances": 0}, ValidationError, ["num_instances", "1 and 100"]),
    ({"num_instances": 101}, ValidationError, ["num_instances", "101"]),
    ({"ports": [80]}, ValidationError, ["ports", "80", "1024..65535"]),
    ({"ports": [70000]}, ValidationError, ["70000"]),
    ({"command": "  "}, ValidationError, ["command", "empty"]),
    ({"name": "bad name!"}, ValidationError, ["name", "'bad name!'"]),
    ({"instance": "a100"}, ValidationError, ["unknown field", "'instance'"]),
]


@pytest.mark.parametrize(("fields", "error_type", "fragments"), BAD_INPUTS)
def test_each_bad_input_gives_one_clear_error(
    fields: dict[str, Any], error_type: type[FlowError], fragments: list[str]
) -> None:
    data = {"command": "python train.py", **fields}
    with pytest.raises(error_type) as caught:
        TaskConfig(**data)
    message = str(caught.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


def test_errors_are_value_errors_for_callers_that_catch_those() -> None:
    with pytest.raises(ValueError):
        TaskConfig(command="x", max_run_time_hours=0)


def test_yaml_round_trip(tmp_path: Path) -> None:
    config = TaskConfig(
        name="exp",
        command="python train.py",
        instance_type="4xa100",
        volumes=[VolumeSpec(name="data", mount_path="/data")],
        ports=[8888],
        env={"K": "v"},
    )
    path = tmp_path / "task.yaml"
    config.to_yaml(path)
    loaded = TaskConfig.from_yaml(path)
    assert loaded == config


def test_from_yaml_adds_a_suffix_to_a_hand_written_name(tmp_path: Path) -> None:
    path = tmp_path / "task.yaml"
    path.write_text("name: train\ncommand: python train.py\ninstance_type: a10\n")
    loaded = TaskConfig.from_yaml(path)
    assert loaded.name.startswith("train-") and loaded.instance_type == "a10"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("command: [unclosed\n", "not valid YAML"),
        ("- just\n- a list\n", "must hold a mapping"),
        ("# nothing yet\n", "is empty"),
        ("command: x\nmax_run_time_hours: 0\n", "max_run_time_hours"),
        ("command: x\ninstnce_type: a100\n", "unknown field 'instnce_type'"),
    ],
)
def test_bad_yaml_files_name_the_file_and_problem(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "task.yaml"
    path.write_text(text)
    with pytest.raises(ValidationError) as caught:
        TaskConfig.from_yaml(path)
    assert fragment in str(caught.value)
    assert "\n" not in str(caught.value)


def test_missing_yaml_file(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="Cannot read task file"):
        TaskConfig.from_yaml(tmp_path / "nope.yaml")
