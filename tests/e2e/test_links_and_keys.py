"""Signed links instead of API keys in URLs, and API keys an admin lists, creates and revokes.

Attacks replayed: a link for one job's file used on another job's (or after it expired); a
user's stream token used for admin topics; a revoked key used right after its revocation.
Expired tokens are made here with the stack's SECRET_KEY and a past clock: no sleeping, the
expiry check is the server's.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

from core.links import output_link, split_stream_token, stream_token
from tests.e2e.conftest import E2E, KEYS
from tests.e2e.test_media_jobs import create, wait_job
from tests.errors import error_message, error_of

pytestmark = pytest.mark.e2e

AN_HOUR_AGO = time.time() - 3600


def browser(e2e: E2E) -> httpx.AsyncClient:
    """No key at all: what an <img src> or EventSource has."""
    return httpx.AsyncClient(base_url=e2e.stack.api_url, timeout=30.0)


def keyed(e2e: E2E, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=e2e.stack.api_url, headers={"Authorization": f"Bearer {key}"}, timeout=30.0
    )


@asynccontextmanager
async def sse(client: httpx.AsyncClient, **params: str) -> AsyncIterator[httpx.Response]:
    """The stream's answer, closed once the caller has looked at the status."""
    async with client.stream("GET", "/v1/events", params=params) as response:
        yield response


async def new_key(e2e: E2E, user_id: str, **extra: object) -> dict[str, object]:
    async with e2e.api("admin") as admin:
        response = await admin.post("/v1/api-keys", json={"user_id": user_id, "name": "t", **extra})
    assert response.status_code == 201, response.text
    created: dict[str, object] = response.json()
    assert response.headers["location"] == f"/v1/api-keys/{created['id']}"
    return created


async def test_a_link_for_job_a_opens_neither_job_b_nor_anything_after_it_expires(
    e2e: E2E,
) -> None:
    async with e2e.api("alice") as alice:
        a, b = [await create(alice), await create(alice)]
        a, b = [await wait_job(alice, job["id"]) for job in (a, b)]
    assert a["status"] == b["status"] == "succeeded"
    link_a = a["outputs"][0]["url"]
    token_a = link_a.partition("?token=")[2]
    async with browser(e2e) as client:
        assert (await client.get(link_a)).status_code in (200, 307)
        on_b = await client.get(f"/v1/jobs/{b['id']}/outputs/0", params={"token": token_a})
        assert on_b.status_code == 401 and error_of(on_b)["code"] == "invalid_link_token"

        secret = e2e.stack.secret_key().encode()
        for thumbnail in (False, True):
            stale = output_link(
                e2e.stack.api_url, secret, a["id"], 0, ttl_seconds=60,
                thumbnail=thumbnail, now=AN_HOUR_AGO,
            )  # fmt: skip
            expired = await client.get(stale)
            assert expired.status_code == 401, expired.text
            assert error_of(expired)["code"] == "link_expired"
            assert "expired" in error_message(expired)
            # The same link made now opens it: only the expiry differed.
            fresh = output_link(
                e2e.stack.api_url, secret, a["id"], 0, ttl_seconds=60, thumbnail=thumbnail
            )
            assert (await client.get(fresh)).status_code in (200, 307)
        # A link signed with another secret is nobody's.
        forged = output_link(e2e.stack.api_url, b"not-the-secret-key", a["id"], 0, ttl_seconds=60)
        assert (await client.get(forged)).status_code == 401


async def test_stream_tokens_open_the_users_stream_with_the_rights_of_their_key(
    e2e: E2E,
) -> None:
    tokens = {}
    for user in ("alice", "admin"):
        async with e2e.api(user) as api:
            answer = await api.post("/v1/stream-tokens")
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert KEYS[user] not in body["token"] and body["expires_at"]
        tokens[user] = body["token"]
    async with browser(e2e) as client:
        async with sse(client, token=tokens["alice"]) as mine:
            assert mine.status_code == 200  # alice's own topic, the default
        async with sse(client, token=tokens["alice"], topic="sync-run:*") as admin_topic:
            assert admin_topic.status_code == 403  # a user's token carries no admin rights
        async with sse(client, token=tokens["alice"], topic="user:bob") as bobs:
            assert bobs.status_code == 403
        async with sse(client, token=tokens["admin"], topic="sync-run:*") as runs:
            assert runs.status_code == 200  # an admin's token: admin topics
        # Expired (a token made an hour ago), or alice's signature under the admin's key id.
        key_id, link = split_stream_token(tokens["alice"])
        secret = e2e.stack.secret_key().encode()
        old, _ = stream_token(secret, "alice", key_id, ttl_seconds=60, now=AN_HOUR_AGO)
        async with sse(client, token=old) as expired:
            assert expired.status_code == 401
            await expired.aread()
            assert "expired" in error_message(expired)
        admin_key_id, _ = split_stream_token(tokens["admin"])
        async with sse(client, token=f"{admin_key_id}.{link}", topic="sync-run:*") as forged:
            assert forged.status_code == 401
        async with sse(client, access_token=KEYS["alice"]) as by_key:
            assert by_key.status_code == 401  # the API key in a URL opens nothing


async def test_admins_create_list_and_revoke_keys_and_a_revoked_key_stops_at_once(
    e2e: E2E,
) -> None:
    user = f"carol-{uuid.uuid4().hex[:8]}"
    created = await new_key(e2e, user)
    key = str(created["key"])
    assert created["user_id"] == user and created["is_admin"] is False
    assert created["bootstrap"] is False and created["revoked_at"] is None
    async with keyed(e2e, key) as carol:
        me = await carol.get("/v1/me")
        assert me.status_code == 200 and me.json()["user_id"] == user
        stream = (await carol.post("/v1/stream-tokens")).json()["token"]

    async with e2e.api("admin") as admin:
        listed = await admin.get("/v1/api-keys")
        assert listed.status_code == 200
        rows = {row["id"]: row for row in listed.json()["items"]}
        assert key not in listed.text  # the key itself is shown only when made
        assert rows[created["id"]]["name"] == "t"
        boot = [r for r in rows.values() if r["user_id"] in ("alice", "bob", "root")]
        assert boot and all(r["bootstrap"] for r in boot)
        one = await admin.get(f"/v1/api-keys/{created['id']}")
        assert one.status_code == 200 and one.json()["revoked_at"] is None

        revoked = await admin.delete(f"/v1/api-keys/{created['id']}")
        assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    # Right after the DELETE: refused, by header and by the stream token it made.
    async with keyed(e2e, key) as carol:
        refused = await carol.get("/v1/me")
        assert refused.status_code == 401
        assert error_message(refused) == "revoked API key"
    async with browser(e2e) as client, sse(client, token=stream) as stream_refused:
        assert stream_refused.status_code == 401
    async with e2e.api("admin") as admin:
        again = await admin.delete(f"/v1/api-keys/{created['id']}")
        assert again.json()["revoked_at"] == revoked.json()["revoked_at"]
        assert (await admin.delete("/v1/api-keys/0000000000000000")).status_code == 404
        assert (await admin.delete("/v1/api-keys/not-an-id")).status_code == 422


async def test_api_keys_are_for_admins_and_user_ids_are_checked(e2e: E2E) -> None:
    async with e2e.api("alice") as alice:
        for method, path in (
            ("GET", "/v1/api-keys"),
            ("POST", "/v1/api-keys"),
            ("DELETE", "/v1/api-keys/0000000000000000"),
        ):
            body = {"user_id": "alice", "name": "mine"} if method == "POST" else None
            response = await alice.request(method, path, json=body)
            assert response.status_code == 403, (method, path, response.text)
    async with e2e.api("admin") as admin:
        for bad in ("../root", "a/b", "", "x" * 65):
            response = await admin.post("/v1/api-keys", json={"user_id": bad, "name": "x"})
            assert response.status_code == 422, (bad, response.text)
        # Rights belong to the user: a key can't make an existing user an admin.
        escalate = await admin.post(
            "/v1/api-keys", json={"user_id": "alice", "name": "x", "admin": True}
        )
        assert escalate.status_code == 409, escalate.text
    boss = f"boss-{uuid.uuid4().hex[:8]}"
    created = await new_key(e2e, boss, admin=True)
    assert created["is_admin"] is True
    async with keyed(e2e, str(created["key"])) as client:
        me = (await client.get("/v1/me")).json()
        assert me["user_id"] == boss and me["is_admin"] is True
        assert (await client.get("/v1/api-keys")).status_code == 200
