"""The official replicate-python client (1.0.7) against the emulator: every answer must parse."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from replicate.client import Client
from replicate.exceptions import ReplicateError

from tests.emulators.conftest import EMULATOR_ENV
from tests.emulators.support import TOKEN, VERSION, running_emulator


@pytest.fixture(scope="module")
def emulator_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An emulator of this module's own: replicate-python 1.0.7 can't parse an `aborted`
    prediction (replicate-python PR #449), which other modules' `Cancel-After` tests leave in
    the shared emulator's listing."""
    log_dir = tmp_path_factory.mktemp("client-emulator-logs")
    with running_emulator("emulators.replicate", EMULATOR_ENV, log_dir) as url:
        yield url


@pytest.fixture
def client(emulator_url: str) -> Client:
    client = Client(api_token=TOKEN, base_url=emulator_url)
    client.poll_interval = 0.05
    return client


def test_create_by_version_and_wait(client: Client) -> None:
    prediction = client.predictions.create(version=VERSION, input={"prompt": "a cat"})
    statuses = [prediction.status]
    prediction.wait()
    statuses.append(prediction.status)
    assert statuses == ["starting", "succeeded"]
    assert isinstance(prediction.output, list) and prediction.output[0].endswith(".png")
    assert prediction.progress is not None and prediction.progress.percentage == 1.0

    fetched = client.predictions.get(prediction.id)
    assert fetched.id == prediction.id and fetched.status == "succeeded"


def test_create_by_model_uses_the_models_endpoint(client: Client) -> None:
    prediction = client.predictions.create(model="black-forest-labs/flux-schnell", input={})
    assert prediction.model == "black-forest-labs/flux-schnell"
    assert prediction.version == "hidden"
    prediction.reload()
    assert prediction.status in ("starting", "processing", "succeeded")
    prediction.wait()
    assert prediction.status == "succeeded"


def test_create_by_deployment(client: Client) -> None:
    prediction = client.predictions.create(deployment="acme/prod-video", input={})
    prediction.wait()
    assert isinstance(prediction.output, str) and prediction.output.endswith(".mp4")


def test_cancel(client: Client) -> None:
    prediction = client.predictions.create(
        version=f"acme/sdxl:{VERSION}", input={"_emulator": {"stay_starting": True}}
    )
    canceled = client.predictions.cancel(prediction.id)
    assert canceled.status == "canceled"
    prediction.reload()
    assert prediction.status == "canceled"


def test_list_and_prefer_wait(client: Client) -> None:
    prediction = client.predictions.create(version=VERSION, input={}, wait=10)
    assert prediction.status == "succeeded"
    page = client.predictions.list()
    assert prediction.id in [p.id for p in page.results]


def test_training(client: Client) -> None:
    training = client.trainings.create(
        model="acme/flux-trainer", version=VERSION, input={"steps": 5}, destination="me/flux-lora"
    )
    assert training.destination == "me/flux-lora"
    fetched = client.trainings.get(training.id)
    assert fetched.id == training.id
    canceled = client.trainings.cancel(training.id)
    assert canceled.status == "canceled"


def test_errors_surface_as_replicate_errors(client: Client) -> None:
    with pytest.raises(ReplicateError) as invalid:
        client.predictions.create(version="not-a-version", input={})
    assert invalid.value.status == 422
    assert invalid.value.title == "Input validation failed"

    throttled_input = {"seed": uuid.uuid4().hex, "_emulator": {"rate_limits": 1}}
    with pytest.raises(ReplicateError) as throttled:
        client.predictions.create(version=VERSION, input=throttled_input)
    assert throttled.value.status == 429
    # The client doesn't retry POSTs; the next identical create goes through.
    assert client.predictions.create(version=VERSION, input=throttled_input).status == "starting"

    with pytest.raises(ReplicateError) as missing:
        client.predictions.get("doesnotexist")
    assert missing.value.status == 404


def test_webhook_secret(client: Client) -> None:
    secret = client.webhooks.default.secret()
    assert secret.key.startswith("whsec_")
    assert len(secret.key.split("_")) == 2
