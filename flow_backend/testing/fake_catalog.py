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


def _gpu(
    name: str, gpu: str, count: int, memory: int, socket: str, cpus: int, ram: int, price: float
) -> FakeInstanceType:
    fid = "it_" + name.replace("-", "").replace(".", "")[:12]
    return FakeInstanceType(fid, name, gpu, count, memory, socket, cpus * count, ram * count, price)


def default_instance_types() -> list[FakeInstanceType]:
    """Every name of ``flow_backend``'s catalog, with spot prices a little under its list prices.

    A100 80GB SXM ×1/2/4/8, A100 40GB PCIe, H100 80GB SXM ×8, H100 80GB PCIe, A10, V100, and a
    CPU-only type.
    """
    return [
        _gpu("a100-80gb.sxm.1x", "A100", 1, 80, "SXM4", 30, 225, 1.60),
        _gpu("a100-80gb.sxm.2x", "A100", 2, 80, "SXM4", 30, 225, 3.20),
        _gpu("a100-80gb.sxm.4x", "A100", 4, 80, "SXM4", 30, 225, 6.40),
        _gpu("a100-80gb.sxm.8x", "A100", 8, 80, "SXM4", 30, 225, 12.80),
        _gpu("a100-40gb.pcie.1x", "A100", 1, 40, "PCIe", 30, 200, 1.10),
        _gpu("h100-80gb.sxm.8x", "H100", 8, 80, "SXM5", 26, 225, 24.00),
        _gpu("h100-80gb.pcie.1x", "H100", 1, 80, "PCIe", 26, 200, 2.10),
        _gpu("a10-24gb.pcie.1x", "A10", 1, 24, "PCIe", 30, 200, 0.65),
        _gpu("v100-16gb.sxm.1x", "V100", 1, 16, "SXM2", 8, 61, 0.45),
        FakeInstanceType("it_cpu8x32gb", "cpu", "None", 0, 0, "None", 8, 32, 0.08),
    ]
