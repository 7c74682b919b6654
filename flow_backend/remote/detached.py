"""Run a command detached on a remote host and read back how it ended.

Every remote task lives in one folder (the *task dir*) with a fixed layout that the SSH provider, the
Mithril startup script and every reader share:

* ``pid``       — pid of the wrapper shell, which is also the process-group and session id;
* ``output.log``— the command's stdout and stderr, interleaved;
* ``exit_code`` — written (atomically) when the command ends: its exit status, 128+N after signal N;
* ``stopped``   — present when :func:`stop` ended the task.

:func:`render_detached_run` writes the shell snippet that produces this layout; :func:`start_detached`
sends it over SSH (environment values travel on the channel's stdin, never in a file or an argv), and
the Mithril provider puts the same snippet in its startup script.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from fabric import Connection

from flow_backend.errors import ProviderError
from flow_backend.remote.connection import exec_command

__all__ = [
    "EXIT_CODE_FILE",
    "OUTPUT_LOG",
    "PID_FILE",
    "STOPPED_FILE",
    "RemoteStatus",
    "read_status",
    "read_statuses",
    "record_exit_code",
    "record_pid",
    "render_detached_run",
    "start_detached",
    "stop",
]

OUTPUT_LOG = "output.log"
EXIT_CODE_FILE = "exit_code"
PID_FILE = "pid"
STOPPED_FILE = "stopped"

RemoteState = Literal["missing", "starting", "running", "exited", "lost"]

# Live (non-zombie) processes of a task: its process group $FLOW_PGID plus the descendants of that
# pid (for a pid that leads no group, e.g. a startup script run without setsid). Read from /proc:
# kill -0 also counts zombies, which nobody may reap once our SSH session is gone.
_TASK_PROCESSES = r"""
flow_task_processes() {
    for flow_stat in /proc/[0-9]*/stat; do
        read -r flow_line < "$flow_stat" 2>/dev/null || continue
        flow_pid=${flow_stat#/proc/}
        set -- ${flow_line##*) }
        echo "${flow_pid%/stat} $1 $2 $3"
    done | awk -v root="$FLOW_PGID" '
        { state[$1] = $2; parent[$1] = $3; group[$1] = $4 }
        END {
            keep[root] = 1
            for (changed = 1; changed; ) {
                changed = 0
                for (p in state) if (!(p in keep) && ((parent[p] in keep) || group[p] == root)) {
                    keep[p] = 1; changed = 1
                }
            }
            for (p in keep) if ((p in state) && state[p] != "Z") print p
        }'
}
flow_signal_task() {
    kill -"$1" -- -"$FLOW_PGID" 2>/dev/null
    flow_pids=$(flow_task_processes)
    [ -n "$flow_pids" ] && kill -"$1" $flow_pids 2>/dev/null
    return 0
}
"""

_PID_ALIVE = r"""
flow_pid_alive() {
    read -r flow_line < "/proc/$1/stat" 2>/dev/null || return 1
    set -- ${flow_line##*) }
    [ "$1" != Z ]
}
"""


def record_pid(task_dir: str) -> str:
    """Shell line that writes this shell's pid to ``pid`` (atomically: readers never see half).

    Args:
        task_dir: The task dir as a shell word, already quoted (``'/a b'`` or ``"$D"``).
    """
    return f"echo $$ > {task_dir}/{PID_FILE}.tmp && mv -f {task_dir}/{PID_FILE}.tmp {task_dir}/{PID_FILE}"


def record_exit_code(task_dir: str, code: str) -> str:
    """Shell line that writes an exit status to ``exit_code`` (atomically), ending the task.

    Args:
        task_dir: The task dir as a shell word, already quoted.
        code: The status as a shell word, e.g. ``$flow_code``.
    """
    return (
        f"echo {code} > {task_dir}/{EXIT_CODE_FILE}.tmp"
        f" && mv -f {task_dir}/{EXIT_CODE_FILE}.tmp {task_dir}/{EXIT_CODE_FILE}"
    )


def render_detached_run(
    task_dir: str,
    command: str,
    *,
    env: Mapping[str, str] | None = None,
    workdir: str | None = None,
) -> str:
    """Bash snippet that starts ``command`` detached, in its own session, with exit-code capture.

    The snippet returns at once; the command keeps running after the shell (or SSH session) that ran
    the snippet is gone. Environment values are exported only inside the detached subshell.

    Args:
        task_dir: Absolute remote folder for ``pid``, ``output.log`` and ``exit_code`` (created).
        command: Shell command line to run (``bash -c``).
        env: Extra environment variables for the command.
        workdir: Folder to run the command in (default: ``task_dir``).

    Returns:
        Bash source text.
    """
    d = shlex.quote(task_dir.rstrip("/") or "/")
    cwd = shlex.quote(workdir or task_dir)
    inner = "\n".join(
        [
            record_pid(d),
            # A handler (not an ignore) so TERM reaches the command, and the wrapper survives it to
            # record the exit status; handlers are reset by exec, so the command sees default TERM.
            "trap 'true' TERM INT",
            f"cd {cwd} && bash -c {shlex.quote(command)}",
            "flow_code=$?",
            record_exit_code(d, "$flow_code"),
            "exit $flow_code",
        ]
    )
    exports = "".join(
        f"    export {name}={shlex.quote(value)}\n" for name, value in (env or {}).items()
    )
    return (
        f"mkdir -p {d} && rm -f {d}/{EXIT_CODE_FILE} {d}/{PID_FILE} {d}/{STOPPED_FILE}\n"
        "(\n"
        f"{exports}"
        f"    exec setsid nohup bash -c {shlex.quote(inner)} >> {d}/{OUTPUT_LOG} 2>&1 < /dev/null\n"
        ") &\n"
    )


@dataclass(frozen=True)
class RemoteStatus:
    """What a task dir says about its command.

    Attributes:
        state: ``missing`` (no task dir), ``starting`` (no pid yet), ``running``, ``exited`` (exit code
            recorded), ``lost`` (the process is gone without an exit code: killed hard or host rebooted).
        exit_code: The recorded exit status when ``exited``.
        pid: Process-group id of the task, once started.
        stopped: Whether :func:`stop` ended it.
    """

    state: RemoteState
    exit_code: int | None = None
    pid: int | None = None
    stopped: bool = False

    @property
    def is_done(self) -> bool:
        """Whether the command can no longer produce output."""
        return self.state in ("exited", "lost", "missing")


_STATUS_SCRIPT = (
    _PID_ALIVE
    + r"""
flow_status() {
    d=$1; pid=""; code=""; stopped=0
    [ -f "$d/stopped" ] && stopped=1
    [ -f "$d/pid" ] && read -r pid < "$d/pid"
    if [ -f "$d/exit_code" ]; then read -r code < "$d/exit_code"; state=exited
    elif [ -n "$pid" ] && flow_pid_alive "$pid"; then state=running
    elif [ -f "$d/exit_code" ]; then read -r code < "$d/exit_code"; state=exited
    elif [ -n "$pid" ]; then state=lost
    elif [ -d "$d" ]; then state=starting
    else state=missing
    fi
    printf 'FLOWSTATUS\t%s\t%s\t%s\t%s\t%s\n' "$d" "$state" "$code" "$pid" "$stopped"
}
"""
)


def _parse_int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def read_statuses(conn: Connection, task_dirs: Sequence[str]) -> dict[str, RemoteStatus]:
    """Status of many task dirs on one host in one SSH round trip.

    Args:
        conn: Connection to the host.
        task_dirs: Absolute remote task dirs.

    Returns:
        Status per task dir (keys as given).
    """
    if not task_dirs:
        return {}
    wanted = {d.rstrip("/"): d for d in task_dirs}
    script = _STATUS_SCRIPT + "".join(f"flow_status {shlex.quote(d)}\n" for d in wanted)
    result = exec_command(conn, "bash -s", stdin=script.encode())
    statuses: dict[str, RemoteStatus] = {}
    for line in result.text.splitlines():
        parts = line.split("\t")
        if len(parts) != 6 or parts[0] != "FLOWSTATUS" or parts[1] not in wanted:
            continue
        _, d, state, code, pid, stopped = parts
        statuses[wanted[d]] = RemoteStatus(
            state=state,  # type: ignore[arg-type]
            exit_code=_parse_int(code),
            pid=_parse_int(pid),
            stopped=stopped == "1",
        )
    missing = [d for d in task_dirs if d not in statuses]
    if missing:
        raise ProviderError(
            f"could not read the status of {len(missing)} task(s) on {conn.host}: "
            f"{result.error_text.strip()[-300:] or 'no output'}",
            hint="Check that the host has bash and that the task folders are readable",
        )
    return statuses


def read_status(conn: Connection, task_dir: str) -> RemoteStatus:
    """Status of one task dir (see :func:`read_statuses`)."""
    return read_statuses(conn, [task_dir])[task_dir]


def start_detached(
    conn: Connection,
    task_dir: str,
    command: str,
    env: Mapping[str, str] | None = None,
    *,
    workdir: str | None = None,
) -> int:
    """Start ``command`` on the remote host, detached, and return its process-group id.

    The script (with the environment values) goes over the channel's stdin to ``bash -s``, so
    secrets never land in a remote file or a process list.

    Args:
        conn: Connection to the host.
        task_dir: Absolute remote task dir (created; a previous run's files are cleared).
        command: Shell command line.
        env: Extra environment variables.
        workdir: Folder to run in (default: ``task_dir``).

    Returns:
        The pid (= process-group id) of the detached wrapper.

    Raises:
        ProviderError: The command could not be started.
    """
    d = shlex.quote(task_dir)
    script = (
        "set -e\n"
        + render_detached_run(task_dir, command, env=env, workdir=workdir)
        + "for flow_i in $(seq 1 1000); do\n"
        + f"    [ -s {d}/{PID_FILE} ] && exec cat {d}/{PID_FILE}\n"
        + "    sleep 0.01\n"
        + "done\n"
        + "exit 1\n"
    )
    result = exec_command(conn, "bash -s", stdin=script.encode())
    pid = _parse_int(result.text.strip())
    if result.exit_code != 0 or pid is None:
        raise ProviderError(
            f"could not start the task in {task_dir} on {conn.host}: "
            f"{result.error_text.strip()[-300:] or 'no pid was written'}",
            hint="Check that the host has bash, setsid and nohup and that the folder is writable",
        )
    return pid


def stop(conn: Connection, task_dir: str, *, grace_seconds: float = 10.0) -> RemoteStatus:
    """End a task's process group and process tree: TERM, then KILL after ``grace_seconds``.

    Leaves ``stopped`` in the task dir and an ``exit_code`` (137 when KILL was needed).

    Args:
        conn: Connection to the host.
        task_dir: The task's remote dir.
        grace_seconds: How long the processes get to exit after TERM.

    Returns:
        The task's status after stopping.
    """
    d = shlex.quote(task_dir)
    steps = max(1, int(grace_seconds / 0.1))
    script = (
        _TASK_PROCESSES
        + f"""
[ -d {d} ] || exit 0
touch {d}/{STOPPED_FILE}
[ -f {d}/{PID_FILE} ] || exit 0
read -r FLOW_PGID < {d}/{PID_FILE}
[ -n "$(flow_task_processes)" ] || exit 0
flow_signal_task TERM
for flow_i in $(seq 1 {steps}); do
    [ -n "$(flow_task_processes)" ] || break
    sleep 0.1
done
if [ -n "$(flow_task_processes)" ]; then
    flow_signal_task KILL
    sleep 0.1
fi
if [ ! -f {d}/{EXIT_CODE_FILE} ]; then echo 137 > {d}/{EXIT_CODE_FILE}; fi
"""
    )
    exec_command(conn, "bash -s", stdin=script.encode(), timeout=grace_seconds + 60)
    return read_status(conn, task_dir)
