"""A Hydra app whose job returns a number to minimise: ``(x - 2) ** 2``."""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path=None, config_name=None)
def objective(cfg: DictConfig) -> float:
    """The squared distance of ``x`` from 2."""
    return float((cfg.x - 2) ** 2)


if __name__ == "__main__":
    objective()
