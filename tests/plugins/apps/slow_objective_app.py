"""A Hydra app for ``flow_optuna``: ``(x - 2) ** 2`` after ``seconds`` of sleep.

Each job first leaves ``started-<job num>`` in the launch dir, so a test knows it is running.
"""

import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_original_cwd
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path=None, config_name=None)
def objective(cfg: DictConfig) -> float:
    """Sleep ``cfg.seconds``, then return the squared distance of ``x`` from 2."""
    Path(get_original_cwd(), f"started-{HydraConfig.get().job.num}").touch()
    time.sleep(float(cfg.seconds))
    return float((cfg.x - 2) ** 2)


if __name__ == "__main__":
    objective()
