"""Configuration: validation names the file and key; first run writes a default."""

from __future__ import annotations

from pathlib import Path

import pytest

from meld_core.config import Price, load_config, parse_config
from meld_core.defaults import default_config_text, ensure_config
from meld_core.errors import ConfigError

MINIMAL = """
[node]
id = "meld-4"
listen = "127.0.0.1:0"
data_dir = "data"

[[backends]]
name = "sim"
kind = "sim"
models = ["sim-small"]
"""


def test_a_minimal_file_loads_with_protocol_defaults(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(MINIMAL)
    config = load_config(path)
    backend = config.backends[0]
    assert config.node.data_dir == tmp_path / "data"
    assert (backend.max_concurrency, backend.max_queue) == (2, 256)
    assert (backend.queue_timeout_s, backend.request_timeout_s) == (120, 90)
    assert config.limits.requests_per_minute == 120


@pytest.mark.parametrize(
    "change, key",
    [
        ("surprise = 1\n" + MINIMAL, "surprise"),
        (
            MINIMAL.replace('kind = "sim"', 'kind = "sim"\nslots = 3'),
            "backends[0].slots",
        ),
        (MINIMAL.replace('kind = "sim"', 'kind = "gpu"'), "backends[0].kind"),
        (MINIMAL.replace('"127.0.0.1:0"', '"nowhere"'), "node.listen"),
        (MINIMAL.replace('id = "meld-4"', 'id = "Meld 4"'), "node.id"),
        (
            MINIMAL.replace('models = ["sim-small"]', "models = []"),
            "backends[0].models",
        ),
        (MINIMAL + '[limits]\nmax_in_flight = "many"\n', "limits.max_in_flight"),
        (
            MINIMAL + '[pricing."sim-small"]\ninput_per_mtok = 1.5\n',
            'pricing."sim-small".input_per_mtok',
        ),
    ],
)
def test_an_error_names_the_file_and_the_key(
    tmp_path: Path, change: str, key: str
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(change)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(path) in caught.value.message
    assert f"'{key}'" in caught.value.message


def test_a_missing_file_and_bad_toml_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such configuration file"):
        load_config(tmp_path / "absent.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        parse_config("[node", tmp_path / "x.toml")


def test_cost_rounds_up_and_respects_the_minimum() -> None:
    price = Price(input_per_mtok=270_000, output_per_mtok=1_100_000, min_charge=1)
    assert price.cost(0, 0) == 1
    assert price.cost(1, 0) == 1  # 0.27 rounds up
    assert price.cost(1000, 1000) == 1370


def test_first_run_writes_a_loadable_private_default_with_sim(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("meld_core.defaults.probe_ollama", lambda *a, **k: [])
    monkeypatch.delenv("DEEPSEEK_API_KEY", raising=False)
    path = tmp_path / "home" / "config.toml"
    config = ensure_config(path)
    assert [b.kind for b in config.backends] == ["sim"]
    assert path.stat().st_mode & 0o777 == 0o600
    assert ensure_config(path) == config  # a second run keeps the file


def test_default_adds_ollama_and_deepseek_when_found(tmp_path: Path) -> None:
    text = default_config_text(tmp_path, ollama_models=["llama3.2:3b"], deepseek=True)
    config = parse_config(text, tmp_path / "c.toml")
    kinds = {b.name: b.kind for b in config.backends}
    assert kinds == {"sim": "sim", "ollama": "ollama", "deepseek": "openai"}
    assert config.backends[2].api_key_env == "DEEPSEEK_API_KEY"


@pytest.mark.parametrize(
    "line, key, expected",
    [
        ("queue_timeout_s = nan", "queue_timeout_s", "a number from 0 to 86400"),
        ("request_timeout_s = inf", "request_timeout_s", "a number from 0.001 to"),
        ("ttft_s = -inf", "ttft_s", "a number from 0 to 3600"),
        ("tpot_s = nan", "tpot_s", "a number from 0 to 3600"),
        ("jitter = 50", "jitter", "a number from 0 to 1"),
        ('api_key_env = ""', "api_key_env", "an environment variable name"),
    ],
)
def test_a_backend_number_or_env_name_out_of_range_is_refused(
    tmp_path: Path, line: str, key: str, expected: str
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(MINIMAL.replace('kind = "sim"', f'kind = "sim"\n{line}'))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(path) in caught.value.message
    assert f"'backends[0].{key}'" in caught.value.message
    assert expected in caught.value.message


def test_an_empty_secret_env_of_a_remote_is_refused(tmp_path: Path) -> None:
    remote = '[[remotes]]\nid = "r"\nurl = "http://x"\npeer_id = "p"\nsecret_env = ""\n'
    path = tmp_path / "config.toml"
    path.write_text(MINIMAL + remote)
    with pytest.raises(ConfigError, match=r"'remotes\[0\]\.secret_env'"):
        load_config(path)
