"""load_config: files, Hydra config directories, overrides, interpolations, schemas, bad input."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from omegaconf import DictConfig
from pydantic import BaseModel

from hydraflow.config import ConfigError, load_config


@dataclass
class ModelSchema:
    type: str = "lstm"
    hidden: int = 0


@dataclass
class TrainingSchema:
    batch_size: int = 0
    learning_rate: float = 0.0
    steps: int = 0


@dataclass
class DatasetSchema:
    name: str = "???"
    split: list[float] = field(default_factory=list)


@dataclass
class Schema:
    model: ModelSchema = field(default_factory=ModelSchema)
    training: TrainingSchema = field(default_factory=TrainingSchema)
    dataset: DatasetSchema = field(default_factory=DatasetSchema)


class TrainingModel(BaseModel):
    batch_size: int
    learning_rate: float
    steps: int


class PydanticSchema(BaseModel):
    model: dict[str, object]
    training: TrainingModel
    dataset: dict[str, object]


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    root = tmp_path / "conf"
    (root / "model").mkdir(parents=True)
    (root / "config.yaml").write_text(
        "defaults:\n  - model: transformer\n  - _self_\n"
        "training:\n  batch_size: 32\n  learning_rate: 0.001\n  steps: ${training.batch_size}\n"
        "dataset:\n  name: mnist\n  split: [0.8, 0.1, 0.1]\n"
    )
    (root / "model" / "transformer.yaml").write_text("type: transformer\nhidden: 512\n")
    (root / "model" / "lstm.yaml").write_text("type: lstm\nhidden: 128\n")
    return root


def test_single_file_with_attribute_access(conf: Path, tmp_path: Path) -> None:
    file = tmp_path / "plain.yaml"
    file.write_text(
        "model:\n  type: transformer\ntraining:\n  batch_size: 32\n  double: ${training.batch_size}\n"
    )
    cfg = load_config(file)
    assert isinstance(cfg, DictConfig)
    assert cfg.model.type == "transformer" and cfg.training.batch_size == 32
    assert cfg.training.double == 32


def test_directory_composes_defaults_with_overrides_and_resolves(conf: Path) -> None:
    cfg = load_config(conf)
    assert cfg.model.hidden == 512 and cfg.training.steps == 32
    cfg = load_config(conf, overrides=["training.batch_size=64", "model=lstm", "+extra=1"])
    assert (cfg.model.type, cfg.training.batch_size, cfg.training.steps, cfg.extra) == (
        "lstm",
        64,
        64,
        1,
    )
    assert "defaults" not in cfg and "hydra" not in cfg


def test_directory_with_another_primary_name(conf: Path) -> None:
    (conf / "config.yaml").rename(conf / "train.yaml")
    assert load_config(conf, config_name="train").model.type == "transformer"
    assert load_config(conf / "train.yaml").model.type == "transformer"


def test_dataclass_schema(conf: Path) -> None:
    cfg = load_config(conf, schema=Schema)
    assert cfg.training.learning_rate == 0.001 and cfg.dataset.split == [0.8, 0.1, 0.1]
    with pytest.raises(
        ConfigError, match=r"key 'training.batch_size' should be int \(schema Schema\), got 'big'"
    ):
        load_config(conf, overrides=["training.batch_size=big"], schema=Schema)
    with pytest.raises(ConfigError, match=r"missing required key 'dataset.name' \(str\)"):
        load_config(conf, overrides=["~dataset.name"], schema=Schema)
    with pytest.raises(ConfigError, match=r"key 'surprise' is not in schema Schema"):
        load_config(conf, overrides=["+surprise=1"], schema=Schema)


def test_pydantic_schema(conf: Path) -> None:
    cfg = load_config(conf, schema=PydanticSchema)
    assert cfg.training.batch_size == 32
    with pytest.raises(
        ConfigError, match=r"key 'training.batch_size': input should be a valid integer.*got 'big'"
    ):
        load_config(conf, overrides=["training.batch_size=big"], schema=PydanticSchema)
    with pytest.raises(ConfigError, match=r"key 'training.learning_rate': field required"):
        load_config(conf, overrides=["~training.learning_rate"], schema=PydanticSchema)


def test_bad_inputs(conf: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("a: [1, 2\nb: 3\n")
    with pytest.raises(ConfigError, match=r"broken.yaml' is not valid YAML at line 2, column 2"):
        load_config(broken)
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(listing)
    with pytest.raises(ConfigError, match=r"with overrides \['model=rnn'\]: .*model/rnn"):
        load_config(conf, overrides=["model=rnn"])
    with pytest.raises(ConfigError, match=r"Error parsing override 'a\.b'"):
        load_config(conf, overrides=["a.b"])
    dangling = tmp_path / "dangling.yaml"
    dangling.write_text("a: ${nope}\n")
    with pytest.raises(ConfigError, match="nope"):
        load_config(dangling)
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    with pytest.raises(ConfigError, match=r"has no config\.yaml"):
        load_config(empty_dir)
    with pytest.raises(ConfigError, match="schema must be a dataclass or a pydantic model"):
        load_config(conf, schema=int)


def test_composing_leaves_hydra_state_as_it_was(tmp_path: Path) -> None:
    """A launcher pickles Hydra's singletons into its jobs: load_config must not leave any behind."""
    (tmp_path / "config.yaml").write_text("defaults:\n  - _self_\nlr: 0.1\n")
    script = (
        "from hydra.core.singleton import Singleton\n"
        "before = set(Singleton._instances)\n"
        "from hydraflow.config import load_config\n"
        f"assert load_config({str(tmp_path)!r}).lr == 0.1\n"
        "registries = {'Plugins', 'SourcesRegistry'}  # created on first use, hold no app state\n"
        "new = {c.__name__ for c in set(Singleton._instances) - before} - registries\n"
        "print(sorted(new))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
