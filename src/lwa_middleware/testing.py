"""pytest plugin providing a live Login with Amazon emulator as fixtures.

Layer: the root (what a user imports or runs; see ``ARCHITECTURE.md``).

Installed as the ``lwa_middleware`` pytest11 entry point, so any suite with
lwa-middleware installed can use ``lwa_emulator`` (a fresh emulator per test)
or ``lwa_emulator_session`` (one per session; call ``reset()`` yourself).
Each yields an ``Emulator`` serving on 127.0.0.1: the whole emulator API plus
``.url``. Starlette and uvicorn are imported only when a fixture is used, so
loading this plugin costs nothing; serving needs ``lwa-middleware[emulator]``.

"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from lwa_middleware.emulator import Emulator

__all__ = ["lwa_emulator", "lwa_emulator_session"]


def _served_emulator() -> Iterator[Emulator]:
    from lwa_middleware.emulator import Emulator  # deferred: keep plugin import cheap

    emulator = Emulator()
    emulator.start(host="127.0.0.1", port=0)
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def lwa_emulator() -> Iterator[Emulator]:
    """A fresh LWA emulator served on 127.0.0.1 for one test; ``.url`` is its base URL."""
    yield from _served_emulator()


@pytest.fixture(scope="session")
def lwa_emulator_session() -> Iterator[Emulator]:
    """One LWA emulator served for the whole session; call ``reset()`` between tests."""
    yield from _served_emulator()
