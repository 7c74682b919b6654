"""The runs every analysis test reads: what :func:`populate` writes into each kind of store."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

from hydraflow.conventions import (
    TAG_KEY_PREFIX,
    TAG_PARENT_RUN_ID,
    TAG_ROLE,
    TAG_SWEEP_ID,
    sanitize_key,
)

BASE_MS = 1_700_000_000_000
ODD_KEY = "opt@lr"  # MLflow refuses '@' in a key: stored sanitised, original in a tag
CONFIG_YAML = "model:\n  type: lstm\nlr: 0.1\n"


@dataclass
class StoreData:
    """What :func:`populate` wrote, for tests to compare against."""

    uri: str
    kind: str
    root: Path
    job_ids: list[str] = field(default_factory=list)
    sweep_run_id: str = ""
    deleted_id: str = ""
    other_id: str = ""
    failed_id: str = ""


JOBS = [  # model.type, lr, dataset.name
    ("lstm", 0.1, "mnist"),
    ("lstm", 0.01, "cifar"),
    ("cnn", 0.1, "mnist"),
    ("cnn", 0.001, "cifar"),
    ("lstm", 0.001, "mnist"),
    ("cnn", 0.01, "cifar"),
]


def populate(client: MlflowClient, data: StoreData, artifact_root: str | None) -> StoreData:
    """Experiment ``train``: a sweep parent, 6 jobs (one FAILED, late keys, a NaN), one deleted run;
    experiment ``other``: one run."""
    exp = client.create_experiment(
        "train", artifact_location=f"{artifact_root}/train" if artifact_root else None
    )
    parent = client.create_run(
        exp, start_time=BASE_MS, run_name="sweep", tags={TAG_ROLE: "sweep", TAG_SWEEP_ID: "S1"}
    )
    data.sweep_run_id = parent.info.run_id
    client.set_terminated(parent.info.run_id, "FINISHED", end_time=BASE_MS + 99_000)
    for i, (model, lr, dataset) in enumerate(JOBS):
        start = BASE_MS + (i + 1) * 1000
        run = client.create_run(exp, start_time=start, run_name=f"job-{i}")
        rid = run.info.run_id
        params = [
            Param("model.type", model),
            Param("lr", str(lr)),
            Param("dataset.name", dataset),
            Param("layers", "[64, 64]"),
            Param("use_amp", str(i % 2 == 0)),
            Param("batch", str(16 * (i + 1))),
            Param("mixed", "auto" if i == 3 else str(i)),
            Param("maybe", "None" if i == 0 else str(i)),
        ]
        if i >= 4:
            params.append(Param("extra", f"late-{i}"))
        tags = [
            RunTag(TAG_SWEEP_ID, "S1"),
            RunTag(TAG_ROLE, "job"),
            RunTag(TAG_PARENT_RUN_ID, parent.info.run_id),
            RunTag("hydraflow.job_num", str(i)),
        ]
        if i == 0:
            safe = sanitize_key(ODD_KEY)
            params.append(Param(safe, "0.5"))
            tags.append(RunTag(f"{TAG_KEY_PREFIX}{safe}", ODD_KEY))
        metrics = [Metric("loss", 1.0 / (i + 1) + (2 - s) * 0.1, start + s, s) for s in range(3)]
        metrics.append(Metric("accuracy", 0.5 + i / 20, start, 0))
        if i == 2:
            metrics.append(Metric("val", float("nan"), start, 0))
        client.log_batch(rid, metrics=metrics, params=params, tags=tags)
        if i == 0:
            client.log_text(rid, CONFIG_YAML, ".hydra/config.yaml")
        status = "FAILED" if i == 5 else "FINISHED"
        client.set_terminated(rid, status, end_time=start + 500)
        data.job_ids.append(rid)
    data.failed_id = data.job_ids[5]
    gone = client.create_run(exp, start_time=BASE_MS + 50_000, run_name="deleted")
    client.delete_run(gone.info.run_id)
    data.deleted_id = gone.info.run_id
    other = client.create_experiment(
        "other", artifact_location=f"{artifact_root}/other" if artifact_root else None
    )
    run = client.create_run(other, start_time=BASE_MS, run_name="o")
    client.log_param(run.info.run_id, "lr", "1")
    client.set_terminated(run.info.run_id)
    data.other_id = run.info.run_id
    return data
