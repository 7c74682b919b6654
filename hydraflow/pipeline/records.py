"""MLflow records of a pipeline: one parent run per pipeline run, one child run per executed stage.

A stage's child run carries its config section as params, the tags ``hydraflow.role=stage``,
``hydraflow.stage`` and ``hydraflow.cache_key``, its return value as ``result.pkl`` (cloudpickle; plus
``result.json`` when the value is JSON) and the files it wrote under ``outputs/``. With a local
artifact store the stage writes straight into ``outputs/``, so the paths it hands on stay valid.
"""

from __future__ import annotations

import json
import tempfile
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

import cloudpickle

from hydraflow.conventions import (
    TAG_CACHE_KEY,
    TAG_COST_PER_HOUR,
    TAG_ERROR,
    TAG_INSTANCE_TYPE,
    TAG_KEY_PREFIX,
    TAG_PARENT_RUN_ID,
    TAG_PROVIDER,
    TAG_ROLE,
    TAG_STAGE,
    TAG_TASK_ID,
    artifact_location_for,
    flatten_config,
    return_value_metrics,
    sanitize_key,
)
from hydraflow.pipeline.cache import TAG_RESULT, find_finished_run, lock_dir_for, stage_lock
from hydraflow.pipeline.errors import PipelineDefinitionError, PipelineError
from hydraflow.pipeline.stage import StageOutput

if TYPE_CHECKING:
    from mlflow.entities import Run

__all__ = ["PipelineRecords", "local_path_of"]

TAG_PIPELINE_STAGES = "hydraflow.pipeline.stages"  # parent run: JSON {stage: {status, run_id}}

RESULT_FILE = "result.pkl"
OUTPUTS = "outputs"
_MAX_TAG = 5000


def local_path_of(uri: str) -> Path | None:
    """The local folder of a ``file:`` (or plain path) artifact URI; ``None`` for remote stores."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme == "" and uri.startswith("/"):
        return Path(uri)
    return None


class PipelineRecords:
    """Reads and writes a pipeline's runs in one experiment of one MLflow store."""

    def __init__(
        self, tracking_uri: str, experiment: str | None = None, experiment_id: str | None = None
    ) -> None:
        from mlflow.tracking import MlflowClient

        self.tracking_uri = tracking_uri
        self.lock_dir = lock_dir_for(tracking_uri)
        # A fresh sqlite store migrated by several processes at once breaks: create it under a lock.
        from mlflow.exceptions import MlflowException

        with stage_lock(self.lock_dir, "store"):
            try:
                self.client = MlflowClient(tracking_uri)
                self.experiment_id = experiment_id or self._experiment_id(experiment or "pipeline")
            except MlflowException as error:
                raise PipelineError(
                    f"Cannot use the MLflow store {tracking_uri!r} (MLFLOW_TRACKING_URI): "
                    f"{error.message}"
                ) from None
        self._scratch: Path | None = None

    def _experiment_id(self, name: str) -> str:
        from mlflow.exceptions import MlflowException

        found = self.client.get_experiment_by_name(name)
        if found is None:
            location = artifact_location_for(self.tracking_uri)
            try:
                return str(self.client.create_experiment(name, artifact_location=location))
            except MlflowException:  # created meanwhile by another process (a remote store)
                found = self.client.get_experiment_by_name(name)
                if found is None:
                    raise
        if found.lifecycle_stage == "deleted":
            raise PipelineDefinitionError(
                f"MLflow experiment {name!r} is deleted; restore it (`mlflow experiments restore "
                f"--experiment-id {found.experiment_id}`) or pass another experiment="
            )
        return str(found.experiment_id)

    # -- parent ----------------------------------------------------------------------------------
    def start_parent(self, name: str, parent_run_id: str | None) -> str:
        """Create the pipeline's parent run (nested under ``parent_run_id`` when given)."""
        tags = {TAG_ROLE: "pipeline"}
        if parent_run_id:
            tags[TAG_PARENT_RUN_ID] = parent_run_id
        run = self.client.create_run(self.experiment_id, tags=tags, run_name=name)
        return str(run.info.run_id)

    def end_parent(self, run_id: str, summary: dict[str, dict[str, str]], status: str) -> None:
        """Record each stage's outcome on the parent run and close it."""
        self.client.set_tag(run_id, TAG_PIPELINE_STAGES, json.dumps(summary)[:_MAX_TAG])
        self.client.log_dict(run_id, summary, "pipeline_stages.json")
        self.client.set_terminated(run_id, status=status)

    # -- stages ----------------------------------------------------------------------------------
    def start_stage(
        self, parent_run_id: str, stage: str, key: str, section: Any
    ) -> tuple[str, Path]:
        """Create a stage's child run; return its id and the folder the stage writes to."""
        from mlflow.entities import Param, RunTag

        tags = {TAG_ROLE: "stage", TAG_STAGE: stage, TAG_CACHE_KEY: key}
        tags[TAG_PARENT_RUN_ID] = parent_run_id
        run = self.client.create_run(self.experiment_id, tags=tags, run_name=stage)
        run_id = str(run.info.run_id)
        flat = flatten_config(section) if isinstance(section, dict) else {"value": str(section)}
        params, key_tags = [], []
        for original, value in flat.items():
            safe = sanitize_key(original)
            params.append(Param(safe, value))
            if safe != original:
                key_tags.append(RunTag(TAG_KEY_PREFIX + safe, original))
        for start in range(0, len(params), 100):
            self.client.log_batch(run_id, params=params[start : start + 100])
        if key_tags:
            self.client.log_batch(run_id, tags=key_tags)
        local = local_path_of(run.info.artifact_uri)
        output_dir = local / OUTPUTS if local else self._scratch_dir() / f"{stage}-{run_id}"
        output_dir.mkdir(parents=True, exist_ok=True)
        return run_id, output_dir

    def finish_stage(
        self, run_id: str, stage: str, key: str, value: Any, output_dir: Path
    ) -> StageOutput:
        """Store the return value and outputs, log metrics, mark the run FINISHED.

        A value cloudpickle cannot store still flows downstream in this run, but the run is not
        reusable (no ``hydraflow.result`` tag) and a warning is printed.
        """
        run = self.client.get_run(run_id)
        local = local_path_of(run.info.artifact_uri)
        if local is None and any(output_dir.iterdir()):
            self.client.log_artifacts(run_id, str(output_dir), OUTPUTS)
        stored = self._store_value(run_id, local, value)
        if not stored:
            print(
                f"[pipeline] {stage}: warning: its return value cannot be pickled, so this stage "
                "will not be reused from the cache",
                flush=True,
            )
        metrics = return_value_metrics(value)
        if metrics:
            for name, number in metrics.items():
                self.client.log_metric(run_id, name, number)
        if stored:
            self.client.set_tag(run_id, TAG_RESULT, "pickle")
        self.client.set_terminated(run_id, status="FINISHED")
        return StageOutput(stage, value, output_dir, _files(output_dir), run_id, key, cached=False)

    def tag_task(self, run_id: str, task: Any) -> None:
        """Tag a stage's run with the Flow task that runs it."""
        from mlflow.entities import RunTag

        tags = {
            TAG_TASK_ID: task.task_id,
            TAG_PROVIDER: task.provider.name,
            TAG_INSTANCE_TYPE: task.instance_type,
            TAG_COST_PER_HOUR: task.cost_per_hour,
        }
        self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def fail_stage(self, run_id: str, error: BaseException) -> None:
        """Mark a stage's run FAILED with the error as a tag and its traceback as ``error.txt``."""
        text = "".join(traceback.format_exception(error))
        self.client.set_tag(run_id, TAG_ERROR, f"{type(error).__name__}: {error}"[:_MAX_TAG])
        self.client.log_text(run_id, text, "error.txt")
        status = "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED"
        self.client.set_terminated(run_id, status=status)

    def find_cached(self, stage: str, key: str) -> StageOutput | None:
        """The stored output of the newest FINISHED run with this cache key, or ``None``."""
        run = find_finished_run(self.client, self.experiment_id, key)
        return self.load_output(run, stage, key) if run is not None else None

    def load_output(self, run: Run, stage: str, key: str) -> StageOutput | None:
        """Read a finished run's return value and outputs back (``None`` if they are gone)."""
        run_id = str(run.info.run_id)
        local = local_path_of(run.info.artifact_uri)
        try:
            if local is not None:
                result_path = local / RESULT_FILE
                output_dir = local / OUTPUTS
            else:
                dst = self._scratch_dir() / f"{stage}-{run_id}"
                result_path = Path(self.client.download_artifacts(run_id, RESULT_FILE, str(dst)))
                output_dir = dst / OUTPUTS
                if any(a.path == OUTPUTS for a in self.client.list_artifacts(run_id)):
                    self.client.download_artifacts(run_id, OUTPUTS, str(dst))
            value = cloudpickle.loads(result_path.read_bytes())
        except (OSError, EOFError, ValueError, ImportError, AttributeError) as error:
            print(f"[pipeline] {stage}: stored result of run {run_id} unreadable ({error})")
            return None
        output_dir.mkdir(parents=True, exist_ok=True)
        return StageOutput(stage, value, output_dir, _files(output_dir), run_id, key, cached=True)

    def _store_value(self, run_id: str, local: Path | None, value: Any) -> bool:
        try:
            blob = cloudpickle.dumps(value)
        except Exception:
            return False
        try:
            text: str | None = json.dumps(value, indent=2)
        except (TypeError, ValueError):
            text = None
        if local is not None:
            local.mkdir(parents=True, exist_ok=True)
            (local / RESULT_FILE).write_bytes(blob)
            if text is not None:
                (local / "result.json").write_text(text)
            return True
        staging = Path(tempfile.mkdtemp(prefix="hydraflow-result-"))
        (staging / RESULT_FILE).write_bytes(blob)
        if text is not None:
            (staging / "result.json").write_text(text)
        self.client.log_artifacts(run_id, str(staging))
        return True

    def _scratch_dir(self) -> Path:
        if self._scratch is None:
            self._scratch = Path(tempfile.mkdtemp(prefix="hydraflow-pipeline-"))
        return self._scratch


def _files(folder: Path) -> dict[str, Path]:
    return {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*")) if p.is_file()}
