"""What the stack hands the API and the worker: every provider's emulator, or none of them."""

from __future__ import annotations

from pathlib import Path

import pytest

from devstack.stack import (
    FAL_EMULATOR_KEY,
    FAL_EMULATOR_USER_ID,
    KIE_EMULATOR_KEY,
    Stack,
    StackConfig,
)


def test_ephemeral_stack_points_every_provider_at_its_own_emulator(tmp_path: Path) -> None:
    stack = Stack(StackConfig.ephemeral(tmp_path))
    assert stack.config.fal_port and stack.config.kie_port and stack.config.ui_port is None
    env = stack.app_env()
    assert env["FAL_BASE_URL"] == stack.fal_url == f"http://127.0.0.1:{stack.config.fal_port}"
    assert env["FAL_JWKS_URL"] == f"{stack.fal_url}/.well-known/jwks.json"
    assert env["FAL_API_KEY"] == FAL_EMULATOR_KEY
    assert env["FAL_USER_ID"] == FAL_EMULATOR_USER_ID  # the account the emulator signs as
    assert env["KIE_BASE_URL"] == stack.kie_url == f"http://127.0.0.1:{stack.config.kie_port}"
    assert env["KIE_API_KEY"] == KIE_EMULATOR_KEY
    assert env["KIE_WEBHOOK_HMAC_KEY"]
    assert env["REPLICATE_BASE_URL"] == stack.emulator_url


def test_a_provider_without_emulator_is_left_to_the_environment(tmp_path: Path) -> None:
    # What `make up` does when FAL_API_KEY and KIE_API_KEY are set: the real services.
    stack = Stack(StackConfig.ephemeral(tmp_path, fal_port=None, kie_port=None))
    assert stack.fal_url is None and stack.kie_url is None
    env = stack.app_env()
    assert not {k for k in env if k.startswith(("FAL_", "KIE_"))}
    assert env["REPLICATE_BASE_URL"] == stack.emulator_url


def test_the_fetcher_may_reach_exactly_the_emulators_that_serve_outputs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OUTBOUND_ALLOWED_ORIGINS", raising=False)
    stack = Stack(StackConfig.ephemeral(tmp_path, kie_port=None))
    allowed = stack.app_env()["OUTBOUND_ALLOWED_ORIGINS"].split(",")
    assert allowed == [stack.emulator_url, stack.fal_url]
    assert stack.api_url not in allowed and f"http://{stack.temporal_address}" not in allowed
    # An operator's own list is kept as it is.
    monkeypatch.setenv("OUTBOUND_ALLOWED_ORIGINS", "https://cdn.example")
    assert stack.app_env()["OUTBOUND_ALLOWED_ORIGINS"] == "https://cdn.example"
