"""The core knows no screen: importing it loads neither textual nor rich."""

from __future__ import annotations

import subprocess
import sys


def test_importing_the_core_imports_neither_textual_nor_rich() -> None:
    code = (
        "import sys, pkgutil, importlib, meld_core\n"
        "for m in pkgutil.walk_packages(meld_core.__path__, 'meld_core.'):\n"
        "    importlib.import_module(m.name)\n"
        "screen = ('textual', 'rich')\n"
        "bad = sorted(n for n in sys.modules if n.split('.')[0] in screen)\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""
