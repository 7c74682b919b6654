"""Load a config file or a Hydra config directory: composed, overridden, resolved, validated.

```python
from hydraflow.config import load_config
cfg = load_config("config.yaml")                                  # one file
cfg = load_config("conf/", overrides=["training.batch_size=64"])  # a directory with defaults lists
cfg = load_config("config.yaml", schema=TrainConfig)              # dataclass or pydantic model
cfg.training.batch_size
```
"""

from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from hydraflow.core.errors import ConfigError

__all__ = ["ConfigError", "load_config"]

_PRIMARY_NAMES = ("config.yaml", "config.yml")


def _primary_file(path: Path, config_name: str | None) -> Path:
    if not path.exists():
        raise ConfigError(
            f"config {str(path)!r} does not exist. Pass a YAML file or a config directory."
        )
    if path.is_file():
        return path
    if config_name is not None:
        for candidate in (path / config_name, path / f"{config_name}.yaml"):
            if candidate.is_file():
                return candidate
        raise ConfigError(f"config directory {str(path)!r} has no primary config {config_name!r}.")
    for name in _PRIMARY_NAMES:
        if (path / name).is_file():
            return path / name
    found = sorted(p.name for p in path.glob("*.y*ml"))
    if len(found) == 1:
        return path / found[0]
    raise ConfigError(
        f"config directory {str(path)!r} has no config.yaml"
        + (f" and several candidates ({', '.join(found)}); pass config_name=..." if found else "")
        + "."
    )


def _check_yaml(file: Path) -> None:
    """A clear message (with line and column) for a file that is not YAML or not a mapping."""
    try:
        data = yaml.safe_load(file.read_text())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(
            f"config file {str(file)!r} is not valid YAML{where}: {exc.problem}."
        ) from None
    except (yaml.YAMLError, OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {str(file)!r} cannot be read: {exc}") from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(
            f"config file {str(file)!r} must hold a mapping of keys at the top level, "
            f"not a {type(data).__name__}."
        )


def _compose(file: Path, overrides: Sequence[str]) -> DictConfig:
    """Compose with Hydra (defaults lists, overrides), keeping any running Hydra app's state.

    All of Hydra's singletons are restored afterwards, not only GlobalHydra: ``initialize`` also sets
    the version base (a singleton), and a launcher pickles that state into every job it starts.
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.singleton import Singleton

    saved = Singleton.get_state()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(file.parent.resolve()), version_base=None):
            cfg = compose(config_name=file.stem, overrides=list(overrides))
    except Exception as exc:  # Hydra's override parser also raises bare AssertionErrors
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else "malformed override"
        with_overrides = f" with overrides {list(overrides)}" if overrides else ""
        raise ConfigError(f"cannot compose {str(file)!r}{with_overrides}: {detail}") from None
    finally:
        Singleton.set_state(saved)
    OmegaConf.set_struct(cfg, False)
    return cfg


def _field_type(schema: Any, dotted: str) -> str:
    """The annotation of ``a.b.c`` in a dataclass schema, as text (``"int"``), or ``"?"``."""
    current: Any = schema
    for part in dotted.split("."):
        if not (isinstance(current, type) and dataclasses.is_dataclass(current)):
            return "?"
        hints = typing.get_type_hints(current)
        if part not in hints:
            return "?"
        current = hints[part]
    return getattr(current, "__name__", None) or str(current).replace("typing.", "")


def _validate_dataclass(cfg: DictConfig, schema: type, file: Path) -> DictConfig:
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), cfg)
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or "?"
        value = OmegaConf.select(cfg, key, default=None) if key != "?" else None
        if "not in" in str(exc) or type(exc).__name__ == "ConfigKeyError":
            raise ConfigError(
                f"config {str(file)!r}: key {key!r} is not in schema {schema.__name__}."
            ) from None
        raise ConfigError(
            f"config {str(file)!r}: key {key!r} should be {_field_type(schema, key)} "
            f"(schema {schema.__name__}), got {value!r}."
        ) from None
    missing = sorted(OmegaConf.missing_keys(merged))
    if missing:
        detail = ", ".join(f"{k!r} ({_field_type(schema, k)})" for k in missing)
        raise ConfigError(
            f"config {str(file)!r}: missing required key{'s' if len(missing) > 1 else ''} {detail} "
            f"of schema {schema.__name__}."
        )
    assert isinstance(merged, DictConfig)
    return merged


def _validate_pydantic(cfg: DictConfig, schema: Any, file: Path) -> DictConfig:
    from pydantic import ValidationError

    try:
        model = schema.model_validate(OmegaConf.to_container(cfg, resolve=True))
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            key = ".".join(str(part) for part in error["loc"]) or "<root>"
            got = "" if error["type"] == "missing" else f", got {error.get('input')!r}"
            problems.append(f"key {key!r}: {error['msg'].lower()}{got}")
        raise ConfigError(
            f"config {str(file)!r} does not match schema {schema.__name__}: "
            + "; ".join(problems)
            + "."
        ) from None
    return OmegaConf.create(model.model_dump(mode="json"))


def load_config(
    path_or_dir: str | os.PathLike[str],
    overrides: Sequence[str] | None = None,
    schema: Any = None,
    config_name: str | None = None,
) -> DictConfig:
    """Load a YAML config file, or compose a config directory with Hydra.

    Args:
        path_or_dir: A YAML file, or a directory whose primary config is ``config.yaml`` (or the only
            YAML file, or ``config_name``); its ``defaults`` list is composed by Hydra.
        overrides: Hydra override strings, e.g. ``["training.batch_size=64", "model=cnn"]``.
        schema: A dataclass or pydantic model the config must match; values are converted to its
            types (e.g. ``"64"`` stays an error for ``int`` in a dataclass, but pydantic coerces it).
        config_name: The primary config of a directory when it is not ``config.yaml``.

    Returns:
        The resolved config (interpolations replaced), with attribute access.

    Raises:
        ConfigError: Missing or malformed file, bad override, unresolvable interpolation, or a
            schema mismatch (naming the key path and the expected type).
    """
    file = _primary_file(Path(path_or_dir).expanduser(), config_name)
    _check_yaml(file)
    cfg = _compose(file, overrides or [])
    try:
        OmegaConf.resolve(cfg)
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", "?")
        detail = str(exc).strip().splitlines()[0]
        raise ConfigError(
            f"config {str(file)!r}: cannot resolve the interpolation at key {key!r}: {detail}"
        ) from None
    if schema is None:
        return cfg
    if hasattr(schema, "model_validate"):
        return _validate_pydantic(cfg, schema, file)
    if isinstance(schema, type) and dataclasses.is_dataclass(schema):
        return _validate_dataclass(cfg, schema, file)
    raise ConfigError(f"schema must be a dataclass or a pydantic model class, not {schema!r}.")
