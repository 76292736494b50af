"""Fixtures of the fal emulator tests, loaded with `pytest_plugins`.

Test modules that need them say `pytest_plugins = ("tests.emulators.fal_fixtures",)`; this is a
plugin rather than a conftest so the shared conftests stay as they are. The emulator's
durations are shortened (see `FAL_ENV`), so a whole request takes well under a second.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.emulators.fal_support import FAL_KEY, start_emulator, wait_ready


@pytest.fixture(scope="session")
def fal_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    process, url = start_emulator(tmp_path_factory.mktemp("fal-emulator-logs"))
    with process:
        wait_ready(process, url)
        yield url


@pytest.fixture
def fal_api(fal_url: str) -> Iterator[httpx.Client]:
    """An authenticated client; global faults are cleared after each test."""
    with httpx.Client(
        base_url=fal_url, headers={"Authorization": f"Key {FAL_KEY}"}, timeout=15
    ) as client:
        yield client
        client.delete("/_emulator/faults").raise_for_status()
