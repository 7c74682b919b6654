"""Starting a local task as a fork of this process: ``python -m module args`` without a new interpreter.

A task whose command is this interpreter running a module (``TaskConfig.fork``) can start as a copy
of the submitting process, which has imported much of what the module needs already: the start
costs milliseconds instead of an interpreter's start and imports (a second or more for hydra and
mlflow). The process tree is the one :func:`~flow_backend.providers.local.processes.launch` makes,
in Python: a *keeper* in a new session (the wrapper's part: output to the task's log, the exit code
appended to the task's record) and under it the command's process, which resets what the submitting
process had set for itself (signal handlers, ``atexit`` handlers, standard streams), sets the task's
environment and working folder, reseeds the random generators a copy would share, freezes what it
inherited out of its garbage collections (``gc.freeze``, Python's advice for a fork without an exec:
a collection then neither walks nor copies the submitting process's objects; ~8% less CPU per no-op
Hydra job), and runs the module as ``__main__``.

What a fork cannot give, and when :func:`fork_argv` refuses (a new interpreter starts instead): an
interpreter other than this one, environment variables that act when an interpreter or a library
starts (``PYTHON*``, ``LD_*``, ``OMP_NUM_THREADS``... : the caller passes only the task's own
variables), a time limit (``timeout`` wraps a new process), several ranks, GPUs (CUDA must not be
initialised before a fork), a process that has initialised CUDA itself, and any OS but Linux.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import os
import runpy
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

__all__ = ["ForkedTask", "fork_argv", "start_forked"]


class ForkedTask:
    """A task process forked from this one, with what the provider uses of ``Popen``."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        """The exit code once it has ended (negative: the signal that ended it), else ``None``."""
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped by someone else: like Popen, call it 0
                self.returncode = 0
            else:
                if pid:
                    self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the end (``subprocess.TimeoutExpired`` after ``timeout`` seconds)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = 0.001
        while self.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout or 0.0)
            time.sleep(pause)
            pause = min(pause * 2, 0.05)
        assert self.returncode is not None
        return self.returncode


def fork_argv(command: Sequence[str]) -> tuple[str, list[str]] | None:
    """``(module, args)`` of a command this process can fork: ``[sys.executable, "-m", module,
    *args]`` on Linux (macOS's system frameworks do not survive a fork without an exec); ``None``
    for anything else."""
    if not sys.platform.startswith("linux") or _cuda_initialised():
        return None
    if len(command) >= 3 and command[0] == sys.executable and command[1] == "-m":
        return command[2], list(command[3:])
    return None


def _cuda_initialised() -> bool:
    """Whether this process has initialised CUDA (through PyTorch): a fork could not use it."""
    cuda = getattr(sys.modules.get("torch"), "cuda", None)
    try:
        return bool(cuda is not None and cuda.is_initialized())
    except Exception:
        return True  # cannot tell: do not fork


def start_forked(
    module: str,
    args: list[str],
    *,
    record_file: Path,
    log_file: Path,
    rank: int,
    cwd: str,
    env: dict[str, str],
) -> ForkedTask:
    """Start ``python -m module args`` as a fork of this process, as one task rank (see above)."""
    for stream in (sys.stdout, sys.stderr):  # what is buffered here must not be written twice
        with contextlib.suppress(Exception):
            stream.flush()
    pid = os.fork()
    if pid:
        return ForkedTask(pid)
    code = 1
    try:  # the keeper: never returns
        os.setsid()
        _default_signals()
        _redirect(log_file)
        os.chdir(cwd)
        child = os.fork()
        if child == 0:
            _run_module(module, args, env)
        _, status = os.waitpid(child, 0)
        code = os.waitstatus_to_exitcode(status)
        code = 128 - code if code < 0 else code  # as a shell reports a killed command
    except BaseException:
        _print_exception()
    finally:
        try:
            with open(record_file, "a") as record:
                record.write(f'{{"exit":[{rank},{code}]}}\n')
        finally:
            os._exit(code)


def _run_module(module: str, args: list[str], env: dict[str, str]) -> None:
    """The task's process: run ``module`` as ``__main__`` and exit with its status (never returns)."""
    code = 1
    try:
        atexit._clear()  # the submitting process's handlers are not this task's
        gc.freeze()  # what it inherited lives on: its collections skip it (no pages copied)
        os.environ.update(env)
        _fresh_streams()
        _reseed()
        sys.argv = [module, *args]
        sys.modules.pop(module, None)  # run afresh as __main__ (as `-m` does), no stale copy
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as stop:
        code = _exit_code(stop.code)
    except BaseException:
        _print_exception()
    finally:
        try:
            atexit._run_exitfuncs()
            for stream in (sys.stdout, sys.stderr):
                stream.flush()
        finally:
            os._exit(code)


def _default_signals() -> None:
    """Signal handlers as a new interpreter has them (SIGINT raises KeyboardInterrupt)."""
    with contextlib.suppress(ValueError):  # not the main thread: none was set
        signal.set_wakeup_fd(-1)
    for number in range(1, signal.NSIG):
        try:
            handler = signal.getsignal(number)
        except (OSError, ValueError):
            continue
        if callable(handler) and handler is not signal.default_int_handler:
            signal.signal(number, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _redirect(log_file: Path) -> None:
    """stdin from /dev/null, stdout and stderr appended to the task's log (as the wrapper does)."""
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    log = os.open(log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)


def _fresh_streams() -> None:
    """New ``sys.stdin/stdout/stderr`` on fds 0-2: the copies' buffers and locks were the
    submitting process's (a thread of it may have held one at the fork)."""
    streams = {
        "stdin": open(0, closefd=False, encoding="utf-8"),  # noqa: SIM115
        "stdout": open(1, "w", closefd=False, encoding="utf-8"),  # noqa: SIM115
        "stderr": open(  # noqa: SIM115
            2, "w", buffering=1, closefd=False, encoding="utf-8", errors="backslashreplace"
        ),
    }
    replaced = {}
    for name, stream in streams.items():
        for attribute in (name, f"__{name}__"):
            replaced[id(getattr(sys, attribute))] = stream
            setattr(sys, attribute, stream)
    logging = sys.modules.get("logging")
    if logging is not None:  # handlers on the old streams would flush them (and their locks)
        loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
        for logger in loggers:
            for handler in getattr(logger, "handlers", ()):
                old = getattr(handler, "stream", None)
                if isinstance(handler, logging.StreamHandler) and id(old) in replaced:
                    handler.stream = replaced[id(old)]


def _reseed() -> None:
    """Copies of one process share their random generators' state: give this one its own
    (``random`` reseeds itself at a fork; NumPy's and PyTorch's global ones, if loaded, here)."""
    numpy_random = sys.modules.get("numpy.random")
    if numpy_random is not None:
        numpy_random.seed()
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "seed"):
        torch.seed()


def _exit_code(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _print_exception() -> None:
    try:
        traceback.print_exc()
        sys.stderr.flush()
    except Exception:
        pass
