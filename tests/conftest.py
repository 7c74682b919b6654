"""Fixtures shared by every test package (keep this file minimal).

``sshd``: a real OpenSSH server on loopback for the session (see ``tests/sshd.py``); other test
modules import its helpers with ``from sshd import SSHServer`` (``tests/`` is on ``sys.path``).
"""

from sshd import sshd

__all__ = ["sshd"]
