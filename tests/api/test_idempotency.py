"""Idempotency keys at the database: one resource per key, another body refused, expiry,
and the primary key that makes a racing duplicate lose (the routes are in tests/e2e)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from fastapi import HTTPException
from pydantic import BaseModel
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.idempotency import Claim, _checked_key, request_hash
from core.models import IdempotencyKey, utcnow


class Body(BaseModel):
    kind: str
    input: dict[str, object]


def claim(body: Body, key: str = "k-1", user: str = "alice") -> Claim:
    made = Claim.of(key, user_id=user, scope="jobs", body=body, ttl_hours=24)
    assert made is not None
    return made


def test_the_hash_is_of_the_parsed_body() -> None:
    one = Body.model_validate_json('{"kind": "generation", "input": {"a": 1, "b": 2}}')
    two = Body.model_validate_json('{"input": {"b": 2, "a": 1},\n "kind": "generation"}')
    three = Body.model_validate_json('{"kind": "generation", "input": {"a": 1, "b": 3}}')
    assert request_hash(one) == request_hash(two) != request_hash(three)


@pytest.mark.parametrize("key", ["", " lead", "trail ", "é", "a\nb", "x" * 256])
def test_a_malformed_key_is_a_422(key: str) -> None:
    with pytest.raises(HTTPException) as caught:
        _checked_key(key)
    assert caught.value.status_code == 422


def test_a_printable_key_passes() -> None:
    assert _checked_key("3f1c a/b:c=d") == "3f1c a/b:c=d"
    assert _checked_key("x" * 255) == "x" * 255
    assert _checked_key(None) is None


async def test_a_key_answers_with_its_resource_and_refuses_another_body(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    body = Body(kind="generation", input={"prompt": "fox"})
    async with sessions() as session:
        assert await claim(body).resource(session) is None
        await claim(body).record(session, "job-1")
        await session.commit()
    async with sessions() as session:
        assert await claim(body).resource(session) == "job-1"
        # Another user's key of the same name is another key.
        assert await claim(body, user="bob").resource(session) is None
        with pytest.raises(HTTPException) as caught:
            await claim(Body(kind="generation", input={"prompt": "cat"})).resource(session)
    assert caught.value.status_code == 409
    assert isinstance(caught.value.detail, dict)
    assert caught.value.detail["code"] == "idempotency_key_reused"


async def test_a_racing_duplicate_loses_on_the_primary_key(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    body = Body(kind="generation", input={"prompt": "fox"})

    async def make(job_id: str) -> str:
        async with sessions() as session:
            await claim(body).record(session, job_id)
            await session.commit()
        return job_id

    results = await asyncio.gather(make("job-1"), make("job-2"), return_exceptions=True)
    won = [r for r in results if isinstance(r, str)]
    assert len(won) == 1 and [type(r) for r in results if not isinstance(r, str)] == [
        IntegrityError
    ]
    async with sessions() as session:
        assert await claim(body).resource(session) == won[0]


async def test_an_expired_key_counts_as_absent_and_can_be_used_again(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    body = Body(kind="generation", input={"prompt": "fox"})
    async with sessions() as session:
        await claim(body).record(session, "job-1")
        await session.commit()
        await session.execute(
            update(IdempotencyKey).values(created_at=utcnow() - timedelta(hours=25))
        )
        await session.commit()
    other = Body(kind="generation", input={"prompt": "cat"})
    async with sessions() as session:
        assert await claim(other).resource(session) is None  # not even a 409: it is gone
        await session.rollback()
        await claim(other).record(session, "job-2")
        await session.commit()
    async with sessions() as session:
        assert await claim(other).resource(session) == "job-2"
