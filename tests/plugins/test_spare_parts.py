"""A warm worker's spare spec parts: a job gets fresh objects of its own spec's bytes (in memory)."""

from __future__ import annotations

import pickle

from hydra_plugins.hydraflow_plugins._job_runner import SpareParts


def test_a_job_takes_spare_parts_only_of_its_own_bytes_and_never_a_used_one() -> None:
    spare = SpareParts()
    sweep_a, sweep_b = pickle.dumps({"lr": [0.1]}), pickle.dumps({"lr": [0.2]})
    first = spare.take("config", sweep_a)
    first["lr"].append("changed by job 0")  # a job changes what it was given
    spare.refill()  # after the job, while the launcher hands out the next one
    second = spare.take("config", sweep_a)
    assert second == {"lr": [0.1]} and second is not first  # fresh, unpickled ahead
    assert spare.take("config", sweep_a) == {"lr": [0.1]}  # no spare left: unpickled now
    spare.refill()
    assert spare.take("config", sweep_b) == {"lr": [0.2]}  # other bytes: never the spare
    spare.refill()
    assert spare.take("config", sweep_a) == {"lr": [0.1]}
