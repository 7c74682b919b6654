"""A Hydra app that logs with hydraflow.tracking inside the job's run (MLflow callback on)."""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from hydraflow.tracking import log_artifact, log_metric, log_metrics, set_tag


@hydra.main(version_base="1.3", config_path=".", config_name="track")
def main(cfg: DictConfig) -> float:
    for value in (3.0, 2.0, 1.0):
        log_metric("loss", value * cfg.scale)  # no step given: 0, 1, 2
    log_metrics({"acc": 0.5 * cfg.scale})
    set_tag("note", f"scale={cfg.scale}")
    Path("weights.bin").write_bytes(b"w")
    log_artifact("weights.bin", "Trained weights")
    return float(cfg.scale)


if __name__ == "__main__":
    main()
