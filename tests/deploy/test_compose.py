"""docker-compose.yml without Docker: the compose-spec schema, pinned images, variables the code
reads, commands that exist, health checks and start order, and what is published where.

The schema is compose-spec/compose-spec's schema/compose-spec.json at commit
170098ba07d9f53c383a41bfd4c5166b0a4529a6 (Apache-2.0, LICENSE and NOTICE beside it).
"""

from __future__ import annotations

import ast
import importlib
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from core.contracts import SEARCH_ATTRIBUTES
from core.settings import Settings
from providers import registry
from tests.deploy.compose_file import (
    APP_ENV_EXAMPLE,
    COMPOSE_ENV_EXAMPLE,
    ROOT,
    MissingVariableError,
    documented_names,
    example_env,
    raw,
    required_variables,
    resolved,
    variables,
)
from tests.deploy.dockerfile import by_name_copied_top_levels, runtime_top_levels

SCHEMA = Path(__file__).parent / "compose-spec" / "compose-spec.json"
APP_SERVICES = ("api", "worker")
SECRETS = {
    "POSTGRES_PASSWORD",
    "APP_DB_PASSWORD",
    "TEMPORAL_DB_PASSWORD",
    "MINIO_ROOT_PASSWORD",
    "S3_SECRET_ACCESS_KEY",
    "SECRET_KEY",
    "BOOTSTRAP_API_KEYS",
}


def services(data: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = (data or resolved())["services"]
    return found


def one_shot(service: dict[str, Any]) -> bool:
    return service.get("restart") == "no"


@pytest.mark.parametrize("variant", ["as written", "interpolated"])
def test_the_file_follows_the_compose_spec(variant: str) -> None:
    schema = json.loads(SCHEMA.read_text())
    data = raw() if variant == "as written" else resolved()
    errors = sorted(
        jsonschema.Draft7Validator(schema).iter_errors(data), key=lambda e: list(e.path)
    )
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_every_image_is_pinned_to_a_version() -> None:
    for name, service in services().items():
        image = service.get("image")
        if "build" in service:
            continue  # this project's image, tagged by AUTOSYNC_TAG
        assert image, f"{name}: no image"
        _, _, tag = image.rpartition(":")
        assert "/" not in tag and tag and tag != "latest", f"{name}: {image} is not pinned"
        assert any(c.isdigit() for c in tag), f"{name}: {image} is not a version"


def test_a_missing_secret_stops_compose_with_its_name() -> None:
    assert SECRETS <= required_variables()
    for secret in SECRETS:
        env = {k: v for k, v in example_env().items() if k != secret}
        with pytest.raises(MissingVariableError) as raised:
            resolved(env)
        assert raised.value.name == secret
        assert secret in str(raised.value) and len(str(raised.value)) > len(secret) + 10


def test_no_secret_is_written_in_the_file() -> None:
    secretish = re.compile(r"(PASSWORD|PWD|SECRET|TOKEN|_KEY|_KEYS|HMAC)$")
    required = required_variables()
    for name, service in raw()["services"].items():
        env = service.get("environment") or {}
        for key, value in env.items():
            if not secretish.search(key) or value is None:
                continue  # passed through from .env or the shell when set
            used = set(re.findall(r"\$\{([A-Z0-9_]+)", str(value)))
            assert used and used <= required, f"{name}.{key} = {value!r} is not a required variable"


def test_every_variable_is_documented_in_the_compose_env_example() -> None:
    documented = documented_names(COMPOSE_ENV_EXAMPLE)
    names = {name for name, _, _ in variables()}
    passed_through = {
        key
        for service in raw()["services"].values()
        for key, value in (service.get("environment") or {}).items()
        if value is None
    }
    undocumented = (names | passed_through) - documented
    assert not undocumented, f"not in deploy/compose.env.example: {undocumented}"
    # The required ones are set (uncommented) there, waiting for a value.
    set_lines = set(re.findall(r"^([A-Z][A-Z0-9_]*)=", COMPOSE_ENV_EXAMPLE.read_text(), re.M))
    assert required_variables() <= set_lines


def settings_read() -> set[str]:
    """Every variable the settings read: the shared ones and each provider's own."""
    shared = {name.upper() for name in Settings.model_fields}
    return shared | {name for spec in registry.specs().values() for name in spec.env_names()}


@pytest.mark.parametrize("provider", registry.names())
def test_every_provider_setting_is_documented_and_its_account_values_reach_the_app(
    provider: str,
) -> None:
    """A provider's variables (its spec's settings) are all in .env.example; those without a
    usable default (empty: a key, a secret, an account id) are passed through to the API and
    the worker, hence also documented in deploy/compose.env.example."""
    spec = registry.get(provider)
    assert not set(spec.env_names()) - documented_names(APP_ENV_EXAMPLE)
    account = {
        spec.settings.env_name(field)
        for field in spec.settings.model_fields
        if spec.settings.default_of(field) == ""
    }
    assert spec.key_env in account
    for service in APP_SERVICES:
        passed = {k for k, v in services()[service]["environment"].items() if v is None}
        assert not account - passed, f"{service}: not passed through: {account - passed}"
    assert not account - documented_names(COMPOSE_ENV_EXAMPLE)


def app_env(service: str) -> dict[str, str]:
    env = services()[service]["environment"]
    return {k: str(v) for k, v in env.items() if v is not None}


def runtime_environment_reads() -> set[str]:
    """Variables read with os.environ / os.getenv by code the image runs."""
    names: set[str] = set()
    for top in runtime_top_levels():
        base = ROOT / top
        for path in sorted(base.rglob("*.py")) if base.is_dir() else [ROOT / f"{top}.py"]:
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call) and ast.unparse(node.func) in (
                    "os.getenv",
                    "os.environ.get",
                    "environ.get",
                    "getenv",
                ):
                    if node.args and isinstance(node.args[0], ast.Constant):
                        names.add(str(node.args[0].value))
                elif isinstance(node, ast.Subscript) and ast.unparse(node.value) in (
                    "os.environ",
                    "environ",
                ):
                    if isinstance(node.slice, ast.Constant):
                        names.add(str(node.slice.value))
    return names


@pytest.mark.parametrize("service", APP_SERVICES)
def test_every_setting_is_set_in_compose_or_documented_with_its_default(service: str) -> None:
    set_here = set(app_env(service)) | {
        k for k, v in services()[service]["environment"].items() if v is None
    }
    documented = documented_names(APP_ENV_EXAMPLE)
    read = settings_read() | runtime_environment_reads()
    unaccounted = read - set_here - documented
    assert not unaccounted, (
        f"read by the code, neither set in compose nor in .env.example: {unaccounted}"
    )


@pytest.mark.parametrize("service", APP_SERVICES)
def test_the_app_environment_makes_valid_settings(
    service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in settings_read():
        monkeypatch.delenv(name, raising=False)
    for name, value in app_env(service).items():
        monkeypatch.setenv(name, value)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.storage_backend == "s3" and settings.s3_endpoint_url == "http://minio:9000"
    assert settings.s3_presign_endpoint_url == "http://localhost:9000"
    assert settings.database_url.startswith("postgresql://autosync:")
    assert settings.temporal_address == "temporal:7233"
    settings.signing_secret()  # raises when SECRET_KEY is missing or short
    drain = settings.worker_graceful_shutdown_seconds  # a setting, not a timing
    assert drain == 30
    if service == "api":
        assert settings.bootstrap_keys() == [("0123456789abcdef0123456789abcdef", "admin", True)]


def test_the_services_commands_exist() -> None:
    image_code = by_name_copied_top_levels()
    for name, service in services().items():
        if "build" not in service:
            continue
        command = service["command"]
        if command[:2] == ["python", "-m"]:
            module = command[2]
            assert module.split(".")[0] in image_code, f"{name}: {module} is not in the image"
            importlib.import_module(module)
        elif command[0] == "uvicorn":
            target = command[1]
            assert "--factory" in command
            module, _, attribute = target.partition(":")
            assert module.split(".")[0] in image_code
            assert callable(getattr(importlib.import_module(module), attribute))
        else:
            pytest.fail(f"{name}: unexpected command {command}")
    # The one-shots' scripts are in the repository and parse.
    for name, service in services().items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                path = ROOT / source
                assert path.is_file(), f"{name}: {source} is missing"
                if path.suffix == ".sh":
                    subprocess.run(["sh", "-n", str(path)], check=True)


def test_health_checks_compile_and_cover_every_long_running_service() -> None:
    for name, service in services().items():
        check = service.get("healthcheck")
        if one_shot(service):
            continue
        assert check and not check.get("disable"), f"{name}: no health check"
        test = check["test"]
        if test[:3] == ["CMD", "python", "-c"]:
            compile(test[3], f"{name} healthcheck", "exec")
    assert "/v1/health" in " ".join(services()["api"]["healthcheck"]["test"])


def test_every_dependency_waits_for_health_or_completion() -> None:
    all_services = services()
    for name, service in all_services.items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on without conditions"
        for target, rule in depends.items():
            expected = (
                "service_completed_successfully"
                if one_shot(all_services[target])
                else "service_healthy"
            )
            assert rule["condition"] == expected, f"{name} -> {target}"
    for app in APP_SERVICES:
        assert {"migrate", "temporal", "temporal-namespace", "minio-setup"} <= set(
            all_services[app]["depends_on"]
        )


def test_only_the_api_is_published_on_every_interface() -> None:
    for name, service in services().items():
        for port in service.get("ports", []):
            parts = str(port).split(":")
            host_ip = parts[0] if len(parts) == 3 else ""
            if name == "api":
                continue
            assert host_ip == "127.0.0.1", f"{name} publishes {port} beyond this machine"
    assert services()["api"]["ports"]


def seconds(duration: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)([hms])", duration))


def test_workers_scale_and_get_time_to_finish_their_activities() -> None:
    worker = services()["worker"]
    assert int(worker["deploy"]["replicas"]) >= 1
    grace = float(worker["environment"]["WORKER_GRACEFUL_SHUTDOWN_SECONDS"])
    assert grace > 0
    stop_grace = seconds(worker["stop_grace_period"])  # compose must outwait the drain
    assert stop_grace > grace
    assert "container_name" not in worker  # replicas need generated names


def test_the_search_attributes_created_are_the_apps() -> None:
    created = services()["temporal-namespace"]["environment"]["SEARCH_ATTRIBUTES"].split()
    assert created == [key.name for key in SEARCH_ATTRIBUTES]
