"""Provider registry: names → classes, imported lazily so unused providers cost nothing."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from flow_backend.errors import ProviderError, ValidationError
from flow_backend.providers.base import Provider, VolumeInfo

if TYPE_CHECKING:
    from flow_backend.settings import FlowSettings

__all__ = ["PROVIDERS", "Provider", "VolumeInfo", "get_provider", "provider_class"]

#: ``name → "module:Class"`` of every provider.
PROVIDERS: dict[str, str] = {
    "local": "flow_backend.providers.local:LocalProvider",
    "mithril": "flow_backend.providers.mithril:MithrilProvider",
    "ssh": "flow_backend.providers.ssh:SSHProvider",
    "slurm": "flow_backend.providers.slurm:SlurmProvider",
}


def provider_class(name: str) -> type[Provider]:
    """The provider class registered under ``name``.

    Raises:
        ValidationError: ``name`` is not a registered provider.
    """
    key = name.strip().lower()
    if key not in PROVIDERS:
        raise ValidationError(
            f"Unknown provider {name!r}",
            field="provider",
            value=name,
            hint=f"Valid providers: {', '.join(PROVIDERS)}",
        )
    module_name, _, class_name = PROVIDERS[key].partition(":")
    try:
        module = importlib.import_module(module_name)
        cls: type[Provider] = getattr(module, class_name)
    except (ImportError, AttributeError) as error:
        raise ProviderError(
            f"Provider {key!r} cannot be loaded: {error}",
            field="provider",
            value=name,
            hint="Reinstall hydraflow, or use another provider",
        ) from error
    return cls


def get_provider(name: str, settings: FlowSettings) -> Provider:
    """Construct the provider ``name`` with ``settings``."""
    return provider_class(name)(settings)
