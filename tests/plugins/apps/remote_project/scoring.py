"""A helper module of the project: it must travel with the code upload."""


def score(lr: float, step: int) -> float:
    """A made-up score that depends on the learning rate and the step."""
    return round(1.0 / (1.0 + abs(lr - 0.01) * 100) + step * 0.01, 6)
