"""Read runs from an MLflow tracking server through its REST API (``runs/search``, paged)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from hydraflow.core.errors import ExperimentNotFoundError, HydraflowError, StoreNotFoundError
from hydraflow.core.loaders.tables import StoreTables, check_experiments, check_run_ids
from hydraflow.core.store import Store

_PAGE = 1000


def request(client: httpx.Client, method: str, path: str, **arguments: Any) -> dict[str, Any]:
    """One call to the tracking server's REST API, its JSON answer; one clear error otherwise.

    Raises:
        StoreNotFoundError: The server does not answer.
        HydraflowError: The server refused the request.
    """
    try:
        response = client.request(method, path, **arguments)
    except httpx.HTTPError as exc:
        raise StoreNotFoundError(
            f"tracking server {client.base_url} does not answer ({exc}). Is it running?"
        ) from exc
    if response.status_code >= 400:
        raise HydraflowError(
            f"tracking server {client.base_url} refused {path}: HTTP {response.status_code} "
            f"{response.text[:300]}"
        )
    data: dict[str, Any] = response.json()
    return data


def _post(client: httpx.Client, path: str, body: dict[str, Any]) -> dict[str, Any]:
    return request(client, "POST", path, json=body)


def _experiments(client: httpx.Client) -> dict[str, str]:
    found: dict[str, str] = {}
    token: str | None = None
    while True:
        body: dict[str, Any] = {"max_results": 1000, "view_type": "ACTIVE_ONLY"}
        if token:
            body["page_token"] = token
        data = _post(client, "/api/2.0/mlflow/experiments/search", body)
        for exp in data.get("experiments", []):
            found[exp["name"]] = exp["experiment_id"]
        token = data.get("next_page_token")
        if not token:
            return found


def load(
    store: Store, experiments: Sequence[str] | None, run_ids: Sequence[str] | None
) -> StoreTables:
    """Page through ``runs/search`` for the chosen experiments (all active ones when ``None``)."""
    runs: list[dict[str, Any]] = []
    params: list[tuple[str, str, str]] = []
    metrics: list[tuple[str, str, float]] = []
    tags: list[tuple[str, str, str]] = []
    with httpx.Client(base_url=store.location, timeout=60.0) as client:
        known = _experiments(client)
        check_experiments(experiments, known, store.uri)
        names = {v: k for k, v in known.items()}
        ids = [known[n] for n in experiments] if experiments is not None else list(known.values())
        if not ids:
            raise ExperimentNotFoundError(f"no experiments in {store.uri}.")
        token: str | None = None
        while True:
            body: dict[str, Any] = {
                "experiment_ids": ids,
                "max_results": _PAGE,
                "run_view_type": "ACTIVE_ONLY",
            }
            if run_ids is not None:
                quoted = ", ".join(f"'{r}'" for r in run_ids)
                body["filter"] = f"attributes.run_id IN ({quoted})"
            if token:
                body["page_token"] = token
            data = _post(client, "/api/2.0/mlflow/runs/search", body)
            for run in data.get("runs", []):
                info, payload = run["info"], run.get("data", {})
                run_id = info["run_id"]
                runs.append(
                    {
                        "run_id": run_id,
                        "run_name": info.get("run_name"),
                        "experiment_id": info["experiment_id"],
                        "experiment": names.get(info["experiment_id"]),
                        "status": info.get("status"),
                        "start_time": int(info["start_time"]) if "start_time" in info else None,
                        "end_time": int(info["end_time"]) if "end_time" in info else None,
                        "artifact_uri": info.get("artifact_uri"),
                    }
                )
                params.extend(
                    (run_id, p["key"], p.get("value", "")) for p in payload.get("params", [])
                )
                tags.extend((run_id, t["key"], t.get("value", "")) for t in payload.get("tags", []))
                metrics.extend(
                    (run_id, m["key"], float(m["value"])) for m in payload.get("metrics", [])
                )
            token = data.get("next_page_token")
            if not token:
                break
    check_run_ids(run_ids, (r["run_id"] for r in runs), store.uri)
    return StoreTables.from_rows(runs, params, metrics, tags)
