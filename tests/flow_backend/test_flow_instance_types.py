"""The instance-type catalog and its name parser."""

from __future__ import annotations

import pytest

from flow_backend.errors import ResourceNotFoundError, ValidationError
from flow_backend.instance_types import (
    InstanceType,
    catalog,
    cheapest_with_memory,
    parse_instance_type,
)


@pytest.mark.parametrize(
    ("name", "model", "count", "interconnect"),
    [
        ("a100", "A100 80GB", 1, "sxm"),
        ("2xa100", "A100 80GB", 2, "sxm"),
        ("4xa100", "A100 80GB", 4, "sxm"),
        ("8xa100", "A100 80GB", 8, "sxm"),
        ("h100", "H100 80GB", 8, "sxm"),
        ("8xh100", "H100 80GB", 8, "sxm"),
        ("a10", "A10 24GB", 1, "pcie"),
        ("v100", "V100 16GB", 1, "sxm"),
        ("a100-80gb.sxm.1x", "A100 80GB", 1, "sxm"),
        ("h100-80gb.pcie.1x", "H100 80GB", 1, "pcie"),
    ],
)
def test_short_names_and_full_specs_resolve(
    name: str, model: str, count: int, interconnect: str
) -> None:
    it = parse_instance_type(name)
    assert (it.gpu_model, it.gpu_count, it.interconnect) == (model, count, interconnect)
    assert it.price_per_hour > 0


def test_names_are_case_insensitive() -> None:
    assert parse_instance_type("A100") == parse_instance_type("a100-80gb.sxm.1x")
    assert parse_instance_type(" H100-80GB.PCIE.1X ").name == "h100-80gb.pcie.1x"


def test_cpu_type_has_no_gpus() -> None:
    cpu = parse_instance_type("cpu")
    assert cpu.gpu_count == 0 and cpu.gpu_model is None


def test_h100_short_name_is_eight_gpus_at_the_seed_price() -> None:
    h100 = parse_instance_type("h100")
    assert h100.name == "h100-80gb.sxm.8x"
    assert f"${h100.price_per_hour:.2f}" == "$25.60"
    assert h100.total_gpu_memory_gb == 640


def test_unknown_name_lists_the_closest_names() -> None:
    with pytest.raises(ResourceNotFoundError) as caught:
        parse_instance_type("a1000")
    message = str(caught.value)
    assert "'a1000'" in message and "a100" in message
    assert caught.value.field == "instance_type"


def test_catalog_is_sorted_by_price_and_every_name_parses_back() -> None:
    types = catalog()
    prices = [it.price_per_hour for it in types]
    assert prices == sorted(prices)
    for it in types:
        assert isinstance(it, InstanceType)
        assert parse_instance_type(it.name) == it
        for short in it.short_names:
            assert parse_instance_type(short) == it


@pytest.mark.parametrize(
    ("memory", "expected"),
    [
        (40, "a100-40gb.pcie.1x"),
        (20, "a10-24gb.pcie.1x"),
        (80, "a100-80gb.sxm.1x"),
        (1, "v100-16gb.sxm.1x"),
    ],
)
def test_cheapest_with_memory_picks_the_cheapest_fitting_gpu(memory: float, expected: str) -> None:
    chosen = cheapest_with_memory(memory)
    assert chosen.name == expected
    fitting = [it for it in catalog() if it.gpu_count and it.gpu_memory_gb >= memory]
    assert chosen.price_per_hour == min(it.price_per_hour for it in fitting)


def test_memory_larger_than_any_gpu_is_refused() -> None:
    largest = max(it.gpu_memory_gb for it in catalog() if it.gpu_count)
    with pytest.raises(ValidationError, match=rf"min_gpu_memory_gb=500.*largest has {largest} GB"):
        cheapest_with_memory(500)
