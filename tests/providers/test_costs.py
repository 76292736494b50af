"""Each provider prices its own accounting: Replicate `metrics.predict_time` at the model's
hardware price, fal `metrics.inference_time`, KIE `creditsConsumed`; PROVIDER_PRICES checked."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from core.contracts import JobKind
from core.settings import PriceTable, Settings
from providers import fal, kie, registry, replicate
from providers.base import UsageReader


def settings(**prices: object) -> Settings:
    return Settings(_env_file=None, provider_prices=prices)  # type: ignore[call-arg,arg-type]


PREDICTION = {
    "id": "ufawqhfynnddngldkgtslldrkq",
    "model": "acme/sdxl",
    "version": "5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa",
    "status": "succeeded",
    "output": ["https://replicate.delivery/pbxt/abc/out-0.png"],
    "metrics": {"predict_time": 2.5, "total_time": 3.1},
}


def test_replicate_prices_predict_time_at_the_models_hardware() -> None:
    snapshot = replicate.snapshot_from(PREDICTION, JobKind.GENERATION)
    assert snapshot.usage == {"predict_time": 2.5, "total_time": 3.1}
    config = settings(
        replicate={
            "hardware": {"gpu-t4": 0.000225, "gpu-h100": 0.001525},
            "default": "gpu-t4",
            "models": {"acme/sdxl": "gpu-h100", "acme/cheap": 0.0001},
        }
    )
    # A model named with its version is priced as the model.
    cost = registry.job_cost(config, "replicate", "acme/sdxl:5c7d", snapshot.usage)
    assert cost is not None
    assert cost.usd == pytest.approx(2.5 * 0.001525)
    assert cost.source == "replicate:metrics.predict_time"
    assert cost.detail["hardware"] == "gpu-h100" and cost.detail["predict_time"] == 2.5
    other = registry.job_cost(config, "replicate", "someone/else", snapshot.usage)
    assert other is not None and other.usd == pytest.approx(2.5 * 0.000225)
    flat = registry.job_cost(config, "replicate", "acme/cheap", snapshot.usage)
    assert flat is not None and flat.usd == pytest.approx(2.5 * 0.0001)


def test_a_prediction_without_metrics_has_no_cost() -> None:
    running = {**PREDICTION, "status": "processing", "metrics": {}}
    snapshot = replicate.snapshot_from(running)
    assert snapshot.usage == {}
    assert registry.job_cost(Settings(_env_file=None), "replicate", "acme/sdxl", {}) is None  # type: ignore[call-arg]


def test_nonsense_accounting_is_not_priced() -> None:
    odd = {**PREDICTION, "metrics": {"predict_time": -1, "total_time": "3"}}
    assert replicate.snapshot_from(odd).usage == {}
    assert replicate.usage_of({**PREDICTION, "metrics": {"predict_time": True}}) == {}


def test_fal_prices_inference_time_from_the_completed_status() -> None:
    status = {"status": "COMPLETED", "metrics": {"inference_time": 1.25}, "logs": None}
    usage = fal.usage_of(status)
    assert usage == {"inference_time": 1.25}
    snapshot = fal.result_snapshot("req-1", {"images": [{"url": "https://v3.fal.media/x.png"}]},
                                   usage=usage)  # fmt: skip
    assert snapshot.usage == usage
    config = settings(fal={"default": 0.0005, "models": {"fal-ai/flux-pro": 0.002}})
    cost = registry.job_cost(config, "fal", "fal-ai/flux/dev", snapshot.usage)
    assert cost is not None and cost.usd == pytest.approx(1.25 * 0.0005)
    assert cost.source == "fal:metrics.inference_time"
    pro = registry.job_cost(config, "fal", "fal-ai/flux-pro", snapshot.usage)
    assert pro is not None and pro.usd == pytest.approx(1.25 * 0.002)


def test_a_fal_webhook_carries_no_accounting() -> None:
    """So the store activity reads it from the status (providers.base.UsageReader)."""
    body = {"request_id": "req-1", "status": "OK",
            "payload": {"images": [{"url": "https://v3.fal.media/x.png"}]}}  # fmt: skip
    verifier = fal.FalWebhooks.__new__(fal.FalWebhooks)
    assert verifier.parse(json.dumps(body).encode()).usage == {}
    assert isinstance(fal.FalProvider.__new__(fal.FalProvider), UsageReader)


def test_kie_prices_the_credits_a_task_consumed() -> None:
    data = {
        "taskId": "task_1",
        "model": "google/nano-banana",
        "state": "success",
        "resultJson": json.dumps({"resultUrls": ["https://tempfile.aiquickdraw.com/a.png"]}),
        "costTime": 4200,
        "creditsConsumed": 8,
    }
    snapshot = kie.snapshot_from(data)
    assert snapshot.usage == {"creditsConsumed": 8, "costTime": 4200}
    cost = registry.job_cost(settings(kie={"default": 0.005}), "kie", "google/nano-banana",
                             snapshot.usage)  # fmt: skip
    assert cost is not None and cost.usd == pytest.approx(8 * 0.005)
    assert cost.source == "kie:creditsConsumed"
    # Time alone is no price: KIE bills credits.
    assert registry.job_cost(Settings(_env_file=None), "kie", "m", {"costTime": 4200}) is None  # type: ignore[call-arg]


def test_the_defaults_price_every_built_in_provider() -> None:
    config = Settings(_env_file=None)  # type: ignore[call-arg]
    usage = {"predict_time": 1.0, "inference_time": 1.0, "creditsConsumed": 1}
    for name in ("replicate", "fal", "kie"):
        cost = registry.job_cost(config, name, "any/model", usage)
        assert cost is not None and cost.usd > 0, name


def test_a_provider_named_in_the_setting_replaces_only_its_own_table() -> None:
    config = settings(fal={"default": 0.01})
    assert config.provider_prices["fal"].unit_price("x") == (0.01, None)
    assert config.provider_prices["replicate"].unit_price("x") is not None


def test_a_model_without_a_price_has_no_cost() -> None:
    config = settings(fal={"models": {"fal-ai/flux/dev": 0.001}})
    assert registry.job_cost(config, "fal", "fal-ai/other", {"inference_time": 2.0}) is None


@pytest.mark.parametrize(
    "table",
    [
        {"default": "gpu-x"},  # a hardware name it doesn't list
        {"models": {"a/b": "gpu-y"}, "hardware": {"gpu-t4": 0.1}},
        {"default": -0.1},
        {"default": 0.1, "currency": "EUR"},  # unknown field
    ],
)
def test_bad_price_tables_are_refused_at_start(table: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        PriceTable(**table)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        settings(replicate=table)
