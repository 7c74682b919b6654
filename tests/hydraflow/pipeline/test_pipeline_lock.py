"""Two processes computing the same stage: one computes, the other waits and reuses its record."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from pipeline_helpers import gated_pipeline, stage_runs, store

from hydraflow.pipeline import PipelineResult

__all__ = ["store"]

HERE = Path(__file__).parent


def _wait_for(condition: object, what: str) -> None:
    deadline = time.monotonic() + 120  # a guard against hanging, not an assertion on time
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


def _started(uri: str) -> bool:
    exists = MlflowClient(uri).get_experiment_by_name("pipeline") is not None
    return exists and len(stage_runs(uri, stage="gated")) == 1


@pytest.mark.timeout(300)
def test_second_process_waits_for_the_first_and_reuses_its_run(
    store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gate = tmp_path / "gate"
    code = f"import sys; sys.path.insert(0, {str(HERE)!r})\n"
    code += "from pipeline_helpers import gated_pipeline; gated_pipeline().run({})\n"
    env = {**os.environ, "PIPELINE_GATE": str(gate)}
    other = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=tmp_path)
    try:
        _wait_for(lambda: _started(store), "the other process's run")
        results: list[PipelineResult] = []
        here = threading.Thread(target=lambda: results.append(gated_pipeline().run({})))
        here.start()
        printed = ""

        def saw_waiting() -> bool:
            nonlocal printed
            printed += capsys.readouterr().out
            return "gated: waiting: another process is computing the same cache key" in printed

        _wait_for(saw_waiting, "this process to wait on the lock")
        gate.write_text("open")
        assert other.wait(timeout=120) == 0
        here.join(timeout=120)
    finally:
        if other.poll() is None:
            other.kill()
            other.wait()

    (run,) = stage_runs(store, stage="gated")  # computed once, by the other process
    assert run.info.status == "FINISHED"
    (result,) = results
    assert result.skipped == ["gated"]
    assert result["gated"] == f"computed by {other.pid}"
    assert result.outputs["gated"].run_id == run.info.run_id
