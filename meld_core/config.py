"""The node's TOML configuration (PROTOCOL section 7): loading, validation, defaults."""

from __future__ import annotations

import logging
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .signing import is_valid_id

log = logging.getLogger(__name__)

BACKEND_KINDS = ("ollama", "openai", "sim")
DEFAULT_OLLAMA_URL = "http://127.0.0.1:11434"
SIM_MODEL = "sim-small"


@dataclass(frozen=True, slots=True)
class NodeSettings:
    """The `[node]` table."""

    id: str
    host: str = "127.0.0.1"
    port: int = 8787
    data_dir: Path = Path("/var/lib/meld")
    max_body_bytes: int = 1_048_576

    @property
    def listen(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class BackendConfig:
    """One `[[backends]]` entry."""

    name: str
    kind: str
    models: tuple[str, ...]
    base_url: str = ""
    api_key_env: str | None = None
    max_concurrency: int = 2
    max_queue: int = 256
    queue_timeout_s: float = 120.0
    request_timeout_s: float = 90.0
    adaptive: bool = False
    ttft_s: float = 0.5
    tpot_s: float = 0.05
    parallel: int = 1
    jitter: float = 0.0

    def api_key(self) -> str | None:
        """The upstream API key, read from the environment at the time of use."""
        return os.environ.get(self.api_key_env) if self.api_key_env else None


@dataclass(frozen=True, slots=True)
class Price:
    """One `[pricing."model"]` table, in credit units per million tokens."""

    input_per_mtok: int = 0
    output_per_mtok: int = 0
    min_charge: int = 0
    max_output_tokens: int = 4096

    def cost(self, input_tokens: int, output_tokens: int) -> int:
        """The charge for a usage, rounded up, never below the minimum."""
        micro = (
            input_tokens * self.input_per_mtok + output_tokens * self.output_per_mtok
        )
        return max(self.min_charge, -(-micro // 1_000_000))


@dataclass(frozen=True, slots=True)
class Limits:
    """The `[limits]` table: per-peer defaults."""

    requests_per_minute: int = 120
    max_in_flight: int = 16


@dataclass(frozen=True, slots=True)
class RemoteConfig:
    """One `[[remotes]]` entry: another node this node or its console calls."""

    id: str
    url: str
    peer_id: str
    secret_env: str | None = None

    def secret(self) -> str | None:
        return os.environ.get(self.secret_env) if self.secret_env else None


@dataclass(frozen=True, slots=True)
class Config:
    """A whole, validated configuration file."""

    node: NodeSettings
    backends: tuple[BackendConfig, ...]
    pricing: Mapping[str, Price] = field(default_factory=dict)
    limits: Limits = Limits()
    remotes: tuple[RemoteConfig, ...] = ()
    path: Path | None = None

    def price(self, model: str) -> Price:
        """The price of a model; a model with no `[pricing]` entry is free."""
        return self.pricing.get(model, Price())

    def remote(self, remote_id: str) -> RemoteConfig | None:
        return next((r for r in self.remotes if r.id == remote_id), None)

    @property
    def db_path(self) -> Path:
        return self.node.data_dir / "ledger.db"

    @property
    def log_path(self) -> Path:
        return self.node.data_dir / "node.log"

    @property
    def console_secret_path(self) -> Path:
        """Where the node keeps its console peer's secret (mode 0600)."""
        return self.node.data_dir / "console.secret"

    @property
    def console_peer(self) -> str:
        """The peer id the node's own console signs as."""
        return f"{self.node.id}-console"[:63]


def meld_home() -> Path:
    """`$MELD_HOME`, defaulting to `~/.meld`."""
    return Path(os.environ.get("MELD_HOME") or "~/.meld").expanduser()


def default_config_path() -> Path:
    return meld_home() / "config.toml"


# A day: longer timeouts are typing mistakes, and inf or nan would break holds.
MAX_SECONDS = 86_400.0
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class _Table:
    """Reads typed keys from one TOML table and reports errors with file and key."""

    def __init__(self, source: Path | str, prefix: str, data: Any) -> None:
        self.source = source
        self.prefix = prefix
        if not isinstance(data, dict):
            self.fail(prefix, "a table")
        self.data: dict[str, Any] = data
        self.seen: set[str] = set()

    def fail(self, key: str, expected: str) -> None:
        raise ConfigError(f"{self.source}: key '{key}': expected {expected}")

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def get(self, name: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
        self.seen.add(name)
        if name not in self.data:
            if default is _REQUIRED:
                self.fail(self.key(name), "a value (it is required)")
            return default
        value = self.data[name]
        if isinstance(value, bool) and kind is not bool:
            self.fail(self.key(name), _describe(kind))
        if not isinstance(value, kind):
            self.fail(self.key(name), _describe(kind))
        return value

    def number(
        self,
        name: str,
        default: Any,
        *,
        minimum: float = 0,
        maximum: float = MAX_SECONDS,
    ) -> Any:
        value = self.get(name, (int, float), default)
        # `not minimum <= value` also catches nan, which compares false to all.
        if value is not None and not minimum <= value <= maximum:
            self.fail(self.key(name), f"a number from {minimum:g} to {maximum:g}")
        return value

    def env_name(self, name: str) -> str | None:
        value: str | None = self.get(name, str)
        if value is not None and not ENV_NAME.fullmatch(value):
            self.fail(self.key(name), "an environment variable name, such as API_KEY")
        return value

    def integer(self, name: str, default: Any, *, minimum: int = 0) -> Any:
        value = self.get(name, int, default)
        if value is not None and value < minimum:
            self.fail(self.key(name), f"a whole number of at least {minimum}")
        return value

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.seen)
        if unknown:
            raise ConfigError(f"{self.source}: unknown key '{self.key(unknown[0])}'")


_REQUIRED = object()


def _describe(kind: type | tuple[type, ...]) -> str:
    names = {
        int: "a whole number",
        float: "a number",
        str: "a string",
        bool: "true or false",
        list: "a list",
        dict: "a table",
    }
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if set(kinds) == {int, float}:
        return "a number"
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _parse_node(source: Path | str, data: Any, base: Path) -> NodeSettings:
    t = _Table(source, "node", data)
    node_id = t.get("id", str, _REQUIRED)
    if not is_valid_id(node_id):
        t.fail("node.id", "an id matching [a-z0-9][a-z0-9._-]{0,62}")
    listen = t.get("listen", str, "127.0.0.1:8787")
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        t.fail("node.listen", "HOST:PORT, such as 127.0.0.1:8787")
    data_dir = Path(t.get("data_dir", str, "~/.meld")).expanduser()
    if not data_dir.is_absolute():
        data_dir = base / data_dir
    max_body = t.integer("max_body_bytes", 1_048_576, minimum=1024)
    t.done()
    return NodeSettings(node_id, host.strip("[]"), int(port), data_dir, max_body)


def _parse_backend(source: Path | str, index: int, data: Any) -> BackendConfig:
    t = _Table(source, f"backends[{index}]", data)
    name = t.get("name", str, _REQUIRED)
    if not is_valid_id(name):
        t.fail(t.key("name"), "a name matching [a-z0-9][a-z0-9._-]{0,62}")
    kind = t.get("kind", str, _REQUIRED)
    if kind not in BACKEND_KINDS:
        t.fail(t.key("kind"), "one of " + ", ".join(f'"{k}"' for k in BACKEND_KINDS))
    models = t.get("models", list, _REQUIRED)
    if not models or not all(isinstance(m, str) and m for m in models):
        t.fail(t.key("models"), "a non-empty list of model names")
    base_url = t.get("base_url", str, DEFAULT_OLLAMA_URL if kind == "ollama" else "")
    if kind != "sim" and not base_url.startswith(("http://", "https://")):
        t.fail(t.key("base_url"), "an http:// or https:// URL")
    backend = BackendConfig(
        name=name,
        kind=kind,
        models=tuple(models),
        base_url=base_url.rstrip("/"),
        api_key_env=t.env_name("api_key_env"),
        max_concurrency=t.integer("max_concurrency", 2 if kind != "openai" else 64),
        max_queue=t.integer("max_queue", 256),
        queue_timeout_s=float(t.number("queue_timeout_s", 120.0)),
        request_timeout_s=float(t.number("request_timeout_s", 90.0, minimum=0.001)),
        adaptive=t.get("adaptive", bool, False),
        ttft_s=float(t.number("ttft_s", 0.5, maximum=3600)),
        tpot_s=float(t.number("tpot_s", 0.05, maximum=3600)),
        parallel=t.integer("parallel", 1, minimum=1),
        jitter=float(t.number("jitter", 0.0, maximum=1)),
    )
    t.done()
    return backend


def _parse_price(source: Path | str, model: str, data: Any) -> Price:
    t = _Table(source, f'pricing."{model}"', data)
    price = Price(
        input_per_mtok=t.integer("input_per_mtok", 0),
        output_per_mtok=t.integer("output_per_mtok", 0),
        min_charge=t.integer("min_charge", 0),
        max_output_tokens=t.integer("max_output_tokens", 4096, minimum=1),
    )
    t.done()
    return price


def _parse_remote(source: Path | str, index: int, data: Any) -> RemoteConfig:
    t = _Table(source, f"remotes[{index}]", data)
    remote_id = t.get("id", str, _REQUIRED)
    url = t.get("url", str, _REQUIRED)
    if not url.startswith(("http://", "https://")):
        t.fail(t.key("url"), "an http:// or https:// URL")
    peer_id = t.get("peer_id", str, _REQUIRED)
    if not is_valid_id(remote_id) or not is_valid_id(peer_id):
        t.fail(t.key("id"), "ids matching [a-z0-9][a-z0-9._-]{0,62}")
    secret_env = t.env_name("secret_env")
    remote = RemoteConfig(remote_id, url.rstrip("/"), peer_id, secret_env)
    t.done()
    return remote


def parse_config(text: str, source: Path | str = "<config>") -> Config:
    """A validated configuration from TOML text; raises ConfigError naming the key."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    base = Path(source).parent if isinstance(source, Path) else Path.cwd()

    top = _Table(source, "", raw)
    node = _parse_node(source, top.get("node", dict, _REQUIRED), base)
    backends = tuple(
        _parse_backend(source, i, b)
        for i, b in enumerate(top.get("backends", list, _REQUIRED))
    )
    if not backends:
        top.fail("backends", "at least one [[backends]] entry")
    pricing = {
        m: _parse_price(source, m, p) for m, p in top.get("pricing", dict, {}).items()
    }
    limits_table = _Table(source, "limits", top.get("limits", dict, {}))
    limits = Limits(
        requests_per_minute=limits_table.integer("requests_per_minute", 120, minimum=1),
        max_in_flight=limits_table.integer("max_in_flight", 16, minimum=1),
    )
    limits_table.done()
    remotes = tuple(
        _parse_remote(source, i, r) for i, r in enumerate(top.get("remotes", list, []))
    )
    top.done()

    _check_unique(source, "backends", [b.name for b in backends])
    _check_unique(source, "remotes", [r.id for r in remotes])
    models = [m for b in backends for m in b.models]
    _check_unique(source, "models", models)
    return Config(
        node,
        backends,
        pricing,
        limits,
        remotes,
        source if isinstance(source, Path) else None,
    )


def _check_unique(source: Path | str, what: str, names: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ConfigError(f"{source}: key '{what}': '{name}' appears twice")
        seen.add(name)


def load_config(path: Path) -> Config:
    """Read and validate a configuration file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such configuration file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    return parse_config(text, path)
