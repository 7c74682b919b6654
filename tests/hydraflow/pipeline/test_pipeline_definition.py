"""Bad pipelines and bad run arguments: each one clear error naming the stages involved."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hydraflow.pipeline import Pipeline, PipelineDefinitionError, PipelineError, Stage


def _noop(cfg: Any) -> None:
    return None


def test_depends_on_returns_the_stage_so_it_reads_inside_a_list() -> None:
    data = Stage("data", _noop)
    train = Stage("train", _noop)

    assert train.depends_on(data) is train
    assert Pipeline([data, train]).graph.order == ["data", "train"]


def test_order_follows_dependencies_not_list_order() -> None:
    a, b, c = Stage("a", _noop), Stage("b", _noop), Stage("c", _noop)
    pipeline = Pipeline([c.depends_on(b), b.depends_on(a), a])

    assert pipeline.graph.order == ["a", "b", "c"]


def test_duplicate_names_are_refused() -> None:
    with pytest.raises(PipelineDefinitionError, match="Duplicate stage name 'train'"):
        Pipeline([Stage("train", _noop), Stage("train", _noop)])


def test_dependency_outside_the_pipeline_names_both_stages() -> None:
    data = Stage("data", _noop)
    train = Stage("train", _noop).depends_on(data)

    with pytest.raises(PipelineDefinitionError) as info:
        Pipeline([train])

    assert "Stage 'train' depends on stage 'data', which is not in the pipeline" in str(info.value)


def test_cycle_names_the_stages_on_it() -> None:
    a, b, c = Stage("a", _noop), Stage("b", _noop), Stage("c", _noop)
    a.depends_on(c)
    b.depends_on(a)
    c.depends_on(b)

    with pytest.raises(PipelineDefinitionError, match=r"cycle between stages: a -> c -> b -> a"):
        Pipeline([a, b, c])


def test_a_stage_cannot_depend_on_itself() -> None:
    stage = Stage("a", _noop)
    with pytest.raises(PipelineDefinitionError, match="'a' cannot depend on itself"):
        stage.depends_on(stage)


@pytest.mark.parametrize("name", ["", "has space", "../up", 3])
def test_bad_stage_names_are_refused(name: Any) -> None:
    with pytest.raises(PipelineDefinitionError, match=r"Stage name .* is invalid"):
        Stage(name, _noop)


def test_fn_must_be_callable() -> None:
    with pytest.raises(PipelineDefinitionError, match="Stage 'x': fn must be callable"):
        Stage("x", "prepare_data")  # type: ignore[arg-type]


def test_parameter_that_matches_no_upstream_stage_is_named() -> None:
    def train(cfg: Any, dataset: Any) -> None:
        return None

    data = Stage("data", _noop)
    with pytest.raises(PipelineDefinitionError) as info:
        Pipeline([data, Stage("train", train).depends_on(data)])

    message = str(info.value)
    assert "Stage 'train': parameter 'dataset'" in message
    assert "upstream: data" in message


def test_pipeline_takes_stage_objects() -> None:
    with pytest.raises(PipelineDefinitionError, match="Pipeline takes Stage objects"):
        Pipeline([_noop])  # type: ignore[list-item]


@pytest.mark.parametrize("argument", ["force", "only", "until", "from_"])
def test_unknown_stage_in_a_selection_names_the_argument(argument: str) -> None:
    pipeline = Pipeline([Stage("data", _noop)])
    with pytest.raises(PipelineDefinitionError) as info:
        selection: dict[str, Any] = {argument: ["trian"]}
        pipeline.run({}, **selection)

    assert f"{argument}: unknown stage 'trian'; the pipeline's stages are data" == str(info.value)


def test_disjoint_selection_is_refused() -> None:
    a, b = Stage("a", _noop), Stage("b", _noop)
    with pytest.raises(PipelineDefinitionError, match="leaves no stage to run"):
        Pipeline([a, b]).run({}, only="a", from_="b")


@pytest.mark.parametrize("workers", [0, -1, 1.5, True])
def test_max_workers_must_be_a_positive_integer(workers: Any) -> None:
    with pytest.raises(PipelineDefinitionError, match="max_workers must be a positive integer"):
        Pipeline([Stage("a", _noop)]).run({}, max_workers=workers)


def test_invalid_task_resources_are_refused_when_the_pipeline_is_built() -> None:
    stage = Stage("train", _noop, resources={"instance_type": "a1000"})
    with pytest.raises(PipelineDefinitionError, match=r"Stage 'train': resources .*a1000"):
        Pipeline([stage])


def test_errors_are_value_errors_under_one_base() -> None:
    assert issubclass(PipelineDefinitionError, ValueError)
    assert issubclass(PipelineDefinitionError, PipelineError)


# -- cache keys ---------------------------------------------------------------------------------
def _three() -> Pipeline:
    def load(cfg: Any) -> int:
        return 1

    def fit(cfg: Any, load: int) -> int:
        return load

    def score(fit: int) -> int:
        return fit

    a = Stage("load", load)
    b = Stage("fit", fit).depends_on(a)
    return Pipeline([a, b, Stage("score", score).depends_on(b)])


def test_cache_key_changes_for_the_changed_section_and_downstream_only() -> None:
    base = _three().cache_keys({"load": {"n": 1}, "fit": {"lr": 0.1}})
    changed = _three().cache_keys({"load": {"n": 1}, "fit": {"lr": 0.2}})

    assert base["load"] == changed["load"]
    assert base["fit"] != changed["fit"]
    assert base["score"] != changed["score"]


def test_cache_key_ignores_sections_of_other_stages_and_key_order() -> None:
    base = _three().cache_keys({"load": {"n": 1, "m": 2}, "fit": {"lr": 0.1}})
    other = _three().cache_keys({"load": {"m": 2, "n": 1}, "fit": {"lr": 0.1}, "extra": {"x": 1}})

    assert base == other


def test_cache_key_is_the_same_in_another_process() -> None:
    here = str(Path(__file__).parent)
    code = (
        f"import sys; sys.path.insert(0, {here!r})\n"
        "from test_pipeline_definition import _three\n"
        "print(_three().cache_keys({'load': {'n': 1}})['score'])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()

    assert out == _three().cache_keys({"load": {"n": 1}})["score"]


@pytest.mark.parametrize("cfg", [5, "a: 1", [1, 2]])
def test_config_that_is_not_a_mapping_is_refused(cfg: Any) -> None:
    with pytest.raises(PipelineDefinitionError, match=r"config must be a mapping .* got"):
        _three().run(cfg)


def test_unresolvable_config_section_names_the_section() -> None:
    cfg = {"fit": {"lr": "${missing}"}}
    with pytest.raises(PipelineDefinitionError, match="Config section 'fit' cannot be resolved"):
        _three().run(cfg)


def test_a_cycle_added_after_construction_is_caught_by_run() -> None:
    a, b = Stage("a", _noop), Stage("b", _noop)
    pipeline = Pipeline([a, b.depends_on(a)])
    a.depends_on(b)

    with pytest.raises(PipelineDefinitionError, match="cycle between stages"):
        pipeline.run({})


def test_task_stage_on_an_unknown_provider_is_refused_with_the_stage_name() -> None:
    Pipeline([Stage("train", _noop, resources={"instance_type": "a100", "provider": "mithril"})])
    stage = Stage("train", _noop, resources={"instance_type": "a100", "provider": "mithrill"})
    with pytest.raises(
        PipelineDefinitionError, match=r"Stage 'train'.*Unknown provider 'mithrill'"
    ):
        Pipeline([stage])
