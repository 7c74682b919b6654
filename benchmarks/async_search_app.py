"""The objective of ``benchmarks/async_search.py``: a known minimum and runtimes of 1 to 6 s.

``value = (x - 1)² + (y + 2)²`` (best 0 at x=1, y=-2). The runtime is a deterministic function of
the params (a hash of x and y mapped to 1–6 s), spent in ``steps`` equal parts; after each part the
job logs ``val_loss`` (the value, inflated early on) when ``log_steps`` is set, and rewrites its
timing record ``<timing_dir>/<job num>.json`` (start, last heartbeat), so a job stopped by pruning
still leaves how long it ran.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig


def runtime(x: float, y: float) -> float:
    """Seconds a trial runs: 1 to 6, a fixed function of its params."""
    frac = (math.sin(x * 12.9898 + y * 78.233) * 43758.5453) % 1.0
    return 1.0 + 5.0 * frac


def value(x: float, y: float) -> float:
    """The objective (minimum 0 at x=1, y=-2)."""
    return (x - 1.0) ** 2 + (y + 2.0) ** 2


@hydra.main(version_base="1.3", config_path=None, config_name=None)
def objective(cfg: DictConfig) -> float:
    """Run for ``runtime(x, y)`` seconds, logging ``val_loss`` per step; return the value."""
    x, y = float(cfg.x), float(cfg.y)
    seconds, result = runtime(x, y), value(x, y)
    steps = max(1, round(seconds / float(cfg.step_seconds)))
    record = Path(str(cfg.timing_dir)) / f"{HydraConfig.get().job.num}.json"
    start = time.time()
    for step in range(steps):
        time.sleep(seconds / steps)
        if cfg.log_steps:
            from hydraflow.tracking import log_metric

            log_metric("val_loss", result * (1.0 + 2.0 / (step + 1)), step=step)
        record.write_text(json.dumps({"start": start, "end": time.time(), "value": result}))
    return result


if __name__ == "__main__":
    objective()
