"""The demo app: a simulated training run that finishes in a second on a CPU.

    python examples/train.py -m hydra/launcher=flow lr=1e-3,1e-4

It pretends to train a 10-class classifier, so its numbers look like real ones: the loss starts at
ln(10) ≈ 2.30 (chance) and falls towards a floor, accuracy goes from 0.1 to at most ~0.95. Every
config key matters:

- ``model.type`` sets the floor and the speed (``cnn`` and ``transformer`` reach a lower loss than
  ``mlp``, more slowly); ``model.hidden`` (the layer widths) lowers the floor a little and widens
  the gap between training and validation loss;
- ``lr`` sets the speed: 1e-2 learns in a few epochs, 1e-5 barely moves; above ~3e-2 training
  gets unstable (a higher, noisier floor);
- ``batch_size``: smaller batches take more steps per epoch (faster) with more noise;
- ``epochs`` is the number of logged steps, and ``seed`` the noise and a run's luck (its floor and
  speed vary a little from seed to seed).

Each epoch logs ``loss``, ``val_loss`` and ``accuracy`` (validation) with ``mlflow.log_metric`` into
the job's run (the MLflow callback started it); the returned dict becomes the run's final metrics.
"""

from __future__ import annotations

import math
import random

import hydra
import mlflow
from omegaconf import DictConfig

CHANCE_LOSS = math.log(10)  # cross-entropy of a uniform guess over 10 classes
MODELS = {  # model.type: (lowest reachable loss, learning speed relative to an MLP)
    "mlp": (0.45, 1.0),
    "cnn": (0.22, 0.8),
    "lstm": (0.32, 0.6),
    "transformer": (0.16, 0.45),
}


def accuracy_of(loss: float) -> float:
    """Validation accuracy for a loss: 0.1 at chance, rising as the loss falls."""
    return 0.1 + 0.85 * max(0.0, 1 - loss / CHANCE_LOSS) ** 0.8


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def train(cfg: DictConfig) -> dict[str, float]:
    """Simulate ``cfg.epochs`` epochs; returns the final loss and accuracy."""
    if cfg.model.type not in MODELS:
        raise ValueError(f"model.type={cfg.model.type!r}: the demo knows {', '.join(MODELS)}.")
    floor, speed = MODELS[cfg.model.type]
    lr, batch = float(cfg.lr), int(cfg.batch_size)
    width = sum(int(h) for h in cfg.model.hidden) or 1
    floor *= (128 / width) ** 0.1
    unstable = max(0.0, lr - 0.03) * 10  # too large a step: a higher, noisier floor
    floor = min(CHANCE_LOSS, floor + unstable)
    rate = 1 - math.exp(-lr * 400 * speed * math.sqrt(32 / batch))
    noise = 0.015 * math.sqrt(32 / batch) * (1 + 4 * unstable)
    gap = 0.04 + 0.08 * width / 512  # validation loss above training loss
    rng = random.Random(cfg.seed)
    floor *= 1 + 0.08 * rng.gauss(0, 1)  # runs differ by seed, as real ones do
    rate = min(0.99, rate * (1 + 0.15 * rng.gauss(0, 1)))
    loss = val_loss = CHANCE_LOSS
    for epoch in range(int(cfg.epochs)):
        progress = (1 - rate) ** (epoch + 1)
        loss = max(0.01, floor + (CHANCE_LOSS - floor) * progress + rng.gauss(0, noise))
        val_loss = loss + gap * (1 - progress) + abs(rng.gauss(0, noise))
        mlflow.log_metric("loss", loss, step=epoch)
        mlflow.log_metric("val_loss", val_loss, step=epoch)
        mlflow.log_metric("accuracy", accuracy_of(val_loss), step=epoch)
    accuracy = accuracy_of(val_loss)
    print(f"lr={cfg.lr} model={cfg.model.type}: loss={loss:.4f} accuracy={accuracy:.4f}")
    return {"final_loss": loss, "final_accuracy": accuracy}


if __name__ == "__main__":
    train()
