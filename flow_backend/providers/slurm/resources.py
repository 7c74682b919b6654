"""Our instance types as SLURM resources: the ``sbatch`` options of one node of a task.

The ``slurm_instance_types`` setting maps type names (short or full, e.g. ``a100`` or
``a100-80gb.sxm.1x``) to ``sbatch`` options::

    slurm_instance_types:
      a100: --gres=gpu:a100:1 --cpus-per-task=8 --mem=64G
      4xa100: --gres=gpu:a100:4 --cpus-per-task=32 --mem=256G
      cpu: --cpus-per-task=2

With a mapping, a type it lacks is an error. Without one, GPUs are asked by count
(``--gres=gpu:N``) and ``cpu`` asks for nothing beyond the partition's defaults.
"""

from __future__ import annotations

import shlex

from flow_backend.errors import ResourceNotFoundError, ValidationError
from flow_backend.instance_types import InstanceType, parse_instance_type

__all__ = ["ResourceMap", "normalize_option"]


def normalize_option(line: str, field: str) -> str:
    """One ``sbatch`` option as written after ``#SBATCH`` (a leading ``#SBATCH`` is dropped).

    Raises:
        ValidationError: The line is not an option (``--x``/``-x``) or spans lines.
    """
    text = line.strip().removeprefix("#SBATCH").strip()
    if not text.startswith("-") or "\n" in text:
        raise ValidationError(
            f"{field} has {line!r}, which is not one sbatch option",
            field=field,
            value=line,
            hint="Write options as sbatch takes them, e.g. '--constraint=v100' or '--exclusive'",
        )
    return text


class ResourceMap:
    """Resolves an instance type to ``sbatch`` options.

    Args:
        mapping: ``slurm_instance_types`` (``None``: GPUs by count).

    Raises:
        ValidationError: A key is not one of our instance types, or its options are malformed.
    """

    def __init__(self, mapping: dict[str, str] | None) -> None:
        self.configured = mapping is not None
        self._options: dict[str, list[str]] = {}
        for key, options in (mapping or {}).items():
            field = f"slurm_instance_types.{key}"
            try:
                name = parse_instance_type(key).name
            except ResourceNotFoundError as error:
                raise ValidationError(
                    f"slurm_instance_types maps {key!r}, which is not an instance type",
                    field=field,
                    value=key,
                    hint=error.hint or "`flow instance-types` lists the types",
                ) from None
            try:
                words = shlex.split(options or "")
            except ValueError as error:
                raise ValidationError(
                    f"slurm_instance_types.{key} has unbalanced quotes: {options!r} ({error})",
                    field=field,
                    value=options,
                    hint="Write sbatch options such as '--gres=gpu:a100:1 --cpus-per-task=8'",
                ) from None
            grouped: list[str] = []
            for word in words:  # "-c 8" is one option with its value
                if grouped and not word.startswith("-"):
                    grouped[-1] += f" {word}"
                else:
                    grouped.append(word)
            self._options[name] = [normalize_option(option, field) for option in grouped]

    def options(self, instance: InstanceType) -> list[str]:
        """The ``sbatch`` options of one node of ``instance``.

        Raises:
            ValidationError: A mapping is configured and lacks this type.
        """
        if instance.name in self._options:
            return list(self._options[instance.name])
        if self.configured:
            short = instance.short_names[0] if instance.short_names else instance.name
            known = ", ".join(sorted(self._options)) or "none"
            raise ValidationError(
                f"instance type {short!r} is not in slurm_instance_types (it maps: {known})",
                field="instance_type",
                value=short,
                hint=(
                    f"Add it, e.g. '{short}: --gres=gpu:{instance.gpu_count} --cpus-per-task=8', "
                    "or pick a mapped type"
                    if instance.gpu_count
                    else f"Add it, e.g. '{short}: --cpus-per-task=1', or pick a mapped type"
                ),
            )
        return [f"--gres=gpu:{instance.gpu_count}"] if instance.gpu_count else []
