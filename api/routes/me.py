"""Who the caller is, and what a client needs to draw its links and forms (the dashboard)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from api.deps import CurrentCaller, SettingsDep
from providers import registry
from sync_modules.registry import all_modules

router = APIRouter(prefix="/v1", tags=["me"])


class MePublic(BaseModel):
    user_id: str
    is_admin: bool
    topics: list[str] = Field(description="the live-stream topics this caller may follow")
    temporal_ui_url: str | None = Field(description="the Temporal web UI, for workflow links")
    temporal_namespace: str
    public_base_url: str = Field(description="where output URLs point")
    providers: list[str] = Field(description="the providers a job may name, the default first")
    models: dict[str, dict[str, str]] = Field(
        description="per provider, the default model of each kind it can run (a kind left out:"
        " the provider can't run it)"
    )
    companies: list[str] = Field(description="companies a sync run can start for (admins)")
    sync_modules: list[str] = Field(description="the modules of a sync run (admins)")


@router.get("/me", response_model=MePublic)
async def read_me(caller: CurrentCaller, settings: SettingsDep) -> MePublic:
    """The caller's user id and role, the topics they may follow and the UI's links."""
    return MePublic(
        user_id=caller.user_id,
        is_admin=caller.is_admin,
        topics=[f"user:{caller.user_id}"]
        + (["sync-run:*", "pull-sync:*"] if caller.is_admin else []),
        temporal_ui_url=settings.temporal_ui_url.rstrip("/") or None,
        temporal_namespace=settings.temporal_namespace,
        public_base_url=settings.public_base_url.rstrip("/"),
        providers=sorted(registry.names(), key=lambda name: name != settings.default_provider),
        models={
            name: {kind.value: model for kind, model in spec.default_models.items()}
            for name, spec in registry.specs().items()
        },
        companies=sorted(settings.erp_tokens) if caller.is_admin else [],
        sync_modules=list(all_modules()) if caller.is_admin else [],
    )
