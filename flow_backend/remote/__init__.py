"""Remote execution over SSH (fabric): connect, upload code, run detached, read logs, stop, download.

Shared by the ``ssh`` provider and the Mithril provider. Every remote task has one folder with the
layout described in :mod:`flow_backend.remote.detached` (``pid``, ``output.log``, ``exit_code``).
"""

from flow_backend.remote.code_upload import UploadedCode, code_hash, collect_files, upload_code
from flow_backend.remote.connection import RemoteResult, connect, exec_command
from flow_backend.remote.destination import SSHDestination, parse_destination
from flow_backend.remote.detached import (
    EXIT_CODE_FILE,
    OUTPUT_LOG,
    PID_FILE,
    STOPPED_FILE,
    RemoteStatus,
    read_status,
    read_statuses,
    record_exit_code,
    record_pid,
    render_detached_run,
    start_detached,
    stop,
)
from flow_backend.remote.logs import follow_logs, tail_logs
from flow_backend.remote.shell import (
    interactive_shell,
    remote_home,
    run_shell,
    ssh_command_line,
)
from flow_backend.remote.task_host import TaskHost
from flow_backend.remote.transfer import download

__all__ = [
    "EXIT_CODE_FILE",
    "OUTPUT_LOG",
    "PID_FILE",
    "STOPPED_FILE",
    "RemoteResult",
    "RemoteStatus",
    "SSHDestination",
    "TaskHost",
    "UploadedCode",
    "code_hash",
    "collect_files",
    "connect",
    "download",
    "exec_command",
    "follow_logs",
    "interactive_shell",
    "parse_destination",
    "read_status",
    "read_statuses",
    "record_exit_code",
    "record_pid",
    "remote_home",
    "render_detached_run",
    "run_shell",
    "ssh_command_line",
    "start_detached",
    "stop",
    "tail_logs",
    "upload_code",
]
