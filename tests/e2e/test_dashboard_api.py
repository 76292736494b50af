"""What the dashboard relies on, over HTTP: its files, `GET /v1/me` and outputs by signed link."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl

import httpx
import pytest

from devstack.stack import ERP_COMPANY_TOKENS
from sync_modules.registry import all_modules
from tests.e2e.conftest import E2E, KEYS
from tests.e2e.test_media_jobs import create, wait_job
from tests.errors import error_of

pytestmark = pytest.mark.e2e


async def test_dashboard_page_and_its_files_are_served_without_a_key(e2e: E2E) -> None:
    async with httpx.AsyncClient(base_url=e2e.stack.api_url, timeout=30.0) as client:
        page = await client.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert '<script type="module" src="/static/app.js">' in page.text
        # app.js and every module it imports, by relative path, transitively: all served.
        seen: dict[str, str] = {}
        todo = ["app.js"]
        while todo:
            name = todo.pop()
            script = await client.get(f"/static/{name}")
            assert script.status_code == 200, name
            assert script.headers["content-type"].startswith("text/javascript"), name
            seen[name] = script.text
            found = re.findall(r'from "\./([\w-]+\.js)"', script.text)
            todo += [f for f in found if f not in seen and f not in todo]
        assert {"api.js", "stream.js", "queue.js", "gallery.js", "pullsync.js"} <= set(seen)
        assert "new EventSource(" in seen["stream.js"]
        style = await client.get("/static/app.css")
        assert style.headers["content-type"].startswith("text/css")
        # Only the dashboard's own files: nothing else on disk is reachable.
        for path in ("/static/index.html", "/static/..%2Fdashboard.py", "/static/nope.js"):
            assert (await client.get(path)).status_code == 404, path


async def test_me_tells_who_the_caller_is_and_what_they_may_follow(e2e: E2E) -> None:
    async with e2e.api("alice") as alice, e2e.api("admin") as admin:
        me = (await alice.get("/v1/me")).json()
        assert me["user_id"] == "alice" and me["is_admin"] is False
        assert me["topics"] == ["user:alice"]
        assert me["companies"] == [] and me["sync_modules"] == []
        assert me["public_base_url"] == e2e.stack.api_url
        assert "replicate" in me["providers"]
        # Each provider's kinds with their default model: KIE has no training.
        assert set(me["models"]) == set(me["providers"])
        assert me["models"]["replicate"]["training"]
        assert "training" not in me["models"]["kie"]

        root = (await admin.get("/v1/me")).json()
        assert root["user_id"] == "root" and root["is_admin"] is True
        assert root["topics"] == ["user:root", "sync-run:*", "pull-sync:*"]
        assert root["companies"] == sorted(ERP_COMPANY_TOKENS)
        assert root["sync_modules"] == list(all_modules())
        assert root["temporal_ui_url"]

    async with httpx.AsyncClient(base_url=e2e.stack.api_url, timeout=30.0) as anonymous:
        assert (await anonymous.get("/v1/me")).status_code == 401
        bad = await anonymous.get("/v1/me", headers={"Authorization": "Bearer not-a-key"})
        assert bad.status_code == 401


async def test_outputs_open_with_their_signed_link_and_never_with_a_key_in_the_url(
    e2e: E2E,
) -> None:
    async with e2e.api("alice") as alice:
        jobs = [
            await create(alice, input={"prompt": "a fox", "num_outputs": 2}),
            await create(alice),
        ]
        first, second = [await wait_job(alice, job["id"]) for job in jobs]
        assert first["status"] == second["status"] == "succeeded", (first, second)
        with_header = await alice.get(f"/v1/jobs/{first['id']}/outputs/0")

    link = first["outputs"][0]["url"]
    path, _, query = link.partition("?")
    token = dict(parse_qsl(query))["token"]
    assert path == f"{e2e.stack.api_url}/v1/jobs/{first['id']}/outputs/0"
    assert KEYS["alice"] not in link
    async with httpx.AsyncClient(timeout=30.0) as browser:
        by_link = await browser.get(link)
        assert by_link.status_code == with_header.status_code
        assert by_link.status_code in (200, 307)  # 307: a presigned URL on S3
        if by_link.status_code == 200:
            assert by_link.content == with_header.content
        # The token opens that one file: not the job's other output, not another job's, not
        # the thumbnail; a wrong token and no token are refused.
        elsewhere = [
            f"/v1/jobs/{first['id']}/outputs/1",
            f"/v1/jobs/{second['id']}/outputs/0",
            f"/v1/jobs/{first['id']}/outputs/0/thumbnail",
        ]
        for other in elsewhere:
            refused = await browser.get(f"{e2e.stack.api_url}{other}", params={"token": token})
            assert refused.status_code == 401, other
            assert error_of(refused)["code"] == "invalid_link_token"
        bad = await browser.get(path, params={"token": token[:-2] + "xx"})
        assert bad.status_code == 401
        assert (await browser.get(path)).status_code == 401
        # The API key in the query opened it before; it opens nothing now.
        assert (await browser.get(path, params={"access_token": KEYS["alice"]})).status_code == 401
