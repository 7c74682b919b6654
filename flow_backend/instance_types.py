"""The catalog of instance types and the parser for their names.

Short names (``a100``, ``4xa100``, ``h100``, ``cpu``) and full specs (``a100-80gb.sxm.1x``) are accepted,
case-insensitively. The prices are the catalog's reference on-demand prices per instance and hour; a
provider may charge differently (the local provider charges nothing).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from functools import cache

from flow_backend.errors import ResourceNotFoundError, ValidationError

__all__ = [
    "InstanceType",
    "catalog",
    "cheapest_with_memory",
    "instance_type_names",
    "parse_instance_type",
]


@dataclass(frozen=True)
class InstanceType:
    """One kind of machine a task can run on (a plain dataclass: Hydra imports the catalog at
    start-up, through our plugin's config module, and pydantic would add ~40 ms to every app).

    Attributes:
        name: The full spec, e.g. ``a100-80gb.sxm.1x`` (``cpu`` for the CPU-only type).
        gpu_model: The GPU, e.g. ``A100 80GB`` (``None`` without GPUs).
        gpu_count: GPUs per instance.
        gpu_memory_gb: Memory of each GPU in GB.
        interconnect: ``sxm``, ``pcie`` or ``none``.
        vcpus: Virtual CPUs per instance.
        ram_gb: Host memory per instance in GB.
        price_per_hour: Reference price of one instance per hour in dollars.
        short_names: The short aliases that resolve to this type.
    """

    name: str
    gpu_model: str | None
    gpu_count: int
    gpu_memory_gb: int
    interconnect: str
    vcpus: int
    ram_gb: int
    price_per_hour: float
    short_names: tuple[str, ...] = ()

    @property
    def total_gpu_memory_gb(self) -> int:
        """Memory of all GPUs of one instance together."""
        return self.gpu_count * self.gpu_memory_gb

    def describe(self) -> str:
        """One line for humans, e.g. ``4× A100 80GB (sxm), 120 vCPUs, 900 GB RAM``."""
        if not self.gpu_count:
            return f"CPU only, {self.vcpus} vCPUs, {self.ram_gb} GB RAM"
        return (
            f"{self.gpu_count}× {self.gpu_model} ({self.interconnect}), "
            f"{self.vcpus} vCPUs, {self.ram_gb} GB RAM"
        )


def _gpu_type(
    model: str,
    memory: int,
    interconnect: str,
    count: int,
    gpu_price: float,
    vcpus_per_gpu: int,
    ram_per_gpu: int,
    short_names: tuple[str, ...] = (),
) -> InstanceType:
    family = model.split()[0].lower()
    return InstanceType(
        name=f"{family}-{memory}gb.{interconnect}.{count}x",
        gpu_model=model,
        gpu_count=count,
        gpu_memory_gb=memory,
        interconnect=interconnect,
        vcpus=vcpus_per_gpu * count,
        ram_gb=ram_per_gpu * count,
        price_per_hour=round(gpu_price * count, 2),
        short_names=short_names,
    )


@cache
def _catalog() -> tuple[InstanceType, ...]:
    a100 = ("A100 80GB", 80, "sxm")
    return (
        _gpu_type(*a100, 1, 1.80, 30, 225, ("a100", "1xa100")),
        _gpu_type(*a100, 2, 1.80, 30, 225, ("2xa100",)),
        _gpu_type(*a100, 4, 1.80, 30, 225, ("4xa100",)),
        _gpu_type(*a100, 8, 1.80, 30, 225, ("8xa100",)),
        _gpu_type("A100 40GB", 40, "pcie", 1, 1.30, 30, 200),
        _gpu_type("H100 80GB", 80, "sxm", 8, 3.20, 26, 225, ("h100", "8xh100")),
        _gpu_type("H100 80GB", 80, "pcie", 1, 2.40, 26, 200, ("1xh100pcie",)),
        _gpu_type("H200 141GB", 141, "sxm", 8, 3.80, 26, 225, ("h200", "8xh200", "h200.8x")),
        _gpu_type("B200 192GB", 192, "sxm", 8, 5.50, 30, 250, ("b200", "8xb200", "b200-192gb.8x")),
        _gpu_type("A10 24GB", 24, "pcie", 1, 0.75, 30, 200, ("a10", "1xa10")),
        _gpu_type("V100 16GB", 16, "sxm", 1, 0.55, 8, 61, ("v100", "1xv100")),
        InstanceType(
            name="cpu",
            gpu_model=None,
            gpu_count=0,
            gpu_memory_gb=0,
            interconnect="none",
            vcpus=8,
            ram_gb=32,
            price_per_hour=0.10,
            short_names=("cpu.small",),
        ),
    )


def catalog() -> list[InstanceType]:
    """Every known instance type, cheapest first."""
    return sorted(_catalog(), key=lambda it: (it.price_per_hour, it.name))


@cache
def _index() -> dict[str, InstanceType]:
    index: dict[str, InstanceType] = {}
    for it in _catalog():
        index[it.name] = it
        for short in it.short_names:
            index[short] = it
    return index


def instance_type_names() -> list[str]:
    """Every name (full specs and short aliases) that :func:`parse_instance_type` accepts."""
    return sorted(_index())


def parse_instance_type(name: str | InstanceType) -> InstanceType:
    """Resolve a short name or full spec to its :class:`InstanceType` (case-insensitive).

    Raises:
        ResourceNotFoundError: The name is not in the catalog; the message lists the closest names.
    """
    if isinstance(name, InstanceType):
        return name
    key = str(name).strip().lower()
    index = _index()
    if key in index:
        return index[key]
    close = difflib.get_close_matches(key, list(index), n=4, cutoff=0.4)
    suggestion = ", ".join(close or ["a100", "4xa100", "8xa100", "h100", "a10", "v100", "cpu"])
    raise ResourceNotFoundError(
        f"Unknown instance_type {name!r}",
        field="instance_type",
        value=name,
        hint=f"Closest valid names: {suggestion}; `flow instance-types` lists all of them",
    )


def cheapest_with_memory(min_gb: float) -> InstanceType:
    """The cheapest GPU type whose every GPU has at least ``min_gb`` GB of memory.

    Raises:
        ValidationError: ``min_gb`` is not positive or larger than any GPU in the catalog.
    """
    if min_gb <= 0:
        raise ValidationError(
            f"min_gpu_memory_gb must be positive, got {min_gb}",
            field="min_gpu_memory_gb",
            value=min_gb,
            hint="Give the memory one GPU needs in GB, e.g. min_gpu_memory_gb=40",
        )
    fitting = [it for it in catalog() if it.gpu_count and it.gpu_memory_gb >= min_gb]
    if not fitting:
        largest = max(it.gpu_memory_gb for it in _catalog())
        raise ValidationError(
            f"min_gpu_memory_gb={min_gb} is larger than any GPU offered (the largest has {largest} GB)",
            field="min_gpu_memory_gb",
            value=min_gb,
            hint=f"Ask for at most {largest} GB per GPU, or choose a multi-GPU instance_type",
        )
    return fitting[0]
