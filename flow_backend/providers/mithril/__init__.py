"""The Mithril cloud provider: a task is a spot bid; execution, logs and results over SSH."""

from flow_backend.providers.mithril.provider import MithrilProvider

__all__ = ["MithrilProvider"]
