"""Testing aids shipped with flow_backend, as moto is for AWS: a fake Mithril Compute API.

>>> from flow_backend.testing import FakeMithril
>>> with FakeMithril() as fake:  # doctest: +SKIP
...     print(fake.url, fake.env["MITHRIL_PROJECT"])
"""

from flow_backend.testing.fake_mithril import FakeMithril
from flow_backend.testing.faults import FaultPlan

__all__ = ["FakeMithril", "FaultPlan"]
