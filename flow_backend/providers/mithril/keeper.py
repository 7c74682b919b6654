"""The keeper of a detached Mithril task: what lets ``flow run`` (without ``--wait``) return.

A Mithril task needs its submitting side twice: to hand the instance its environment and code
once sshd answers (the plan lives only in memory: its ``env`` may hold secrets), and to cancel the
bid once the command ended (a spot instance bills until its bid is cancelled). ``flow run``
without ``--wait`` therefore starts a keeper: a process in a session of its own that outlives
the shell, receives the settings and the plan on its stdin (never in argv, environment or a
file), answers ``ready`` on stdout, then polls the task until it ends — starting the command,
bringing the log home, cancelling the bid — and exits. Its own messages go to
``FLOW_HOME/mithril/tasks/<bid>/keeper.log`` (no secret is ever logged).

The trade-off (README, "Running on Mithril"): nothing on the instance holds the API key, but the
keeper runs on this machine; if the machine sleeps or dies before the command ends, the bid
keeps billing until ``flow cancel`` (the node gives up waiting for its environment after an
hour; a started command runs to its end, then its instance idles, billing).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

from flow_backend.errors import FlowError
from flow_backend.providers.mithril.nodes import LaunchPlan
from flow_backend.settings import FlowSettings

__all__ = ["main", "start_keeper"]

logger = logging.getLogger(__name__)

READY = "ready"


def start_keeper(settings: FlowSettings, plan: LaunchPlan, log_path: Path) -> int:
    """Start the keeper of ``plan``'s task; returns its pid once it has taken the task over.

    Raises:
        FlowError: The keeper did not start.
    """
    key = settings.mithril_api_key.get_secret_value() if settings.mithril_api_key else None
    payload = {
        "settings": {
            **settings.model_dump(mode="json", exclude={"mithril_api_key"}),
            "mithril_api_key": key,
        },
        "plan": {**dataclasses.asdict(plan), "started": sorted(plan.started)},
    }
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "flow_backend.providers.mithril.keeper"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            start_new_session=True,  # outlives the shell and its Ctrl-C
            env={k: v for k, v in os.environ.items() if k not in ("MITHRIL_API_KEY",)},
        )
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(json.dumps(payload).encode())
    process.stdin.close()
    answer = process.stdout.readline().decode().strip()
    process.stdout.close()
    if answer != READY:
        raise FlowError(
            f"the keeper of task {plan.task_id} did not start ({answer or 'no answer'})",
            hint=f"See {log_path}; cancel the task with `flow cancel {plan.task_id}`",
        )
    return process.pid


def _keep(stdin: IO[bytes], stdout: IO[str]) -> int:
    from flow_backend.providers.mithril.provider import MithrilProvider

    payload: dict[str, Any] = json.loads(stdin.read())
    settings = FlowSettings(**payload["settings"])
    plan_fields = payload["plan"]
    plan = LaunchPlan(**{**plan_fields, "started": set(plan_fields["started"])})
    provider = MithrilProvider(settings)
    provider.adopt(plan)
    print(READY, file=stdout, flush=True)
    stdout.close()
    try:
        while True:
            try:
                record = provider.get(plan.task_id)
            except FlowError as error:  # a network blip, the API down for a while: next poll
                logger.warning("keeper of %s: %s", plan.task_id, error)
            else:
                if record.status.is_terminal:
                    logger.info("task %s ended %s", plan.task_id, record.status.value)
                    return 0
            time.sleep(settings.poll_interval)
    finally:
        provider.close()


def main() -> int:
    """Run a keeper (``python -m flow_backend.providers.mithril.keeper``, started by flow run)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    return _keep(sys.stdin.buffer, sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
