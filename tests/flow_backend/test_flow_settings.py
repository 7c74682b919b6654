"""Settings precedence (arguments > environment > config file > defaults) and bad settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from flow_backend import Flow
from flow_backend.errors import ValidationError
from flow_backend.settings import FlowSettings, config_path, load_settings

pytestmark = pytest.mark.usefixtures("flow_home")

SECRET = "mk_live_0123456789abcdef"


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    return tmp_path / "flow-config.yaml"


@pytest.fixture
def clean_env(flow_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "FLOW_HOME",
        "FLOW_STOP_GRACE_SECONDS",
        "FLOW_POLL_INTERVAL",
        "FLOW_LOCAL_GPUS",
        "MITHRIL_SSH_USER",
        "FLOW_MITHRIL_REMOTE_ROOT",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("clean_env")
def test_defaults_need_no_account_and_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("FLOW_CONFIG_PATH")
    settings = load_settings()
    assert settings.provider == "local"
    assert settings.home == tmp_path / ".flow"
    assert settings.mithril_api_key is None
    assert settings.mithril_api_url == "https://api.mithril.ai"
    assert config_path() == tmp_path / ".flow" / "config.yaml"


@pytest.mark.usefixtures("clean_env")
def test_each_level_overrides_the_next(config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # defaults
    assert load_settings().mithril_region is None
    # file > defaults
    config_file.write_text("mithril_region: from-file\nmithril_project: file-project\n")
    assert load_settings().mithril_region == "from-file"
    # environment > file (the project is only in the file, so it still comes from there)
    monkeypatch.setenv("MITHRIL_REGION", "from-env")
    settings = load_settings()
    assert (settings.mithril_region, settings.mithril_project) == ("from-env", "file-project")
    # arguments > environment
    assert load_settings(mithril_region="from-arg").mithril_region == "from-arg"
    # None arguments fall through
    assert load_settings(mithril_region=None).mithril_region == "from-env"


@pytest.mark.usefixtures("clean_env")
def test_precedence_of_provider_and_home(
    config_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_file.write_text(f"provider: ssh\nhome: {tmp_path / 'file-home'}\n")
    assert load_settings().provider == "ssh"
    assert load_settings().home == tmp_path / "file-home"
    monkeypatch.setenv("FLOW_PROVIDER", "mithril")
    monkeypatch.setenv("FLOW_HOME", str(tmp_path / "env-home"))
    assert load_settings().provider == "mithril"
    assert load_settings().home == tmp_path / "env-home"
    assert load_settings(provider="local").provider == "local"
    assert load_settings(home=tmp_path / "arg-home").home == tmp_path / "arg-home"


@pytest.mark.usefixtures("clean_env")
def test_precedence_of_mithril_ssh_user_and_remote_root(
    config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    defaults = load_settings()
    assert (defaults.mithril_ssh_user, defaults.mithril_remote_root) == (
        "ubuntu",
        "/var/tmp/flow-mithril",
    )
    config_file.write_text("mithril:\n  ssh_user: file-user\n  remote_root: /from/file/\n")
    from_file = load_settings()
    assert (from_file.mithril_ssh_user, from_file.mithril_remote_root) == (
        "file-user",
        "/from/file",
    )
    monkeypatch.setenv("MITHRIL_SSH_USER", "env-user")
    monkeypatch.setenv("FLOW_MITHRIL_REMOTE_ROOT", "/from/env")
    from_env = load_settings()
    assert (from_env.mithril_ssh_user, from_env.mithril_remote_root) == ("env-user", "/from/env")
    from_args = load_settings(mithril_ssh_user="arg-user", mithril_remote_root="/from/arg")
    assert (from_args.mithril_ssh_user, from_args.mithril_remote_root) == ("arg-user", "/from/arg")


@pytest.mark.usefixtures("clean_env")
@pytest.mark.parametrize(
    ("variable", "value", "fragment"),
    [
        ("FLOW_MITHRIL_REMOTE_ROOT", "relative/dir", "absolute folder"),
        ("FLOW_MITHRIL_REMOTE_ROOT", "/", "absolute folder"),
        ("MITHRIL_SSH_USER", "me@host", "user name without"),
    ],
)
def test_bad_mithril_ssh_user_or_remote_root_names_the_variable(
    variable: str, value: str, fragment: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError) as caught:
        load_settings()
    message = str(caught.value)
    assert variable in message and repr(value) in message and fragment in message


def test_flow_config_path_points_at_another_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = tmp_path / "elsewhere.yaml"
    other.write_text("mithril_project: elsewhere\n")
    monkeypatch.setenv("FLOW_CONFIG_PATH", str(other))
    assert load_settings().mithril_project == "elsewhere"


def test_sdk_style_file_layout_is_accepted(config_file: Path) -> None:
    config_file.write_text(
        f"region: us-central2-a\nmithril:\n  api_key: {SECRET}\n  project: p1\nssh_hosts: a@h1, b@h2:2222\n"
    )
    settings = load_settings()
    assert settings.mithril_region == "us-central2-a"
    assert settings.mithril_project == "p1"
    assert settings.mithril_api_key is not None
    assert settings.mithril_api_key.get_secret_value() == SECRET
    assert settings.ssh_hosts == ["a@h1", "b@h2:2222"]


def test_api_key_never_appears_in_repr_or_str(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MITHRIL_API_KEY", SECRET)
    settings = load_settings()
    assert SECRET not in repr(settings) and SECRET not in str(settings)
    assert SECRET not in settings.model_dump_json()
    assert SECRET not in repr(Flow(settings=settings))


@pytest.mark.parametrize(
    ("source", "fragments"),
    [
        ("file", ["config file", "'provider'", "'nope'", "local, mithril, ssh"]),
        ("env", ["FLOW_PROVIDER", "'nope'", "local, mithril, ssh"]),
        ("arg", ["arguments", "'nope'", "local, mithril, ssh"]),
    ],
)
def test_unknown_provider_names_the_source_and_the_valid_ones(
    source: str, fragments: list[str], config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    overrides = {}
    if source == "file":
        config_file.write_text("provider: nope\n")
    elif source == "env":
        monkeypatch.setenv("FLOW_PROVIDER", "nope")
    else:
        overrides["provider"] = "nope"
    with pytest.raises(ValidationError) as caught:
        load_settings(**overrides)
    for fragment in fragments:
        assert fragment in str(caught.value)


def test_unknown_provider_through_flow_client() -> None:
    with pytest.raises(ValidationError, match="local, mithril, ssh"):
        Flow(provider="nope")


@pytest.mark.usefixtures("clean_env")
@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("provider: [local\n", ["not valid YAML", "line"]),
        ("- local\n", ["must hold a mapping"]),
        ("provder: local\n", ["unknown setting 'provder'"]),
        ("poll_interval: soon\n", ["poll_interval", "'soon'"]),
    ],
)
def test_malformed_config_file_names_file_and_field(
    config_file: Path, text: str, fragments: list[str]
) -> None:
    config_file.write_text(text)
    with pytest.raises(ValidationError) as caught:
        load_settings()
    message = str(caught.value)
    assert str(config_file) in message
    for fragment in fragments:
        assert fragment in message


def test_bad_secret_value_is_not_echoed(config_file: Path) -> None:
    config_file.write_text("mithril_api_key: [1, 2]\n")
    with pytest.raises(ValidationError) as caught:
        load_settings()
    assert "mithril_api_key" in str(caught.value) and "<hidden>" in str(caught.value)


def test_unknown_argument_setting() -> None:
    with pytest.raises(ValidationError, match="Unknown setting 'colour'"):
        load_settings(colour="red")


def test_settings_object_can_be_given_directly(tmp_path: Path) -> None:
    settings = FlowSettings(home=tmp_path / "given")
    with Flow(settings=settings) as client:
        assert client.settings.home == tmp_path / "given"
        assert client.provider.name == "local"
    with Flow(settings=settings, stop_grace_seconds=3) as client:
        assert client.settings.stop_grace_seconds == 3
        assert client.settings.home == tmp_path / "given"


def test_a_provider_that_cannot_be_loaded_is_one_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from flow_backend import providers
    from flow_backend.errors import ProviderError

    monkeypatch.setitem(providers.PROVIDERS, "ssh", "flow_backend.providers.no_such_module:X")
    with pytest.raises(ProviderError, match="'ssh' cannot be loaded"):
        Flow(provider="ssh")
