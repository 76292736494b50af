"""Projects (seed 003): a canvas of nodes that jobs fill in when they finish.

A job started with `project_id` and `node_id` writes its result into that node
(`content.nodes[].data.generated = {url, type}`, `status`, `updatedAt`) when it ends, and a
`project.node_updated` event goes to the `project:{id}` topic.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Response, status
from pydantic import BaseModel, ConfigDict, Field, field_validator

from api.deps import CurrentCaller, SessionDep
from core.models import Project

router = APIRouter(prefix="/v1/projects", tags=["projects"])


class ProjectCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field("", max_length=200)
    content: dict[str, Any] = Field(
        default_factory=lambda: {"nodes": [], "edges": []},
        description="`nodes`: a list of objects, each with a unique string `id`",
    )

    @field_validator("content")
    @classmethod
    def _nodes_have_ids(cls, content: dict[str, Any]) -> dict[str, Any]:
        nodes = content.setdefault("nodes", [])
        if not isinstance(nodes, list):
            raise ValueError("content.nodes must be a list")
        seen: set[str] = set()
        for i, node in enumerate(nodes):
            if not isinstance(node, dict) or not isinstance(node.get("id"), str) or not node["id"]:
                raise ValueError(f"content.nodes[{i}] must be an object with a string id")
            if node["id"] in seen:
                raise ValueError(f"content.nodes[{i}]: id {node['id']!r} is used twice")
            seen.add(node["id"])
        return content


class ProjectPublic(BaseModel):
    id: str
    user_id: str
    name: str
    content: dict[str, Any]
    created_at: datetime
    updated_at: datetime


def _public(project: Project) -> ProjectPublic:
    return ProjectPublic(
        id=project.id,
        user_id=project.user_id,
        name=project.name,
        content=project.content,
        created_at=project.created_at,
        updated_at=project.updated_at,
    )


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ProjectPublic)
async def create_project(
    body: ProjectCreate, caller: CurrentCaller, session: SessionDep, response: Response
) -> ProjectPublic:
    """Create a project; follow it live on the `project:{id}` topic."""
    project = Project(
        id=uuid.uuid4().hex, user_id=caller.user_id, name=body.name, content=body.content
    )
    session.add(project)
    await session.commit()
    response.headers["Location"] = f"/v1/projects/{project.id}"
    return _public(project)


@router.get("/{project_id}", response_model=ProjectPublic)
async def get_project(project_id: str, caller: CurrentCaller, session: SessionDep) -> ProjectPublic:
    """The project with its nodes, as jobs have filled them in."""
    project = await session.get(Project, project_id)
    if project is None or not caller.can_see(project.user_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no project {project_id!r}")
    return _public(project)
