"""Copy files and folders from a host to this machine as a tar stream over the SSH channel."""

from __future__ import annotations

import shlex
import shutil
import tarfile
import tempfile
from pathlib import Path

from fabric import Connection

from flow_backend.errors import ProviderError, ResourceNotFoundError
from flow_backend.remote.connection import exec_command

__all__ = ["download"]


def download(conn: Connection, remote_path: str, local_path: Path | str) -> Path:
    """Copy ``remote_path`` (a file or a folder) to ``local_path``.

    A folder's contents are merged into ``local_path`` (created if needed); a file is written to
    ``local_path``, or inside it when ``local_path`` is an existing folder.

    Args:
        conn: Connection to the host.
        remote_path: Absolute path on the host (``~/`` is the remote home).
        local_path: Destination on this machine.

    Returns:
        The local file or folder written.

    Raises:
        ResourceNotFoundError: ``remote_path`` does not exist on the host.
        ProviderError: The transfer failed.
    """
    local = Path(local_path).expanduser()
    src = remote_path.rstrip("/") or "/"
    quoted = '"$HOME"/' + shlex.quote(src[2:]) if src.startswith("~/") else shlex.quote(src)
    script = (
        f"if [ -d {quoted} ]; then echo D; exec tar cf - -C {quoted} .; "
        f"elif [ -f {quoted} ]; then echo F; exec cat {quoted}; "
        f"else echo 'no such file or folder' >&2; exit 44; fi"
    )
    with tempfile.TemporaryFile() as buffer:
        result = exec_command(conn, f"bash -c {shlex.quote(script)}", stdout=buffer, timeout=600)
        if result.exit_code == 44:
            raise ResourceNotFoundError(
                f"{remote_path!r} does not exist on {conn.host}",
                field="remote_path",
                value=remote_path,
                hint="Check the path; task output lives under the task's working folder",
            )
        buffer.seek(0)
        kind = buffer.readline().rstrip(b"\n")
        if result.exit_code != 0 or kind not in (b"D", b"F"):
            raise ProviderError(
                f"downloading {conn.host}:{remote_path} failed: "
                f"{result.error_text.strip()[-300:] or f'exit code {result.exit_code}'}",
                hint="Check read permission on the host",
            )
        if kind == b"F":
            target = local / Path(src).name if local.is_dir() else local
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("wb") as out:
                shutil.copyfileobj(buffer, out)
            return target
        local.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=buffer, mode="r:") as archive:
            archive.extractall(local, filter="data")
        return local
