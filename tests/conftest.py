"""Options shared by every test: `--runslow` runs the long drills too."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--runslow", action="store_true", help="also run tests marked slow"
    )


def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> None:
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="a long drill: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
