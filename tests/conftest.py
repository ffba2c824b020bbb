"""Session-wide fixtures: the test fleet of real loopback servers (see tests/fleet)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fleet import Fleet

__all__ = ["fleet"]


@pytest.fixture(scope="session")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """The whole fleet, started once per session in its own temporary directory."""
    with Fleet.start(tmp_path_factory.mktemp("fleet")) as running:
        yield running
