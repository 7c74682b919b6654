"""Pipelines: stages with dependencies, data flow, tracked artifacts and selective re-execution.

>>> from hydraflow.pipeline import Pipeline, Stage
>>> data = Stage("data_preparation", prepare_data)
>>> train = Stage("model_training", train_model).depends_on(data)
>>> Pipeline([data, train]).run(cfg)            # doctest: +SKIP
{'data_preparation': ..., 'model_training': ...}
"""

from hydraflow.pipeline.errors import (
    PipelineDefinitionError,
    PipelineError,
    PipelineRunError,
    StageResultError,
)
from hydraflow.pipeline.pipeline import Pipeline, PipelineResult
from hydraflow.pipeline.stage import Stage, StageContext, StageOutput

__all__ = [
    "Pipeline",
    "PipelineDefinitionError",
    "PipelineError",
    "PipelineResult",
    "PipelineRunError",
    "Stage",
    "StageContext",
    "StageOutput",
    "StageResultError",
]
