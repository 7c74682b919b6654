"""How the fake's instances get their volumes: real block devices and real mounts, per instance.

What is real: a **Block** volume is a sparse file attached as a loop device (``losetup``), so the
startup script finds a raw block device, formats it (``mkfs.ext4``) only when ``blkid`` finds no
filesystem, and mounts it with ``mount``; a **File** volume is one folder every instance mounts.
Each instance with volumes runs its startup script in its **own mount namespace** (``unshare
--mount --propagation private``), so its mounts are its own, as on a separate machine, and its sshd
serves SSH sessions inside that namespace (``nsenter``): a command, a shell and the script all see
the volume at its mount path; this machine's own mount table never changes.

What is modelled: inside that namespace the fake puts a small tmpfs over ``/dev/disk`` with the link
a cloud makes for an attached disk (``/dev/disk/by-id/virtio-<first 20 characters of the volume
id>`` → ``/dev/loopN``), and one over ``/mnt`` with the share bind-mounted at ``/mnt/<volume name>``
(where Mithril's virtiofs puts it). A volume of ``capacity_gb`` GB is a device of ``capacity_gb``
MiB here (at least 16 MiB): sizes are scaled down 1024×, the bytes are real. Data outlives
instances: a later task attaching the same volume finds what an earlier one wrote.

Needs root (loop devices, mounts, namespaces), as a cloud instance's startup script has; without
it an instance's volumes are not attached and its script reports the missing device
(:func:`unsupported_reason` says why).
"""

from __future__ import annotations

import functools
import os
import shlex
import shutil
import subprocess
from pathlib import Path

__all__ = ["attach", "backing_path", "detach", "namespace_command", "unsupported_reason"]

_TOOLS = ("losetup", "unshare", "nsenter", "mount")
_MIN_MIB = 16


@functools.cache
def unsupported_reason() -> str | None:
    """Why this machine cannot give fake instances real volumes (None: it can). Asked once: a
    private mount namespace and a free loop device are tried for real."""
    if os.geteuid() != 0:
        return "the fake attaches volumes as loop devices and mounts them, which needs root"
    missing = [tool for tool in _TOOLS if shutil.which(tool) is None]
    if missing:
        return f"the fake needs {', '.join(missing)} (util-linux) to attach volumes"
    for probe, what in (
        (["unshare", "--mount", "--propagation", "private", "true"], "a mount namespace"),
        (["losetup", "--find"], "a free loop device"),
    ):
        result = subprocess.run(probe, capture_output=True, text=True, timeout=30)
        if result.returncode != 0:
            return f"this machine gives no {what}: {result.stderr.strip() or result.returncode}"
    return None


def backing_path(volumes_dir: Path, fid: str, interface: str, capacity_gb: int) -> Path:
    """The volume's bytes: a sparse image (Block) or a folder (File), made on first use."""
    volumes_dir.mkdir(parents=True, exist_ok=True)
    if interface == "File":
        path = volumes_dir / fid
        path.mkdir(exist_ok=True)
        return path
    path = volumes_dir / f"{fid}.img"
    if not path.exists():
        with path.open("wb") as image:
            image.truncate(max(_MIN_MIB, capacity_gb) << 20)
    return path


def attach(image: Path) -> str:
    """Attach a Block volume's image as a loop device; returns ``/dev/loopN``.

    Raises:
        OSError: With losetup's reason (no free loop device, not root).
    """
    result = subprocess.run(
        ["losetup", "--find", "--show", str(image)], capture_output=True, text=True, timeout=30
    )
    if result.returncode != 0:
        raise OSError(f"losetup {image}: {result.stderr.strip() or result.returncode}")
    return result.stdout.strip()


def detach(device: str) -> None:
    """Detach a loop device (deferred by the kernel while a mount still holds it)."""
    subprocess.run(["losetup", "--detach", device], capture_output=True, timeout=30)


def namespace_command(script: Path, devices: dict[str, str], shares: dict[str, Path]) -> list[str]:
    """The command running ``script`` in a mount namespace of its own with the volumes in place.

    Args:
        script: The startup script.
        devices: Block volume id → its loop device.
        shares: File volume name → its folder.
    """
    lines = ["set -e"]
    if devices:
        lines += [
            "mkdir -p /dev/disk",
            "mount -t tmpfs fake-disks /dev/disk",
            "mkdir /dev/disk/by-id",
        ]
        lines += [
            f"ln -s {shlex.quote(device)} /dev/disk/by-id/virtio-{shlex.quote(fid[:20])}"
            for fid, device in devices.items()
        ]
    if shares:
        lines += ["mkdir -p /mnt", "mount -t tmpfs fake-mnt /mnt"]
        for name, folder in shares.items():
            target = shlex.quote(f"/mnt/{name}")
            lines += [f"mkdir {target}", f"mount --bind {shlex.quote(str(folder))} {target}"]
    lines += ["set +e", f"exec bash {shlex.quote(str(script))}"]
    return ["unshare", "--mount", "--propagation", "private", "bash", "-c", "\n".join(lines)]
