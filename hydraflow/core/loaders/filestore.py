"""Read an MLflow file store (``mlruns/``) by scanning its directory tree."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

from hydraflow.core.loaders.tables import StoreTables, check_experiments, check_run_ids
from hydraflow.core.store import Store

_STATUS = {1: "RUNNING", 2: "SCHEDULED", 3: "FINISHED", 4: "FAILED", 5: "KILLED"}
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_meta(path: Path) -> dict[str, Any]:
    """A ``meta.yaml`` as a dict (empty when absent or unreadable)."""
    try:
        data = yaml.load(path.read_text(), Loader=_LOADER)
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def _files(folder: Path) -> Iterator[tuple[str, Path]]:
    """(key, file) pairs under ``folder``; keys with ``/`` are nested directories."""
    if not folder.is_dir():
        return
    for file in folder.rglob("*"):
        if file.is_file():
            yield file.relative_to(folder).as_posix(), file


def _latest_metric(file: Path) -> float | None:
    best: tuple[int, int, float] | None = None
    for line in file.read_text().splitlines():
        parts = line.split()
        if len(parts) < 2:
            continue
        entry = (int(parts[2]) if len(parts) > 2 else 0, int(parts[0]), float(parts[1]))
        if best is None or entry > best:
            best = entry
    return best[2] if best else None


def experiment_dirs(root: Path) -> dict[str, tuple[str, Path]]:
    """Active experiments of the store: ``{name: (experiment_id, directory)}``."""
    found: dict[str, tuple[str, Path]] = {}
    for folder in sorted(root.iterdir()):
        meta = read_meta(folder / "meta.yaml") if folder.is_dir() else {}
        if meta.get("name") is not None and meta.get("lifecycle_stage", "active") == "active":
            found[str(meta["name"])] = (str(meta.get("experiment_id", folder.name)), folder)
    return found


def load(
    store: Store, experiments: Sequence[str] | None, run_ids: Sequence[str] | None
) -> StoreTables:
    """Scan the chosen experiments' run folders; params, tags and metrics are one file per key."""
    known = experiment_dirs(store.path)
    check_experiments(experiments, known, store.uri)
    chosen = {n: v for n, v in known.items() if experiments is None or n in experiments}
    wanted = set(run_ids) if run_ids is not None else None
    runs: list[dict[str, Any]] = []
    params: list[tuple[str, str, str]] = []
    metrics: list[tuple[str, str, float]] = []
    tags: list[tuple[str, str, str]] = []
    for name, (experiment_id, folder) in chosen.items():
        for run_dir in sorted(folder.iterdir()):
            if wanted is not None and run_dir.name not in wanted:
                continue
            meta = read_meta(run_dir / "meta.yaml") if run_dir.is_dir() else {}
            if not meta.get("run_id") or meta.get("lifecycle_stage", "active") != "active":
                continue
            run_id = str(meta["run_id"])
            status = meta.get("status")
            runs.append(
                {
                    "run_id": run_id,
                    "run_name": meta.get("run_name"),
                    "experiment_id": experiment_id,
                    "experiment": name,
                    "status": _STATUS.get(status, str(status))
                    if isinstance(status, int)
                    else status,
                    "start_time": meta.get("start_time"),
                    "end_time": meta.get("end_time"),
                    "artifact_uri": meta.get("artifact_uri"),
                }
            )
            params.extend((run_id, k, f.read_text()) for k, f in _files(run_dir / "params"))
            tags.extend((run_id, k, f.read_text()) for k, f in _files(run_dir / "tags"))
            for key, file in _files(run_dir / "metrics"):
                value = _latest_metric(file)
                if value is not None:
                    metrics.append((run_id, key, value))
    check_run_ids(run_ids, (r["run_id"] for r in runs), store.uri)
    return StoreTables.from_rows(runs, params, metrics, tags)
