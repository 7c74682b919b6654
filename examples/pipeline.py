"""A three-stage pipeline, data → train → evaluate, in seconds on a CPU.

    python examples/pipeline.py                            # runs the three stages
    python examples/pipeline.py                            # skips all three: cache hits
    python examples/pipeline.py model_training.epochs=80   # re-runs training and evaluation only
    python examples/pipeline.py pipeline.force=[model_training]
    python examples/pipeline.py -m model_training.lr=0.05,0.2   # the data stage runs once

Runs are recorded in ``$MLFLOW_TRACKING_URI`` (default ``./mlflow.db``), experiment ``pipeline``.
"""

from __future__ import annotations

from typing import Any

import hydra
import numpy as np
from omegaconf import DictConfig

from hydraflow.pipeline import Pipeline, Stage, StageContext


def prepare_data(cfg: DictConfig, ctx: StageContext) -> dict[str, int]:
    """Make a noisy linear-regression dataset and save its train/test split as ``data.npz``."""
    rng = np.random.default_rng(cfg.seed)
    x = rng.normal(size=(cfg.samples, cfg.features))
    y = x @ rng.normal(size=cfg.features) + cfg.noise * rng.normal(size=cfg.samples)
    split = int(cfg.samples * cfg.train_fraction)
    train, test = slice(None, split), slice(split, None)
    np.savez(
        ctx.output_dir / "data.npz",
        x_train=x[train],
        y_train=y[train],
        x_test=x[test],
        y_test=y[test],
    )
    return {"train_size": split, "test_size": cfg.samples - split}


def train_model(cfg: DictConfig, data_preparation: dict[str, int], ctx: StageContext) -> dict:
    """Fit the weights by gradient descent; save them as ``weights.npy``."""
    data = np.load(ctx.inputs["data_preparation"].files["data.npz"])
    x, y = data["x_train"], data["y_train"]
    weights = np.zeros(x.shape[1])
    for epoch in range(cfg.epochs):
        residual = x @ weights - y
        weights -= cfg.lr * 2.0 * x.T @ residual / len(y)
        if epoch % 10 == 0:
            ctx.log_metric("train_mse", float(np.mean(residual**2)), step=epoch)
    np.save(ctx.output_dir / "weights.npy", weights)
    mse = float(np.mean((x @ weights - y) ** 2))
    return {"train_mse": mse, "train_size": data_preparation["train_size"]}


def evaluate_model(cfg: DictConfig, model_training: dict, ctx: StageContext) -> dict[str, float]:
    """Score the saved weights on the test split."""
    weights = np.load(ctx.inputs["model_training"].files["weights.npy"])
    data = np.load(ctx.inputs["data_preparation"].files["data.npz"])
    test_mse = float(np.mean((data["x_test"] @ weights - data["y_test"]) ** 2))
    return {"test_mse": test_mse, "passed": float(test_mse < cfg.threshold)}


data_stage = Stage("data_preparation", prepare_data)
train_stage = Stage("model_training", train_model)
eval_stage = Stage("model_evaluation", evaluate_model)
pipeline = Pipeline(
    [
        data_stage,
        train_stage.depends_on(data_stage),
        eval_stage.depends_on(train_stage, data_stage),
    ]
)


@hydra.main(config_path="conf", config_name="pipeline", version_base="1.3")
def main(cfg: DictConfig) -> float:
    """Run the pipeline and return the test error (what a sweep optimises)."""
    how: Any = cfg.pipeline
    results = pipeline.run(
        cfg,
        force=how.force,
        only=how.only,
        until=how.until,
        from_=how.from_,
        max_workers=how.max_workers,
    )
    print("results:", dict(results))
    return float(results["model_evaluation"]["test_mse"]) if "model_evaluation" in results else 0.0


if __name__ == "__main__":
    main()
