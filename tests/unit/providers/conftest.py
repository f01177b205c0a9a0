"""Every adapter test talks to a scripted fake of its provider on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes import FakeApi


@pytest.fixture
def api() -> Iterator[FakeApi]:
    with FakeApi() as running:
        yield running
