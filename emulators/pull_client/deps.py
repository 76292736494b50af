"""Request-scoped access to the emulator and to the identity a client route is for."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from emulators.pull_client.problems import ApiProblem
from emulators.pull_client.state import DEFAULT_CLIENT, ClientIdentity, PullClientEmulator


# Both async: FastAPI runs a plain `def` dependency on its thread pool, a thread hop per
# request that cost the emulator more CPU than the answer itself.
async def get_emulator(request: Request) -> PullClientEmulator:
    emulator: PullClientEmulator = request.app.state.emulator
    return emulator


EmulatorDep = Annotated[PullClientEmulator, Depends(get_emulator)]


async def get_identity(request: Request, emulator: EmulatorDep) -> ClientIdentity:
    """`/c/{client_id}/...` names the identity; the unprefixed routes are `default`'s."""
    client_id = request.path_params.get("client_id", DEFAULT_CLIENT)
    client = emulator.clients.get(client_id)
    if client is None:
        raise ApiProblem(404, "unknown client", f"no client identity {client_id!r}")
    return client
