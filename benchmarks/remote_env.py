"""How long the remote job environment takes to make on a bare interpreter: uv beside venv + pip.

Run: ``python benchmarks/remote_env.py``. Builds the venv a remote sweep would get (the launching
side's pinned hydra-core, omegaconf, cloudpickle, mlflow-skinny, sqlalchemy, alembic and Hydra plugin
distributions) twice from one bare ``python -m venv --without-pip`` interpreter, once with ``uv`` on
PATH and once without (``python -m venv`` + pip), through the instance-side code the tasks run
(:func:`hydra_plugins.hydraflow_plugins._env_boot.prepare`); then once more to show the reuse. Prints
the seconds of each and the ratio. Package caches are whatever this machine has (uv's and pip's).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from hydra_plugins.hydraflow_plugins._env_boot import prepare
from hydra_plugins.hydraflow_plugins._remote_env import env_key, runner_requirements


def _timed_build(plan: dict[str, Any], code_dir: Path, path: str) -> float:
    saved = os.environ["PATH"]
    os.environ["PATH"] = path
    try:
        start = time.perf_counter()
        prepare(plan, code_dir)
        return time.perf_counter() - start
    finally:
        os.environ["PATH"] = saved


def main() -> None:
    uv = shutil.which("uv")
    if uv is None:
        sys.exit("uv is not installed here (pip install uv)")
    with tempfile.TemporaryDirectory(prefix="hf-remote-env-") as tmp:
        work = Path(tmp)
        bare = work / "bare"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
        requirements = runner_requirements()
        system_path = "/usr/local/bin:/usr/bin:/bin"
        seconds: dict[str, float] = {}
        for tool, path in (("uv", f"{Path(uv).parent}:{system_path}"), ("venv+pip", system_path)):
            base = str(bare / "bin" / "python")
            plan = {
                "key": f"{tool}-{env_key(base, requirements, [], '')}",
                "base_python": base,
                "requirements": requirements,
                "setup": [],
                "requirements_file": None,
                "env_dir": str(work / "envs"),
                "code": ".",
            }
            seconds[tool] = _timed_build(plan, work, path)
            reuse = _timed_build(plan, work, path)
            print(
                f"{tool:9s} build {seconds[tool]:6.1f} s   reuse {reuse * 1000:6.2f} ms (marker found)"
            )
        print(f"packages: {' '.join(requirements)}")
        print(f"venv+pip / uv: {seconds['venv+pip'] / seconds['uv']:.1f}x")


if __name__ == "__main__":
    main()
