"""`stress`: a stress run against a node without the screen, with reports."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meld_core.config import Config
from meld_core.errors import Unavailable
from meld_core.signing import SECRET_PATTERN, is_valid_id
from meld_core.stress import (
    MAX_LEVEL,
    StressResult,
    console_credentials,
    format_counts,
    format_ms,
    node_url,
    probe,
    render_markdown,
    run_stress,
)

from .common import fail, positive_int, read_config

COLUMNS = (
    ("level", 5), ("sent", 5), ("ok", 5), ("failed", 6), ("p50 ms", 7),
    ("p95 ms", 7), ("p99 ms", 7), ("max ms", 7), ("ok/s", 7), ("max qpos", 8),
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Target:
    """Where a stress run goes and who it signs as."""

    url: str
    peer: str
    secret: str


def levels(value: str) -> list[int]:
    """An argparse type: concurrency levels such as `1,5,10,20`."""
    parts = [p.strip() for p in value.split(",") if p.strip()]
    if not parts:
        raise argparse.ArgumentTypeError("expected levels such as 1,5,10,20")
    chosen = [positive_int(p) for p in parts]
    if max(chosen) > MAX_LEVEL:
        raise argparse.ArgumentTypeError(f"levels go up to {MAX_LEVEL}")
    return chosen


def add_parser(
    commands: argparse._SubParsersAction[Any], common: argparse.ArgumentParser
) -> None:
    """Register `stress`."""
    stress = commands.add_parser(
        "stress",
        parents=[common],
        help="send signed requests at rising concurrency and report latencies",
        description="Send signed chat requests to a node at each concurrency level "
        "in turn and print a table row per level. The peer and secret come from the "
        "data directory (self), the remote's secret_env, or MELD_PEER and "
        "MELD_SECRET (a URL), never from the command line.",
    )
    stress.add_argument(
        "--target", required=True, metavar="NODE",
        help="'self', the id of a [[remotes]] entry, or a node URL",
    )  # fmt: skip
    stress.add_argument(
        "--model", metavar="M",
        help="the model to call (default for 'self': the first configured model)",
    )  # fmt: skip
    stress.add_argument(
        "--levels", type=levels, default=[1, 5, 10, 20], metavar="L1,L2,...",
        help="concurrency levels, run one after the other (default 1,5,10,20)",
    )  # fmt: skip
    stress.add_argument(
        "--requests-per-level", type=positive_int, metavar="K",
        help="requests sent at each level (default: as many as the level)",
    )  # fmt: skip
    stress.add_argument("--stream", action="store_true", help="stream the answers")
    stress.add_argument(
        "--max-tokens", type=positive_int, default=64, metavar="N",
        help="max_tokens of each request (default 64)",
    )  # fmt: skip
    stress.add_argument(
        "--timeout", type=positive_int, default=300, metavar="S",
        help="the most one request may take, in seconds (default 300)",
    )  # fmt: skip
    stress.add_argument("--report", type=Path, metavar="FILE.md", help="write Markdown")
    stress.add_argument("--json", type=Path, metavar="FILE", help="write JSON")
    stress.set_defaults(run=stress_command)


def stress_command(args: argparse.Namespace) -> int:
    """Run the stress levels and print, then write, the results."""
    config = read_config(args)
    target = resolve_target(args.target, config)
    model = args.model or _default_model(args.target, config)

    try:
        asyncio.run(probe(target.url))
    except Unavailable as exc:
        hint = (
            "; is the node running ('meld-console serve')?"
            if args.target == "self"
            else ""
        )
        fail(exc.message + hint)
    print(f"stress run against {target.url} as {target.peer}, model {model}")
    print(_row([name for name, _ in COLUMNS]) + "  statuses")
    results = asyncio.run(
        run_stress(
            target.url,
            target.peer,
            target.secret,
            model,
            args.levels,
            requests_per_level=args.requests_per_level,
            stream=args.stream,
            max_tokens=args.max_tokens,
            timeout_s=args.timeout,
            on_level=_print_level,
        )
    )

    if args.report:
        _write(args.report, render_markdown(results, target=target.url, model=model))
    if args.json:
        body = {
            "target": target.url,
            "model": model,
            "stream": args.stream,
            "levels": [r.as_json() for r in results],
        }
        _write(args.json, json.dumps(body, indent=2) + "\n")
    if not any(r.ok for r in results):
        fail("no request succeeded; see the statuses above")
    return 0


def resolve_target(name: str, config: Config) -> Target:
    """The URL and credentials for `--target`: self, a remote's id, or a URL."""
    if name == "self":
        peer, secret = console_credentials(config)
        return Target(node_url(config), peer, secret)
    if name.startswith(("http://", "https://")):
        peer, secret = _caller_credentials(name)
        return Target(name.rstrip("/"), peer, secret)
    remote = config.remote(name)
    if remote is None:
        known = ", ".join(r.id for r in config.remotes) or "none configured"
        fail(f"unknown target {name!r}: expected 'self', a URL or a remote ({known})")
    remote_secret = remote.secret()
    if not remote_secret:
        fail(
            f"remote {remote.id}: set the environment variable "
            f"{remote.secret_env or '(secret_env is not configured)'} to its secret"
        )
    return Target(remote.url, remote.peer_id, remote_secret)


def _caller_credentials(url: str) -> tuple[str, str]:
    peer = os.environ.get("MELD_PEER", "")
    secret = os.environ.get("MELD_SECRET", "")
    if not (peer and secret) and sys.stdin.isatty():
        peer = peer or input(f"peer id at {url}: ").strip()
        secret = secret or getpass.getpass(f"secret of {peer}: ").strip()
    if not (peer and secret):
        fail(f"set MELD_PEER and MELD_SECRET to call {url}")
    if not is_valid_id(peer):
        fail(f"MELD_PEER {peer!r} is not a valid peer id")
    if not SECRET_PATTERN.fullmatch(secret):
        fail("MELD_SECRET is not a peer secret (msk_ and 43 characters)")
    return peer, secret


def _default_model(target: str, config: Config) -> str:
    if target != "self":
        fail("--model is required unless --target is self")
    return config.backends[0].models[0]


def _row(values: list[str]) -> str:
    return "  ".join(v.rjust(w) for v, (_, w) in zip(values, COLUMNS, strict=True))


def _print_level(result: StressResult) -> None:
    values = [
        str(result.level),
        str(result.sent),
        str(result.ok),
        str(result.failed),
        format_ms(result.p50_ms),
        format_ms(result.p95_ms),
        format_ms(result.p99_ms),
        format_ms(result.max_ms),
        f"{result.throughput_rps:.2f}",
        str(result.queue_positions_seen),
    ]
    line = _row(values) + "  " + format_counts(result.by_status)
    if result.error_types:
        line += "  (" + format_counts(result.error_types) + ")"
    print(line, flush=True)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path}")
