"""The demo app: a tiny fake training loop that runs in seconds on a CPU.

    python examples/train.py -m hydra/launcher=flow lr=1e-3,1e-4

Each epoch logs ``loss`` and ``accuracy`` with ``mlflow.log_metric`` (into the job's run, which the
MLflow callback started); the return value (a dict of numbers) becomes the run's final metrics.
"""

from __future__ import annotations

import math
import random

import hydra
import mlflow
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def train(cfg: DictConfig) -> dict[str, float]:
    """Pretend to train: the loss falls faster with a larger learning rate."""
    rng = random.Random(cfg.seed)
    rate = min(0.9, float(cfg.lr) * 500)
    loss = 2.0
    accuracy = 0.1
    for epoch in range(int(cfg.epochs)):
        loss = loss * (1 - rate) + 0.05 * rng.random()
        accuracy = 1 - math.exp(-3 * (2.0 - loss))
        mlflow.log_metric("loss", loss, step=epoch)
        mlflow.log_metric("accuracy", accuracy, step=epoch)
    print(f"lr={cfg.lr} model={cfg.model.type}: loss={loss:.4f} accuracy={accuracy:.4f}")
    return {"final_loss": loss, "final_accuracy": accuracy}


if __name__ == "__main__":
    train()
