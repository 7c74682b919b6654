"""Send the user's working directory to a host once per content version and reuse it.

Which files go: everything under the root except what ignore files exclude. Ignore files use
``.gitignore`` syntax (through :mod:`pathspec`); in every folder, ``.gitignore`` and then
``.flowignore`` are read, a later pattern winning over an earlier one, so ``.flowignore`` can both add
exclusions and re-include (``!data/``) what git ignores. ``.git/``, ``.venv/``, ``__pycache__/`` and
tool caches are excluded by default (re-include them with ``!`` in the root ``.flowignore``).

The code is identified by a hash of the selected files' paths, modes and contents. On the host it
lives in ``<remote_dir>/<hash>/`` and is extracted exactly once: later tasks of the sweep (and other
processes) find the completed folder and send nothing.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import stat
import tarfile
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import pathspec
from fabric import Connection

from flow_backend.errors import ProviderError, ValidationError
from flow_backend.remote.connection import exec_command

__all__ = ["DEFAULT_EXCLUDES", "UploadedCode", "code_hash", "collect_files", "upload_code"]

DEFAULT_EXCLUDES = (
    ".git/",
    ".venv/",
    "__pycache__/",
    "*.pyc",
    ".mypy_cache/",
    ".pytest_cache/",
    ".ruff_cache/",
)
IGNORE_FILES = (".gitignore", ".flowignore")
_COMPLETE_MARKER = ".flow-code-complete"

_digest_memo: dict[tuple[str, int, int], str] = {}
_uploaded: set[tuple[str, str, int, str]] = set()
_upload_locks: dict[tuple[str, str, int, str], threading.Lock] = {}
_locks_guard = threading.Lock()


@dataclass(frozen=True)
class UploadedCode:
    """Where the code landed on the host.

    Attributes:
        path: Absolute remote folder holding the extracted code.
        content_hash: Hash of the files that were selected.
        sent: Whether this call transferred the tarball (``False`` when it was already there).
    """

    path: str
    content_hash: str
    sent: bool


def _read_patterns(folder: Path) -> list[str]:
    lines: list[str] = []
    for name in IGNORE_FILES:
        file = folder / name
        if file.is_file():
            lines.extend(file.read_text(encoding="utf-8", errors="replace").splitlines())
    return lines


def _ignored(rel: str, specs: list[tuple[str, pathspec.PathSpec]]) -> bool:
    """Whether ``rel`` (with a trailing ``/`` for folders) is excluded; deeper files win."""
    verdict = False
    for base, spec in specs:
        if base and not rel.startswith(base):
            continue
        result = spec.check_file(rel[len(base) :])
        if result.include is not None:
            verdict = result.include
    return verdict


def collect_files(root: Path) -> list[str]:
    """Relative POSIX paths of the files under ``root`` that are not ignored, sorted.

    Args:
        root: The folder to upload.

    Returns:
        Paths of regular files and symlinks.
    """
    root = root.resolve()
    selected: list[str] = []
    specs_by_dir: dict[str, list[tuple[str, pathspec.PathSpec]]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        prefix = "" if rel_dir == "." else rel_dir + "/"
        parent = prefix.rstrip("/").rpartition("/")[0]
        inherited = specs_by_dir.get(parent + "/" if parent else "", []) if prefix else []
        patterns = _read_patterns(Path(dirpath))
        if not prefix:
            patterns = [*DEFAULT_EXCLUDES, *patterns]
        specs = inherited
        if patterns:
            specs = [*inherited, (prefix, pathspec.GitIgnoreSpec.from_lines(patterns))]
        specs_by_dir[prefix] = specs
        keep_dirs = []
        for name in sorted(dirnames):
            if os.path.islink(os.path.join(dirpath, name)):
                if not _ignored(prefix + name, specs):
                    selected.append(prefix + name)
            elif not _ignored(prefix + name + "/", specs):
                keep_dirs.append(name)
        dirnames[:] = keep_dirs
        for name in filenames:
            if not _ignored(prefix + name, specs):
                selected.append(prefix + name)
    return sorted(selected)


def _file_digest(path: Path, info: os.stat_result) -> str:
    key = (str(path), info.st_size, info.st_mtime_ns)
    digest = _digest_memo.get(key)
    if digest is None:
        with path.open("rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
        _digest_memo[key] = digest
    return digest


def code_hash(root: Path, files: list[str] | None = None) -> str:
    """Hash of the selected files' paths, executable bits, link targets and contents.

    Args:
        root: The folder to upload.
        files: The selection (default: :func:`collect_files`).

    Returns:
        A 16-hex-digit content hash.
    """
    root = root.resolve()
    total = hashlib.sha256()
    for rel in files if files is not None else collect_files(root):
        path = root / rel
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            entry = f"L {rel} {os.readlink(path)}"
        elif stat.S_ISREG(info.st_mode):
            entry = f"F {rel} {info.st_mode & 0o111:o} {_file_digest(path, info)}"
        else:
            continue
        total.update(entry.encode("utf-8", errors="surrogateescape") + b"\n")
    return total.hexdigest()[:16]


def _write_tarball(root: Path, files: list[str], target: tempfile.SpooledTemporaryFile) -> None:
    with tarfile.open(fileobj=target, mode="w:gz", compresslevel=6) as archive:
        for rel in files:
            archive.add(root / rel, arcname=rel, recursive=False)
    target.seek(0)


def upload_code(conn: Connection, local_root: Path | str, remote_dir: str) -> UploadedCode:
    """Make the current content of ``local_root`` available on the host, sending it at most once.

    Args:
        conn: Connection to the host.
        local_root: Local folder to send (ignore files honoured).
        remote_dir: Absolute remote folder that holds one sub-folder per code version.

    Returns:
        Where the code is on the host and whether it was sent now.

    Raises:
        ValidationError: ``local_root`` is not a folder.
        ProviderError: The transfer or the extraction failed.
    """
    root = Path(local_root).expanduser()
    if not root.is_dir():
        raise ValidationError(
            f"code_root {str(local_root)!r} is not a folder",
            field="code_root",
            value=str(local_root),
            hint="Set code_root to the project folder to upload, or turn upload_code off",
        )
    files = collect_files(root)
    digest = code_hash(root, files)
    target = f"{remote_dir.rstrip('/')}/{digest}"
    key = (str(conn.host), str(conn.user), int(conn.port), target)
    with _locks_guard:
        lock = _upload_locks.setdefault(key, threading.Lock())
    with lock:
        if key in _uploaded:
            return UploadedCode(path=target, content_hash=digest, sent=False)
        quoted = shlex.quote(target)
        check = exec_command(conn, f"test -f {quoted}/{_COMPLETE_MARKER}")
        if check.exit_code == 0:
            _uploaded.add(key)
            return UploadedCode(path=target, content_hash=digest, sent=False)
        parent = shlex.quote(remote_dir.rstrip("/") or "/")
        script = (
            f"set -e; mkdir -p {parent}; flow_tmp=$(mktemp -d {parent}/.partial.XXXXXX); "
            f'tar xzf - -C "$flow_tmp"; touch "$flow_tmp/{_COMPLETE_MARKER}"; '
            f'mv -T "$flow_tmp" {quoted} 2>/dev/null || rm -rf "$flow_tmp"; '
            f"test -f {quoted}/{_COMPLETE_MARKER}"
        )
        with tempfile.SpooledTemporaryFile(max_size=32 << 20) as tarball:
            _write_tarball(root.resolve(), files, tarball)
            result = exec_command(conn, f"bash -c {shlex.quote(script)}", stdin=tarball)  # type: ignore[arg-type]
        if result.exit_code != 0:
            raise ProviderError(
                f"uploading {root} to {conn.host}:{target} failed: "
                f"{result.error_text.strip()[-300:] or f'exit code {result.exit_code}'}",
                hint="Check free disk space and write permission on the host",
            )
        _uploaded.add(key)
        return UploadedCode(path=target, content_hash=digest, sent=True)
