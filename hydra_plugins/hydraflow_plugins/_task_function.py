"""How the user's task function travels to the task: by reference when it can, by value otherwise.

A Hydra app's task function is defined in the user's script, which runs as ``__main__``; cloudpickle
pickles such a function *by value*, and since cloudpickle 3.1.3 a function pickled by value has the
file name ``"<dynamic-code>"``, so a failed job's traceback would no longer name the user's file or
show the failing line. So the launcher also sends a :class:`TaskReference` (the script's path, the
function's name and a hash of the file), and the task side imports the script as a module — under a
name of its own, so its ``if __name__ == "__main__":`` block does not run — and takes the function
from it. The real file is then what Python runs and what tracebacks show, whatever cloudpickle does;
importing is also cheaper than unpickling code, and a warm worker does it once.

The by-value pickle stays the fallback, used when the script cannot be found on the task side (it is
outside the uploaded folder), was edited after the launch (its hash differs: the job runs the code
as launched), or does not define the function under that name.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

SCRIPT_MODULE = "__hydraflow_main__"
"""The module name the user's script is imported under on the task side (as multiprocessing's
``__mp_main__``): not ``__main__``, so the script's own ``if __name__ == "__main__":`` does not run."""


@dataclass(frozen=True)
class TaskReference:
    """Where the task function can be imported from on the task side.

    Attributes:
        qualname: The function's qualified name in its module.
        module: The importable module name when the script ran as ``python -m pkg.mod`` (or the
            function lives in an ordinary module), else ``None``.
        path: The script's path, relative to the launcher's working folder when it lies inside it
            (remote tasks find the uploaded copy there), else absolute.
        digest: SHA-256 of the script when it was launched.
        first_line: The function's first line, to check that the name still means this function.
    """

    qualname: str
    module: str | None
    path: str
    digest: str
    first_line: int


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def reference_to(function: Any, cwd: str) -> TaskReference | None:
    """The reference for ``function`` as seen from ``cwd``, or ``None`` when there is none."""
    code = getattr(function, "__code__", None)
    qualname = getattr(function, "__qualname__", "")
    if code is None or not qualname or "<locals>" in qualname:
        return None
    path = Path(code.co_filename)
    if not path.is_file():
        return None
    module_name = getattr(function, "__module__", None)
    if module_name == "__main__":
        spec = getattr(sys.modules.get("__main__"), "__spec__", None)
        module_name = spec.name if spec is not None and spec.name != "__main__" else None
    resolved = path.resolve()
    root = Path(cwd).resolve()
    shown = str(resolved.relative_to(root)) if resolved.is_relative_to(root) else str(resolved)
    return TaskReference(qualname, module_name, shown, _digest(resolved), code.co_firstlineno)


def _import_script(path: Path) -> ModuleType:
    if SCRIPT_MODULE in sys.modules:
        return sys.modules[SCRIPT_MODULE]
    spec = importlib.util.spec_from_file_location(SCRIPT_MODULE, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    if str(path.parent) not in sys.path:  # as `python script.py` does: its folder's modules import
        sys.path.insert(0, str(path.parent))
    sys.modules[SCRIPT_MODULE] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[SCRIPT_MODULE]
        raise
    return module


def _by_name(module: ModuleType, qualname: str) -> Any:
    value: Any = module
    for part in qualname.split("."):
        value = getattr(value, part)
    return inspect.unwrap(value)  # hydra.main's wrapper -> the user's function


def load_task_function(reference: TaskReference | None, by_value: bytes) -> Any:
    """The task function: imported through ``reference`` when it matches, else unpickled."""
    if reference is not None:
        function = _imported(reference)
        if function is not None:
            return function
    import cloudpickle

    return cloudpickle.loads(by_value)


def _imported(reference: TaskReference) -> Any:
    path = Path(reference.path)
    if not path.is_absolute():
        path = Path(os.getcwd(), path)
    try:
        if not path.is_file() or _digest(path) != reference.digest:
            return None
        if reference.module is not None:
            module = importlib.import_module(reference.module)
        else:
            module = _import_script(path)
            # Objects of the script (a returned dataclass, an exception) must reach the launcher,
            # which cannot import this module name: pickle them by value, as before.
            import cloudpickle

            cloudpickle.register_pickle_by_value(module)
        function = _by_name(module, reference.qualname)
    except (Exception, SystemExit):
        return None
    code = getattr(function, "__code__", None)
    if code is None or code.co_firstlineno != reference.first_line:
        return None
    return function
