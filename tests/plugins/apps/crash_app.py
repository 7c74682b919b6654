"""A Hydra app for the crash tests: jobs with ``value >= hold_from`` log a metric every 0.1 s while
the file ``hold`` exists in the launch dir (they write their pid to ``started-<value>`` first)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import hydra
import mlflow
from hydra.core.config_store import ConfigStore
from hydra.utils import get_original_cwd
from omegaconf import DictConfig

ConfigStore.instance().store(name="crash", node={"value": 1, "hold_from": 3})


@hydra.main(version_base="1.3", config_path=None, config_name="crash")
def main(cfg: DictConfig) -> Any:
    """Log ``progress``; hold (logging) while ``hold`` exists, if this job is one that holds."""
    home = Path(get_original_cwd())
    mlflow.log_metric("progress", 0.0, step=0)
    if cfg.value >= cfg.hold_from and (home / "hold").exists():
        (home / f"started-{cfg.value}").write_text(str(os.getpid()))
        deadline = time.monotonic() + 300
        step = 1
        while (home / "hold").exists() and time.monotonic() < deadline:
            mlflow.log_metric("progress", float(step), step=step)
            step += 1
            time.sleep(0.1)
    return {"value": float(cfg.value)}


if __name__ == "__main__":
    main()
