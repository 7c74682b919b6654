"""Default limit prices: what a bid offers per instance-hour when ``max_price_per_hour`` is unset.

The default is a price per GPU-hour for the instance's GPU model, times its GPU count — a little
above typical spot prices, so bids win capacity without paying reserved rates. CPU-only types offer
a flat ``$0.50`` per instance-hour. Set ``max_price_per_hour`` to bid something else.
"""

from __future__ import annotations

from flow_backend.instance_types import InstanceType

__all__ = ["DEFAULT_LIMIT_CPU_HOUR", "DEFAULT_LIMIT_PER_GPU_HOUR", "default_limit_price"]

#: Dollars per GPU-hour offered by default, by GPU model (as in the instance-type catalog).
DEFAULT_LIMIT_PER_GPU_HOUR: dict[str, float] = {
    "H100 80GB": 3.50,
    "A100 80GB": 2.00,
    "A100 40GB": 1.50,
    "A10 24GB": 0.90,
    "V100 16GB": 0.70,
}
DEFAULT_LIMIT_CPU_HOUR = 0.50
_FALLBACK_PER_GPU = 2.00


def default_limit_price(instance: InstanceType) -> float:
    """Dollars per instance-hour to bid for ``instance`` when the task sets no maximum."""
    if not instance.gpu_count:
        return DEFAULT_LIMIT_CPU_HOUR
    per_gpu = DEFAULT_LIMIT_PER_GPU_HOUR.get(instance.gpu_model or "", _FALLBACK_PER_GPU)
    return round(per_gpu * instance.gpu_count, 2)
