"""Where ``webchat serve`` takes its options from: command line > WEBCHAT_<OPTION> > --config
file > default; and what it refuses before starting anything."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from webchat.broker import MemoryBroker
from webchat.broker import from_url as broker_from_url
from webchat.broker.redis import RedisBroker
from webchat.cli.main import cli
from webchat.cli.serve import hidden_password, serve_command
from webchat.store import from_url as store_from_url
from webchat.store.sqlite import SqliteStore


@pytest.fixture(autouse=True)
def _no_webchat_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own WEBCHAT_* variables must not decide these tests."""
    import os

    for name in list(os.environ):
        if name.startswith("WEBCHAT_"):
            monkeypatch.delenv(name)


def parsed(*args: str) -> dict[str, Any]:
    """The parameters ``webchat serve ARGS`` would run with (parsed, not run)."""
    with serve_command.make_context("serve", list(args)) as ctx:
        return dict(ctx.params)


def write(path: Path, text: str) -> Path:
    path.write_text(text, "utf-8")
    return path


def test_defaults_without_any_source() -> None:
    params = parsed()
    assert params["port"] == 8080
    assert params["store_url"] is None and params["broker_url"] is None
    assert params["workers"] == 1 and params["node_id"] is None
    assert params["services"] == ("customer-support",)


def test_a_config_file_sets_options_by_their_names_with_dashes_or_underscores(
        tmp_path: Path) -> None:
    config = write(tmp_path / "webchat.toml", '''
port = 9001
data-dir = "/srv/webchat"
store = "postgresql://webchat@db.internal/webchat"
broker = "redis://cache.internal:6379/0"
node_id = "web-a"
workers = 4
service = ["sales", "support"]
agent = "ada:secret"
with-bot = true
trust_forwarded_for = true
offer-timeout = 12.5
http-errors = "strict"
''')
    params = parsed("--config", str(config))
    assert params["port"] == 9001
    assert params["data_dir"] == "/srv/webchat"
    assert params["store_url"] == "postgresql://webchat@db.internal/webchat"
    assert params["broker_url"] == "redis://cache.internal:6379/0"
    assert params["node_id"] == "web-a"
    assert params["workers"] == 4
    assert params["services"] == ("sales", "support")
    assert params["agents"] == ("ada:secret",)  # one value for a repeatable option: a list of it
    assert params["with_bot"] is True and params["trust_forwarded_for"] is True
    assert params["offer_timeout"] == 12.5
    assert params["http_errors"] == "strict"


def test_the_environment_overrides_the_file_and_the_command_line_both(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write(tmp_path / "webchat.toml", 'port = 9001\nhost = "10.0.0.1"\n'
                                              'service = ["from-file"]\n')
    monkeypatch.setenv("WEBCHAT_PORT", "9002")
    monkeypatch.setenv("WEBCHAT_SERVICE", "env-a env-b")
    params = parsed("--config", str(config))
    assert params["port"] == 9002
    assert params["services"] == ("env-a", "env-b")
    assert params["host"] == "10.0.0.1"  # set only in the file
    params = parsed("--config", str(config), "--port", "9003", "--service", "cli")
    assert params["port"] == 9003
    assert params["services"] == ("cli",)


def test_the_config_file_itself_can_come_from_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBCHAT_CONFIG", str(write(tmp_path / "w.toml", "workers = 3\n")))
    monkeypatch.setenv("WEBCHAT_WITH_BOT", "yes")
    monkeypatch.setenv("WEBCHAT_STORE", "postgresql://db/webchat")
    params = parsed()
    assert params["workers"] == 3
    assert params["with_bot"] is True
    assert params["store_url"] == "postgresql://db/webchat"


@pytest.mark.parametrize(("text", "message"), [
    ("prot = 9001\n", "unknown setting 'prot'"),
    ("config = 'other.toml'\n", "unknown setting 'config'"),
    ("port = \n", "is not valid TOML"),
    ("port = 'eighty'\n", "'eighty' is not a valid integer"),
])
def test_a_bad_config_file_is_refused_saying_what_is_wrong(tmp_path: Path, text: str,
                                                           message: str) -> None:
    config = write(tmp_path / "bad.toml", text)
    with pytest.raises(click.UsageError, match=message):
        parsed("--config", str(config))


def test_a_missing_config_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(click.UsageError, match="cannot read"):
        parsed("--config", str(tmp_path / "nowhere.toml"))


def test_help_names_every_options_variable_and_the_precedence() -> None:
    result = CliRunner().invoke(cli, ["serve", "--help"], terminal_width=200)
    assert result.exit_code == 0
    for name in ("WEBCHAT_CONFIG", "WEBCHAT_STORE", "WEBCHAT_BROKER", "WEBCHAT_NODE_ID",
                 "WEBCHAT_WORKERS", "WEBCHAT_DATA_DIR", "WEBCHAT_WITH_BOT"):
        assert f"env var: {name}" in result.output, name
    assert "The command line wins over the environment, which wins over the file" in " ".join(
        result.output.split())


def test_docs_configuration_lists_every_option_with_its_variable() -> None:
    doc = (Path(__file__).resolve().parents[1] / "docs/configuration.md").read_text("utf-8")
    rows = [line for line in doc.splitlines() if line.startswith("| `--")]
    for param in serve_command.params:
        if isinstance(param, click.Option):
            assert any(f"`{param.opts[0]}" in row and f"`{param.envvar}`" in row
                       for row in rows), param.opts[0]


# ---- what serve refuses before starting ---------------------------------------------------


@pytest.mark.parametrize("args", [
    ["--workers", "2"],
    ["--workers", "2", "--store", "sqlite:///tmp/x.sqlite3", "--broker", "redis://h:6379/0"],
])
def test_several_workers_on_sqlite_are_refused(tmp_path: Path, args: list[str]) -> None:
    result = CliRunner().invoke(cli, ["serve", "--data-dir", str(tmp_path), *args])
    assert result.exit_code == 2, result.output
    assert "--workers 2 needs a store and a broker that every process shares" in result.output
    assert "--store postgresql://... and --broker redis://..." in result.output
    assert not (tmp_path / "webchat.sqlite3").exists()  # refused before anything started


def test_several_workers_on_the_memory_broker_are_refused(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["serve", "--workers", "3", "--store",
                                      "postgresql://postgres@127.0.0.1:5432/test"])
    assert result.exit_code == 2, result.output
    assert "--workers 3 needs a store and a broker that every process shares" in result.output


@pytest.mark.parametrize(("args", "message"), [
    (["--store", "mysql://db/webchat"], "unknown store 'mysql://db/webchat'"),
    (["--broker", "kafka://k:9092"], "unknown broker 'kafka://k:9092'"),
])
def test_an_unknown_store_or_broker_is_refused(tmp_path: Path, args: list[str],
                                               message: str) -> None:
    result = CliRunner().invoke(cli, ["serve", "--data-dir", str(tmp_path), *args])
    assert result.exit_code == 2, result.output
    assert message in result.output


# ---- the factories behind --store and --broker --------------------------------------------


def test_the_default_store_is_sqlite_in_the_data_dir(tmp_path: Path) -> None:
    store = store_from_url(None, str(tmp_path))
    assert isinstance(store, SqliteStore)
    assert store.path == tmp_path / "webchat.sqlite3"
    elsewhere = store_from_url(f"sqlite://{tmp_path}/other.sqlite3", "unused")
    assert isinstance(elsewhere, SqliteStore)
    assert elsewhere.path == tmp_path / "other.sqlite3"


def test_a_postgresql_url_makes_a_postgresql_store() -> None:
    for url in ("postgresql://u@h/db", "postgres://u@h/db"):
        assert store_from_url(url, "unused").dialect == "postgresql"


def test_the_default_broker_is_in_process() -> None:
    assert isinstance(broker_from_url(None), MemoryBroker)
    assert isinstance(broker_from_url("memory"), MemoryBroker)
    assert isinstance(broker_from_url("memory://"), MemoryBroker)


def test_a_redis_url_makes_a_redis_broker_with_its_prefix() -> None:
    broker = broker_from_url("redis://127.0.0.1:6379/0?prefix=blue:")
    assert isinstance(broker, RedisBroker)
    assert broker.prefix == "blue:"


def test_passwords_are_hidden_when_urls_are_shown() -> None:
    assert hidden_password("postgresql://app:s3cr%40t@db:5432/webchat") == \
        "postgresql://app:***@db:5432/webchat"
    assert hidden_password("redis://:pw@cache:6379/0") == "redis://:***@cache:6379/0"
    assert hidden_password("postgresql://app@db/webchat") == "postgresql://app@db/webchat"
