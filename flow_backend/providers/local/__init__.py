"""The local provider: tasks run as process trees on this machine (see ``provider.py``)."""

from flow_backend.providers.local.provider import LocalProvider

__all__ = ["LocalProvider"]
