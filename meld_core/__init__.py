"""MELD node core: signed, metered, queued access to model backends. Knows no screen."""

import sys
import types

__version__ = "0.1.0"


def _keep_httpx_cli_unloaded() -> None:
    """Stop `import httpx` from loading its command line, which imports rich.

    httpx imports its CLI (click, pygments, rich) whenever those are installed, and
    the console installs them. The headless node must not pay for a screen library,
    so until something calls it the CLI module is a stand-in that loads the real one.
    """
    if "httpx" in sys.modules or "httpx._main" in sys.modules:
        return
    stand_in = types.ModuleType("httpx._main")

    def main(*args: object, **kwargs: object) -> object:
        del sys.modules["httpx._main"]
        from httpx._main import main as real_main

        return real_main(*args, **kwargs)

    stand_in.main = main  # type: ignore[attr-defined]
    sys.modules["httpx._main"] = stand_in


_keep_httpx_cli_unloaded()
