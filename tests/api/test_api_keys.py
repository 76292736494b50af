"""API keys at the database: bootstrap keys refused once unlisted, revocation seen by KeyRing,
and the signed-link checks the API relies on (no HTTP; the routes are in tests/e2e)."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.auth import KeyRejected, KeyRevoked, KeyRing, ensure_keys, hash_key, key_id
from api.link_auth import LinkRejected, check_link, stream_caller
from core.links import output_scope, split_stream_token, stream_token
from core.models import ApiKey, User, utcnow
from core.tokens import link_token

SECRET = b"s" * 32
NOW = 1_800_000_000.0


async def keys_by_id(sessions: async_sessionmaker[AsyncSession]) -> dict[str, ApiKey]:
    async with sessions() as session:
        return {key_id(k.key_hash): k for k in await session.scalars(select(ApiKey))}


async def test_a_bootstrap_key_no_longer_listed_is_refused_by_the_process_that_unlisted_it(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    first = [("old-key", "alice", False), ("kept-key", "root", True)]
    listed = await ensure_keys(sessions, first)
    rows = await keys_by_id(sessions)
    old, kept = key_id(hash_key("old-key")), key_id(hash_key("kept-key"))
    assert rows[old].bootstrap and rows[kept].bootstrap and rows[old].revoked_at is None
    assert (await KeyRing(sessions, listed).caller("old-key")).user_id == "alice"

    # The next start lists only one of them: that process refuses the other at once ...
    listed = await ensure_keys(sessions, [("kept-key", "root", True)])
    with pytest.raises(KeyRejected, match="no longer listed in BOOTSTRAP_API_KEYS"):
        await KeyRing(sessions, listed).caller("old-key")
    assert (await KeyRing(sessions, listed).caller("kept-key")).is_admin
    # ... and writes nothing: a replica started with a stale (or empty) list can't revoke the
    # keys of the replicas that list them.
    assert (await keys_by_id(sessions))[old].revoked_at is None
    assert await KeyRing(sessions, await ensure_keys(sessions, first)).caller("old-key")


async def test_a_revoked_bootstrap_key_stays_revoked_when_listed_again(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    listed = await ensure_keys(sessions, [("leaked-key", "alice", False)])
    async with sessions() as session:  # what DELETE /v1/api-keys/{id} does
        await session.execute(update(ApiKey).values(revoked_at=utcnow()))
        await session.commit()
    assert await ensure_keys(sessions, [("leaked-key", "alice", False)]) == listed
    with pytest.raises(KeyRevoked, match="revoked API key"):
        await KeyRing(sessions, listed).caller("leaked-key")


async def test_keys_made_through_the_api_survive_a_start_without_them(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await ensure_keys(sessions, [("boot-key", "root", True)])
    async with sessions() as session:
        session.add(ApiKey(key_hash=hash_key("made-key"), user_id="root", name="ci"))
        await session.commit()
    listed = await ensure_keys(sessions, [])
    assert (await KeyRing(sessions, listed).caller("made-key")).user_id == "root"
    with pytest.raises(KeyRejected):
        await KeyRing(sessions, listed).caller("boot-key")


async def test_the_revoking_process_refuses_a_key_at_once_despite_its_cache(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    listed = await ensure_keys(sessions, [("k", "alice", False)])
    ring = KeyRing(sessions, listed)
    caller = await ring.caller("k")  # cached from now on
    assert caller.key_id == key_id(hash_key("k"))
    async with sessions() as session:
        await session.execute(update(ApiKey).values(revoked_at=utcnow()))
        await session.commit()
    assert (await ring.caller("k")).user_id == "alice"  # another process: up to CACHE_SECONDS
    ring.forget(hash_key("k"))  # what DELETE /v1/api-keys/{id} does in its own process
    with pytest.raises(KeyRevoked):
        await ring.caller("k")
    with pytest.raises(KeyRejected, match="unknown API key"):
        await ring.caller("never-made")


async def test_a_stream_token_carries_its_keys_rights_and_dies_with_the_key(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    listed = await ensure_keys(
        sessions, [("user-key", "alice", False), ("admin-key", "root", True)]
    )
    ring = KeyRing(sessions, listed)
    alice = await ring.caller("user-key")
    token, expires = stream_token(SECRET, "alice", alice.key_id, ttl_seconds=600, now=NOW)
    assert expires >= NOW + 600 and "user-key" not in token
    assert await stream_caller(ring, SECRET, token, now=NOW) == alice
    # Not after its expiry, not under another secret, not for another user's key.
    with pytest.raises(LinkRejected, match="expired") as late:
        await stream_caller(ring, SECRET, token, now=expires + 1)
    assert late.value.code == "link_expired"
    with pytest.raises(LinkRejected) as forged:
        await stream_caller(ring, b"x" * 32, token, now=NOW)
    assert forged.value.code == "invalid_link_token"
    root = await ring.caller("admin-key")
    _, link = split_stream_token(token)
    with pytest.raises(LinkRejected):  # alice's signature under root's key id: no admin rights
        await stream_caller(ring, SECRET, f"{root.key_id}.{link}", now=NOW)
    with pytest.raises(LinkRejected):
        await stream_caller(ring, SECRET, "not-a-token", now=NOW)

    async with sessions() as session:
        await session.execute(update(ApiKey).values(revoked_at=utcnow()))
        await session.commit()
    ring.forget(hash_key("user-key"))
    with pytest.raises(KeyRevoked):
        await stream_caller(ring, SECRET, token, now=NOW)
    async with sessions() as session:
        assert await session.get(User, "alice") is not None


def test_an_output_link_opens_exactly_its_own_file_until_it_expires() -> None:
    expires = int(NOW) + 600
    token = link_token(SECRET, output_scope("job-a", 0), expires)
    check_link(SECRET, output_scope("job-a", 0), token, renew="-", now=NOW)
    for other in (
        output_scope("job-b", 0),
        output_scope("job-a", 1),
        output_scope("job-a", 0, thumbnail=True),
    ):
        with pytest.raises(LinkRejected) as wrong:
            check_link(SECRET, other, token, renew="-", now=NOW)
        assert wrong.value.code == "invalid_link_token"
    with pytest.raises(LinkRejected, match="expired: read it again") as late:
        check_link(SECRET, output_scope("job-a", 0), token, renew="read it again", now=expires + 1)
    assert late.value.code == "link_expired"
    # An expiry pushed later by hand breaks the signature: not "expired", just invalid.
    forged = f"{expires + 3600}.{token.partition('.')[2]}"
    with pytest.raises(LinkRejected) as bad:
        check_link(SECRET, output_scope("job-a", 0), forged, renew="-", now=expires + 1)
    assert bad.value.code == "invalid_link_token"
    # Hostile tokens are refused, never a crash (non-ASCII, Unicode digits, endless digits).
    for hostile in ("\u00e9", f"{expires}.\u00e9", "\u00b2" * 10 + ".x", "1" * 5000 + ".x"):
        with pytest.raises(LinkRejected):
            check_link(SECRET, output_scope("job-a", 0), hostile, renew="-", now=NOW)
