"""The one check that a company can be synced: it has an ERP token (ERP_TOKENS). Sync runs,
schedules and module control all refuse an unknown company the same way, with a 422 that
names the setting to fix."""

from __future__ import annotations

from fastapi import HTTPException, status

from core.settings import Settings


def known_company(settings: Settings, company_id: str) -> str:
    """`company_id`, or a 422 when no ERP token is configured for it."""
    if company_id not in settings.erp_tokens:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"company {company_id!r} has no ERP token configured (ERP_TOKENS)",
        )
    return company_id
