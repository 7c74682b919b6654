"""Default limit prices: what a bid offers per instance-hour when ``max_price_per_hour`` is unset.

The default follows the market: the live spot price of the chosen type in the chosen region
(``/v2/spot/availability``'s ``last_instance_price``) times :data:`LIMIT_PRICE_FACTOR`, rounded up
to the cent, so a bid wins capacity when the price moves a little without paying reserved rates.
``max_price_per_hour`` caps it (a lower cap is bid as is: the bid may wait for the price to fall,
and one below Mithril's minimum is refused with one clear error).
"""

from __future__ import annotations

import math

__all__ = ["LIMIT_PRICE_FACTOR", "limit_price"]

#: The default limit price is the live spot price times this (the SDK's own tip suggests ×1.25).
LIMIT_PRICE_FACTOR = 1.25


def limit_price(spot_price: float, max_price_per_hour: float | None) -> float:
    """Dollars per instance-hour to bid: ``spot × LIMIT_PRICE_FACTOR``, capped by the maximum."""
    market = math.ceil(round(spot_price * LIMIT_PRICE_FACTOR * 100, 6)) / 100
    if max_price_per_hour is not None:
        return round(min(market, max_price_per_hour), 2)
    return market
