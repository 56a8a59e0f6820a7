"""Configuration: defaults, file, environment; bad keys and values fail at
start with a message naming the key and where it came from."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.config import load_settings, reference
from bridge.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def test_default_config_file_is_sqlite_under_var() -> None:
    settings = load_settings(ROOT / "config" / "calbridge.toml", {})
    assert settings.database.url == "sqlite:///var/calbridge.db"
    assert settings.server.port == 8080
    assert settings.feeds.refresh_minutes == 15


def test_environment_overrides_the_file() -> None:
    settings = load_settings(ROOT / "config" / "calbridge.toml", {
        "CALBRIDGE_SERVER_PORT": "9090", "CALBRIDGE_DATABASE_URL": "postgresql://x@y/z",
        "CALBRIDGE_SERVER_TRUST_PROXY": "true"})
    assert settings.server.port == 9090
    assert settings.server.trust_proxy is True
    assert settings.database.url == "postgresql://x@y/z"


def test_postgres_example_config_loads() -> None:
    settings = load_settings(ROOT / "config" / "postgres.example.toml", {})
    assert settings.database.url.startswith("postgresql://")


@pytest.mark.parametrize(("text", "env", "message"), [
    ("[server]\nprot = 1\n", {}, "unknown key 'prot' in [server] in "),
    ("[servr]\nport = 1\n", {}, "unknown section [servr] in "),
    ("[server]\nport = 'eighty'\n", {}, "[server] port in "),
    ("[server]\nworkers = 0\n", {}, "[server] workers in "),
    ("[server]\ntrust_proxy = 'maybe'\n", {}, "[server] trust_proxy in "),
    ("[server\n", {}, "not valid TOML"),
    ("", {"CALBRIDGE_SERVER_PORT": "x"}, "environment CALBRIDGE_SERVER_PORT"),
    ("", {"CALBRIDGE_NOPE_KEY": "x"}, "CALBRIDGE_NOPE_KEY"),
    ("", {"CALBRIDGE_SERVER_NOPE": "x"}, "unknown key 'nope' in [server] in environment"),
])
def test_bad_configuration_names_the_key_and_source(tmp_path: Path, text: str, env: dict[str, str],
                                                    message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_settings(path, env)
    assert message in str(err.value)
    if not env:
        assert str(path) in str(err.value)


def test_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml", {})


def test_readme_config_reference_matches_the_code() -> None:
    readme = (ROOT / "README.md").read_text()
    assert reference() in readme, "run `calbridge config reference` and paste it into README.md"
