"""Hooks other installed packages add to ``flow`` commands, found through entry points.

``flow_backend`` imports none of them: a package registers a callable under an entry-point group
in its ``pyproject.toml``, and the command looks the group up when it runs. Groups:

- ``flow_backend.sweep_cancelled``: ``hook(sweep_id: str) -> Iterable[str]``, called by
  ``flow cancel --sweep SWEEP_ID`` after the sweep's tasks were stopped; it yields lines to print
  (hydraflow ends the sweep's MLflow runs KILLED there).
"""

from __future__ import annotations

from importlib.metadata import entry_points

__all__ = ["SWEEP_CANCELLED", "run_sweep_cancelled"]

SWEEP_CANCELLED = "flow_backend.sweep_cancelled"


def run_sweep_cancelled(sweep_id: str) -> list[str]:
    """Call every ``flow_backend.sweep_cancelled`` hook; a failing hook becomes one line."""
    lines: list[str] = []
    for entry in entry_points(group=SWEEP_CANCELLED):
        try:
            lines.extend(entry.load()(sweep_id))
        except Exception as error:
            lines.append(f"flow: the {entry.name} hook ({entry.value}) failed: {error}")
    return lines
