"""Fixtures of the gateway tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.gateway.harness import echo_server


@pytest.fixture(scope="module")
async def echo() -> AsyncIterator[str]:
    """The conformance service's echo server (one per test module)."""
    async with echo_server() as address:
        yield address
