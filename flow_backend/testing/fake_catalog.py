"""What the fake Mithril offers out of the box: instance types, regions, spot prices, capacity."""

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


def _a100(count: int, fid: str) -> FakeInstanceType:
    return FakeInstanceType(
        fid=fid,
        name=f"a100-80gb.sxm.{count}x",
        gpu_type="A100",
        num_gpus=count,
        gpu_memory_gb=80,
        gpu_socket="SXM4",
        num_cpus=30 * count,
        ram_gb=240 * count,
        spot_price=round(1.60 * count, 2),
    )


def default_instance_types() -> list[FakeInstanceType]:
    """The catalog: A100 80GB SXM ×1/2/4/8, H100 80GB SXM ×1/8, A10 24GB, V100 16GB."""
    return [
        _a100(1, "it_a100x1sxm80"),
        _a100(2, "it_a100x2sxm80"),
        _a100(4, "it_a100x4sxm80"),
        _a100(8, "it_a100x8sxm80"),
        FakeInstanceType(
            "it_h100x1sxm80", "h100-80gb.sxm.1x", "H100", 1, 80, "SXM5", 26, 225, 2.50
        ),
        FakeInstanceType(
            "it_h100x8sxm80", "h100-80gb.sxm.8x", "H100", 8, 80, "SXM5", 208, 1800, 20.00
        ),
        FakeInstanceType("it_a10x1pcie24", "a10-24gb.pcie.1x", "A10", 1, 24, "PCIe", 30, 200, 0.75),
        FakeInstanceType("it_v100x1sxm16", "v100-16gb.sxm.1x", "V100", 1, 16, "SXM2", 8, 61, 0.55),
    ]
