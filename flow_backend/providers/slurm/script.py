"""The files a SLURM task runs from: ``run.sh`` in its folder, and the batch script ``sbatch`` gets.

A task's folder holds ``batch.sh`` (what ``sbatch`` got; an array's is in the array's folder),
``command.sh`` (the user's command), ``run.sh`` (environment, one ``srun``
with one task per node, then the exit code into ``exit_code``), ``output.log`` (SLURM's output file
of the job, ``--open-mode=append``) and ``exit_code``. A single task's batch script runs its
``run.sh``; an array's runs ``<array folder>/$SLURM_ARRAY_TASK_ID/run.sh``.

Environment: plain variables are exported in ``run.sh`` (mode 0700 in a 0700 folder); secret-looking
ones (:func:`flow_backend.secret_env.is_secret_name`) are only in ``sbatch``'s own environment,
which SLURM hands to the job (``--export=ALL``): they are in no file of ours and in no command line.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

__all__ = [
    "BATCH_FILE",
    "COMMAND_FILE",
    "EXIT_CODE_FILE",
    "OUTPUT_LOG",
    "RUN_FILE",
    "JobOptions",
    "batch_script",
    "run_script",
    "time_limit",
]

BATCH_FILE = "batch.sh"
COMMAND_FILE = "command.sh"
RUN_FILE = "run.sh"
OUTPUT_LOG = "output.log"
EXIT_CODE_FILE = "exit_code"


def time_limit(hours: float) -> str:
    """``--time`` for ``hours``: whole minutes, rounded up (SLURM's granularity)."""
    return str(max(1, math.ceil(round(hours * 60.0, 6))))


@dataclass
class JobOptions:
    """What goes into the ``#SBATCH`` lines of one job (or array).

    Attributes:
        name: ``--job-name``.
        output: ``--output`` (``%a`` is the array index).
        nodes: ``--nodes``.
        resources: Options of one node (from the instance-type mapping).
        partition: ``--partition`` (``None``: the cluster's default).
        account: ``--account``.
        qos: ``--qos``.
        time_limit: ``--time`` in minutes.
        array: ``--array`` (e.g. ``0-99%8``).
        dependency: ``--dependency`` (e.g. ``afterany:123``).
        extra: Further options (the ``slurm_sbatch_lines`` setting).
    """

    name: str
    output: str
    nodes: int = 1
    resources: list[str] = field(default_factory=list)
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time_limit: str | None = None
    array: str | None = None
    dependency: str | None = None
    extra: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The options, one per ``#SBATCH`` line."""
        options = [
            f"--job-name={self.name}",
            f"--output={self.output}",
            "--open-mode=append",
            f"--nodes={self.nodes}",
            "--ntasks-per-node=1",
            "--export=ALL",
        ]
        named = {
            "partition": self.partition,
            "account": self.account,
            "qos": self.qos,
            "time": self.time_limit,
            "array": self.array,
            "dependency": self.dependency,
        }
        options += [f"--{key}={value}" for key, value in named.items() if value]
        return options + self.resources + self.extra


def batch_script(options: JobOptions, body: str) -> str:
    """The script ``sbatch`` gets on stdin."""
    header = "\n".join(f"#SBATCH {line}" for line in options.lines())
    return f"#!/bin/bash\n{header}\n{body}\n"


def run_script(
    task_dir: str,
    *,
    task_id: str,
    name: str,
    workdir: str,
    env: Mapping[str, str],
    volumes: Sequence[tuple[str, str]] = (),
) -> str:
    """``run.sh``: set the task's environment, one ``srun`` step with a task per node, record the
    exit code.

    ``FLOW_NODE_RANK`` is ``SLURM_NODEID``, ``FLOW_NUM_NODES`` is ``SLURM_JOB_NUM_NODES`` and
    ``FLOW_MAIN_IP`` the address of the job's first node (its ``NodeAddr``, resolved).
    """
    q = shlex.quote
    exports = {"FLOW_TASK_ID": task_id, "FLOW_TASK_NAME": name, **dict(volumes), **env}
    lines = [f"export {key}={q(value)}" for key, value in exports.items()]

    rank_exit = f"{q(task_dir)}/rank_exit.$SLURM_NODEID"
    exit_file = f"{task_dir}/{EXIT_CODE_FILE}"
    node = (
        f"export FLOW_NODE_RANK=$SLURM_NODEID; cd {q(workdir)} && "
        f"/bin/bash {q(task_dir)}/{COMMAND_FILE}; c=$?; echo $c > {rank_exit}; exit $c"
    )
    return "\n".join(
        [
            "#!/bin/bash",
            *lines,
            # a requeued job runs again: say so, and start without the earlier run's exit codes
            'export FLOW_TASK_RESTARTS="${SLURM_RESTART_COUNT:-0}"',
            f"rm -f {q(task_dir)}/rank_exit.* {q(exit_file)}",
            # a volume is a folder on the shared filesystem, made on first use by the job: one it
            # cannot make ends it with code 125 (mkdir's reason in the log)
            *(
                f"mkdir -p {q(folder)} || {{ echo 125 > {q(exit_file)}; exit 125; }}"
                for _, folder in volumes
            ),
            'export FLOW_NUM_NODES="${SLURM_JOB_NUM_NODES:-1}"',
            'first=$(scontrol show hostnames "$SLURM_JOB_NODELIST" 2>/dev/null | head -n 1)',
            # the first node's address as SLURM knows it (NodeAddr), resolved to IPv4
            'addr=$(scontrol show node "$first" -o 2>/dev/null | tr " " "\\n"'
            ' | sed -n "s/^NodeAddr=//p")',
            "addr=${addr:-${first:-$(hostname -s)}}",
            "FLOW_MAIN_IP=$(getent ahostsv4 \"$addr\" | awk 'NR==1 {print $1}')",
            'export FLOW_MAIN_IP="${FLOW_MAIN_IP:-$addr}"',
            'srun --nodes="$FLOW_NUM_NODES" --ntasks="$FLOW_NUM_NODES" --ntasks-per-node=1 '
            f"--kill-on-bad-exit=1 /bin/bash -c {q(node)}",
            "code=$?",
            # the command's own code of the first rank that failed (the oldest file), not the
            # SIGTERM (143) that --kill-on-bad-exit gave the others, which may still write theirs
            f'if [ "$code" != 0 ]; then for f in $(cd {q(task_dir)} && ls -tr rank_exit.*); do',
            f'    r=$(cat {q(task_dir)}/"$f" 2>/dev/null)',
            '    if [ -n "$r" ] && [ "$r" != 0 ]; then code=$r; break; fi',
            "done; fi",
            f'printf "%s\\n" "$code" > {q(exit_file + ".tmp")} && mv {q(exit_file + ".tmp")} {q(exit_file)}',
            'exit "$code"',
            "",
        ]
    )
