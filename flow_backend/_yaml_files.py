"""Reading a YAML file that must hold a mapping (config file, task file) with one clear error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from flow_backend.errors import ValidationError

__all__ = ["read_yaml_mapping"]


def read_yaml_mapping(
    path: Path,
    *,
    label: str,
    field: str,
    holds: str,
    read_hint: str,
    syntax_hint: str,
    mapping_hint: str,
) -> dict[str, Any] | None:
    """The mapping in ``path``, or ``None`` when the file is empty.

    Args:
        path: The file.
        label: What the file is, capitalised, for messages (``"Config file"``).
        field: The field the errors name.
        holds: What the mapping holds (``"settings"``).
        read_hint: What to do when the file cannot be read.
        syntax_hint: What to do when it is not YAML.
        mapping_hint: What to do when it holds something other than a mapping.

    Raises:
        ValidationError: The file cannot be read, is not YAML, or is not a mapping.
    """
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        first_line = str(error).splitlines()[0] if str(error) else "syntax error"
        mark = getattr(error, "problem_mark", None)
        if mark is not None:
            first_line += f" at line {mark.line + 1}, column {mark.column + 1}"
        raise ValidationError(
            f"{label} {str(path)!r} is not valid YAML ({first_line})",
            field=field,
            value=str(path),
            hint=syntax_hint,
        ) from None
    except OSError as error:
        raise ValidationError(
            f"Cannot read {label.lower()} {str(path)!r}: {error.strerror}",
            field=field,
            value=str(path),
            hint=read_hint,
        ) from None
    if data is None:
        return None
    if not isinstance(data, dict):
        raise ValidationError(
            f"{label} {str(path)!r} must hold a mapping of {holds}, not {type(data).__name__}",
            field=field,
            value=str(path),
            hint=mapping_hint,
        )
    return data
