"""Live processes on the SSH host, read from /proc over SSH (no procps needed)."""

from __future__ import annotations

from fabric import Connection

from flow_backend.remote import exec_command

_LIST = r"""
for d in /proc/[0-9]*; do
    read -r stat < "$d/stat" 2>/dev/null || continue
    state=${stat##*) }; state=${state%% *}
    [ "$state" = Z ] && continue
    printf '%s\t' "${d#/proc/}"; tr '\0' ' ' < "$d/cmdline" 2>/dev/null; echo
done
"""


def live_processes(conn: Connection) -> list[tuple[int, str]]:
    """``(pid, command line)`` of every non-zombie process on the host."""
    out = exec_command(conn, "bash -s", stdin=_LIST.encode()).text
    processes = []
    for line in out.splitlines():
        pid, _, args = line.partition("\t")
        if pid.isdigit():
            processes.append((int(pid), args.strip()))
    return processes


def pids_matching(conn: Connection, text: str) -> list[int]:
    """Pids of live processes whose command line contains ``text``."""
    return [pid for pid, args in live_processes(conn) if text in args]
