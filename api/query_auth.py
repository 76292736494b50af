"""The API key from the header or, for what a browser loads by URL, from `?access_token=`.

`<img src>`, `<video src>` and EventSource can't send headers, so the routes they call also
take the key in the query. The header wins when both are given.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.auth import Caller
from api.deps import get_caller

_bearer = HTTPBearer(auto_error=False, description="API key: `Authorization: Bearer <key>`")


async def get_caller_or_query_token(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    access_token: Annotated[
        str | None, Query(description="API key, for clients that can't send headers")
    ] = None,
) -> Caller:
    if credentials is None and access_token:
        credentials = HTTPAuthorizationCredentials(scheme="Bearer", credentials=access_token)
    return await get_caller(request, credentials)


HeaderOrQueryCaller = Annotated[Caller, Depends(get_caller_or_query_token)]
