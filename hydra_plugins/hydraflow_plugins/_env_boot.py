"""On the instance: make (once) the job environment, then run the job runner in it.

``<python> .../_env_boot.py '<plan json>' -- <args of python>`` is the command of a remote task when
the launcher prepares the environment (:mod:`hydra_plugins.hydraflow_plugins._remote_env` writes the
plan). It runs on the instance's own (maybe bare) interpreter, so it imports the standard library
only. The virtualenv lives in ``<env_dir>/<key>``; the first task to get the lock
``<env_dir>/<key>.lock`` builds it and writes ``<env_dir>/<key>/.hydraflow-env-complete`` last; every
later task (and worker) of any sweep with the same key finds the marker and builds nothing. Then the
shipped project code (``code`` in the plan, relative to the uploaded code) goes first on
``PYTHONPATH`` and the task becomes the venv's Python with the given arguments.

Exit status 3 with one ``hydraflow: ...`` line on stderr when the environment cannot be made.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

COMPLETE_MARK = ".hydraflow-env-complete"
FAILED_EXIT = 3
FAILED_PREFIX = "hydraflow: could not prepare the job environment"


class EnvFailed(Exception):
    """The environment could not be made; the message says which key to fix."""


def _run(
    command: list[str] | str,
    what: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> None:
    """Run ``command`` (a string: with the shell); its output goes to the task log."""
    try:
        done = subprocess.run(
            command, cwd=cwd, shell=isinstance(command, str), check=False, env=env
        )
    except OSError as error:  # e.g. no such interpreter
        raise EnvFailed(f"{what} could not start: {error}") from None
    if done.returncode != 0:
        raise EnvFailed(f"{what} failed with exit code {done.returncode} (its output is above)")


def build(plan: dict[str, Any], venv: Path, code_dir: Path) -> None:
    """Create ``venv`` (uv when on PATH, else ``python -m venv`` + pip) with the plan's packages."""
    python = str(venv / "bin" / "python")
    uv = shutil.which("uv")
    base = plan["base_python"]
    requirements = list(plan["requirements"])
    making = f"making a venv from hydra.launcher.python={base!r}"
    installing = "installing the launching side's packages " + " ".join(requirements)
    if plan.get("requirements_file"):
        requirements += ["-r", str(code_dir / plan["requirements_file"])]
        installing += f" and hydra.launcher.requirements={plan['requirements_file']!r}"
    if uv:
        # the host's trust store, as pip uses (uv's own roots refuse a company proxy's CA)
        uv_env = {"UV_NATIVE_TLS": "1", **os.environ}
        _run([uv, "venv", "-q", "--seed", "-p", base, str(venv)], f"{making} (uv venv)", env=uv_env)
        if requirements:
            install = [uv, "pip", "install", "-q", "-p", python, *requirements]
            _run(install, installing, env=uv_env)
    else:
        _run([base, "-m", "venv", str(venv)], f"{making} ({base} -m venv)")
        if requirements:
            _run([python, "-m", "pip", "install", "-q", *requirements], installing)
    for command in plan["setup"]:
        activate = f". {shlex.quote(str(venv / 'bin' / 'activate'))} && {command}"
        try:
            _run(activate, f"the hydra.launcher.setup command {command!r}", code_dir)
        except EnvFailed as error:
            raise EnvFailed(f"{error}; fix or remove it in hydra.launcher.setup") from None


def prepare(plan: dict[str, Any], code_dir: Path) -> Path:
    """The venv of ``plan``: found complete, or built under the lock; its folder."""
    import fcntl

    root = Path(os.path.expanduser(plan["env_dir"]))
    venv = root / plan["key"]
    if (venv / COMPLETE_MARK).is_file():
        return venv
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f"{plan['key']}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when this process ends, even when killed
        if (venv / COMPLETE_MARK).is_file():
            print(f"hydraflow: job environment {venv} ready (made by another task)", flush=True)
            return venv
        print(f"hydraflow: preparing the job environment {venv}", flush=True)
        started = time.monotonic()
        shutil.rmtree(venv, ignore_errors=True)  # a build that died half-way
        try:
            build(plan, venv, code_dir)
        except EnvFailed:
            shutil.rmtree(venv, ignore_errors=True)
            raise
        (venv / COMPLETE_MARK).write_text(json.dumps(plan, indent=1))
        seconds = time.monotonic() - started
        print(f"hydraflow: prepared the job environment {venv} in {seconds:.1f} s", flush=True)
    return venv


def main(argv: list[str]) -> NoReturn:
    """``argv``: the plan (JSON), ``--``, then the arguments of the venv's Python."""
    plan = json.loads(argv[0])
    rest = argv[2:]
    code_dir = Path.cwd()
    try:
        venv = prepare(plan, code_dir)
    except EnvFailed as error:
        print(
            f"{FAILED_PREFIX} ({error}). "
            "Set hydra.launcher.env_setup=false to run on the instance's own Python.",
            file=sys.stderr,
            flush=True,
        )
        sys.exit(FAILED_EXIT)
    shipped = str(code_dir / plan["code"])
    path = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = shipped + (os.pathsep + path if path else "")
    python = str(venv / "bin" / "python")
    os.execv(python, [python, *rest])


if __name__ == "__main__":
    main(sys.argv[1:])
