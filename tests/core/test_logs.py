"""The node's logging: a private rotating file, a level from the env, redaction."""

from __future__ import annotations

import logging
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from meld_core.config import Config, parse_config
from meld_core.logs import PrivateRotatingFileHandler, setup_logging
from meld_core.signing import new_secret


@pytest.fixture
def config(tmp_path: Path) -> Iterator[Config]:
    text = f"""
[node]
id = "meld-l"
data_dir = "{tmp_path / "data"}"

[[backends]]
name = "sim"
kind = "sim"
models = ["sim-small"]
"""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    yield parse_config(text, tmp_path / "config.toml")
    for handler in list(root.handlers):
        if handler not in saved[0]:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(saved[1])


def flush() -> None:
    for handler in logging.getLogger().handlers:
        handler.flush()


def test_the_log_file_is_created_private_in_a_new_directory(config: Config) -> None:
    setup_logging(config, stderr=False)
    logging.getLogger("meld_core.test").info("node %s up", "meld-l")
    flush()

    text = config.log_path.read_text()
    assert stat.S_IMODE(config.log_path.stat().st_mode) == 0o600
    assert " INFO    meld_core.test: node meld-l up" in text


def test_a_secret_in_a_message_or_a_traceback_is_redacted(config: Config) -> None:
    secret = new_secret()
    setup_logging(config, stderr=False)
    log = logging.getLogger("meld_core.test")

    log.warning("careless line with %s", secret)
    try:
        raise ValueError(f"bad secret {secret}")
    except ValueError:
        log.exception("failed")
    flush()

    text = config.log_path.read_text()
    assert secret not in text
    assert text.count("msk_[redacted]") == 2


def test_meld_log_level_sets_the_level(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MELD_LOG_LEVEL", "warning")
    setup_logging(config, stderr=False)
    log = logging.getLogger("meld_core.test")

    log.info("quiet")
    log.warning("loud")
    flush()

    text = config.log_path.read_text()
    assert "loud" in text and "quiet" not in text


def test_a_second_setup_replaces_the_first_instead_of_doubling_lines(
    config: Config, capsys: pytest.CaptureFixture[str]
) -> None:
    setup_logging(config, stderr=True)
    setup_logging(config, stderr=True)

    logging.getLogger("meld_core.test").info("once")
    flush()

    assert config.log_path.read_text().count("once") == 1
    assert capsys.readouterr().err.count("once") == 1


def test_rotated_files_stay_private(tmp_path: Path) -> None:
    path = tmp_path / "node.log"
    handler = PrivateRotatingFileHandler(path, maxBytes=200, backupCount=2)
    handler.setFormatter(logging.Formatter("%(message)s"))
    try:
        for n in range(20):
            handler.emit(logging.makeLogRecord({"msg": f"line {n} " + "x" * 40}))
    finally:
        handler.close()

    rotated = sorted(tmp_path.iterdir())
    assert [p.name for p in rotated] == ["node.log", "node.log.1", "node.log.2"]
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in rotated)
