"""What the fake Mithril offers out of the box: the real catalog, regions, spot prices, capacity.

The catalog is the one the official SDK records (``flow-compute`` 3.28.2,
``flow/integrations/mithril_catalog.py``): GPU types only — A100 80GB SXM ×1/2/4/8, H100 80GB SXM
×8 (listed twice, under two ids with one display name), H200 ×8 and B200 ×8. No CPU-only, V100,
A10 or A100 40GB type exists there.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_REGIONS", "FakeInstanceType", "default_instance_types"]

DEFAULT_REGIONS: tuple[str, ...] = ("us-central1-a", "us-central2-a", "eu-central1-a")


@dataclass(frozen=True)
class FakeInstanceType:
    """One instance type of the fake catalog, with its spot price per instance-hour."""

    fid: str
    name: str
    gpu_type: str
    num_gpus: int
    gpu_memory_gb: int
    gpu_socket: str
    num_cpus: int
    ram_gb: int
    spot_price: float
    regions: tuple[str, ...] = DEFAULT_REGIONS

    def as_api(self) -> dict[str, object]:
        """The ``InstanceTypeModel`` body."""
        return {
            "fid": self.fid,
            "name": self.name,
            "num_cpus": self.num_cpus,
            "cpu_type": "AMD" if self.gpu_type in ("H100", "A100") else "Intel",
            "ram_gb": self.ram_gb,
            "num_gpus": self.num_gpus,
            "gpu_type": self.gpu_type,
            "gpu_memory_gb": self.gpu_memory_gb,
            "gpu_socket": self.gpu_socket,
            "local_storage_gb": 1000 * max(1, self.num_gpus),
            "network_type": "InfiniBand" if self.num_gpus >= 8 else None,
            "ib_count": 8 if self.num_gpus >= 8 else 0,
            "bridge_count": 4 if self.num_gpus >= 8 else 0,
            "hourly_price": self.spot_price,
        }


def default_instance_types() -> list[FakeInstanceType]:
    """The real catalog with the SDK's ids and display names, spot prices near the real ones."""

    def a100(fid: str, count: int) -> FakeInstanceType:
        name = f"a100-80gb.sxm.{count}x"
        return FakeInstanceType(
            fid, name, "A100", count, 80, "SXM4", 30 * count, 225 * count, 1.60 * count
        )

    return [
        a100("it_RrgkIZz6c9BZu5gi", 1),
        a100("it_TiAPxzKNi4xO0IAr", 2),
        a100("it_4TugeYWOov5FllEf", 4),
        a100("it_Sg1nDx1I8NFep60J", 8),
        FakeInstanceType(
            "it_5ECSoHQjLBzrp5YM", "h100-80gb.sxm.8x", "H100", 8, 80, "SXM5", 208, 1800, 24.00
        ),
        # the same display name under a second id, offered in one region only
        FakeInstanceType(
            "it_XqgKWbhZ5gznAYsG",
            "h100-80gb.sxm.8x",
            "H100",
            8,
            80,
            "SXM5",
            208,
            1800,
            22.00,
            regions=DEFAULT_REGIONS[1:2],
        ),
        FakeInstanceType(
            "it_7RHoQUztab9lU9Ne", "h200.8x", "H200", 8, 141, "SXM5", 208, 1800, 28.00
        ),
        FakeInstanceType(
            "it_nFEHySv5IMnHKbKi", "b200-192gb.8x", "B200", 8, 192, "SXM6", 240, 2000, 40.00
        ),
    ]
