"""Fixtures of the web tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client for a test's live server (a file may define its own, test_hostile_input
    does)."""
    async with aiohttp.ClientSession() as s:
        yield s
