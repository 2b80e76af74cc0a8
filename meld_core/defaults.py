"""The configuration a first run writes, shaped by what answers on this machine."""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

import httpx

from .config import DEFAULT_OLLAMA_URL, SIM_MODEL, Config, load_config

log = logging.getLogger(__name__)

_SIM = f"""
[[backends]]
name = "sim"
kind = "sim"
models = ["{SIM_MODEL}"]
max_concurrency = 2
max_queue = 256
queue_timeout_s = 120
request_timeout_s = 90
ttft_s = 0.3
tpot_s = 0.02
parallel = 2
jitter = 0.2

[pricing."{SIM_MODEL}"]
input_per_mtok = 100000
output_per_mtok = 400000
min_charge = 1
max_output_tokens = 1024
"""

_OLLAMA = """
[[backends]]
name = "ollama"
kind = "ollama"
base_url = "{url}"
models = [{models}]
max_concurrency = 2
max_queue = 256
queue_timeout_s = 120
request_timeout_s = 90
adaptive = true
"""

_DEEPSEEK = """
[[backends]]
name = "deepseek"
kind = "openai"
base_url = "https://api.deepseek.com"
api_key_env = "DEEPSEEK_API_KEY"
models = ["deepseek-chat"]
max_concurrency = 64

[pricing."deepseek-chat"]
input_per_mtok = 270000
output_per_mtok = 1100000
min_charge = 1
max_output_tokens = 8192
"""


def probe_ollama(url: str = DEFAULT_OLLAMA_URL, timeout_s: float = 0.5) -> list[str]:
    """The models of an Ollama server answering at `url`, or [] when none answers."""
    try:
        response = httpx.get(f"{url}/api/tags", timeout=timeout_s)
        response.raise_for_status()
        return [m["name"] for m in response.json().get("models", []) if "name" in m]
    except (httpx.HTTPError, ValueError, KeyError, TypeError, AttributeError):
        return []


def default_config_text(
    data_dir: Path, *, ollama_models: list[str], deepseek: bool
) -> str:
    """The text of a first-run configuration."""
    node_id = "meld-" + secrets.token_hex(2)
    parts = [
        "# MELD node configuration: see PROTOCOL.md section 7.\n",
        "[node]",
        f'id = "{node_id}"',
        'listen = "127.0.0.1:8787"',
        f'data_dir = "{data_dir}"',
        "max_body_bytes = 1048576",
        _SIM,
    ]
    if ollama_models:
        models = ", ".join(f'"{m}"' for m in ollama_models)
        parts.append(_OLLAMA.format(url=DEFAULT_OLLAMA_URL, models=models))
    if deepseek:
        parts.append(_DEEPSEEK)
    parts.append("[limits]\nrequests_per_minute = 120\nmax_in_flight = 16\n")
    return "\n".join(parts)


def ensure_config(path: Path) -> Config:
    """Load the configuration at `path`, writing a first-run default if none."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        text = default_config_text(
            path.parent,
            ollama_models=probe_ollama(),
            deepseek=bool(os.environ.get("DEEPSEEK_API_KEY")),
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        log.info("wrote a default configuration to %s", path)
    return load_config(path)
