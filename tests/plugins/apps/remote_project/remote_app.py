"""A small training-like Hydra app for sweeps on remote providers (copied to a test's launch dir).

It imports a helper module of its own project (so the uploaded code must be on the path), logs a
metric history to the active MLflow run, writes a file into its output folder, and sleeps
``sleep`` seconds (long enough for a test to preempt or interrupt it) — or, with ``gate`` (a
path), until that file exists, at most ``sleep`` seconds: a test holds a first attempt until it is
preempted and lets the retry through at once. ``lr=0`` kills its own process on the spot
(``os._exit``), as a crash in native code or the out-of-memory killer would.
"""

import os
import time

import hydra
import mlflow
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig
from scoring import score


@hydra.main(version_base="1.3", config_path="conf", config_name="remote")
def train(cfg: DictConfig) -> dict[str, float | str]:
    """Log ``score`` per step; return the last one and where the job ran."""
    print(f"job starts: lr={cfg.lr}", flush=True)
    if cfg.lr == 0:
        print("about to take the whole process down", flush=True)
        os._exit(3)
    if cfg.lr <= 0:
        raise ValueError(f"lr must be positive, got {cfg.lr}")
    value = 0.0
    for step in range(3):
        value = score(cfg.lr, step)
        mlflow.log_metric("score", value, step=step)
    output_dir = HydraConfig.get().runtime.output_dir
    with open(os.path.join(output_dir, "model.txt"), "w") as stream:
        stream.write(f"lr={cfg.lr}\n")
    deadline = time.monotonic() + float(cfg.sleep)
    if cfg.gate is None:
        time.sleep(float(cfg.sleep))
    while cfg.gate is not None and not os.path.exists(cfg.gate) and time.monotonic() < deadline:
        time.sleep(0.05)
    return {"score": value, "cwd": os.getcwd(), "original_cwd": hydra.utils.get_original_cwd()}


if __name__ == "__main__":
    train()
