"""Fixtures shared by every test package (keep this file minimal).

``sshd``: a real OpenSSH server on loopback for the session (see ``tests/sshd.py``); other test
modules import its helpers with ``from sshd import SSHServer``.
"""

try:  # tests/ is on sys.path (rootdir-style conftest without __init__.py)
    from sshd import sshd
except ImportError:  # tests/ became a package
    from tests.sshd import sshd  # type: ignore[no-redef]

__all__ = ["sshd"]
