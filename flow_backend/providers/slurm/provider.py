"""The ``slurm`` provider: a task is one SLURM job (``sbatch``), a sweep one job array (or a few,
within the cluster's ``MaxArraySize``: :mod:`flow_backend.providers.slurm.arrays`).

Status comes from one ``squeue --states=all`` call per poll for every live task, however many, and
from the exit code each job's batch script writes into its task folder. No accounting database
(``sacct``/slurmdbd) is needed: SLURM keeps an ended job in ``squeue --states=all`` for
``MinJobAge`` seconds (300 by default), the provider records the end as soon as it sees it, and a
job SLURM has already forgotten ends by its exit-code file alone.
"""

from __future__ import annotations

import os
import secrets
import shlex
import time
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, ClassVar

from flow_backend.errors import FlowError, ValidationError
from flow_backend.instance_types import parse_instance_type
from flow_backend.models import TaskRecord, TaskStatus, utc_now
from flow_backend.providers.base import Provider
from flow_backend.providers.slurm.arrays import array_parts, cluster_max_array_size
from flow_backend.providers.slurm.login import LocalLogin, Login
from flow_backend.providers.slurm.resources import ResourceMap, normalize_option
from flow_backend.providers.slurm.script import (
    BATCH_FILE,
    EXIT_CODE_FILE,
    OUTPUT_LOG,
    JobOptions,
    batch_script,
)
from flow_backend.providers.slurm.states import (
    SQUEUE_FORMAT,
    is_over,
    job_list,
    parse_squeue,
    with_slurm_view,
)
from flow_backend.providers.slurm.store import SlurmTaskState, state_files
from flow_backend.providers.slurm.submission import (
    JobShape,
    Placement,
    PreparedTask,
    array_shape,
    parse_job_id,
    prepare_task,
    sbatch_error,
    unused_note,
    volume_folders,
)

if TYPE_CHECKING:
    from flow_backend.settings import FlowSettings
    from flow_backend.task_config import TaskConfig

__all__ = ["SlurmProvider"]

_CANCEL_WAIT_SECONDS = 30.0


class SlurmProvider(Provider):
    """Runs tasks as SLURM jobs submitted on this machine or on a login node over SSH
    (``slurm_login``).

    Settings: ``slurm_partition``, ``slurm_account``, ``slurm_qos``, ``slurm_sbatch_lines``,
    ``slurm_instance_types`` (see :mod:`flow_backend.providers.slurm.resources`), ``slurm_dir``
    (task folders, on a filesystem the nodes share) and ``slurm_conf``.
    """

    name: ClassVar[str] = "slurm"
    queues_arrays = True

    def __init__(self, settings: FlowSettings) -> None:
        super().__init__(settings)
        self._resources = ResourceMap(settings.slurm_instance_types)
        self._extra = [
            normalize_option(line, "slurm_sbatch_lines") for line in settings.slurm_sbatch_lines
        ]
        home = Path(settings.home).expanduser()
        self._store = state_files(home)
        self.login = _login(settings, home)
        self.shares_files = self.login.shares_files
        base = (
            str(settings.slurm_dir) if settings.slurm_dir else self.login.default_root()
        ).rstrip("/")
        self._root = f"{base}/tasks"
        volumes = settings.slurm_volumes_dir
        self._volumes_dir = str(volumes) if volumes else None
        self._code_dir = f"{base}/code"
        self._array_size: int | None = None

    # -- submit --------------------------------------------------------------------------------
    def submit(self, config: TaskConfig) -> TaskRecord:
        """Submit the task as one SLURM job (``pending`` until SLURM starts it)."""
        return self.submit_array([config])[0]

    def submit_array(
        self, configs: Sequence[TaskConfig], max_parallel: int | None = None
    ) -> list[TaskRecord]:
        """Submit tasks that share resources with one ``sbatch``: one job, or one job array
        (``--array=0-N%max_parallel``) whose elements are the tasks, in order; more tasks than
        an array may hold go in as a few arrays that together keep to ``max_parallel``.

        Raises:
            ValidationError: The tasks differ in instance type, nodes, time limit or secret
                environment values; a type the mapping lacks; SLURM refused the submission.
        """
        if not configs:
            return []
        shape = array_shape(configs, max_parallel)
        instance = parse_instance_type(shape.instance_type)
        resources = self._resources.options(instance)  # an unmapped type fails before any file
        uploads: dict[Path, str] = {}  # code root -> its folder on the login node (one upload)
        size = self._max_array_size() if len(configs) > 1 else 1  # one task: no array
        parts = array_parts(len(configs), size, max_parallel)
        records: list[TaskRecord] = []
        job_ids: list[str] = []
        try:
            for part in parts:
                after = f"afterany:{job_ids[part.after]}" if part.after is not None else None
                job_id, submitted = self._submit_part(
                    [configs[index] for index in part.indices],
                    shape,
                    Placement(instance.name, resources, part.limit, after),
                    uploads,
                )
                job_ids.append(job_id)
                records += submitted
        except BaseException:  # a later part refused, Ctrl-C: nothing of the batch stays queued
            if records:
                self.cancel_many([record.task_id for record in records], wait=False)
            raise
        return records

    def _max_array_size(self) -> int:
        """``slurm_max_array_size``, else the cluster's ``MaxArraySize`` (asked once)."""
        if self._array_size is None:
            self._array_size = self.settings.slurm_max_array_size or cluster_max_array_size(
                self.login
            )
        return self._array_size

    def _submit_part(
        self,
        configs: Sequence[TaskConfig],
        shape: JobShape,
        part: Placement,
        uploads: dict[Path, str],
    ) -> tuple[str, list[TaskRecord]]:
        """One ``sbatch``: a job, or an array whose elements are ``configs`` in order."""
        batch = f"slurm-{int(time.time() * 1000):x}-{secrets.token_hex(4)}"
        single = len(configs) == 1
        prepared = [
            self._prepare(config, batch if single else f"{batch}-{index}", batch, index, uploads)
            for index, config in enumerate(configs)
        ]
        files = {path: entry for task in prepared for path, entry in task.files.items()}
        base = f"{self._root}/{batch}"
        if single:
            output, body = f"{base}/{OUTPUT_LOG}", f"exec /bin/bash {shlex.quote(base)}/run.sh"
            array = None
        else:
            output = f"{base}/%a/{OUTPUT_LOG}"
            body = f'exec /bin/bash {shlex.quote(base)}/"$SLURM_ARRAY_TASK_ID"/run.sh'
            array = f"0-{len(configs) - 1}" + (f"%{part.limit}" if part.limit else "")
        options = JobOptions(
            name=configs[0].name if single else f"{configs[0].name}-array",
            output=output,
            nodes=shape.num_instances,
            resources=part.resources,
            partition=self.settings.slurm_partition,
            account=self.settings.slurm_account,
            qos=self.settings.slurm_qos,
            time_limit=shape.time_limit,
            array=array,
            dependency=part.dependency,
            extra=self._extra,
        )
        script = batch_script(options, body)
        files[f"{base}/{BATCH_FILE}"] = (script, 0o600)  # what was submitted, for the curious
        self.login.write_files(files)
        try:
            result = self.login.slurm(
                ["sbatch", "--parsable"], env=dict(shape.secret_env), stdin=script
            )
            if result.exit_code != 0:
                raise sbatch_error(
                    result,
                    partition=self.settings.slurm_partition,
                    instance_type=configs[0].instance_type or "cpu",
                )
        except FlowError:
            self.login.remove(base)  # nothing was submitted: leave no folder behind
            raise
        job_id = parse_job_id(result)
        records = []
        for index, (config, task) in enumerate(zip(configs, prepared, strict=True)):
            record = TaskRecord(
                task_id=task.task_id,
                name=config.name,
                provider=self.name,
                instance_type=part.instance_type,
                num_instances=config.num_instances,
                message=unused_note(config),
            )
            state = SlurmTaskState(
                record=record,
                job_id=job_id if single else f"{job_id}_{index}",
                task_dir=task.task_dir,
                workdir=task.workdir,
            )
            records.append(self._store.save(state).record)
        return job_id, records

    def _prepare(
        self, config: TaskConfig, task_id: str, batch: str, index: int, uploads: dict[Path, str]
    ) -> PreparedTask:
        volume_folders(config, self._volumes_dir)  # volumes without the setting: before any upload
        code_dir = None
        absolute = config.working_dir and PurePosixPath(config.working_dir).is_absolute()
        if config.upload_code and not absolute:
            root = Path(config.code_root or os.getcwd()).expanduser().resolve()
            if not root.is_dir():
                raise ValidationError(
                    f"code_root {str(root)!r} is not a folder",
                    field="code_root",
                    value=config.code_root,
                    hint="Give the project folder to run from, or set upload_code=False",
                )
            if root not in uploads:
                uploads[root] = self.login.put_code(root, self._code_dir)
            code_dir = uploads[root]
        single = task_id == batch
        task_dir = f"{self._root}/{batch}" if single else f"{self._root}/{batch}/{index}"
        workdir = self.login.default_workdir(config.working_dir) if code_dir is None else None
        return prepare_task(config, task_id, task_dir, code_dir, workdir, self._volumes_dir)

    # -- status --------------------------------------------------------------------------------
    def get(self, task_id: str) -> TaskRecord:
        """Current record of one task."""
        return self.get_many([task_id])[task_id]

    def get_many(self, task_ids: Sequence[str]) -> dict[str, TaskRecord]:
        """Current records of many tasks: one ``squeue`` call for all live ones."""
        states = {task_id: self._store.load(task_id) for task_id in task_ids}
        live = [s for s in states.values() if not s.record.status.is_terminal]
        for state in self._refresh(live):
            states[state.task_id] = state
        return {task_id: state.record for task_id, state in states.items()}

    def _refresh(self, live: list[SlurmTaskState]) -> list[SlurmTaskState]:
        if not live:
            return []
        jobs = sorted({s.parent_job for s in live}, key=int)
        result = self.login.slurm(
            [
                "squeue",
                "--noheader",
                "--array",
                "--states=all",
                f"--format={SQUEUE_FORMAT}",
                f"--jobs={','.join(jobs)}",
            ]
        )
        if result.exit_code != 0 and "invalid job id" not in result.stderr.lower():
            # SLURM is unreachable right now: keep what is known, say why, try again next poll
            note = f"squeue failed: {result.stderr.strip()[-200:] or result.exit_code}"
            return [
                s.model_copy(update={"record": s.record.model_copy(update={"message": note})})
                for s in live
            ]
        jobs_now = parse_squeue(result.stdout) if result.exit_code == 0 else {}
        # an array whose elements never started (e.g. cancelled while pending) is one line
        infos = {s.job_id: jobs_now.get(s.job_id) or jobs_now.get(s.parent_job) for s in live}
        ended = [s for s in live if (info := infos[s.job_id]) is None or is_over(info)]
        codes = self.login.read_files([f"{s.task_dir}/{EXIT_CODE_FILE}" for s in ended])
        updated = []
        for state in live:
            code_text = codes.get(f"{state.task_dir}/{EXIT_CODE_FILE}")
            exit_code = (
                int(code_text) if code_text and code_text.strip().lstrip("-").isdigit() else None
            )
            state = with_slurm_view(state, infos[state.job_id], exit_code)
            updated.append(self._store.save(state) if state.record.status.is_terminal else state)
        return updated

    def list_tasks(
        self, *, active_only: bool = False, name_prefix: str | None = None
    ) -> list[TaskRecord]:
        """Every task of this FLOW_HOME, newest first (live ones refreshed with one squeue)."""
        states = self._store.all()
        if name_prefix:
            states = [s for s in states if s.record.name.startswith(name_prefix)]
        records = list(self.get_many([s.task_id for s in states]).values())
        if active_only:
            records = [r for r in records if not r.status.is_terminal]
        return sorted(records, key=lambda r: r.created_at, reverse=True)

    def wait_for_change(self, task_id: str, timeout: float) -> None:
        """Sleep up to ``timeout`` (at most the poll interval)."""
        time.sleep(max(0.0, min(timeout, self.settings.poll_interval)))

    # -- control -------------------------------------------------------------------------------
    def cancel(self, task_id: str) -> TaskRecord:
        """``scancel`` the task's job and wait until SLURM has ended it; the task is ``cancelled``."""
        return self.cancel_many([task_id])[task_id]

    def cancel_many(self, task_ids: Sequence[str], *, wait: bool = True) -> dict[str, TaskRecord]:
        """Cancel many tasks with one ``scancel`` (an array's elements at once) and wait until
        SLURM has ended them (``wait=False``: return at once, their records may still be live)."""
        states = [self._store.load(task_id) for task_id in task_ids]
        live = [
            s.model_copy(update={"cancel_requested": True})
            for s in states
            if not s.record.status.is_terminal
        ]
        for state in live:
            self._store.save(state)
        if live:
            self.login.slurm(["scancel", *job_list(s.job_id for s in live)])
            deadline = time.monotonic() + (_CANCEL_WAIT_SECONDS if wait else 0.0)
            while live and time.monotonic() < deadline:
                live = [s for s in self._refresh(live) if not s.record.status.is_terminal]
                if live:
                    time.sleep(min(0.5, self.settings.poll_interval))
            for state in live if wait else []:  # SLURM still ends them: record our end now
                record = state.record.model_copy(
                    update={
                        "status": TaskStatus.CANCELLED,
                        "message": "cancelled",
                        "ended_at": utc_now(),
                    }
                )
                self._store.save(state.model_copy(update={"record": record}))
        return {task_id: self._store.load(task_id).record for task_id in task_ids}

    # -- output --------------------------------------------------------------------------------
    def logs(self, task_id: str, tail: int | None = None) -> str:
        """The job's output file so far (the last ``tail`` lines when given)."""
        state = self._store.load(task_id)
        return self.login.tail(f"{state.task_dir}/{OUTPUT_LOG}", tail)

    def follow_logs(self, task_id: str) -> Iterator[str]:
        """The job's output lines as they are written, until it ends."""
        state = self._store.load(task_id)
        return self.login.follow(
            f"{state.task_dir}/{OUTPUT_LOG}",
            lambda: self.get(task_id).status.is_terminal,
            self.settings.poll_interval,
        )

    def shell(self, task_id: str, command: str | None = None) -> str:
        """Run ``command`` in the task's working folder on the login node (shared with the
        nodes); no command: an interactive shell there."""
        state = self._store.load(task_id)
        return self.login.shell(command, state.workdir)

    def shell_command(self, task_id: str) -> str | None:
        """A shell on the job's node while it runs (``srun --overlap``), else in its folder."""
        state = self._store.load(task_id)
        if state.record.status is TaskStatus.RUNNING:
            return f"srun --jobid={state.parent_job} --overlap --pty ${{SHELL:-/bin/bash}}"
        return f"cd {shlex.quote(state.workdir)} && ${{SHELL:-/bin/sh}}"

    def download(self, task_id: str, remote_path: str, local_path: Path) -> None:
        """Copy a file or folder of the task (relative paths: its working folder) to ``local_path``.

        Raises:
            ResourceNotFoundError: The path does not exist (yet).
        """
        state = self._store.load(task_id)
        path = remote_path
        if not PurePosixPath(remote_path).is_absolute() and not remote_path.startswith("~/"):
            path = str(PurePosixPath(state.workdir) / remote_path)
        self.login.download(path, local_path)

    def close(self) -> None:
        """Nothing to release (jobs keep running)."""
        self.login.close()


def _login(settings: FlowSettings, home: Path) -> Login:
    if settings.slurm_login:
        from flow_backend.providers.slurm.ssh_login import SSHLogin

        return SSHLogin(settings.slurm_login, settings.slurm_conf, settings.ssh_key_path, home)
    return LocalLogin(settings.slurm_conf, home)
