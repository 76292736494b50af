"""The upstream ERP's paged views (keyset pagination: `after` = the last id of a page)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from providers.http_errors import raise_for_status


@dataclass
class Page:
    items: list[dict[str, Any]]
    next_cursor: str | None


class ErpClient:
    def __init__(self, http: httpx.AsyncClient, *, base_url: str, tokens: dict[str, str]) -> None:
        self._http = http
        self._base = base_url.rstrip("/")
        self._tokens = tokens

    def token_for(self, company_id: str) -> str:
        try:
            return self._tokens[company_id]
        except KeyError:
            raise KeyError(f"no ERP token configured for company {company_id!r}") from None

    async def page(
        self,
        company_id: str,
        view: str,
        *,
        cursor: str | None,
        limit: int,
        start_date: str | None = None,
        end_date: str | None = None,
        updated_since: str | None = None,
    ) -> Page:
        params: dict[str, str | int] = {"limit": limit}
        for name, value in (
            ("after", cursor),
            ("start_date", start_date),
            ("end_date", end_date),
            ("updated_since", updated_since),
        ):
            if value:
                params[name] = value
        response = await self._http.get(
            f"{self._base}/v1/companies/{company_id}/views/{view}",
            params=params,
            headers={"Authorization": f"Bearer {self.token_for(company_id)}"},
        )
        body = raise_for_status(response)
        return Page(items=list(body["items"]), next_cursor=body.get("next_cursor"))
