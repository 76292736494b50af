"""Rerunning a job end to end: a new job, linked to the old one, with its input as edited."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import E2E
from tests.e2e.test_media_jobs import create, wait_job

pytestmark = pytest.mark.e2e


async def test_rerun_makes_a_linked_job_that_succeeds(e2e: E2E) -> None:
    async with e2e.api() as api:
        old = await create(api, input={"prompt": "a red fox", "num_outputs": 1})
        assert old["rerun_of"] is None
        await wait_job(api, old["id"])
        response = await api.post(
            f"/v1/jobs/{old['id']}/rerun", json={"input": {"prompt": "a red fox, at night"}}
        )
        assert response.status_code == 202, response.text
        new = response.json()
        assert response.headers["location"] == f"/v1/jobs/{new['id']}"
        assert new["id"] != old["id"]
        assert new["rerun_of"] == old["id"]
        assert (new["kind"], new["provider"], new["model"]) == (
            old["kind"], old["provider"], old["model"]
        )  # fmt: skip
        # The edited field replaced, the others kept.
        assert new["input"] == {"prompt": "a red fox, at night", "num_outputs": 1}
        done = await wait_job(api, new["id"])
        assert done["status"] == "succeeded", done
        assert done["rerun_of"] == old["id"]
        assert len(done["outputs"]) == 1
        # Without a body: the same input again.
        again = await api.post(f"/v1/jobs/{old['id']}/rerun")
        assert again.status_code == 202, again.text
        assert again.json()["input"] == old["input"]
        assert again.json()["rerun_of"] == old["id"]
        # The old job is unchanged.
        assert (await api.get(f"/v1/jobs/{old['id']}")).json()["rerun_of"] is None


async def test_rerun_with_an_invalid_edit_is_refused(e2e: E2E) -> None:
    async with e2e.api() as api:
        old = await create(api, input={"prompt": "a fox"})
        before = (await api.get("/v1/jobs", params={"limit": 100})).json()["items"]
        for edit, field in (({"prompt": 42}, "prompt"), ({"num_outputs": 10_000}, "num_outputs")):
            response = await api.post(f"/v1/jobs/{old['id']}/rerun", json={"input": edit})
            assert response.status_code == 422, response.text
            error = response.json()["error"]
            assert error["code"] == "validation_error"
            assert field in error["message"]
        unknown = await api.post(f"/v1/jobs/{old['id']}/rerun", json={"inputs": {}})
        assert unknown.status_code == 422
        # Nothing was made.
        after = (await api.get("/v1/jobs", params={"limit": 100})).json()["items"]
        assert [j["id"] for j in after] == [j["id"] for j in before]


async def test_rerun_of_another_users_job_is_not_found(e2e: E2E) -> None:
    async with e2e.api("alice") as alice, e2e.api("bob") as bob, e2e.api("admin") as admin:
        job = await create(alice, input={"prompt": "alice's fox"})
        response = await bob.post(f"/v1/jobs/{job['id']}/rerun")
        assert response.status_code == 404, response.text
        assert response.json()["error"]["code"] == "not_found"
        # An admin may: the rerun is alice's job, as the old one was.
        by_admin = await admin.post(f"/v1/jobs/{job['id']}/rerun")
        assert by_admin.status_code == 202, by_admin.text
        assert by_admin.json()["user_id"] == "alice"
        assert by_admin.json()["rerun_of"] == job["id"]
        assert (await alice.get(f"/v1/jobs/{by_admin.json()['id']}")).status_code == 200
        assert (await bob.post("/v1/jobs/nosuchjob/rerun")).status_code == 404


async def test_a_rerun_retried_with_its_idempotency_key_makes_one_job(e2e: E2E) -> None:
    async with e2e.api() as api:
        old = await create(api, input={"prompt": "a fox"})
        key = {"Idempotency-Key": f"rerun-{old['id']}"}
        edit = {"input": {"prompt": "a fox, again"}}
        first = await api.post(f"/v1/jobs/{old['id']}/rerun", json=edit, headers=key)
        again = await api.post(f"/v1/jobs/{old['id']}/rerun", json=edit, headers=key)
        assert first.status_code == again.status_code == 202, (first.text, again.text)
        assert again.json()["id"] == first.json()["id"]
        # The key names one request: another edit under it is refused.
        other = await api.post(
            f"/v1/jobs/{old['id']}/rerun", json={"input": {"prompt": "else"}}, headers=key
        )
        assert other.status_code == 409, other.text
        assert other.json()["error"]["code"] == "idempotency_key_reused"
        listed = (await api.get("/v1/jobs", params={"limit": 100})).json()["items"]
        assert [j["id"] for j in listed if j["rerun_of"] == old["id"]] == [first.json()["id"]]
