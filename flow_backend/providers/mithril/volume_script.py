"""The startup script's volume section: each volume of the bid mounted at its mount path.

How a volume reaches a Mithril instance (the official SDK's ``volume_operations.py`` is the record):

* a **Block** volume is a raw disk attached to the instance. It is found by its id
  (``/dev/disk/by-id/virtio-<first 20 characters of the id>``, or the NVMe/SCSI links clouds make),
  else by attach order (``/dev/vd<d+index>``, ``/dev/xvd<d+index>``, taken only when it is a whole
  disk without partitions, mounted nowhere); the script waits up to a minute for it to appear. It
  is formatted ext4 **only when it has no filesystem yet** (``blkid`` finds none), so data written
  by an earlier task stays; then it is mounted at the mount path.
* a **File** volume is a share: the platform mounts it (virtiofs) at ``/mnt/<volume name>``, which
  is bind-mounted at the mount path; without it, the share's NFS endpoint
  ``fileshare-<id>.mithril.internal`` is mounted (the NFS client installed when missing).

The mount path is given to the ``ubuntu`` user (SSH logs in as it). Unlike the SDK, nothing is
written to ``/etc/fstab``: a task's instance never reboots into another task (its bid ends with the
task). A volume that cannot be mounted ends the node with exit code 125 and the reason in the
task's log; the command never runs without its data.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = ["VOLUME_FAILED_EXIT", "VolumeMount", "volume_section"]

#: The node's exit code when a volume could not be mounted (the command never ran).
VOLUME_FAILED_EXIT = 125
#: Seconds a node waits for a Block volume's device to appear.
DEVICE_WAIT_SECONDS = 60


@dataclass(frozen=True)
class VolumeMount:
    """One volume of the bid as the instance mounts it."""

    fid: str
    name: str
    interface: Literal["Block", "File"]
    mount_path: str


_FUNCTIONS = r"""flow_volume_failed() {
  echo "flow: volume $1: $2; the command did not run" >> "$D/output.log"
  touch "$D/ready"; RECORD_FAILED; exit EXIT_CODE
}
flow_block() {
  local dev="" link i
  for i in $(seq WAIT); do
    for link in "/dev/disk/by-id/virtio-${2:0:20}" "/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_$2" \
        "/dev/disk/by-id/scsi-0Amazon_Elastic_Block_Store_$2"; do
      [ -e "$link" ] && { dev=$(readlink -f "$link"); break 2; }
    done
    for link in "/dev/vd$3" "/dev/xvd$3"; do
      [ -b "$link" ] && [ "$(lsblk -dno TYPE "$link" 2>/dev/null)" = disk ] \
        && [ "$(lsblk -nro NAME "$link" 2>/dev/null | wc -l)" -eq 1 ] \
        && [ -z "$(lsblk -nro MOUNTPOINT "$link" 2>/dev/null)" ] && { dev=$link; break 2; }
    done
    sleep 1
  done
  [ -b "$dev" ] || flow_volume_failed "$1" "no device appeared for Block volume $2 within WAIT s"
  mkdir -p "$4"; mountpoint -q "$4" && return 0
  if ! blkid "$dev" >/dev/null 2>&1; then
    echo "flow: formatting the new volume $1 ($dev) as ext4" >> "$D/setup.log"
    mkfs.ext4 -q -F "$dev" >> "$D/setup.log" 2>&1 || flow_volume_failed "$1" "mkfs.ext4 $dev failed"
  fi
  mount "$dev" "$4" >> "$D/setup.log" 2>&1 || flow_volume_failed "$1" "could not mount $dev at $4"
  id ubuntu >/dev/null 2>&1 && chown ubuntu: "$4"; echo "flow: volume $1 ($dev) at $4" >> "$D/setup.log"
}
flow_share() {
  mkdir -p "$3"; mountpoint -q "$3" && return 0
  if mountpoint -q "/mnt/$1"; then
    mount --bind "/mnt/$1" "$3" >> "$D/setup.log" 2>&1 || flow_volume_failed "$1" "could not bind /mnt/$1 at $3"
  else
    command -v mount.nfs4 >/dev/null 2>&1 || (export DEBIAN_FRONTEND=noninteractive;
      apt-get install -y -q nfs-common || yum install -y -q nfs-utils) >> "$D/setup.log" 2>&1
    mount -t nfs4 -o nfsvers=4.1,rsize=1048576,wsize=1048576,hard,timeo=600,retrans=2 \
      "fileshare-$2.mithril.internal:/" "$3" >> "$D/setup.log" 2>&1 \
      || flow_volume_failed "$1" "could not mount the share (neither /mnt/$1 nor NFS) at $3"
  fi
  id ubuntu >/dev/null 2>&1 && chown ubuntu: "$3"; echo "flow: volume $1 (share) at $3" >> "$D/setup.log"
}
"""


def volume_section(volumes: Sequence[VolumeMount], record_failed: str) -> str:
    """Shell lines mounting every volume (nothing when there are none).

    Args:
        volumes: The bid's volumes, in the bid's order (attach order).
        record_failed: Shell line recording the exit code ``VOLUME_FAILED_EXIT``.
    """
    if not volumes:
        return ""
    functions = (
        _FUNCTIONS.replace("RECORD_FAILED", record_failed)
        .replace("EXIT_CODE", str(VOLUME_FAILED_EXIT))
        .replace("WAIT", str(DEVICE_WAIT_SECONDS))
    )
    calls = []
    for index, volume in enumerate(volumes):
        name, fid, path = (shlex.quote(v) for v in (volume.name, volume.fid, volume.mount_path))
        if volume.interface == "File":
            calls.append(f"flow_share {name} {fid} {path}\n")
        else:
            letter = chr(ord("d") + index)  # attach order: vdd, vde, ...
            calls.append(f"flow_block {name} {fid} {letter} {path}\n")
    return functions + "".join(calls)
