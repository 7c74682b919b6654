"""The ``slurm`` provider: tasks as SLURM jobs through ``sbatch``/``squeue``/``scancel``."""

from flow_backend.providers.slurm.provider import SlurmProvider

__all__ = ["SlurmProvider"]
