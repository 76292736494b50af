"""How observations become healthy / degraded / critical (a pure function: no running parts)."""

from __future__ import annotations

import pytest

from api.health_checks import HealthReport, Observations, QueuePollers, classify


def queues(media: int = 1, sync: int = 1, erp: int = 1) -> list[QueuePollers]:
    return [
        QueuePollers("media-jobs", "media jobs", media, media, required=True),
        QueuePollers("sync-runs", "sync runs", sync, sync, required=True),
        QueuePollers("erp-sync", "sync runs' page fetches", None, erp, required=False),
    ]


def all_well(**changes: object) -> Observations:
    values: dict[str, object] = dict(
        queues=queues(),
        failed_jobs=0,
        failed_sync_runs=0,
        finished_jobs=20,
        finished_by_polling=1,
        live_clients=2,
        stuck_jobs={},
    )
    values.update(changes)
    return Observations(**values)  # type: ignore[arg-type]


def reasons_of(report: HealthReport) -> str:
    return " | ".join(report.reasons)


def test_everything_answering_and_quiet_is_healthy_without_reasons() -> None:
    report = classify(all_well())
    assert report.status == "healthy"
    assert report.reasons == []
    assert {name: c["status"] for name, c in report.checks.items()} == {
        "temporal": "ok",
        "workers": "ok",
        "database": "ok",
        "recent_errors": "ok",
        "webhooks": "ok",
        "live_streams": "ok",
        "stuck_jobs": "ok",
    }
    assert report.checks["workers"]["queues"]["erp-sync"] == {"activity_pollers": 1}
    assert report.checks["live_streams"]["clients"] == 2


@pytest.mark.parametrize(
    ("jobs", "runs", "status"),
    [(2, 0, "healthy"), (1, 2, "degraded"), (10, 0, "degraded"), (6, 5, "critical")],
)
def test_recent_errors_count_failed_jobs_and_failed_sync_runs(
    jobs: int, runs: int, status: str
) -> None:
    report = classify(all_well(failed_jobs=jobs, failed_sync_runs=runs))
    assert report.status == status
    assert report.checks["recent_errors"]["count"] == jobs + runs
    if status != "healthy":
        assert f"{jobs + runs} errors in the last hour" in reasons_of(report)


def test_temporal_unreachable_is_critical_and_its_workers_unknown() -> None:
    report = classify(all_well(temporal_error="RuntimeError", queues=None))
    assert report.status == "critical"
    assert report.checks["temporal"] == {"status": "critical", "error": "RuntimeError"}
    assert report.checks["workers"]["status"] == "unknown"
    assert "Temporal is unreachable" in reasons_of(report)


def test_database_unreachable_is_critical_and_its_figures_unknown() -> None:
    report = classify(
        Observations(queues=queues(), database_error="OperationalError", live_clients=0)
    )
    assert report.status == "critical"
    assert report.reasons == ["the database is unreachable (OperationalError)"]
    for name in ("recent_errors", "webhooks", "stuck_jobs"):
        assert report.checks[name]["status"] == "unknown"


def test_no_worker_on_the_media_queue_is_critical_and_names_the_queue() -> None:
    report = classify(all_well(queues=queues(media=0)))
    assert report.status == "critical"
    assert report.checks["workers"]["status"] == "critical"
    assert "'media-jobs' (workflow and activity tasks)" in reasons_of(report)
    assert "sync-runs" not in reasons_of(report)


def test_no_worker_on_the_erp_queue_only_degrades() -> None:
    report = classify(all_well(queues=queues(erp=0)))
    assert report.status == "degraded"
    assert "'erp-sync' (activity tasks)" in reasons_of(report)


@pytest.mark.parametrize(
    ("finished", "polled", "status"),
    [
        (10, 6, "degraded"),
        (10, 5, "healthy"),
        (4, 4, "healthy"),
        (5, 3, "degraded"),
        (0, 0, "healthy"),
    ],
)
def test_a_high_share_of_jobs_finished_by_polling_says_webhooks_may_be_failing(
    finished: int, polled: int, status: str
) -> None:
    report = classify(all_well(finished_jobs=finished, finished_by_polling=polled))
    assert report.status == status
    assert report.checks["webhooks"]["finished_by_polling"] == polled
    assert ("webhooks may be failing" in reasons_of(report)) == (status == "degraded")


def test_stuck_jobs_degrade_and_more_than_ten_are_critical() -> None:
    some = classify(all_well(stuck_jobs={"video": 2, "generation": 1}))
    assert some.status == "degraded"
    assert some.checks["stuck_jobs"]["count"] == 3
    assert some.reasons == ["3 unfinished jobs are past their deadline (1 generation, 2 video)"]
    many = classify(all_well(stuck_jobs={"training": 11}))
    assert many.status == "critical"


def test_no_live_clients_is_information_not_a_fault() -> None:
    assert classify(all_well(live_clients=0)).status == "healthy"
    bare = classify(all_well(live_clients=None))  # an app without the event hub
    assert bare.status == "healthy"
    assert bare.checks["live_streams"] == {"status": "unknown", "clients": None}


def test_the_overall_status_is_the_worst_check_with_every_reason() -> None:
    report = classify(all_well(queues=queues(erp=0), failed_jobs=4, stuck_jobs={"video": 12}))
    assert report.status == "critical"
    assert len(report.reasons) == 3
    assert report.as_json()["status"] == "critical"
