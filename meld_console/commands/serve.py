"""`serve`, the node alone for a service manager, and the console around the node."""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import logging
import signal
import sys
from collections.abc import Coroutine
from typing import Any

from meld_core.config import Config
from meld_core.defaults import ensure_config
from meld_core.logs import setup_logging

from .common import config_path

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def add_parser(
    commands: argparse._SubParsersAction[Any], common: argparse.ArgumentParser
) -> None:
    """Register `serve`."""
    serve = commands.add_parser(
        "serve",
        parents=[common],
        help="run the node without a screen, until SIGTERM, SIGINT or SIGHUP",
        description="Run the node without a screen, logging to stderr and to the "
        "log file in the data directory, until SIGTERM, SIGINT or SIGHUP; then stop "
        "gracefully and exit 0.",
    )
    serve.set_defaults(run=serve_command)


def console_command(args: argparse.Namespace) -> int:
    """The console with the node inside it; `serve` if the console is not installed."""
    config = ensure_config(config_path(args))
    if importlib.util.find_spec("meld_console.app") is None:
        print(
            "meld-console: the console screen is not available; running the node "
            "without it (as 'meld-console serve')",
            file=sys.stderr,
        )
        return serve_config(config)

    from meld_console.app import run_console

    status = run_console(config, read_only=args.read_only)
    return status if isinstance(status, int) else 0


def serve_command(args: argparse.Namespace) -> int:
    """Run the node headless until a stop signal."""
    return serve_config(ensure_config(config_path(args)))


def serve_config(config: Config) -> int:
    """Run the node of `config` headless until a stop signal; 0 after a clean stop."""
    setup_logging(config, stderr=True)
    return run_fast(_serve(config))


def run_fast(coro: Coroutine[Any, Any, int]) -> int:
    """Run a coroutine on uvloop when it is installed, else on asyncio's own loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


async def _serve(config: Config) -> int:
    from meld_core.node import Node

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_signal(signum: signal.Signals) -> None:
        log.info("received %s; stopping", signum.name)
        stop.set()
        # A second signal should not wait on a stop that may be stuck.
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)

    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, on_signal, sig)

    node = Node(config)
    try:
        await node.start()
    except BaseException:
        await _stop_quietly(node)
        raise
    print(f"meld node {config.node.id} listening on {node.url}", flush=True)

    signalled = asyncio.create_task(stop.wait())
    stopped = asyncio.create_task(node.wait_stopped())
    await asyncio.wait({signalled, stopped}, return_when=asyncio.FIRST_COMPLETED)
    signalled.cancel()
    if stopped.done():
        log.error("the node stopped by itself")
        return 1
    stopped.cancel()
    await node.stop()
    return 0


async def _stop_quietly(node: Any) -> None:
    """Undo a start that failed half-way; the start's own error is what matters."""
    try:
        await node.stop()
    except Exception:
        log.debug("stop after a failed start raised", exc_info=True)
