"""What the stack hands the API and the worker: every provider's emulator, or none of them."""

from __future__ import annotations

from pathlib import Path

import pytest

from devstack.stack import Stack, StackConfig, provider_emulators
from providers import fal, kie, registry


def test_every_provider_with_an_emulator_gets_one() -> None:
    emulated = {name for name, spec in registry.specs().items() if spec.emulator}
    assert {"replicate", "fal", "kie"} <= emulated == set(provider_emulators())
    ports = [s.emulator.port for s in provider_emulators().values() if s.emulator]
    assert len(set(ports)) == len(ports)  # `make up`'s fixed ports don't collide


def test_ephemeral_stack_points_every_provider_at_its_own_emulator(tmp_path: Path) -> None:
    stack = Stack(StackConfig.ephemeral(tmp_path))
    fal_url, kie_url = stack.provider_url("fal"), stack.provider_url("kie")
    assert fal_url and kie_url and stack.config.ui_port is None
    env = stack.app_env()
    assert (
        env["FAL_BASE_URL"] == fal_url == f"http://127.0.0.1:{stack.config.provider_ports['fal']}"
    )
    assert env["FAL_JWKS_URL"] == f"{fal_url}/.well-known/jwks.json"
    assert env["FAL_API_KEY"] == fal.EMULATOR_KEY
    assert env["FAL_USER_ID"] == fal.EMULATOR_USER_ID  # the account the emulator signs as
    assert (
        env["KIE_BASE_URL"] == kie_url == f"http://127.0.0.1:{stack.config.provider_ports['kie']}"
    )
    assert env["KIE_API_KEY"] == kie.EMULATOR_KEY
    assert env["KIE_WEBHOOK_HMAC_KEY"]
    assert env["REPLICATE_BASE_URL"] == stack.provider_url("replicate")


def test_a_provider_without_emulator_is_left_to_the_environment(tmp_path: Path) -> None:
    # What `make up` does when FAL_API_KEY and KIE_API_KEY are set: the real services.
    ports = {"replicate": 18100, "fal": None}  # kie: left out
    stack = Stack(StackConfig.ephemeral(tmp_path, provider_ports=ports))
    assert stack.provider_url("fal") is None and stack.provider_url("kie") is None
    env = stack.app_env()
    assert not {k for k in env if k.startswith(("FAL_", "KIE_"))}
    assert env["REPLICATE_BASE_URL"] == stack.provider_url("replicate") == "http://127.0.0.1:18100"


def test_the_fetcher_may_reach_exactly_the_emulators_that_serve_outputs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OUTBOUND_ALLOWED_ORIGINS", raising=False)
    stack = Stack(
        StackConfig.ephemeral(tmp_path, provider_ports={"replicate": 18100, "fal": 18110})
    )
    allowed = stack.app_env()["OUTBOUND_ALLOWED_ORIGINS"].split(",")
    assert set(allowed) == {stack.provider_url("replicate"), stack.provider_url("fal")}
    assert stack.api_url not in allowed and f"http://{stack.temporal_address}" not in allowed
    # An operator's own list is kept as it is.
    monkeypatch.setenv("OUTBOUND_ALLOWED_ORIGINS", "https://cdn.example")
    assert stack.app_env()["OUTBOUND_ALLOWED_ORIGINS"] == "https://cdn.example"
