"""`make up` honours the user: exported variables, then `.env`, then the stack's own defaults.

No process is started: the stack's spawns are recorded instead, with the environment each
child process would get, which is what decides where webhooks go and which emulators run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from core.jobs.start import webhook_url
from core.settings import Settings
from devstack import stack as stack_module
from devstack.stack import Stack, StackConfig
from devstack.supervise import stack_processes
from devstack.user_settings import (
    WATCHABLE_SYNC,
    UserSettings,
    providers,
    read_dotenv,
    settings_block,
    stack_config,
    unreachable_reason,
    webhook_warning,
)

TOKEN = "r8_user-token-0123456789abcdef"


class Recorded:
    """Stands in for ManagedProcess: keeps what would have been started, starts nothing."""

    started: list[Recorded] = []

    def __init__(
        self,
        name: str,
        args: Sequence[str],
        *,
        log_dir: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name, self.args, self.env = name, list(args), dict(env or {})

    def start(self) -> Recorded:
        Recorded.started.append(self)
        return self

    def alive(self) -> bool:
        return True

    def wait_http(self, url: str, timeout: float = 60.0) -> None:
        pass

    def wait_log(self, text: str, timeout: float = 60.0) -> None:
        pass


@pytest.fixture
def spawned(monkeypatch: pytest.MonkeyPatch) -> list[Recorded]:
    Recorded.started = []
    monkeypatch.setattr(stack_module, "ManagedProcess", Recorded)
    return Recorded.started


def user_settings(tmp_path: Path, dotenv: str = "", **exported: str) -> UserSettings:
    (tmp_path / ".env").write_text(dotenv)
    return UserSettings.load(tmp_path, {"AUTOSYNC_DATA_DIR": str(tmp_path / "data"), **exported})


def start_processes(stack: Stack) -> dict[str, Recorded]:
    """What `make up` would start after Temporal, by name (nothing really runs)."""
    stack.start_emulators()
    stack.start_api()
    stack.start_worker()
    return {proc.name: proc for proc in Recorded.started}


def test_dotenv_is_parsed_as_the_api_parses_it(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "# a comment\n"
        'PUBLIC_BASE_URL="https://quoted.example"  # trailing comment\n'
        "export SYNC_PAGE_SIZE=500\n"
        "sync_min_interval_seconds='1.5'\n"
        "EMPTY=\n"
        "\n"
    )
    assert read_dotenv(tmp_path / ".env") == {
        "PUBLIC_BASE_URL": "https://quoted.example",
        "SYNC_PAGE_SIZE": "500",
        "SYNC_MIN_INTERVAL_SECONDS": "1.5",
        "EMPTY": "",
    }
    assert read_dotenv(tmp_path / "missing.env") == {}


def test_exported_beats_dotenv_which_beats_the_stack_default(
    tmp_path: Path, spawned: list[Recorded]
) -> None:
    user = user_settings(
        tmp_path,
        "PUBLIC_BASE_URL=https://from-dotenv.example\nSYNC_PAGE_SIZE=500\n",
        PUBLIC_BASE_URL="https://from-env.example",
    )
    assert user.source("PUBLIC_BASE_URL") == "env"
    assert user.source("SYNC_PAGE_SIZE") == ".env"
    assert user.source("SYNC_MIN_INTERVAL_SECONDS") == "default"

    procs = start_processes(Stack(stack_config(user)))
    for child in ("api", "worker-1"):
        env = procs[child].env
        assert env["PUBLIC_BASE_URL"] == "https://from-env.example"
        assert env["SYNC_PAGE_SIZE"] == "500"
        assert env["SYNC_MIN_INTERVAL_SECONDS"] == WATCHABLE_SYNC["SYNC_MIN_INTERVAL_SECONDS"]

    block = settings_block(Stack(stack_config(user)), user)
    assert "PUBLIC_BASE_URL=https://from-env.example" in block
    assert any("SYNC_PAGE_SIZE=500" in line and ".env" in line for line in block.splitlines())


def test_an_exported_empty_value_beats_dotenv_as_it_does_for_the_api(tmp_path: Path) -> None:
    user = user_settings(tmp_path, f"REPLICATE_API_TOKEN={TOKEN}\n", REPLICATE_API_TOKEN="")
    assert user.get("REPLICATE_API_TOKEN") is None
    # so the emulator, as the API would see it
    assert stack_config(user).provider_ports["replicate"] == 8100


def test_with_nothing_set_the_stack_is_the_embedded_default(tmp_path: Path) -> None:
    config = stack_config(user_settings(tmp_path))
    expected = StackConfig(
        data_dir=tmp_path / "data", env=dict(WATCHABLE_SYNC), pull_client_port=3001
    )
    assert config == expected
    env = Stack(config).app_env()
    assert env["PUBLIC_BASE_URL"] == "http://127.0.0.1:8000"
    assert env["WORKER_METRICS_PORT"] == "9464"
    assert env["BOOTSTRAP_API_KEYS"] == "dev-key=dev:admin"


def test_an_exported_public_base_url_is_where_webhook_urls_point(
    tmp_path: Path, spawned: list[Recorded], monkeypatch: pytest.MonkeyPatch
) -> None:
    base = "http://localhost:8000"
    user = user_settings(tmp_path, PUBLIC_BASE_URL=base)
    worker = start_processes(Stack(stack_config(user)))["worker-1"]
    assert worker.env["PUBLIC_BASE_URL"] == base
    # The worker builds the URL it hands providers from its settings, read from that env.
    for name, value in worker.env.items():
        monkeypatch.setenv(name, value)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    url = webhook_url(settings, "replicate", "j_1")
    assert url.startswith(f"{base}/webhooks/replicate?")
    assert urlsplit(url).netloc == "localhost:8000"


def test_a_provider_token_in_dotenv_starts_no_emulator_for_that_provider(
    tmp_path: Path, spawned: list[Recorded]
) -> None:
    user = user_settings(tmp_path, f'REPLICATE_API_TOKEN="{TOKEN}"\n')
    stack = Stack(stack_config(user))
    procs = start_processes(stack)

    assert "replicate-emulator" not in procs
    assert {"fal-emulator", "kie-emulator", "erp", "api", "worker-1"} <= set(procs)
    watched = [w.name for w in stack_processes(stack)]
    assert "replicate emulator" not in watched and "fal emulator" in watched
    # Nothing of the emulator's is handed over: the API reads the token (and the real base
    # URL) from .env itself.
    api_env = procs["api"].env
    assert not {k for k in api_env if k.startswith("REPLICATE_")}
    allowed = stack.app_env()["OUTBOUND_ALLOWED_ORIGINS"].split(",")
    assert allowed == [stack.provider_url("fal"), stack.provider_url("kie")]
    assert [p.name for p in user.real_providers()] == ["replicate"]

    block = settings_block(stack, user)
    assert TOKEN not in block and TOKEN[:3] in block  # masked, still recognisable
    assert "real Replicate at https://api.replicate.com" in block


@pytest.mark.parametrize(
    ("exported", "key"),
    [({"FAL_API_KEY": "fal-real-key-0123456789"}, "fal"), ({"KIE_API_KEY": "kie-key"}, "kie")],
)
def test_an_exported_provider_key_starts_no_emulator_for_that_provider(
    tmp_path: Path, exported: dict[str, str], key: str
) -> None:
    config = stack_config(user_settings(tmp_path, **exported))
    assert [name for name, port in config.provider_ports.items() if port is None] == [key]


def test_metrics_port_and_sync_tuning_are_the_users_when_set(tmp_path: Path) -> None:
    user = user_settings(
        tmp_path,
        "WORKER_METRICS_PORT=9500\nSYNC_MIN_INTERVAL_SECONDS=0\nWORKER_GRACEFUL_SHUTDOWN_SECONDS=120\n",
        SYNC_PAGE_SIZE="1000",
    )
    stack = Stack(stack_config(user))
    env = stack.app_env()
    assert stack.worker_stop_timeout() == 120 + 15  # the worker drains as long as .env says
    assert env["WORKER_METRICS_PORT"] == "9500"
    assert env["WORKER_METRICS_URLS"] == "http://127.0.0.1:9500/metrics"
    assert env["SYNC_MIN_INTERVAL_SECONDS"] == "0" and env["SYNC_PAGE_SIZE"] == "1000"

    off = Stack(stack_config(user_settings(tmp_path, "WORKER_METRICS_PORT=0\n"))).app_env()
    assert "WORKER_METRICS_PORT" not in off and "WORKER_METRICS_URLS" not in off


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000",
        "http://localhost:8000",
        "https://localhost",
        "https://app.localhost",
        "https://10.1.2.3",
        "https://192.168.1.20:8443",
        "https://[::1]:8000",
        "https://mybox.local",
        "https://api",
        "http://autosync.example.com",
    ],
)
def test_a_base_url_a_provider_cannot_reach_is_named(url: str) -> None:
    assert unreachable_reason(url) is not None


@pytest.mark.parametrize("url", ["https://autosync.example.com", "https://abcd.ngrok.app/x"])
def test_a_public_https_base_url_is_not_warned_about(url: str) -> None:
    assert unreachable_reason(url) is None
    assert webhook_warning(url, providers()) is None


def test_a_real_provider_with_a_local_base_url_gets_one_loud_line(tmp_path: Path) -> None:
    user = user_settings(tmp_path, f"REPLICATE_API_TOKEN={TOKEN}\n")
    base = Stack(stack_config(user)).app_env()["PUBLIC_BASE_URL"]
    warning = webhook_warning(base, user.real_providers())
    assert warning is not None and "\n" not in warning
    assert warning.startswith("WARNING: Replicate can't reach PUBLIC_BASE_URL=http://127.0.0.1")
    assert "polling only" in warning
    # Emulators live on this machine: a local base URL is right for them.
    assert webhook_warning(base, user_settings(tmp_path).real_providers()) is None
