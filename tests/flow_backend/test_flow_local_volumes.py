"""Local volumes: persistent, shared, exposed by env var and (where possible) at the mount path."""

from __future__ import annotations

from pathlib import Path

import pytest

from flow_backend import Flow, TaskStatus
from flow_backend.errors import ResourceNotFoundError, ValidationError


def test_volume_persists_across_two_tasks(flow: Flow, flow_home: Path, tmp_path: Path) -> None:
    mount = tmp_path / "mnt" / "data"
    volume = {"name": "training-data", "size_gb": 5, "mount_path": str(mount)}
    writer = flow.run("echo written > $FLOW_VOLUME_TRAINING_DATA/file.txt", volumes=[volume])
    assert writer.wait() is TaskStatus.COMPLETED
    folder = flow_home / "volumes" / "training-data"
    assert (folder / "file.txt").read_text() == "written\n"
    reader = flow.run(
        f"cat {mount}/file.txt", volumes=[{"name": "training-data", "mount_path": str(mount)}]
    )
    assert reader.wait() is TaskStatus.COMPLETED
    assert reader.logs() == "written\n"
    assert mount.is_symlink() and mount.resolve() == folder.resolve()
    names = [(v.name, v.size_gb) for v in flow.provider.list_volumes()]
    assert names == [("training-data", 5.0)]


def test_mount_path_taken_by_a_real_folder_falls_back_to_the_env_var(
    flow: Flow, tmp_path: Path
) -> None:
    taken = tmp_path / "taken"
    taken.mkdir()
    task = flow.run(
        "echo ok > $FLOW_VOLUME_CACHE/x; echo $FLOW_VOLUME_CACHE",
        volumes=[{"name": "cache", "mount_path": str(taken)}],
    )
    assert (
        task.message is not None
        and "not linked" in task.message
        and "$FLOW_VOLUME_CACHE" in task.message
    )
    assert task.wait() is TaskStatus.COMPLETED
    assert Path(task.logs().splitlines()[-1], "x").read_text() == "ok\n"
    assert list(taken.iterdir()) == []


def test_create_list_delete(flow: Flow) -> None:
    provider = flow.provider
    info = provider.create_volume("scratch", 10)
    assert (info.name, info.size_gb) == ("scratch", 10)
    assert Path(info.location).is_dir()
    assert [v.name for v in provider.list_volumes()] == ["scratch"]
    provider.delete_volume("scratch")
    assert provider.list_volumes() == []
    with pytest.raises(ResourceNotFoundError, match="scratch"):
        provider.delete_volume("scratch")
    with pytest.raises(ValidationError, match="Bad_Name"):
        provider.create_volume("Bad_Name", 1)
