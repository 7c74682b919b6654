"""Local volumes: persistent folders under ``FLOW_HOME/volumes/<name>``, linked at mount paths."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from flow_backend.errors import ResourceNotFoundError
from flow_backend.providers.base import VolumeInfo
from flow_backend.task_config import VolumeSpec

__all__ = ["attach", "create", "delete", "list_all"]

_META = ".flow-volume.json"


def _folder(volumes_dir: Path, name: str) -> Path:
    VolumeSpec(name=name)  # validates the name
    return volumes_dir / name


def create(volumes_dir: Path, name: str, size_gb: float | None = None) -> VolumeInfo:
    """Create the volume if new (its size is recorded, not enforced locally) and describe it."""
    folder = _folder(volumes_dir, name)
    folder.mkdir(parents=True, exist_ok=True)
    meta = folder / _META
    if not meta.exists():
        meta.write_text(json.dumps({"size_gb": size_gb or 0.0}))
    return _info(folder)


def _info(folder: Path) -> VolumeInfo:
    try:
        size = float(json.loads((folder / _META).read_text()).get("size_gb", 0.0))
    except (OSError, ValueError, AttributeError):
        size = 0.0
    return VolumeInfo(folder.name, size, str(folder))


def list_all(volumes_dir: Path) -> list[VolumeInfo]:
    """Every local volume, by name."""
    if not volumes_dir.is_dir():
        return []
    return [_info(folder) for folder in sorted(volumes_dir.iterdir()) if folder.is_dir()]


def delete(volumes_dir: Path, name: str) -> None:
    """Delete the volume and its data."""
    folder = _folder(volumes_dir, name)
    if not folder.is_dir():
        raise ResourceNotFoundError(
            f"No volume named {name!r}",
            field="volume",
            value=name,
            hint="`flow volumes list` shows the existing ones",
        )
    shutil.rmtree(folder)


def attach(volumes_dir: Path, volume: VolumeSpec) -> tuple[Path, str | None]:
    """Create the volume on first use and link it at its mount path where the OS allows it.

    Returns:
        The volume's folder, and a note when it could not be linked at its mount path.
    """
    folder = create(volumes_dir, volume.name, volume.size_gb).location
    target = Path(folder)
    mount = Path(volume.resolved_mount_path)
    try:
        if mount.is_symlink():
            if Path(os.readlink(mount)) == target:
                return target, None
            if mount.exists():  # a link to something else that is alive: leave it alone
                return target, _not_linked(volume, mount, "it links elsewhere")
            mount.unlink()  # a dangling link left by an old FLOW_HOME
        elif mount.exists():
            return target, _not_linked(volume, mount, "the path exists")
        mount.parent.mkdir(parents=True, exist_ok=True)
        mount.symlink_to(target, target_is_directory=True)
    except OSError as error:
        return target, _not_linked(volume, mount, error.strerror or "not permitted")
    return target, None


def _not_linked(volume: VolumeSpec, mount: Path, why: str) -> str:
    return (
        f"volume {volume.name!r} is not linked at {str(mount)!r} ({why}); "
        f"use ${volume.env_var} in the task"
    )
