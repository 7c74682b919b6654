"""Task side of a stage run as a Flow task: ``python -m hydraflow.pipeline._stage_runner SPEC``.

Loads the cloudpickled call, runs it, and writes ``result.pkl`` — or ``error.pkl`` and ``error.txt``
— beside the spec. Exit code 0 on success, 1 when the stage failed. ``MLFLOW_RUN_ID`` in the
task's environment makes ``mlflow.log_metric`` in the stage log into the stage's run, without
importing MLflow here when the stage does not use it.
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path

import cloudpickle

from hydraflow.pipeline.errors import StageResultError
from hydraflow.pipeline.task_stage import ERROR_FILE, RESULT_FILE, TRACEBACK_FILE


def _write_atomically(path: Path, data: bytes) -> None:
    partial = path.with_suffix(".partial")
    partial.write_bytes(data)
    partial.replace(path)


def _write_error(folder: Path, error: BaseException) -> None:
    (folder / TRACEBACK_FILE).write_text("".join(traceback.format_exception(error)))
    try:
        blob = cloudpickle.dumps(error)
        cloudpickle.loads(blob)
    except Exception:
        blob = cloudpickle.dumps(RuntimeError(f"{type(error).__name__}: {error}"))
    _write_atomically(folder / ERROR_FILE, blob)


def main(argv: list[str] | None = None) -> int:
    """Run the stage call in ``argv[0]`` and write its outcome beside it."""
    args = sys.argv[1:] if argv is None else argv
    spec_path = Path(args[0])
    folder = spec_path.parent
    spec = cloudpickle.loads(spec_path.read_bytes())
    try:
        value = spec["fn"](**spec["kwargs"])
    except BaseException as error:
        _write_error(folder, error)
        return 1
    try:
        blob = cloudpickle.dumps(value)
    except Exception as error:
        _write_error(
            folder,
            StageResultError(
                f"Stage {spec['stage']!r} runs as a Flow task and returned a value that cannot be "
                f"pickled ({type(value).__name__}: {type(error).__name__}: {error}); return "
                "picklable values, and write anything else to ctx.output_dir"
            ),
        )
        return 1
    _write_atomically(folder / RESULT_FILE, blob)
    return 0


if __name__ == "__main__":
    sys.exit(main())
