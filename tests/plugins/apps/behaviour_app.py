"""A Hydra app whose jobs behave as told.

``mode=ok|raise|raise_odd|kill|kill_once|exit|unpicklable|sleep|global|secret``.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig

ConfigStore.instance().store(
    name="behaviour", node={"mode": "ok", "value": 1, "seconds": 0.0, "marker": "marker"}
)


class OddError(Exception):
    """An exception that cannot be pickled (it holds a lock)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.lock = threading.Lock()


# what hydraflow's modules once handed each other through the environment (now the spec, the
# order, the job runner's arguments)
INTERNAL_ENV = {
    "HYDRAFLOW_SWEEP_ID",
    "HYDRAFLOW_PARENT_RUN_ID",
    "HYDRAFLOW_HOLD_SECONDS",
    "HYDRAFLOW_TASK_NAME",
    "HYDRAFLOW_PROVIDER",
    "HYDRAFLOW_INSTANCE_TYPE",
    "HYDRAFLOW_COST_PER_HOUR",
    "HYDRAFLOW_JOB_ATTEMPT",
}
EARLIER_JOBS: list[int] = []  # module state: jobs on one warm worker share it (documented)
LEAK_HANDLER = "behaviour-leak"  # the name of the logging handlers a ``global`` job adds


def _has_leak_handler(logger: logging.Logger) -> bool:
    return any(handler.name == LEAK_HANDLER for handler in logger.handlers)


@hydra.main(version_base="1.3", config_path=None, config_name="behaviour")
def main(cfg: DictConfig) -> Any:
    """Do what ``cfg.mode`` says."""
    print(f"job starts: mode={cfg.mode} value={cfg.value}", flush=True)
    if cfg.mode == "raise":
        raise ValueError(f"boom from value {cfg.value}")
    if cfg.mode == "raise_odd":
        raise OddError(f"odd failure {cfg.value}")
    if cfg.mode == "kill" or (cfg.mode == "kill_once" and not Path(cfg.marker).exists()):
        Path(cfg.marker).touch()
        print("about to die by SIGKILL", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    if cfg.mode == "exit":
        print("about to exit with status 3", flush=True)
        os._exit(3)
    if cfg.mode == "global":  # report what earlier jobs left, then leave the same for later ones
        seen = {
            "env_seen": "BEHAVIOUR_APP_LEAK" in os.environ,
            "argv_seen": "leaked-arg" in sys.argv,
            "cwd_ok": os.getcwd() == hydra.utils.get_original_cwd(),
            "earlier_jobs_here": len(EARLIER_JOBS),
            "hydraflow_internal_env": sorted(k for k in os.environ if k in INTERNAL_ENV),
            "root_handler_seen": _has_leak_handler(logging.getLogger()),
            "named_handler_seen": _has_leak_handler(logging.getLogger("behaviour_app.leak")),
        }
        for logger in (logging.getLogger(), logging.getLogger("behaviour_app.leak")):
            handler = logging.StreamHandler(sys.stderr)
            handler.name = LEAK_HANDLER
            logger.addHandler(handler)
        os.environ["BEHAVIOUR_APP_LEAK"] = "1"
        sys.argv.append("leaked-arg")
        os.chdir("/")
        EARLIER_JOBS.append(int(cfg.value))
        return seen
    if cfg.mode == "secret":  # what hydra.launcher.env gave the job
        return {"key": os.environ.get("BEHAVIOUR_API_KEY")}
    if cfg.mode == "unpicklable":
        return threading.Lock()
    if cfg.mode == "sleep":
        print(f"value {cfg.value} sleeps {cfg.seconds} s", flush=True)
        Path(f"started-{cfg.value}").touch()  # in the launch dir, after the line: tests wait for it
        time.sleep(float(cfg.seconds))
    return {"value": float(cfg.value), "double": 2.0 * float(cfg.value)}


if __name__ == "__main__":
    main()
