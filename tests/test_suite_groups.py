"""How `make test` spreads the suite over pytest-xdist workers (tests/conftest.py)."""

from __future__ import annotations

from tests.conftest import share_group


def test_tests_sharing_an_e2e_stack_share_a_group() -> None:
    groups = {
        share_group(nodeid)
        for nodeid in (
            "tests/e2e/test_sync_runs.py::test_a[sqlite-local]",
            "tests/e2e/test_recovery.py::test_b[sqlite-local]",
        )
    }
    assert groups == {"e2e-sqlite-local"}
    assert share_group("tests/e2e/test_media_jobs.py::test_c[sqlite-local]") == "e2e-sqlite-local-2"
    assert share_group("tests/e2e/test_bulk_jobs.py::test_d[sqlite-local]") == "e2e-sqlite-local-2"
    assert share_group("tests/e2e/test_bulk_jobs.py::test_d[postgres-s3]") == "e2e-postgres-s3"
    assert share_group("tests/jobs/test_x.py::test_y[1-2]") == "tests/jobs/test_x.py"
