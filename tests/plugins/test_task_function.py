"""The task function travels by reference (the user's real file) and falls back to its pickle."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = """
import hydra

MARK = []

@hydra.main(version_base=None)
def main(cfg):
    raise ValueError("boom in the user's file")

if __name__ == "__main__":
    MARK.append("main block ran")
    print("MAIN BLOCK RAN")
"""

# Runs in a fresh process: pickles the function as the launcher does, then loads it as a task does.
PROBE = """
import os, pickle, sys, traceback
import cloudpickle
from pathlib import Path
from hydra_plugins.hydraflow_plugins._task_function import load_task_function, reference_to

script, task_cwd, edit = sys.argv[1], sys.argv[2], sys.argv[3]
namespace = {"__name__": "__main__", "__file__": script}
sys.modules["__main__"].__dict__.update(namespace)
code = compile(Path(script).read_text(), script, "exec")
exec(code, sys.modules["__main__"].__dict__)
function = sys.modules["__main__"].main.__wrapped__
reference = pickle.loads(pickle.dumps(reference_to(function, os.getcwd())))
by_value = cloudpickle.dumps(function)
if edit == "edit":
    Path(script).write_text(Path(script).read_text() + "\\n# edited after the launch\\n")
os.chdir(task_cwd)
loaded = load_task_function(reference, by_value)
print("REFERENCE", reference.path if reference else None)
print("MODULE", loaded.__module__)
try:
    loaded({})
except ValueError:
    print(traceback.format_exc())
"""


def _probe(tmp_path: Path, *, task_cwd: Path | None = None, edit: bool = False) -> str:
    project = tmp_path / "project"
    project.mkdir(exist_ok=True)
    script = project / "train.py"
    script.write_text(textwrap.dedent(SCRIPT))
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            PROBE,
            str(script),
            str(task_cwd or project),
            "edit" if edit else "-",
        ],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_the_task_runs_the_users_file_so_the_traceback_shows_file_and_line(tmp_path: Path) -> None:
    out = _probe(tmp_path)
    # relative to the launch folder, so a remote task finds its uploaded copy
    assert "REFERENCE train.py" in out
    assert "MODULE __hydraflow_main__" in out
    assert 'train.py", line 8, in main' in out
    assert 'raise ValueError("boom in the user\'s file")' in out
    assert "<dynamic-code>" not in out
    # the launcher's run of the script printed it; the task side's import did not run that block
    assert out.count("MAIN BLOCK RAN") == 1


def test_an_uploaded_copy_in_another_folder_is_found_relative_to_the_task(tmp_path: Path) -> None:
    copy = tmp_path / "uploaded"
    copy.mkdir()
    (copy / "train.py").write_text(textwrap.dedent(SCRIPT))
    out = _probe(tmp_path, task_cwd=copy)
    assert f'{copy / "train.py"}", line 8, in main' in out


def test_a_script_edited_after_the_launch_runs_as_launched(tmp_path: Path) -> None:
    out = _probe(tmp_path, edit=True)
    assert "MODULE __main__" in out  # the by-value pickle: the code as it was at launch
    assert "ValueError" in out


def test_a_missing_script_falls_back_to_the_pickled_function(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = _probe(tmp_path, task_cwd=elsewhere)
    assert "MODULE __main__" in out
